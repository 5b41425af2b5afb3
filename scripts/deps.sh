#!/bin/sh
# Installs the Debian 12 packages one part of Noordpoort needs, by group, so
# each make target installs only its own: `make`/`make demo` the base, `make
# test` the test tools, `make bench` nginx and h2load, `make fuzz` clang and
# what building instrumented nghttp2/libyaml takes, `make tls-scan` the
# scanners. Usage: sh scripts/deps.sh [GROUP]... with GROUP one of base,
# clang (the fuzz targets' compiler alone), test, bench, fuzz, tls-scan, all
# (default: base). Safe to run again. It never stops, kills or starts a
# process itself: it only asks apt-get to install what is missing.
set -eu

# build and run: the gateway, the demo and the federation
BASE="build-essential pkg-config openssl libssl-dev libnghttp2-dev libsodium-dev \
libcjson-dev libyaml-dev libsqlite3-dev curl procps"
# the fuzz targets (libFuzzer): make test's smoke pass and make fuzz
CLANG="clang libclang-rt-14-dev"
# make test: real HTTP/2 clients (python3-h2, nghttp), sqlite3 and ss for the
# bench smoke test, readelf/objdump for the hardening test, clang,
# jsonschema and yaml for the OpenAPI contract test, systemd-analyze and
# man for the install test
TEST="$CLANG python3 python3-h2 python3-jsonschema python3-yaml nghttp2-client sqlite3 iproute2 binutils systemd man-db groff-base"
# make bench: h2load and nginx for bench/h2, sqlite3 and ss for bench/aggregate
BENCH="nghttp2-client nginx-light sqlite3 iproute2 python3"
# make fuzz: clang; dpkg-dev for `apt-get source` and its dpkg-source
# (scripts/fuzz-third-party.sh builds nghttp2 and libyaml without autotools)
FUZZ="$CLANG dpkg-dev"
TLSSCAN="testssl.sh sslscan"

[ $# -eq 0 ] && set -- base
PKGS=""
for g in "$@"; do
	case $g in
	base) PKGS="$PKGS $BASE" ;;
	clang) PKGS="$PKGS $BASE $CLANG" ;;
	test) PKGS="$PKGS $BASE $TEST" ;;
	bench) PKGS="$PKGS $BASE $BENCH" ;;
	fuzz) PKGS="$PKGS $BASE $FUZZ" ;;
	tls-scan) PKGS="$PKGS $BASE $TLSSCAN" ;;
	all) PKGS="$PKGS $BASE $TEST $BENCH $FUZZ $TLSSCAN" ;;
	*)
		echo "noordpoort: deps.sh: unknown group '$g' (base, clang, test, bench, fuzz, tls-scan, all)" >&2
		exit 2
		;;
	esac
done

# Every test and the demo talk to their servers on loopback, some by the
# name localhost (certificates are issued for it): a system without it in
# /etc/hosts (a bare chroot) would fail them in confusing ways.
if ! getent hosts localhost >/dev/null 2>&1; then
	echo "noordpoort: the name 'localhost' does not resolve; add '127.0.0.1 localhost' to /etc/hosts" >&2
	exit 1
fi

missing=""
for p in $PKGS; do
	case " $missing " in *" $p "*) continue ;; esac
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "noordpoort: installing missing packages ($*):$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "noordpoort: not root; run as root: apt-get install -y$missing" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "noordpoort: apt-get not found; install these packages by hand:$missing" >&2
	exit 1
fi

# apt-get's own words decide what went wrong: a lock held by another
# apt-get, dpkg or unattended-upgrades is not a network problem.
log=$(mktemp "${TMPDIR:-/tmp}/noordpoort-deps.XXXXXX")
trap 'rm -f "$log"' EXIT
explain() { # what-was-run
	cat "$log" >&2
	if grep -Eq 'Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock (the )?(administration )?directory|is another process using it' "$log"; then
		holder=$(sed -n 's/.*It is held by process \([0-9]*\).*/\1/p' "$log" | head -n 1)
		echo "noordpoort: $1 failed: the package manager is busy — another apt-get, dpkg or" \
			"unattended-upgrades${holder:+ (process $holder)} holds its lock. Wait for it to finish, then run" \
			"the make target again (or: apt-get install -y$missing)." >&2
	elif grep -Eq 'Temporary failure resolving|Could not resolve|Failed to fetch|Unable to connect|Connection timed out|Network is unreachable' "$log"; then
		echo "noordpoort: $1 failed: the Debian archive could not be reached (network or proxy?)" >&2
	else
		echo "noordpoort: $1 failed (apt-get's messages above)" >&2
	fi
	exit 1
}
export DEBIAN_FRONTEND=noninteractive
# Wait a while for a lock another apt-get holds before giving up on it.
LOCK_WAIT="-o DPkg::Lock::Timeout=${NOORDPOORT_APT_LOCK_WAIT:-60}"
# shellcheck disable=SC2086
apt-get $LOCK_WAIT update -qq >"$log" 2>&1 || explain "apt-get update"
# shellcheck disable=SC2086
apt-get $LOCK_WAIT install -y -qq --no-install-recommends $missing >"$log" 2>&1 ||
	explain "apt-get install -y$missing"
# Installing nginx-light may start Debian's own nginx on port 80; the
# benchmark does not need it (it runs its own on a free port), and this
# script does not stop what it did not start.
case "$missing" in *nginx*)
	echo "noordpoort: note: the nginx-light package may have started the system nginx (port 80);" \
		"bench/h2 does not use it. Stop it with 'systemctl stop nginx' if you do not want it." ;;
esac
echo "noordpoort: dependencies installed"
