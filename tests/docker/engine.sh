#!/usr/bin/env bash
# A Docker engine for `make test-docker`: Debian's docker.io, docker-compose and debootstrap,
# installed when missing, and dockerd started in the background when no engine answers (these
# machines run no init system). An engine that already runs is used as it is, and is left running.
set -euo pipefail
started=$(date +%s)

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if ((${#missing[@]})); then
    echo "engine: installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    echo "engine: installed in $(($(date +%s) - started)) s"
fi

if docker info >/dev/null 2>&1; then
    echo "engine: running ($(docker info -f '{{.ServerVersion}}'))"
    exit 0
fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    systemctl start docker
else
    echo "engine: starting dockerd (log: /var/log/bertserve-dockerd.log)"
    # Detached from this shell and from every descriptor it holds, so make and CI do not wait on it.
    setsid dockerd </dev/null >/var/log/bertserve-dockerd.log 2>&1 &
fi
for _ in $(seq 60); do
    if docker info >/dev/null 2>&1; then
        echo "engine: running ($(docker info -f '{{.ServerVersion}}')), ready $(($(date +%s) - started)) s after this script began"
        exit 0
    fi
    sleep 1
done
echo "engine: dockerd did not answer within 60 s" >&2
tail -n 30 /var/log/bertserve-dockerd.log >&2 || true
exit 1
