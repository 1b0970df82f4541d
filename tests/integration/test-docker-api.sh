#!/usr/bin/env bash
# The Docker API client (src/docker) against a real engine: Podman serving the Docker API on a
# private socket with a local registry (scripts/podman-env.sh), driven by tests/helpers/docker-driver.c:
# version negotiation, pull with progress (and an unknown image), create/start/inspect/logs/stats/
# restart/kill/stop/remove, list by label, the event stream seeing the container die, error codes.
# Exits 77 (skipped) when podman is not installed.
if ! command -v podman >/dev/null 2>&1; then
        echo "# podman is not installed: skipped (apt-get install podman runc busybox-static docker-registry uidmap slirp4netns)"
        exit 77
fi
. "$(dirname "$0")/lib.sh"

BUILD=${AIWM_BUILD_DIR:-$AIWM_SRC/build-test}
DRIVER=$BUILD/docker-driver
ENV_DIR=$T/pe
stop_env() { bash "$AIWM_SRC/scripts/podman-env.sh" stop "$ENV_DIR" >/dev/null 2>&1 || true; }
trap 'stop_env; cleanup' EXIT

[ -x "$DRIVER" ] || { echo "not ok - $DRIVER is missing (build the docker-driver target)"; exit 1; }

t0=$(date +%s%N)
if ! bash "$AIWM_SRC/scripts/podman-env.sh" start "$ENV_DIR" >"$T/env.out" 2>"$T/env.log"; then
        fail "podman-env.sh start"
        cat "$T/env.log" "$ENV_DIR"/*.log 2>/dev/null | tail -n 40 >&2
        finish
        exit 1
fi
t1=$(date +%s%N)
ok "engine and registry up, test image pushed ($(( (t1 - t0) / 1000000 )) ms)"
set -a
. "$ENV_DIR/env"
set +a

# The driver prints ok / not ok lines itself; its last line is its summary.
rc=0
"$DRIVER" >"$T/driver.out" 2>"$T/driver.log" || rc=$?
t2=$(date +%s%N)
grep -E '^(ok|not ok) - ' "$T/driver.out" || true
PASSES=$((PASSES + $(grep -c '^ok - ' "$T/driver.out" || true)))
FAILS=$((FAILS + $(grep -c '^not ok - ' "$T/driver.out" || true)))
if [ "$rc" -ne 0 ] && ! grep -q '^not ok - ' "$T/driver.out"; then
        fail "docker-driver exited with $rc"
        tail -n 20 "$T/driver.log" >&2
fi
echo "# driver $(( (t2 - t1) / 1000000 )) ms"

# The engine still answers and our container is gone.
check "no container left behind" test "$(curl -s --unix-socket "$DOCKER_SOCKET" \
        'http://d/v1.41/containers/json?all=1&filters=%7B%22label%22%3A%5B%22aiwm.test%3Ddriver%22%5D%7D')" = "[]"

stop_env
check "podman-env.sh stop removes the directory" test ! -e "$ENV_DIR"
no_procs() { ! pgrep -f "$ENV_DIR/" >/dev/null; }
check "no engine or registry process left" no_procs
echo "# total $(( ($(date +%s%N) - t0) / 1000000 )) ms"
finish
