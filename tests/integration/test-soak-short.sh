#!/usr/bin/env bash
# Issue 8: the soak of bench/soak.sh, shortened for CI (SOAK_SECONDS, default
# 90: drops at 30 s and 60 s, a 30 s warm-up, then the window t=30..40 s
# against t=80..90 s): no growth of private memory or RSS, descriptors or
# threads under a 10 ms heartbeat and metrics, a command every 50 ms and
# connection drops.
SRC=${AIWM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
exec bash "$SRC/bench/soak.sh" "${SOAK_SECONDS:-90}s" "${AIWM_BIN:-$SRC/build/aiwm-worker}"
