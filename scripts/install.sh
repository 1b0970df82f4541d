#!/usr/bin/env bash
# Installs aiwm-worker as a systemd service (or, with DESTDIR, stages the
# files for a package). Idempotent: re-running upgrades the binary and the
# unit and keeps the existing configuration and token unless flags change
# them.
#
#   scripts/install.sh [--controller URL] [--token TOKEN | --token - | --token-file F]
#                      [--binary PATH] [--prefix DIR] [--destdir DIR]
#                      [--no-start] [--no-self-update]
#   scripts/install.sh --uninstall [--purge]
#
# What goes where (PREFIX defaults to /usr/local):
#   /var/lib/aiwm-worker/bin/aiwm-worker   the executable, owned by aiwm, so
#                                           that system.update can replace it
#   PREFIX/bin/aiwm-worker                 symlink to it (a plain copy with
#                                           --no-self-update: system.update
#                                           then fails, the rest works)
#   /etc/systemd/system/aiwm-worker.service  ExecStart=PREFIX/bin/aiwm-worker run
#   /etc/aiwm-worker/worker.env            every key, commented (0640 root:aiwm)
#   /etc/aiwm-worker/token                 with --token/--token-file (0600 aiwm)
#   PREFIX/lib/sysusers.d/aiwm-worker.conf user aiwm (system, no login, group docker)
#   PREFIX/lib/tmpfiles.d/aiwm-worker.conf /var/lib/aiwm-worker{,/models,/bin} 0750
#   PREFIX/share/doc/aiwm-worker/README.md
#
# Without DESTDIR (as root) it also creates the user and the directories
# (systemd-sysusers / systemd-tmpfiles on those files, else useradd and
# install -d), then enables and starts the service unless --no-start. With
# DESTDIR it only writes files (modes set, ownership left to the package's
# sysusers/tmpfiles step) and never touches users or services.
#
# --uninstall stops and disables the service and removes the executable,
# the link, the unit and the sysusers/tmpfiles files; configuration
# (/etc/aiwm-worker), state (/var/lib/aiwm-worker) and the user stay.
# --purge also removes /etc/aiwm-worker and /var/lib/aiwm-worker (the user
# stays: files elsewhere may still belong to it).
set -euo pipefail

SELF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$SELF_DIR/.." && pwd)

PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BINARY=""
CONTROLLER=""
TOKEN=""
TOKEN_SET=0
TOKEN_FILE=""
NO_START=0
SELF_UPDATE=1
UNINSTALL=0
PURGE=0

STATE=/var/lib/aiwm-worker
CONF=/etc/aiwm-worker
UNIT=/etc/systemd/system/aiwm-worker.service

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
        case $1 in
        --controller) [ $# -ge 2 ] || die "$1 needs a value"; CONTROLLER=$2; shift ;;
        --controller=*) CONTROLLER=${1#*=} ;;
        --token) [ $# -ge 2 ] || die "$1 needs a value"; TOKEN=$2; TOKEN_SET=1; shift ;;
        --token=*) TOKEN=${1#*=}; TOKEN_SET=1 ;;
        --token-file) [ $# -ge 2 ] || die "$1 needs a value"; TOKEN_FILE=$2; shift ;;
        --token-file=*) TOKEN_FILE=${1#*=} ;;
        --binary) [ $# -ge 2 ] || die "$1 needs a value"; BINARY=$2; shift ;;
        --binary=*) BINARY=${1#*=} ;;
        --prefix) [ $# -ge 2 ] || die "$1 needs a value"; PREFIX=$2; shift ;;
        --prefix=*) PREFIX=${1#*=} ;;
        --destdir) [ $# -ge 2 ] || die "$1 needs a value"; DESTDIR=$2; shift ;;
        --destdir=*) DESTDIR=${1#*=} ;;
        --no-start) NO_START=1 ;;
        --no-self-update) SELF_UPDATE=0 ;;
        --uninstall) UNINSTALL=1 ;;
        --purge) PURGE=1 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
        esac
        shift
done

case $PREFIX in /*) ;; *) die "--prefix must be an absolute path: $PREFIX" ;; esac
PREFIX=${PREFIX%/}
[ -n "$PREFIX" ] || PREFIX=/usr
if [ -n "$DESTDIR" ]; then
        mkdir -p "$DESTDIR"
        DESTDIR=$(cd "$DESTDIR" && pwd)
fi
D=$DESTDIR
[ $PURGE -eq 0 ] || [ $UNINSTALL -eq 1 ] || die "--purge goes with --uninstall"
[ $TOKEN_SET -eq 0 ] || [ -z "$TOKEN_FILE" ] || die "--token and --token-file exclude each other"
if [ -z "$D" ] && [ "$(id -u)" -ne 0 ]; then
        die "run as root (or stage into a directory with --destdir / DESTDIR)"
fi

# systemd is in charge here (not in a container or chroot without it).
have_systemd() { [ -z "$D" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# chown only for a real install: staged files keep the builder's ownership.
own() { [ -n "$D" ] || chown "$@"; }

SYSUSERS=$PREFIX/lib/sysusers.d/aiwm-worker.conf
TMPFILES=$PREFIX/lib/tmpfiles.d/aiwm-worker.conf
DOC=$PREFIX/share/doc/aiwm-worker

# ---- uninstall --------------------------------------------------------------
if [ $UNINSTALL -eq 1 ]; then
        if have_systemd; then
                systemctl disable --now aiwm-worker.service 2>/dev/null || true
        fi
        rm -f "$D$UNIT" "$D$PREFIX/bin/aiwm-worker" "$D$SYSUSERS" "$D$TMPFILES"
        rm -rf "$D${STATE:?}/bin" "$D${DOC:?}"
        if have_systemd; then
                systemctl daemon-reload || true
                systemctl reset-failed aiwm-worker.service 2>/dev/null || true
        fi
        if [ $PURGE -eq 1 ]; then
                rm -rf "$D$CONF" "$D$STATE"
                say "removed aiwm-worker, its configuration and its state (user aiwm kept)"
        else
                say "removed aiwm-worker (kept $CONF and $STATE; --purge removes them)"
        fi
        exit 0
fi

# ---- inputs -----------------------------------------------------------------
find_file() { # NAME: deploy/NAME in the source tree, else beside this script
        local f
        for f in "$SRC/deploy/$1" "$SELF_DIR/$1"; do
                [ -f "$f" ] && { echo "$f"; return 0; }
        done
        die "cannot find $1 (looked in $SRC/deploy and $SELF_DIR)"
}
UNIT_SRC=$(find_file aiwm-worker.service)
ENV_SRC=$(find_file worker.env)
SYSUSERS_SRC=$(find_file aiwm-worker.sysusers)
TMPFILES_SRC=$(find_file aiwm-worker.tmpfiles)
if [ -z "$BINARY" ]; then
        for f in "$SRC/build/aiwm-worker" "$SELF_DIR/aiwm-worker"; do
                [ -x "$f" ] && { BINARY=$f; break; }
        done
        [ -n "$BINARY" ] || die "no built binary: run 'make' first or pass --binary PATH"
fi
if [ ! -f "$BINARY" ] || [ ! -x "$BINARY" ]; then die "--binary $BINARY is not an executable file"; fi
"$BINARY" --version >/dev/null 2>&1 || die "$BINARY --version failed: not an aiwm-worker for this machine?"

if [ $TOKEN_SET -eq 1 ] && [ "$TOKEN" = - ]; then
        IFS= read -r TOKEN || true
fi
if [ -n "$TOKEN_FILE" ]; then
        [ -r "$TOKEN_FILE" ] || die "--token-file $TOKEN_FILE is not readable"
        TOKEN=$(tr -d ' \t\r\n' <"$TOKEN_FILE")
        TOKEN_SET=1
fi
if [ $TOKEN_SET -eq 1 ]; then
        [ -n "$TOKEN" ] || die "the token is empty"
        case $TOKEN in *[[:space:][:cntrl:]]*) die "the token contains whitespace or control characters" ;; esac
        [ ${#TOKEN} -le 16384 ] || die "the token is longer than 16384 bytes"
fi
if [ -n "$CONTROLLER" ]; then
        case $CONTROLLER in
        ws://?*|wss://?*) CONTROLLER_KEY=CONTROLLER_WS_URL ;;
        http://?*|https://?*) CONTROLLER_KEY=CONTROLLER_URL ;;
        *) die "--controller must be a ws://, wss://, http:// or https:// URL: $CONTROLLER" ;;
        esac
        case $CONTROLLER in *[[:space:][:cntrl:]]*) die "--controller contains whitespace" ;; esac
fi

# ---- user and directories ---------------------------------------------------
install -d -m 0755 "$D$PREFIX/bin" "$D$PREFIX/lib/sysusers.d" "$D$PREFIX/lib/tmpfiles.d" "$D$DOC" \
        "$D/etc/systemd/system"
install -m 0644 "$SYSUSERS_SRC" "$D$SYSUSERS"
install -m 0644 "$TMPFILES_SRC" "$D$TMPFILES"
if [ -z "$D" ]; then
        if command -v systemd-sysusers >/dev/null 2>&1; then
                systemd-sysusers "$SYSUSERS"
        else
                getent group docker >/dev/null || groupadd --system docker
                getent passwd aiwm >/dev/null ||
                        useradd --system --user-group --home-dir "$STATE" --no-create-home \
                                --shell /usr/sbin/nologin --comment "AIWM worker" aiwm
                id -nG aiwm | tr ' ' '\n' | grep -qx docker || usermod -a -G docker aiwm
        fi
        if command -v systemd-tmpfiles >/dev/null 2>&1; then
                systemd-tmpfiles --create "$TMPFILES"
        fi
fi
# Also where systemd-tmpfiles is missing, and for DESTDIR (modes only).
for d in "$STATE" "$STATE/models" "$STATE/bin"; do
        [ -d "$D$d" ] || install -d -m 0750 "$D$d"
        own aiwm:aiwm "$D$d"
done
[ -d "$D$CONF" ] || install -d -m 0750 "$D$CONF"
own root:aiwm "$D$CONF"
chmod 0750 "$D$STATE" "$D$STATE/models" "$D$STATE/bin" "$D$CONF"

# ---- executable -------------------------------------------------------------
CHANGED=0
replace() { # SRC DST MODE: atomic, only when different; sets CHANGED
        if [ -f "$2" ] && [ ! -L "$2" ] && cmp -s "$1" "$2"; then
                chmod "$3" "$2"
                return 0
        fi
        install -m "$3" "$1" "$2.tmp.$$"
        mv -f "$2.tmp.$$" "$2"
        CHANGED=1
}
if [ $SELF_UPDATE -eq 1 ]; then
        replace "$BINARY" "$D$STATE/bin/aiwm-worker" 0755
        own aiwm:aiwm "$D$STATE/bin/aiwm-worker"
        if [ "$(readlink "$D$PREFIX/bin/aiwm-worker" 2>/dev/null)" != "$STATE/bin/aiwm-worker" ]; then
                ln -sfn "$STATE/bin/aiwm-worker" "$D$PREFIX/bin/aiwm-worker.tmp.$$"
                mv -Tf "$D$PREFIX/bin/aiwm-worker.tmp.$$" "$D$PREFIX/bin/aiwm-worker"
                CHANGED=1
        fi
else
        [ -L "$D$PREFIX/bin/aiwm-worker" ] && rm -f "$D$PREFIX/bin/aiwm-worker"
        replace "$BINARY" "$D$PREFIX/bin/aiwm-worker" 0755
        rm -f "$D$STATE/bin/aiwm-worker"
fi

# ---- unit and docs ----------------------------------------------------------
unit_tmp=$(mktemp)
trap 'rm -f "$unit_tmp"' EXIT
sed -e "s#^ExecStart=/usr/local/bin/aiwm-worker #ExecStart=$PREFIX/bin/aiwm-worker #" \
    -e "s#file:///usr/local/share/doc/#file://$PREFIX/share/doc/#" "$UNIT_SRC" >"$unit_tmp"
replace "$unit_tmp" "$D$UNIT" 0644
[ -f "$SRC/README.md" ] && install -m 0644 "$SRC/README.md" "$D$DOC/README.md"

# ---- configuration ----------------------------------------------------------
ENV=$D$CONF/worker.env
if [ ! -f "$ENV" ]; then
        install -m 0640 "$ENV_SRC" "$ENV"
        CHANGED=1
fi
# set_key KEY VALUE: the first active KEY= line becomes KEY=VALUE (later
# active ones go), else the commented template line "#KEY=...", else a line
# is appended. The file is only rewritten when that changes it.
set_key() {
        local tmp
        tmp=$(mktemp "$ENV.XXXXXX")
        awk -v k="$1" -v v="$2" '
                { line[NR] = $0 }
                index($0, k "=") == 1 && !active { active = NR }
                index($0, "#" k "=") == 1 && !commented { commented = NR }
                END {
                        target = active ? active : commented
                        for (i = 1; i <= NR; i++) {
                                if (i == target) print k "=" v
                                else if (index(line[i], k "=") != 1) print line[i]
                        }
                        if (!target) print k "=" v
                }' "$ENV" >"$tmp"
        if cmp -s "$tmp" "$ENV"; then
                rm -f "$tmp"
                return 0
        fi
        chmod 0640 "$tmp"
        mv -f "$tmp" "$ENV"
        CHANGED=1
}
if [ -n "$CONTROLLER" ]; then
        set_key "$CONTROLLER_KEY" "$CONTROLLER"
fi
if [ $TOKEN_SET -eq 1 ]; then
        tok=$D$CONF/token
        if [ ! -f "$tok" ] || [ "$(cat "$tok")" != "$TOKEN" ]; then
                tmp=$(mktemp "$tok.XXXXXX")
                chmod 0600 "$tmp"
                printf '%s\n' "$TOKEN" >"$tmp"
                mv -f "$tmp" "$tok"
                CHANGED=1
        fi
        chmod 0600 "$tok"
        own aiwm:aiwm "$tok"
        set_key NODE_TOKEN_FILE "$CONF/token"
fi
chmod 0640 "$ENV"
own root:aiwm "$ENV"

# ---- service ----------------------------------------------------------------
if [ -n "$D" ]; then
        say "staged into $D (no user, no service changes)"
        exit 0
fi
if ! have_systemd; then
        say "installed; systemd is not running here, so the service was not enabled"
        exit 0
fi
systemctl daemon-reload
systemctl enable aiwm-worker.service >/dev/null
if [ $NO_START -eq 1 ]; then
        say "installed and enabled (not started: --no-start)"
        exit 0
fi
if ! grep -Eq '^(NODE_TOKEN|NODE_TOKEN_FILE)=.' "$ENV"; then
        say "installed and enabled, not started: no token yet (re-run with --token or edit $CONF/worker.env)"
        exit 0
fi
# --no-block: Type=notify waits for registration, which may take a while.
if [ $CHANGED -eq 1 ] && systemctl is-active --quiet aiwm-worker.service; then
        systemctl restart --no-block aiwm-worker.service
        say "installed; restarting aiwm-worker (systemctl status aiwm-worker)"
else
        systemctl start --no-block aiwm-worker.service
        say "installed; starting aiwm-worker (systemctl status aiwm-worker)"
fi
