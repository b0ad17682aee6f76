#!/usr/bin/env bash
# Installs the real peers the test suites and benchmarks talk to, from Debian's packages, when missing.
# Idempotent; needs root (CI runs as root). Usage: scripts/install-peers.sh [package...]
set -euo pipefail
want=("$@")
if [ ${#want[@]} -eq 0 ]; then
  want=(redis-server redis-tools thrift-compiler python3-thrift haproxy nutcracker)
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != "0" ]; then
  echo "install-peers: need root to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-peers: installed ${missing[*]}"
