#!/bin/sh
# A non-web worker: logs a heartbeat line every $HEARTBEAT_SECONDS seconds
# and exits cleanly on SIGTERM. Runs on busybox sh (or any POSIX sh).
set -eu

interval="${HEARTBEAT_SECONDS:-5}"
name="${WORKER_NAME:-heartbeat}"
beats=0

stop() {
    echo "$name: stopping after $beats beats"
    exit 0
}
trap stop TERM INT

echo "$name: started, one beat every ${interval}s"
while :; do
    beats=$((beats + 1))
    load="$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?')"
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $name: beat $beats (load $load)"
    # Sleep in the background and wait, so that SIGTERM is handled at once.
    sleep "$interval" &
    wait $! || true
done
