#!/usr/bin/env bash
# Builds the image wasmlet's Dockerfile builds FROM when no public registry is reachable:
# Debian bookworm (debootstrap, minbase) with python3 + venv and this machine's CA bundle, so
# pip inside a build reaches the package index through the same trust as the host. The result
# is a `docker save` tarball cached under ~/.cache/wasmlet/images, keyed by this script and
# the CA bundle, and loaded into the Docker engine at $DOCKER_HOST. Prints the image name.
# Needs root (debootstrap) and a running Docker engine (dev/wasmlet_dev/images.py starts one).
set -euo pipefail
ca=/etc/ssl/certs/ca-certificates.crt
cache_root="${WASMLET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmlet}"
key="$(cat "$0" "$ca" | sha256sum | cut -c1-16)"
tag="wasmlet-base:$key"
tarball="$cache_root/images/wasmlet-base-$key.tar"
docker info >/dev/null 2>&1 || { echo "build-base-image: no Docker engine at ${DOCKER_HOST:-the default socket}; start dockerd (Debian's docker.io) or use wasmlet dev image" >&2; exit 1; }

if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || { echo "build-base-image: debootstrap is missing; apt-get install debootstrap (hack/install-deps.sh does)" >&2; exit 1; }
  [ "$(id -u)" = 0 ] || { echo "build-base-image: debootstrap needs root" >&2; exit 1; }
  # The mirror apt already uses on this machine (no host is named here).
  mirror="$(awk '$1=="URIs:" {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  [ -n "$mirror" ] || mirror="$(awk '$1=="deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  [ -n "$mirror" ] || { echo "build-base-image: no Debian mirror found in apt's sources" >&2; exit 1; }
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  echo "build-base-image: debootstrap bookworm into $work (first run only; a few minutes)" >&2
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; echo "build-base-image: debootstrap failed (log above)" >&2; exit 1; }
  cp "$ca" "$work/rootfs$ca"
  rm -rf "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/var/cache/apt/* "$work"/rootfs/usr/share/doc/* \
    "$work"/rootfs/usr/share/man/* "$work"/rootfs/var/log/*
  mkdir -p "$(dirname "$tarball")"
  tar -C "$work/rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$tag" >/dev/null
  docker save -o "$tarball.tmp" "$tag"
  mv "$tarball.tmp" "$tarball"
fi
docker image inspect "$tag" >/dev/null 2>&1 || docker load -q -i "$tarball" >/dev/null
echo "$tag"
