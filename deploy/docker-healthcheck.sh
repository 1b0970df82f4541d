#!/bin/bash
# HEALTHCHECK of the aiwm-worker image: GET /healthz on METRICS_LISTEN
# (200 once registered with the controller, 503 before). Plain bash
# (/dev/tcp), so the image needs no curl. Without METRICS_LISTEN there is
# no endpoint to ask: the check passes (the process being alive is all
# Docker can know then).
set -u
listen=${METRICS_LISTEN:-}
[ -n "$listen" ] || exit 0
port=${listen##*:}
host=${listen%:*}
host=${host#[}
host=${host%]}
case $host in
"" | 0.0.0.0 | "::") host=127.0.0.1 ;;
esac
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
IFS= read -r -t 4 status <&3 || exit 1
case $status in
"HTTP/1.1 200 "*) exit 0 ;;
*) echo "healthz: ${status%$'\r'}"; exit 1 ;;
esac
