#!/bin/sh
# Runs every example directly on this host (no VM) and checks that it
# answers: busybox httpd, python3 + flask, node + npm (needs the npm
# registry), busybox sh. Exits non-zero on the first failure.
# Usage: examples/smoke-local.sh
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

wait_http() { # url expected-substring
    i=0
    while [ $i -lt 50 ]; do
        if body="$(curl -fsS "$1" 2>/dev/null)"; then
            case "$body" in *"$2"*) echo "ok   $1"; return 0 ;; esac
        fi
        i=$((i + 1)); sleep 0.2
    done
    echo "FAIL $1 (expected '$2')"; return 1
}

echo "== static-site (busybox httpd)"
busybox httpd -f -p 18180 -h "$here/static-site/public" & pids="$pids $!"
wait_http http://127.0.0.1:18180/ "Hello from a microVM"
wait_http http://127.0.0.1:18180/healthz.txt ok

echo "== python-flask"
(cd "$here/python-flask" && GREETING="smoke test greeting" PORT=18181 \
    PYTHONDONTWRITEBYTECODE=1 exec python3 app.py) >"$tmp/flask.log" 2>&1 & pids="$pids $!"
wait_http http://127.0.0.1:18181/healthz ok
wait_http http://127.0.0.1:18181/ "smoke test greeting"

echo "== node-web (npm ci into a copy)"
cp -r "$here/node-web" "$tmp/node-web"
(cd "$tmp/node-web" && npm ci --omit=dev --no-audit --no-fund >/dev/null 2>&1)
(cd "$tmp/node-web" && NODE_ENV=production PORT=18182 exec node server.js) >"$tmp/node.log" 2>&1 & pids="$pids $!"
wait_http http://127.0.0.1:18182/healthz ok
wait_http http://127.0.0.1:18182/api/info '"environment":"production"'

echo "== worker (busybox sh)"
HEARTBEAT_SECONDS=1 busybox sh "$here/worker/heartbeat.sh" >"$tmp/worker.log" 2>&1 & wpid=$!
sleep 2.5
kill -TERM "$wpid"; wait "$wpid" || true
grep -q "beat 2" "$tmp/worker.log" && grep -q "stopping after" "$tmp/worker.log" \
    && echo "ok   worker logged $(grep -c beat "$tmp/worker.log") lines and stopped on SIGTERM" \
    || { echo "FAIL worker"; cat "$tmp/worker.log"; exit 1; }

echo "all examples answered"
