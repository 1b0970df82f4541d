#!/usr/bin/env bash
# Installs what aiwm-worker's build and tests need on Debian 12:
# the C libraries, the test peers (podman, docker-registry, busybox-static)
# and the npm packages of the test controller. Idempotent and quiet when
# everything is present. As root it installs; otherwise it prints the
# exact command to run.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PKGS=(
  build-essential cmake pkg-config clang libclang-rt-dev
  libssl-dev libcurl4-openssl-dev libjansson-dev libsqlite3-dev libcmocka-dev libsystemd-dev
  openssl curl python3 procps iproute2 python3-prometheus-client systemd
  # the container engine of the deployment tests: Podman serving the Docker API
  # (runc: crun fails on these cgroups), its network stack, an offline test image
  # (busybox-static) and a local image registry
  podman runc conmon catatonit netavark aardvark-dns iptables uidmap slirp4netns
  busybox-static docker-registry
  # make check-valgrind
  valgrind
)
# Node.js and npm: only from Debian when the machine has none (a newer node
# installed another way is kept; Debian's npm would conflict with it).
command -v node >/dev/null 2>&1 || DEB_PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || DEB_PKGS+=(npm)
# Extra peers that some tests need (added by the modules that use them).
if [ -f scripts/deps-extra.txt ]; then
  while read -r p; do [ -n "$p" ] && [ "${p#\#}" = "$p" ] && DEB_PKGS+=("$p"); done < scripts/deps-extra.txt
fi

missing=()
for p in "${DEB_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  cmd="apt-get install -y --no-install-recommends ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages; run as root:" >&2
    echo "  apt-get update && $cmd" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages of the test peers: the dev controller (socket.io@4,
# jsonwebtoken) and test-only tools.
for d in tests/controller tests/tools tests/tools-s3; do
  [ -f "$d/package-lock.json" ] || continue
  if [ ! -d "$d/node_modules" ] || [ "$d/package-lock.json" -nt "$d/node_modules/.package-lock.json" ]; then
    (cd "$d" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
done
