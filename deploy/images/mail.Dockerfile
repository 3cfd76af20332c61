# A stand-in for a mail relay or catcher, made from Debian's packages, for machines that cannot
# pull one (`make containers`): aiosmtpd's SMTP server on port 1025, printing every message it
# accepts to its standard output (so `logs mail` shows what the shop sent), run as 999. In a
# real deployment SMTP_URL names your relay instead.
#   docker build -f deploy/images/mail.Dockerfile -t shop/mail-debian:bookworm deploy/images

ARG DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN groupadd --system --gid 999 smtp \
    && useradd --system --uid 999 --gid smtp --home-dir /nonexistent --no-create-home smtp \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3-aiosmtpd \
    && rm -rf /var/lib/apt/lists/*
# Each message reaches the log as it arrives, not when a buffer fills.
ENV PYTHONUNBUFFERED=1
USER 999:999
EXPOSE 1025
HEALTHCHECK --interval=2s --timeout=2s --start-period=5s --retries=15 \
    CMD ["python3", "-c", "import socket; socket.create_connection(('127.0.0.1', 1025), 2).close()"]
# -n: no privileges to drop; the default handler prints each message.
CMD ["python3", "-m", "aiosmtpd", "-n", "-l", "0.0.0.0:1025"]
