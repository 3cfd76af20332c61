#!/usr/bin/env bash
# `make images`: the five service images built with podman from deploy/Dockerfile, on this
# machine alone (no registry): a Debian bookworm base made with debootstrap, a distroless-like
# runtime base from it (deploy/images/runtime.Dockerfile), stripped release binaries built on
# the host (BINARY_FROM=prebuilt), and stand-ins for the compose file's Postgres and Redis
# images from Debian's packages. Prints each image's size.
#
#   IMAGE_TAG      the service images' tag (default latest): shop/<binary>:IMAGE_TAG
#   DEBIAN_MIRROR  where debootstrap fetches Debian (default http://deb.debian.org/debian)
#
# The base and stand-in images are kept between runs (shop/debian:bookworm, shop/runtime,
# shop/postgres-debian:15, shop/redis-debian:7, shop/mail-debian:bookworm); `podman rmi` them to
# start over.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=lib/podman.sh
. scripts/lib/podman.sh
podman_ready
need_command debootstrap debootstrap

tag=${IMAGE_TAG:-latest}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
binaries=(gateway user-service catalog-service order-service payment-service)
work=$root/target/images
mkdir -p "$work"
build=(podman build --quiet --format docker --network host)

# Debian's minimal base, once.
if ! podman image exists shop/debian:bookworm; then
  echo "images: debootstrap bookworm from $mirror"
  rm -rf "$work/rootfs"
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
  # What an image never needs: the downloaded packages, documentation, package lists.
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/* \
    "$work"/rootfs/usr/share/{doc,man,info}/*
  tar -C "$work/rootfs" -c . | podman import --quiet - shop/debian:bookworm >/dev/null
  rm -rf "$work/rootfs"
fi

echo "images: bases and stand-ins"
"${build[@]}" --build-arg DEBIAN_IMAGE=shop/debian:bookworm -t shop/runtime:bookworm \
  -f deploy/images/runtime.Dockerfile deploy/images >/dev/null
"${build[@]}" --build-arg DEBIAN_IMAGE=shop/debian:bookworm -t shop/postgres-debian:15 \
  -f deploy/images/postgres.Dockerfile deploy/images >/dev/null
"${build[@]}" --build-arg DEBIAN_IMAGE=shop/debian:bookworm -t shop/redis-debian:7 \
  -f deploy/images/redis.Dockerfile deploy/images >/dev/null
"${build[@]}" --build-arg DEBIAN_IMAGE=shop/debian:bookworm -t shop/mail-debian:bookworm \
  -f deploy/images/mail.Dockerfile deploy/images >/dev/null

echo "images: release binaries"
bins=()
for binary in "${binaries[@]}"; do bins+=(--bin "$binary"); done
cargo build --release --locked "${bins[@]}"
for binary in "${binaries[@]}"; do
  context=$work/context/$binary
  rm -rf "$context" && mkdir -p "$context/bin"
  strip -o "$context/bin/$binary" "target/release/$binary"
  "${build[@]}" --build-arg BINARY="$binary" --build-arg BINARY_FROM=prebuilt \
    --build-arg RUNTIME_IMAGE=shop/runtime:bookworm -t "shop/$binary:$tag" \
    -f deploy/Dockerfile "$context" >/dev/null
done

for image in "${binaries[@]/#/shop/}"; do
  podman image inspect --format "images: {{index .RepoTags 0}} {{.Size}} bytes" "$image:$tag"
done
for image in shop/runtime:bookworm shop/postgres-debian:15 shop/redis-debian:7 shop/mail-debian:bookworm; do
  podman image inspect --format "images: {{index .RepoTags 0}} {{.Size}} bytes" "$image"
done
