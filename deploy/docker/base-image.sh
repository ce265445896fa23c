#!/usr/bin/env bash
# Build a local base image from Debian's packages alone, for sites without an image registry
# (and for `make test-docker`): Debian bookworm bootstrapped with debootstrap from the Debian
# mirror this host's apt uses, with Python 3.11, pip and a virtual environment at /opt/venv
# on PATH, imported with `docker import`.
#
#   deploy/docker/base-image.sh                 -> bertserve-base:bookworm (kept when present)
#   REBUILD=1 deploy/docker/base-image.sh       -> rebuild it anyway
#
# TLS: pip and apt inside `docker build` go through this host's TLS setup, which may re-sign
# certificates with a site authority (a proxy). So the image trusts the same CA certificates as
# the host: the host's CA bundle (HOST_CA_BUNDLE) is copied into the image as its system bundle,
# and the image's pip.conf points pip at it. The host's pip index (PIP_INDEX_URL, else
# `pip config get global.index-url`) is written to that pip.conf too, so builds reach the same
# index (credentials in that URL end up in the image); file:// indexes and find-links of the host
# are not (they are not in the image). Bookworm's security and point-release updates are applied.
#
# Needs root, debootstrap (apt-get install debootstrap) and a running Docker engine.
# Environment: BASE_IMAGE (name:tag), DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR, HOST_CA_BUNDLE.
set -euo pipefail

IMAGE=${BASE_IMAGE:-bertserve-base:bookworm}
SUITE=bookworm
HOST_CA_BUNDLE=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
# The image is rebuilt when this script changes: its checksum is the image's recipe label.
RECIPE=$(sha256sum "$0" | cut -c1-16)

if [ -z "${REBUILD:-}" ] \
    && [ "$(docker image inspect -f '{{index .Config.Labels "org.bertserve.base.recipe"}}' "$IMAGE" 2>/dev/null)" = "$RECIPE" ]; then
    echo "base-image: $IMAGE is present (recipe $RECIPE)"
    exit 0
fi

# The URIs of the host's Debian sources, one-line (sources.list) and deb822 (*.sources) formats.
host_uris() {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; break } }'
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1 == "URIs:" { for (i = 2; i <= NF; i++) print $i }'
}
MIRROR=${DEBIAN_MIRROR:-$(host_uris | grep -E '/debian/?$' | head -n1 || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${DEBIAN_SECURITY_MIRROR:-$(host_uris | grep -E '/debian-security/?$' | head -n1 || true)}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}
INDEX_URL=${PIP_INDEX_URL:-$(pip config get global.index-url 2>/dev/null || true)}

[ -r "$HOST_CA_BUNDLE" ] || { echo "base-image: no CA bundle at $HOST_CA_BUNDLE" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "base-image: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }

ROOT=$(mktemp -d /var/tmp/bertserve-base.XXXXXX)
trap 'rm -rf "$ROOT" "$ROOT.log"' EXIT
echo "base-image: debootstrap $SUITE from $MIRROR"
started=$(date +%s)
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1 || { tail -n 30 "$ROOT.log" >&2; exit 1; }
rm -f "$ROOT.log"

cat >"$ROOT/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
SOURCES
# Small images: no recommends, no documentation.
cat >"$ROOT/etc/apt/apt.conf.d/90bertserve" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT
{
    echo "[global]"
    echo "cert = /etc/ssl/certs/ca-certificates.crt"
    echo "disable-pip-version-check = true"
    if [ -n "$INDEX_URL" ] && [[ "$INDEX_URL" != file:* ]]; then echo "index-url = $INDEX_URL"; fi
} >"$ROOT/etc/pip.conf"

# Security and point-release updates: debootstrap fetches the release suite only.
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
chroot "$ROOT" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq' >"$ROOT.log" 2>&1 \
    || { tail -n 30 "$ROOT.log" >&2; rm -f "$ROOT.log"; exit 1; }
rm -f "$ROOT.log" "$ROOT/etc/resolv.conf"

# The host's CA bundle is the image's bundle. The site CAs the host added the Debian way go to
# the same place in the image, so an update-ca-certificates run in a later build keeps them.
cp "$HOST_CA_BUNDLE" "$ROOT/etc/ssl/certs/ca-certificates.crt"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
fi
chroot "$ROOT" /usr/bin/python3 -m venv /opt/venv
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
    "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/var/log/*.log

tar -C "$ROOT" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL org.bertserve.base.recipe=$RECIPE" \
    --change 'CMD ["python3"]' \
    - "$IMAGE" >/dev/null
echo "base-image: $IMAGE built in $(($(date +%s) - started)) s ($(docker image inspect -f '{{.Size}}' "$IMAGE") bytes)"
