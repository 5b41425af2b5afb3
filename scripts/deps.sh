#!/bin/sh
# Installs the Debian 12 packages Noordpoort needs to build, test, benchmark
# and run the demo. Called by `make deps`; safe to run again (apt-get is idempotent).
set -eu

PKGS="build-essential pkg-config clang libclang-rt-14-dev openssl libssl-dev \
libnghttp2-dev libsodium-dev libcjson-dev libyaml-dev libsqlite3-dev sqlite3 \
curl nghttp2-client python3 python3-h2 nginx-light procps iproute2"

# Every test and the demo talk to their servers on loopback, some by the
# name localhost (certificates are issued for it): a system without it in
# /etc/hosts (a bare chroot) would fail them in confusing ways.
if ! getent hosts localhost >/dev/null 2>&1; then
	echo "noordpoort: the name 'localhost' does not resolve; add '127.0.0.1 localhost' to /etc/hosts" >&2
	exit 1
fi

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "noordpoort: installing missing packages:$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "noordpoort: not root; run as root: apt-get install -y$missing" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "noordpoort: apt-get not found; install these packages by hand:$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || { echo "noordpoort: apt-get update failed (no network to the Debian archive?)" >&2; exit 1; }
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
	{ echo "noordpoort: apt-get install -y$missing failed" >&2; exit 1; }
# The nginx package starts a system nginx on port 80; the benchmark runs its own.
if printf '%s' "$missing" | grep -q nginx; then
	(systemctl stop nginx || service nginx stop || pkill -x nginx) >/dev/null 2>&1 || true
fi
echo "noordpoort: dependencies installed"
