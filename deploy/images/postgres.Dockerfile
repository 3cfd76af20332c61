# A stand-in for the public postgres image, made from Debian's packages, for machines that
# cannot pull it (`make containers`): the same variables (POSTGRES_USER, POSTGRES_PASSWORD,
# POSTGRES_DB), /docker-entrypoint-initdb.d/*.sql run once on a new data directory, and
# `postgres -c ...` as the command. The socket goes to /var/run/postgresql when that is
# writable (a tmpfs there, as the compose file mounts; the image has no such directory, so
# the tmpfs's mode holds), else to /tmp. Debian bookworm ships PostgreSQL 15.
#   docker build -f deploy/images/postgres.Dockerfile -t shop/postgres-debian:15 deploy/images

ARG DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# The user first, with the public image's ids (999); no cluster from the package: the
# entrypoint makes one in PGDATA.
# hadolint ignore=DL3008
RUN groupadd --system --gid 999 postgres \
    && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql \
      --shell /bin/bash postgres \
    && mkdir -p /etc/postgresql-common/createcluster.d \
    && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/no-main.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /docker-entrypoint-initdb.d \
    && chown -R postgres:postgres /var/lib/postgresql \
    && chmod 700 /var/lib/postgresql/data \
    && rm -rf /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
USER 999:999
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
