#!/usr/bin/env bash
# Issue 8: the soak of bench/soak.sh, shortened for CI (SOAK_SECONDS, default
# 90: three connection drops): no growth of private memory, descriptors or
# threads under a 10 ms heartbeat, a command every 50 ms and drops.
SRC=${AIWM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
exec bash "$SRC/bench/soak.sh" "${SOAK_SECONDS:-90}" "${AIWM_BIN:-$SRC/build/aiwm-worker}"
