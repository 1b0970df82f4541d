#!/usr/bin/env bash
# podman-env.sh — a private container engine for tests: Podman serving the Docker Engine API on a
# Unix socket, plus a local image registry (Debian's docker-registry), both under one directory so
# that tests never touch the machine's own containers, images, networks or registries.
#
#   scripts/podman-env.sh start DIR   start (or reuse) the engine and registry under DIR, make the
#                                     test image, and print the environment (also written to DIR/env):
#       DOCKER_SOCKET=DIR/podman.sock           the Docker API socket
#       REGISTRY=127.0.0.1:PORT                 the local registry (plain http)
#       TEST_IMAGE=localhost/aiwm-test-httpd:latest
#       REGISTRY_IMAGE=127.0.0.1:PORT/aiwm/test-httpd:1   the same image, in the registry
#       AUTH_REGISTRY=127.0.0.1:PORT2           a second registry that wants a password (htpasswd)
#       AUTH_REGISTRY_USER, AUTH_REGISTRY_PASSWORD, AUTH_REGISTRY_IMAGE (the image in it)
#       CONTAINERS_CONF=... CONTAINERS_STORAGE_CONF=... CONTAINERS_REGISTRIES_CONF=...
#                                     (for running the podman CLI against the same engine)
#   scripts/podman-env.sh stop DIR    remove every container, stop both services, delete DIR
#   scripts/podman-env.sh env DIR     print DIR/env (fails when the engine is not answering)
#
# The test image is made offline from Debian's busybox-static: a root filesystem with /bin/busybox
# and its applet links, imported with CMD `httpd -f -v -p 8000 -h /www` (port 8000, /www/health
# answers "ok"). Its tar is kept in DIR/cache, so a second start reuses it.
#
# Outside DIR, root Podman still writes containers/image's blob-info cache
# (/var/lib/containers/cache/blob-info-cache-v1.boltdb, not configurable in Podman 4.3; a cache of
# digests only) and netavark adds its NETAVARK-* firewall chains and a podman0 bridge while
# containers run (their rules go with the containers at stop).
#
# Needs (Debian): podman runc busybox-static docker-registry (uidmap slirp4netns for rootless use),
# curl, python3.
# Idempotent: start on a running DIR only checks and prints; stop on a missing DIR does nothing.
set -euo pipefail

usage() {
  echo "usage: $0 start|stop|env DIR" >&2
  exit 2
}
[[ $# -eq 2 ]] || usage
cmd=$1
dir=$2

log() { echo "podman-env: $*" >&2; }
die() { log "$*"; exit 1; }

pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() { # stop_pid PIDFILE: TERM, then KILL after 5 s
  local f=$1 p i
  [[ -s $f ]] || return 0
  p=$(cat "$f")
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
  fi
  rm -f "$f"
}

podman_env() { # the podman CLI, against this engine's configuration and storage
  CONTAINERS_CONF=$dir/containers.conf CONTAINERS_STORAGE_CONF=$dir/storage.conf \
    CONTAINERS_REGISTRIES_CONF=$dir/registries.conf podman "$@"
}

engine_answers() {
  [[ -S $dir/podman.sock ]] &&
    [[ $(curl -s -m 2 --unix-socket "$dir/podman.sock" http://d/_ping 2>/dev/null) == OK ]]
}

registry_answers() {
  curl -s -m 2 -o /dev/null -w '%{http_code}' "http://$registry/v2/" 2>/dev/null | grep -q '^200$'
}

auth_registry_answers() { # 401 without credentials, 200 with them
  curl -s -m 2 -o /dev/null -w '%{http_code}' "http://$auth_registry/v2/" 2>/dev/null | grep -q '^401$' &&
    curl -s -m 2 -o /dev/null -w '%{http_code}' -u "aiwm:$auth_password" "http://$auth_registry/v2/" 2>/dev/null |
    grep -q '^200$'
}

wait_for() { # wait_for SECONDS WHAT CHECK...
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 10; i++)); do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  die "$what did not answer within ${secs}s (logs in $dir)"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_env() {
  cat >"$dir/env.tmp" <<EOF
DOCKER_SOCKET=$dir/podman.sock
REGISTRY=$registry
TEST_IMAGE=localhost/aiwm-test-httpd:latest
REGISTRY_IMAGE=$registry/aiwm/test-httpd:1
AUTH_REGISTRY=$auth_registry
AUTH_REGISTRY_USER=aiwm
AUTH_REGISTRY_PASSWORD=$auth_password
AUTH_REGISTRY_IMAGE=$auth_registry/aiwm/private-httpd:1
CONTAINERS_CONF=$dir/containers.conf
CONTAINERS_STORAGE_CONF=$dir/storage.conf
CONTAINERS_REGISTRIES_CONF=$dir/registries.conf
PODMAN_ENV_DIR=$dir
EOF
  mv "$dir/env.tmp" "$dir/env"
}

write_configs() {
  mkdir -p "$dir"/{storage,runroot,tmp,registry,auth-registry,networks,cache}
  # containers.conf: how Podman runs containers here.
  cat >"$dir/containers.conf" <<EOF
[containers]
# Podman raises RLIMIT_NOFILE/NPROC of containers by default; raising limits is not permitted in
# this sandbox (and not wanted in CI), so containers inherit the current ones.
default_ulimits = []
# Bridge networking (netavark) so port publishing works as on a Docker host.
netns = "bridge"
# Plain log files: the logs API reads them (journald is not available everywhere).
log_driver = "k8s-file"

[network]
# Private network definitions: nothing is written to /etc/containers/networks.
network_config_dir = "$dir/networks"

[engine]
# crun fails on this machine's cgroup v1 hierarchy; runc works.
runtime = "runc"
# No systemd to create cgroups for us.
cgroup_manager = "cgroupfs"
# Events in a private file instead of the journal (the events API replays and follows it).
events_logger = "file"
events_logfile_path = "$dir/events.log"
# File locks in tmp_dir instead of the machine-wide /dev/shm/libpod_lock segment, which another
# Podman on the machine would share.
lock_type = "file"
# State that Podman would otherwise keep under /run/libpod and /var/lib/containers.
tmp_dir = "$dir/tmp"
static_dir = "$dir/storage/libpod"
volume_path = "$dir/storage/volumes"
EOF
  # storage.conf: where images and container filesystems live. vfs: plain copies, works without
  # overlay mounts (no fuse-overlayfs, nested containers); slower, fine for a 2 MB image.
  cat >"$dir/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$dir/storage"
runroot = "$dir/runroot"
EOF
  # registries.conf: no search registries (short names never reach the Internet); the local
  # registry speaks plain http.
  cat >"$dir/registries.conf" <<EOF
unqualified-search-registries = []

[[registry]]
location = "$registry"
insecure = true

[[registry]]
location = "$auth_registry"
insecure = true
EOF
  # docker-registry (distribution 2.x): filesystem storage under DIR, loopback only.
  cat >"$dir/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/registry
  delete:
    enabled: true
http:
  addr: $registry
EOF
  # The same with basic authentication (bcrypt htpasswd).
  sed -e "s#rootdirectory: $dir/registry#rootdirectory: $dir/auth-registry#" -e "s#addr: $registry#addr: $auth_registry#" \
    "$dir/registry.yml" >"$dir/auth-registry.yml"
  cat >>"$dir/auth-registry.yml" <<EOF
auth:
  htpasswd:
    realm: aiwm-test
    path: $dir/htpasswd
EOF
  [[ -s $dir/htpasswd ]] ||
    python3 -W ignore -c 'import crypt,sys; print("aiwm:" + crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))' \
      "$auth_password" >"$dir/htpasswd"
}

make_image_tar() {
  local tar=$dir/cache/aiwm-test-httpd.tar root
  [[ -s $tar ]] && return 0
  local bb
  bb=$(command -v busybox || true)
  [[ -x /bin/busybox ]] && bb=/bin/busybox
  [[ -n $bb ]] || die "busybox not found (apt-get install busybox-static)"
  file -L "$bb" 2>/dev/null | grep -q 'dynamically linked' && die "$bb is not static (install busybox-static)"
  root=$(mktemp -d "$dir/cache/rootfs.XXXXXX")
  mkdir -p "$root"/{bin,www,tmp,etc,proc,sys,dev}
  cp "$bb" "$root/bin/busybox"
  for a in sh httpd echo cat sleep ls wget env printf true false kill ps; do
    ln -s busybox "$root/bin/$a"
  done
  echo ok >"$root/www/health"
  echo 'aiwm test image' >"$root/www/index.html"
  echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
  chmod 1777 "$root/tmp"
  tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$tar.tmp" .
  mv "$tar.tmp" "$tar"
  rm -rf "$root"
}

start() {
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  # A Unix socket path must fit in sun_path (108 bytes).
  (( ${#dir} + 12 <= 107 )) || die "directory path too long for a Unix socket: $dir"
  if [[ -s $dir/registry.port ]]; then
    registry=127.0.0.1:$(cat "$dir/registry.port")
  else
    registry=127.0.0.1:$(free_port)
    echo "${registry#*:}" >"$dir/registry.port"
  fi
  if [[ -s $dir/auth-registry.port ]]; then
    auth_registry=127.0.0.1:$(cat "$dir/auth-registry.port")
    auth_password=$(cat "$dir/auth-registry.password")
  else
    auth_registry=127.0.0.1:$(free_port)
    echo "${auth_registry#*:}" >"$dir/auth-registry.port"
    auth_password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    echo "$auth_password" >"$dir/auth-registry.password"
  fi
  write_configs

  if ! pid_alive "$dir/registry.pid" || ! registry_answers; then
    stop_pid "$dir/registry.pid"
    setsid docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 </dev/null &
    echo $! >"$dir/registry.pid"
  fi
  if ! pid_alive "$dir/auth-registry.pid" || ! auth_registry_answers; then
    stop_pid "$dir/auth-registry.pid"
    setsid docker-registry serve "$dir/auth-registry.yml" >"$dir/auth-registry.log" 2>&1 </dev/null &
    echo $! >"$dir/auth-registry.pid"
  fi
  if ! pid_alive "$dir/podman.pid" || ! engine_answers; then
    stop_pid "$dir/podman.pid"
    rm -f "$dir/podman.sock"
    CONTAINERS_CONF=$dir/containers.conf CONTAINERS_STORAGE_CONF=$dir/storage.conf \
      CONTAINERS_REGISTRIES_CONF=$dir/registries.conf \
      setsid podman system service --time=0 "unix://$dir/podman.sock" >"$dir/podman.log" 2>&1 </dev/null &
    echo $! >"$dir/podman.pid"
  fi
  wait_for 30 "docker-registry on $registry" registry_answers
  wait_for 30 "docker-registry with authentication on $auth_registry" auth_registry_answers
  wait_for 30 "podman on $dir/podman.sock" engine_answers

  if ! podman_env image exists localhost/aiwm-test-httpd:latest; then
    make_image_tar
    podman_env import -q \
      --change 'CMD ["/bin/httpd", "-f", "-v", "-p", "8000", "-h", "/www"]' \
      --change 'EXPOSE 8000' \
      --change 'LABEL org.opencontainers.image.title=aiwm-test-httpd' \
      "$dir/cache/aiwm-test-httpd.tar" localhost/aiwm-test-httpd:latest >/dev/null
  fi
  if [[ $(curl -s -o /dev/null -w '%{http_code}' \
          -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
          -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
          "http://$registry/v2/aiwm/test-httpd/manifests/1") != 200 ]]; then
    podman_env push -q --tls-verify=false localhost/aiwm-test-httpd:latest "$registry/aiwm/test-httpd:1" >/dev/null
  fi
  if [[ $(curl -s -o /dev/null -w '%{http_code}' -u "aiwm:$auth_password" \
          -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
          -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
          "http://$auth_registry/v2/aiwm/private-httpd/manifests/1") != 200 ]]; then
    podman_env push -q --tls-verify=false --creds "aiwm:$auth_password" localhost/aiwm-test-httpd:latest \
      "$auth_registry/aiwm/private-httpd:1" >/dev/null
  fi
  write_env
  cat "$dir/env"
}

stop() {
  [[ -d $dir ]] || return 0
  dir=$(cd "$dir" && pwd)
  if [[ -f $dir/containers.conf ]]; then
    # Containers first: their conmon processes, network namespaces and firewall rules go with them.
    timeout 60 env CONTAINERS_CONF="$dir/containers.conf" CONTAINERS_STORAGE_CONF="$dir/storage.conf" \
      CONTAINERS_REGISTRIES_CONF="$dir/registries.conf" podman rm -a -f -t 0 >/dev/null 2>&1 || true
  fi
  stop_pid "$dir/podman.pid"
  stop_pid "$dir/registry.pid"
  stop_pid "$dir/auth-registry.pid"
  # A container the engine lost track of (its service killed mid-removal) can leave its shm
  # mount and its port-forwarding rules behind: remove the DNAT rules of this DIR's containers
  # (netavark tags them "podman id: <id>"), then the forwarding rules left without a jump, and
  # unmount whatever is still mounted under DIR.
  if command -v iptables >/dev/null && [[ -d $dir/storage/vfs-containers ]]; then
    local ids rules
    ids=$(ls "$dir/storage/vfs-containers" 2>/dev/null | tr '\n' '|')
    rules=$(iptables -t nat -S 2>/dev/null || true)
    if [[ -n $ids ]]; then
      { grep -E -- "-A NETAVARK-HOSTPORT-DNAT .*podman id: (${ids%|})" <<<"$rules" || true; } | sed 's/^-A /-D /' |
        while read -r r; do eval "iptables -t nat $r" 2>/dev/null || true; done
      rules=$(iptables -t nat -S 2>/dev/null || true)
      { grep -E -- '^-A NETAVARK-DN-[^ ]+ .*--dport [0-9]+' <<<"$rules" || true; } | while read -r r; do
        port=$(grep -oE -- '--dport [0-9]+' <<<"$r" | head -1 || true)
        grep -qE -- "^-A NETAVARK-HOSTPORT-DNAT .*$port " <<<"$rules" || eval "iptables -t nat ${r/-A /-D }" 2>/dev/null || true
      done
    fi
  fi
  { awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts || true; } | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$dir"
}

case $cmd in
  start) start ;;
  stop) stop ;;
  env)
    dir=$(cd "$dir" && pwd)
    engine_answers || die "no engine answering in $dir"
    cat "$dir/env"
    ;;
  *) usage ;;
esac
