#!/usr/bin/env bash
# tfpipe's Docker engine: `start` (installs Debian's docker.io, docker-compose and debootstrap
# when missing, then starts dockerd), `stop`, `status`.
#
# dockerd runs with no default bridge and no iptables rules: every build and container uses
# host networking, so container traffic stays on this machine (see DESIGN.md, Known facts).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/docker_env.sh
. "$here/docker_env.sh"
pidfile=$TFPIPE_DOCKER_RUN/dockerd.pid
log=$TFPIPE_DOCKER_RUN/dockerd.log

running() {
    [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && "$DOCKER" version >/dev/null 2>&1
}

install_packages() {
    local missing=()
    [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || missing+=(docker.io)
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]} (apt)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

start() {
    if running; then
        echo "dockerd already running (pid $(cat "$pidfile"), $DOCKER_HOST)"
        return
    fi
    install_packages
    mkdir -p "$TFPIPE_DOCKER_RUN" "$TFPIPE_DOCKER_DATA"
    # setsid: the engine outlives the shell that started it, and `stop` ends it by its pid.
    setsid /usr/sbin/dockerd \
        --host "$DOCKER_HOST" \
        --data-root "$TFPIPE_DOCKER_DATA" \
        --exec-root "$TFPIPE_DOCKER_RUN/exec" \
        --pidfile "$pidfile" \
        --bridge=none --iptables=false --ip-masq=false \
        >"$log" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        if running; then
            echo "dockerd started (pid $(cat "$pidfile"), $DOCKER_HOST)"
            return
        fi
        sleep 1
    done
    echo "dockerd did not come up; its log ($log):" >&2
    tail -n 30 "$log" >&2
    exit 1
}

stop() {
    if [ ! -s "$pidfile" ] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "dockerd not running"
        rm -f "$pidfile"
        return
    fi
    local pid
    pid=$(cat "$pidfile")
    # Containers first, so none is left behind in the engine's state for its next start.
    "$DOCKER" ps -q | xargs -r "$DOCKER" rm -f >/dev/null || true
    kill -TERM "$pid"
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || { echo "dockerd stopped"; return; }
        sleep 1
    done
    echo "dockerd (pid $pid) did not stop within 30 s" >&2
    exit 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) if running; then echo "running ($DOCKER_HOST)"; else echo "stopped"; exit 1; fi ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
