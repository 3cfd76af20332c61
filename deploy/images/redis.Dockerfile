# A stand-in for the public redis image, made from Debian's packages, for machines that
# cannot pull it (`make containers`): `redis-server ARGS` as the command, run as `redis`
# (999) in /data, without protected mode (as the public image: the container network is the
# boundary, and a password is set where one is wanted). Debian bookworm ships Redis 7.0.
#   docker build -f deploy/images/redis.Dockerfile -t shop/redis-debian:7 deploy/images

ARG DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# The user first, with the public image's ids (999).
# hadolint ignore=DL3008
RUN groupadd --system --gid 999 redis \
    && useradd --system --uid 999 --gid redis --home-dir /data --no-create-home redis \
    && apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data \
    && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
USER 999:999
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
