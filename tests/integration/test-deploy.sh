#!/usr/bin/env bash
# Issue 7: running it in production. The systemd unit (systemd-analyze
# verify, key directives, exposure), the sysusers/tmpfiles snippets (applied
# to a scratch root), the notify protocol the unit relies on (READY=1 once
# registered, STATUS=, WATCHDOG=1 at half the interval, STOPPING=1), the
# installer (into a DESTDIR: tree, modes, idempotence, flags, uninstall,
# purge) and the Dockerfile (lint-level checks; a real build with podman
# only when the base images are already present, since none can be pulled).
. "$(dirname "$0")/lib.sh"

DEPLOY="$AIWM_SRC/deploy"
UNIT="$DEPLOY/aiwm-worker.service"
INSTALL="$AIWM_SRC/scripts/install.sh"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

# --- the unit -----------------------------------------------------------------
# `systemd-analyze verify` insists that ExecStart's binary exists. The real
# path (/usr/local/bin/aiwm-worker) does not exist on a build machine, so a
# copy with ExecStart pointed at the binary under test is verified; every
# other line is the shipped one.
if command -v systemd-analyze >/dev/null 2>&1; then
        mkdir -p "$T/unit"
        sed "s#^ExecStart=/usr/local/bin/aiwm-worker #ExecStart=$AIWM_BIN #" "$UNIT" >"$T/unit/aiwm-worker.service"
        check "the verified copy differs only in ExecStart" \
                bash -c "[ \"\$(diff '$UNIT' '$T/unit/aiwm-worker.service' | grep -c '^[<>]')\" = 2 ]"
        check "systemd-analyze verify: no complaint" \
                bash -c "out=\$(systemd-analyze verify '$T/unit/aiwm-worker.service' 2>&1); echo \"\$out\"; [ -z \"\$out\" ]"
        if systemd-analyze security --help 2>&1 | grep -q -- --offline; then
                exposure=$(systemd-analyze security --offline=yes "$T/unit/aiwm-worker.service" 2>/dev/null |
                        sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
                check "systemd-analyze security exposure <= 4.0 (got ${exposure:-?})" \
                        awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 4.0) }'
        fi
else
        echo "# systemd-analyze not installed: unit not verified"
fi
for d in "Type=notify" "NotifyAccess=main" "WatchdogSec=30" "Restart=always" "RestartSec=5" \
        "RestartPreventExitStatus=78" "TimeoutStartSec=infinity" \
        "User=aiwm" "Group=aiwm" "SupplementaryGroups=docker" \
        "EnvironmentFile=-/etc/aiwm-worker/worker.env" "ExecStart=/usr/local/bin/aiwm-worker run" \
        "NoNewPrivileges=yes" "ProtectSystem=strict" "ReadWritePaths=/var/lib/aiwm-worker" \
        "StateDirectory=aiwm-worker" "StateDirectoryMode=0750" "PrivateTmp=yes" "ProtectHome=yes" \
        "ProtectKernelTunables=yes" "ProtectKernelModules=yes" "ProtectControlGroups=yes" \
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK" "LockPersonality=yes" \
        "RestrictRealtime=yes" "SystemCallArchitectures=native" "UMask=0027" "LimitNOFILE=65536" \
        "CapabilityBoundingSet=" "WantedBy=multi-user.target"; do
        check "unit: $d" grep -qx -- "$d" "$UNIT"
done
# Options that would break GPUs, Docker or /proc reads must stay off.
for d in PrivateDevices DevicePolicy MemoryDenyWriteExecute PrivateUsers ProtectProc ProcSubset PrivateNetwork; do
        check "unit: no $d" bash -c "! grep -q '^$d=' '$UNIT'"
done

# --- sysusers and tmpfiles, applied to a scratch root ------------------------
if command -v systemd-sysusers >/dev/null && command -v systemd-tmpfiles >/dev/null; then
        R="$T/root"
        mkdir -p "$R/etc"
        : >"$R/etc/passwd"
        : >"$R/etc/group"
        check "systemd-sysusers accepts the snippet" systemd-sysusers --root="$R" "$DEPLOY/aiwm-worker.sysusers"
        check "user aiwm: system uid, no login shell, home = state dir" \
                awk -F: '$1=="aiwm" && $3<1000 && $6=="/var/lib/aiwm-worker" && $7=="/usr/sbin/nologin" {f=1} END {exit !f}' "$R/etc/passwd"
        check "group docker exists and lists aiwm" \
                awk -F: '$1=="docker" && $4 ~ /(^|,)aiwm(,|$)/ {f=1} END {exit !f}' "$R/etc/group"
        check "systemd-tmpfiles accepts the snippet" systemd-tmpfiles --create --root="$R" "$DEPLOY/aiwm-worker.tmpfiles"
        uid=$(awk -F: '$1=="aiwm"{print $3}' "$R/etc/passwd")
        for d in var/lib/aiwm-worker var/lib/aiwm-worker/models var/lib/aiwm-worker/bin; do
                check "$d 0750 aiwm:aiwm" bash -c "[ \"\$(stat -c '%a %u' '$R/$d')\" = '750 $uid' ]"
        done
        check "etc/aiwm-worker 0750 root:aiwm" bash -c "[ \"\$(stat -c '%a %u %g' '$R/etc/aiwm-worker')\" = '750 0 $uid' ]"
else
        echo "# systemd-sysusers/systemd-tmpfiles not installed: snippets not applied"
fi

# --- the notify protocol the unit relies on ----------------------------------
NODE=6650a1b2c3d4e5f607182988
start_controller ctl --seed-node "$NODE"
"$PY" - "$T/notify.sock" "$T/notify.txt" <<'PYEOF' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
with open(sys.argv[2], "a", buffering=1) as f:
    try:
        while True:
            f.write(s.recv(4096).decode().replace("\n", "|") + "\n")
    except socket.timeout:
        pass
PYEOF
NOTIFY_PID=$!
PIDS+=("$NOTIFY_PID")
for _ in $(seq 1 50); do [ -S "$T/notify.sock" ] && break; sleep 0.1; done
start_worker notify NODE_TOKEN="$(mint "$NODE")" CONTROLLER_WS_URL="ws://127.0.0.1:$CTL_PORT/ws/node" \
        NOTIFY_SOCKET="$T/notify.sock" WATCHDOG_USEC=400000 AIWM_NVML_PATH= NVIDIA_SMI_PATH=
check "READY=1 with STATUS=registered" wait_log "$T/notify.txt" '^READY=1\|STATUS=registered' 10
check "STATUS= before READY (connecting)" bash -c "head -n 1 '$T/notify.txt' | grep -q '^STATUS=' && ! head -n 1 '$T/notify.txt' | grep -q READY"
sleep 1.2
check "WATCHDOG=1 at half of WATCHDOG_USEC ($(grep -c '^WATCHDOG=1$' "$T/notify.txt") in ~1.2 s)" \
        bash -c "[ \$(grep -c '^WATCHDOG=1\$' '$T/notify.txt') -ge 4 ]"
kill -TERM "$WORKER_PID"
check "STOPPING=1 on SIGTERM" wait_log "$T/notify.txt" '^STOPPING=1' 5
wait "$WORKER_PID" 2>/dev/null && rc=0 || rc=$?
check "clean exit on SIGTERM (rc $rc)" test "$rc" = 0
stop_pid "$NOTIFY_PID"
stop_pid "$CTL_PID"

# --- the installer, into a DESTDIR ------------------------------------------------
D="$T/dest"
BIN="$AIWM_BIN"
# tree DIR: one line per path with type, mode, size and link target, plus
# the files' checksums: two equal trees have equal outputs.
tree() { (cd "$1" && find . -printf '%y %m %s %p %l\n' | sort && find . -type f -exec md5sum {} + | sort -k2); }
same_tree() { diff <(tree "$D") "$1"; }
# active_env: the lines of worker.env that are not comments.
active_env() { grep -v '^#' "$D/etc/aiwm-worker/worker.env" | grep . || true; }
env_is() { [ "$(active_env)" = "$(printf "$@")" ] || { active_env; return 1; }; }
inst() { env DESTDIR="$D" "$INSTALL" --binary "$BIN" "$@" >/dev/null; }
refuses() { ! env DESTDIR="$D" "$INSTALL" "$@" 2>/dev/null >&2; }
mode_is() { [ "$(stat -c %a "$1")" = "$2" ]; }
refuses_non_root() {
        if [ "$(id -u)" -eq 0 ]; then
                ! env -u DESTDIR setpriv --reuid=65534 --regid=65534 --clear-groups "$INSTALL" --binary "$BIN" >/dev/null 2>&1
        else
                ! env -u DESTDIR "$INSTALL" --binary "$BIN" >/dev/null 2>&1
        fi
}

check "refuses without root or DESTDIR" refuses_non_root
check "first install (DESTDIR, --no-start)" \
        env DESTDIR="$D" "$INSTALL" --binary "$BIN" --no-start --controller https://ctl.example:3003 --token 'abc.def.ghi'
check "binary in the state dir (self-update), 0755" bash -c "[ \"\$(stat -c %a '$D/var/lib/aiwm-worker/bin/aiwm-worker')\" = 755 ] && cmp -s '$BIN' '$D/var/lib/aiwm-worker/bin/aiwm-worker'"
check "PREFIX/bin/aiwm-worker -> /var/lib/aiwm-worker/bin/aiwm-worker" \
        bash -c "[ \"\$(readlink '$D/usr/local/bin/aiwm-worker')\" = /var/lib/aiwm-worker/bin/aiwm-worker ]"
check "unit installed, ExecStart on PREFIX" grep -qx 'ExecStart=/usr/local/bin/aiwm-worker run' "$D/etc/systemd/system/aiwm-worker.service"
check "unit identical to deploy/ for the default PREFIX" cmp -s "$UNIT" "$D/etc/systemd/system/aiwm-worker.service"
check "sysusers and tmpfiles snippets" bash -c "cmp -s '$DEPLOY/aiwm-worker.sysusers' '$D/usr/local/lib/sysusers.d/aiwm-worker.conf' && cmp -s '$DEPLOY/aiwm-worker.tmpfiles' '$D/usr/local/lib/tmpfiles.d/aiwm-worker.conf'"
for d in var/lib/aiwm-worker var/lib/aiwm-worker/models var/lib/aiwm-worker/bin etc/aiwm-worker; do
        check "$d mode 0750" bash -c "[ \"\$(stat -c %a '$D/$d')\" = 750 ]"
done
check "worker.env mode 0640" bash -c "[ \"\$(stat -c %a '$D/etc/aiwm-worker/worker.env')\" = 640 ]"
check "token file 0600 with the token" bash -c "[ \"\$(stat -c %a '$D/etc/aiwm-worker/token')\" = 600 ] && [ \"\$(cat '$D/etc/aiwm-worker/token')\" = abc.def.ghi ]"
check "env: controller and token file set, nothing else active" \
        env_is 'CONTROLLER_URL=https://ctl.example:3003\nNODE_TOKEN_FILE=/etc/aiwm-worker/token' 
check "env template documents every key" bash -c "for k in CONTROLLER_WS_URL CONTROLLER_URL NODE_TOKEN NODE_TOKEN_FILE NODE_ID NODE_NAME HEARTBEAT_INTERVAL METRICS_INTERVAL RECONNECT_DELAY RECONNECT_DELAY_MAX DOCKER_SOCKET NVIDIA_SMI_PATH LOG_LEVEL LOG_FORMAT NODE_ENV TLS_CA_FILE TLS_INSECURE STATE_DIR MODEL_CACHE_DIR DISK_PATH PUBLIC_IP PUBLIC_IP_URLS METRICS_LISTEN MAX_CONCURRENT_COMMANDS; do grep -Eq \"^#?\$k=\" '$D/etc/aiwm-worker/worker.env' || { echo \"missing \$k\"; exit 1; }; done"
check "no secret on the token's path in the unit" bash -c "! grep -q abc.def.ghi '$D/etc/systemd/system/aiwm-worker.service'"
tree "$D" >"$T/tree1"
inst --no-start --controller https://ctl.example:3003 --token abc.def.ghi
check "re-run with the same flags: identical tree" same_tree "$T/tree1"
inst --no-start
check "re-run without flags keeps env and token" same_tree "$T/tree1"
echo "# an operator's own edit survives re-runs" >>"$D/etc/aiwm-worker/worker.env"
echo "NODE_NAME=gpu-7" >>"$D/etc/aiwm-worker/worker.env"
check "new --controller (ws)" inst --no-start --controller wss://other.example/ws/node
check "env after: CONTROLLER_WS_URL set in its template line, the rest kept" \
        env_is 'CONTROLLER_WS_URL=wss://other.example/ws/node\nCONTROLLER_URL=https://ctl.example:3003\nNODE_TOKEN_FILE=/etc/aiwm-worker/token\nNODE_NAME=gpu-7'
check "the operator's comment kept" grep -q 'an operator' "$D/etc/aiwm-worker/worker.env"
check "same --controller again: file untouched" \
        bash -c "before=\$(stat -c %Y.%i '$D/etc/aiwm-worker/worker.env'); env DESTDIR='$D' '$INSTALL' --binary '$BIN' --no-start --controller wss://other.example/ws/node >/dev/null; [ \"\$(stat -c %Y.%i '$D/etc/aiwm-worker/worker.env')\" = \"\$before\" ]"
printf 'tok.from.file\n' >"$T/tokfile"
inst --no-start --token-file "$T/tokfile"
check "--token-file replaces the token" bash -c "[ \"\$(cat '$D/etc/aiwm-worker/token')\" = tok.from.file ]"
check "token still 0600" mode_is "$D/etc/aiwm-worker/token" 600
check "--token - reads stdin" \
        bash -c "echo tok.from.stdin | env DESTDIR='$D' '$INSTALL' --binary '$BIN' --no-start --token - >/dev/null && [ \"\$(cat '$D/etc/aiwm-worker/token')\" = tok.from.stdin ]"
check "NODE_TOKEN_FILE still once" bash -c "[ \$(grep -c '^NODE_TOKEN_FILE=' '$D/etc/aiwm-worker/worker.env') = 1 ]"
check "the staged env file loads in the worker (no invalid line)" \
        bash -c "env -i PATH=\"\$PATH\" PUBLIC_IP_URLS= AIWM_NVML_PATH= NVIDIA_SMI_PATH= NODE_TOKEN_FILE= NODE_TOKEN='$(mint "$NODE")' DOCKER_SOCKET=/nonexistent STATE_DIR='$T/inv' '$BIN' inventory --env-file '$D/etc/aiwm-worker/worker.env' >'$T/inv.json' 2>'$T/inv.log' && ! grep -qi invalid '$T/inv.log' && grep -q '\"nodeId\"' '$T/inv.json'"
# Refusals: nothing is changed.
tree "$D" >"$T/tree2"
check "bad --controller refused" refuses --binary "$BIN" --controller ftp://x
check "token with a space refused" refuses --binary "$BIN" --token 'a b'
check "empty token refused" refuses --binary "$BIN" --token ''
check "--token and --token-file together refused" refuses --binary "$BIN" --token a --token-file "$T/tokfile"
check "--purge without --uninstall refused" refuses --purge
check "unknown flag refused" refuses --frobnicate
check "missing binary refused" refuses --binary "$T/nope"
check "relative --prefix refused" refuses --binary "$BIN" --prefix opt
check "refusals left the tree alone" same_tree "$T/tree2"
check "--help" bash -c "'$INSTALL' --help | grep -q -- '--uninstall'"

# Another prefix, and --no-self-update (a plain copy, no link).
D2="$T/dest2"
check "--prefix /opt/aiwm --no-self-update" \
        env DESTDIR="$D2" "$INSTALL" --binary "$BIN" --prefix /opt/aiwm --no-self-update
check "ExecStart follows the prefix" grep -qx 'ExecStart=/opt/aiwm/bin/aiwm-worker run' "$D2/etc/systemd/system/aiwm-worker.service"
check "plain executable, none in the state dir" \
        bash -c "[ -f '$D2/opt/aiwm/bin/aiwm-worker' ] && [ ! -L '$D2/opt/aiwm/bin/aiwm-worker' ] && [ ! -e '$D2/var/lib/aiwm-worker/bin/aiwm-worker' ]"
check "no token file without --token" test ! -e "$D2/etc/aiwm-worker/token"
check "switching back to self-update makes the link" \
        bash -c "env DESTDIR='$D2' '$INSTALL' --binary '$BIN' --prefix /opt/aiwm >/dev/null && [ -L '$D2/opt/aiwm/bin/aiwm-worker' ] && [ -x '$D2/var/lib/aiwm-worker/bin/aiwm-worker' ]"

# Uninstall keeps configuration and state; purge removes them.
mkdir -p "$D/var/lib/aiwm-worker/models/m1" && echo data >"$D/var/lib/aiwm-worker/state.db"
check "--uninstall" env DESTDIR="$D" "$INSTALL" --uninstall
check "binary, link, unit, snippets gone" \
        bash -c "for f in usr/local/bin/aiwm-worker var/lib/aiwm-worker/bin etc/systemd/system/aiwm-worker.service usr/local/lib/sysusers.d/aiwm-worker.conf usr/local/lib/tmpfiles.d/aiwm-worker.conf; do [ ! -e '$D'/\$f ] && [ ! -L '$D'/\$f ] || { echo \"left: \$f\"; exit 1; }; done"
check "configuration and state kept" \
        bash -c "[ -f '$D/etc/aiwm-worker/worker.env' ] && [ -f '$D/etc/aiwm-worker/token' ] && [ -f '$D/var/lib/aiwm-worker/state.db' ] && [ -d '$D/var/lib/aiwm-worker/models/m1' ]"
check "--uninstall twice is fine" env DESTDIR="$D" "$INSTALL" --uninstall
check "--uninstall --purge" env DESTDIR="$D" "$INSTALL" --uninstall --purge
check "purge removed configuration and state" bash -c "[ ! -e '$D/etc/aiwm-worker' ] && [ ! -e '$D/var/lib/aiwm-worker' ]"
check "reinstall after purge" bash -c "env DESTDIR='$D' '$INSTALL' --binary '$BIN' --no-start >/dev/null && [ -f '$D/etc/aiwm-worker/worker.env' ] && [ ! -e '$D/etc/aiwm-worker/token' ]"

# --- Dockerfile -------------------------------------------------------------
DF="$DEPLOY/Dockerfile"
check "Dockerfile: build stage on debian:12" grep -Eq '^FROM debian:\$\{DEBIAN_RELEASE\} AS build$' "$DF"
check "Dockerfile: DEBIAN_RELEASE=12" grep -qx 'ARG DEBIAN_RELEASE=12' "$DF"
check "Dockerfile: runtime stage on debian:12-slim" grep -Eq '^FROM debian:\$\{DEBIAN_RELEASE\}-slim AS runtime$' "$DF"
check "Dockerfile: two stages, the last is the runtime" bash -c "[ \$(grep -c '^FROM ' '$DF') = 2 ] && grep '^FROM ' '$DF' | tail -n 1 | grep -q slim"
check "Dockerfile: the binary comes from the build stage" grep -qx 'COPY --from=build /src/build/aiwm-worker /usr/local/bin/aiwm-worker' "$DF"
# The runtime stage installs only the runtime libraries.
awk '/^FROM .*slim/{r=1} r' "$DF" >"$T/runtime.df"
check "Dockerfile: runtime packages" grep -q 'libssl3 libcurl4 libjansson4 libsqlite3-0 libsystemd0 ca-certificates' "$T/runtime.df"
check "Dockerfile: no -dev package or compiler at run time" bash -c "! grep -Eq -- '-dev\\b|build-essential|cmake|gcc|clang' '$T/runtime.df'"
check "Dockerfile: --no-install-recommends and apt lists removed" \
        bash -c "[ \$(grep -c 'apt-get install -y --no-install-recommends' '$DF') = 2 ] && [ \$(grep -c 'rm -rf /var/lib/apt/lists' '$DF') = 2 ]"
check "Dockerfile: the last USER is not root" \
        bash -c "u=\$(grep '^USER ' '$DF' | tail -n 1 | awk '{print \$2}'); [ -n \"\$u\" ] && [ \"\${u%%:*}\" != root ] && [ \"\${u%%:*}\" != 0 ]"
check "Dockerfile: no ADD (never of URLs)" bash -c "! grep -Eiq '^ADD ' '$DF'"
check "Dockerfile: no curl|wget in RUN" bash -c "! grep -Eq '(curl|wget) ' '$DF'"
check "Dockerfile: volumes for state and model cache" grep -qx 'VOLUME \["/var/lib/aiwm-worker", "/var/lib/aiwm-worker/models"\]' "$DF"
check "Dockerfile: HEALTHCHECK on /healthz" bash -c "grep -q '^HEALTHCHECK ' '$DF' && grep -q '/healthz' '$DEPLOY/docker-healthcheck.sh'"
check "Dockerfile: docker socket and GPU flags documented" \
        bash -c "grep -q 'docker.sock' '$DF' && grep -q -- '--gpus all' '$DF' && grep -q 'nvidia.com/gpu=all' '$DF'"
check "Dockerfile: every COPY source exists" \
        bash -c "grep '^COPY ' '$DF' | grep -v -- '--from=' | awk '{for (i=2;i<NF;i++) print \$i}' | while read -r f; do [ -e '$AIWM_SRC'/\$f ] || { echo \"missing \$f\"; exit 1; }; done"
check "healthcheck script: bash syntax" bash -n "$DEPLOY/docker-healthcheck.sh"
if command -v podman >/dev/null 2>&1 && podman image exists docker.io/library/debian:12 2>/dev/null &&
        podman image exists docker.io/library/debian:12-slim 2>/dev/null; then
        check "podman build" podman build -q -f "$DF" -t aiwm-worker:test "$AIWM_SRC"
        check "image runs --version" bash -c "podman run --rm aiwm-worker:test --version | grep -q '^aiwm-worker '"
        check "image user is not root" bash -c "[ \"\$(podman run --rm --entrypoint id aiwm-worker:test -u)\" != 0 ]"
        podman rmi -f aiwm-worker:test >/dev/null 2>&1 || true
else
        echo "# skip: image not built (podman or the debian:12 / debian:12-slim images are not available here, and base images cannot be pulled); lint-level checks only"
fi

finish
