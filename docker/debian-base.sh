#!/usr/bin/env bash
# Build a local Debian base image with Python 3 for the namerouter Dockerfile, without any
# container registry: debootstrap a minimal Debian from Debian's package mirror, then
# `podman import` it (or `docker import`).
#
#   sudo docker/debian-base.sh [IMAGE] [SUITE] [MIRROR]
#   podman build --build-arg BASE=IMAGE -t namerouter .
#
# IMAGE defaults to localhost/namerouter-debian-base:bookworm. The root file system is kept
# as a tarball in ${NAMEROUTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/namerouter} so the slow
# debootstrap (a few minutes) runs once per machine; delete the tarball to rebuild.
set -euo pipefail

IMAGE=${1:-localhost/namerouter-debian-base:bookworm}
SUITE=${2:-bookworm}
MIRROR=${3:-http://deb.debian.org/debian}
CACHE=${NAMEROUTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/namerouter}
TARBALL="$CACHE/debian-$SUITE-python3.tar"
ENGINE=${CONTAINER_ENGINE:-$(command -v podman || command -v docker)}

if [ ! -s "$TARBALL" ]; then
  mkdir -p "$CACHE"
  ROOTFS=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$ROOTFS"' EXIT
  # minbase + what the Dockerfile needs: python3 with venv (the image installs into a
  # virtualenv, which also keeps pip away from Debian's externally-managed Python) and
  # CA certificates for pip.
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$ROOTFS" "$MIRROR"
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  tar -C "$ROOTFS" --numeric-owner -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
fi

"$ENGINE" import --change 'CMD ["/bin/sh"]' "$TARBALL" "$IMAGE" >/dev/null
echo "$IMAGE"
