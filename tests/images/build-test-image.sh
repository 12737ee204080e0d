#!/bin/sh
# Build the local Debian image the integration tests run steps in, once, and cache it by tag.
# No registry can be reached from test machines, so the image comes from debootstrap + docker import.
# Usage: tests/images/build-test-image.sh [TAG]    (default greenlight-test/debian:bookworm)
set -eu

TAG="${1:-greenlight-test/debian:bookworm}"
MIRROR="${GREENLIGHT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "test image $TAG already present"
    exit 0
fi

ROOT="$(mktemp -d /tmp/greenlight-rootfs.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT

echo "building test image $TAG with debootstrap (about a minute)"
debootstrap --variant=minbase --include=python3,git,ca-certificates bookworm "$ROOT" "$MIRROR" >/tmp/greenlight-debootstrap.log 2>&1 || {
    tail -20 /tmp/greenlight-debootstrap.log
    exit 1
}
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
tar -C "$ROOT" -c . | docker import --change 'CMD ["/bin/bash"]' - "$TAG" >/dev/null
echo "built test image $TAG"
