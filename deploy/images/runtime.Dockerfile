# A distroless-like runtime base made from Debian's packages, for machines that cannot pull
# gcr.io/distroless/cc-debian12 (`make images` builds the service images on it): glibc, libgcc,
# CA certificates, /etc/services, a `nonroot` user (65532) and /tmp; no shell, no package
# manager.
#   docker build -f deploy/images/runtime.Dockerfile -t shop/runtime:bookworm deploy/images

ARG DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS rootfs
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates netbase \
    && rm -rf /var/lib/apt/lists/*
# The packages' files (without documentation and character-set converters) under /rootfs,
# whose /lib, /lib64, /bin and /sbin link into /usr as on Debian itself.
RUN mkdir -p /rootfs/usr/lib /rootfs/usr/lib64 /rootfs/usr/bin /rootfs/usr/sbin \
    && for dir in lib lib64 bin sbin; do ln -s "usr/${dir}" "/rootfs/${dir}"; done \
    && dpkg -L libc6 libgcc-s1 netbase \
      | grep -vE '^/usr/share/(doc|lintian|man|locale)|/gconv' \
      | while read -r path; do \
          if [ -L "${path}" ] || [ -f "${path}" ]; then cp -a --parents "${path}" /rootfs; fi; \
        done \
    && mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/home/nonroot \
    && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
    && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/rootfs/etc/passwd \
    && printf 'root:x:0:\nnonroot:x:65532:\n' >/rootfs/etc/group \
    && printf 'hosts: files dns\n' >/rootfs/etc/nsswitch.conf \
    && chmod 1777 /rootfs/tmp \
    && chown 65532:65532 /rootfs/home/nonroot

FROM scratch
COPY --from=rootfs /rootfs /
USER 65532:65532
