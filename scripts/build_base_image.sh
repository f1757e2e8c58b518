#!/usr/bin/env bash
# The local base image, from Debian packages only (no registry is reachable here):
# debootstrap bookworm (minbase) + Python 3.11 from Debian, loaded with `docker import`.
# The Dockerfiles take it as BASE_IMAGE instead of the public python:3.11-slim-bookworm.
#
#   scripts/build_base_image.sh [tag]      (default tfpipe-base:bookworm-py3.11)
#
# Skipped when the tag exists and was built with the same CA bundle. pip inside a build
# reaches the registry through this machine's CA bundle (the file PIP_CERT names), copied
# to a path of its own: installing ca-certificates regenerates /etc/ssl/certs and would drop it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/docker_env.sh
. "$here/docker_env.sh"
tag=${1:-tfpipe-base:bookworm-py3.11}
ca=${PIP_CERT:-}
ca_digest=none
if [ -n "$ca" ]; then
    ca_digest=$(sha256sum "$ca" | cut -c1-16)
fi

if [ "$("$DOCKER" image inspect --format '{{ index .Config.Labels "tfpipe.ca-digest" }}' "$tag" 2>/dev/null)" = "$ca_digest" ]; then
    echo "$tag exists (CA bundle $ca_digest): skipped"
    exit 0
fi

# The host's Debian mirror: the image's apt reaches Debian as the host does.
sources=/etc/apt/sources.list.d/debian.sources
mirror=http://deb.debian.org/debian
if [ -f "$sources" ]; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' "$sources")
fi

start=$(date +%s)
rootfs=$(mktemp -d /var/tmp/tfpipe-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
log=$rootfs.log
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$log" 2>&1 || { tail -n 30 "$log" >&2; exit 1; }
if [ -f "$sources" ]; then
    rm -f "$rootfs/etc/apt/sources.list"
    cp "$sources" "$rootfs/etc/apt/sources.list.d/debian.sources"
fi
# Python from Debian, with the updates and security suites the host uses (debootstrap's
# --include configures only the release suite, and python3.11-venv fails there).
# python3.11-venv: ensurepip, which the build stages need to make their virtualenvs.
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
chroot "$rootfs" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends python3.11 python3.11-venv ca-certificates && apt-get clean' >>"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; exit 1; }
rm -f "$log" "$rootfs/etc/resolv.conf"
env_args=()
if [ -n "$ca" ]; then
    install -D -m 0644 "$ca" "$rootfs/usr/local/share/tfpipe-ca/ca-bundle.crt"
    env_args=(--change "ENV PIP_CERT=/usr/local/share/tfpipe-ca/ca-bundle.crt")
fi
# What a container image does not need: package caches and lists, docs, man pages.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
tar -C "$rootfs" --numeric-owner -c . | "$DOCKER" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "${env_args[@]}" \
    --change "LABEL tfpipe.ca-digest=$ca_digest" \
    --change 'LABEL org.opencontainers.image.description="Debian bookworm (debootstrap minbase) with Python 3.11"' \
    --change 'CMD ["python3.11"]' \
    - "$tag" >/dev/null
echo "$tag built in $(($(date +%s) - start)) s"
