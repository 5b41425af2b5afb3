#!/usr/bin/env bash
# tests/integration/test_deps.sh -- scripts/deps.sh against stand-ins for
# dpkg-query, id and apt-get (issue 10, section 8): each group installs only
# its own packages (the demo's base never nginx), it never stops or kills a
# process (no pkill, killall, kill, systemctl or service, even after
# installing nginx), and a package-manager lock held by someone else is
# reported as that, not as a network problem. Installs nothing.
set -u

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$root" || exit 1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/noordpoort-test-deps.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

stubs=$tmp/bin
calls=$tmp/calls
mkdir -p "$stubs"
# dpkg-query: every package is installed except those in $STUB_MISSING
cat >"$stubs/dpkg-query" <<'STUB'
#!/bin/sh
for p; do :; done
case " $STUB_MISSING " in *" $p "*) exit 1 ;; esac
printf 'install ok installed'
STUB
cat >"$stubs/id" <<'STUB'
#!/bin/sh
echo 0
STUB
# apt-get: records its arguments; $STUB_APT says how it fails
cat >"$stubs/apt-get" <<'STUB'
#!/bin/sh
echo "apt-get $*" >>"$STUB_CALLS"
case "$STUB_APT" in
lock)
	echo "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (unattended-upgr)" >&2
	echo "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?" >&2
	exit 100 ;;
listslock)
	echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 777 (apt-get)" >&2
	echo "E: Unable to lock directory /var/lib/apt/lists/" >&2
	exit 100 ;;
net)
	echo "W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure resolving 'deb.debian.org'" >&2
	exit 100 ;;
esac
exit 0
STUB
# anything that stops or kills processes: recorded, never run
for t in pkill killall kill systemctl service invoke-rc.d start-stop-daemon; do
	printf '#!/bin/sh\necho "%s $*" >>"$STUB_CALLS"\nexit 0\n' "$t" >"$stubs/$t"
done
chmod +x "$stubs"/*

# deps CASE-NAME STATUS PATTERN MISSING APT GROUP...: deps.sh with these
# packages missing and apt-get behaving as APT exits with STATUS and says PATTERN
deps() {
	local name=$1 want=$2 pattern=$3 missing=$4 apt=$5
	shift 5
	: >"$calls"
	expect "$name" "$want" "$pattern" env PATH="$stubs:$PATH" STUB_MISSING="$missing" STUB_APT="$apt" \
		STUB_CALLS="$calls" NOORDPOORT_APT_LOCK_WAIT=0 \
		sh -c 'sh scripts/deps.sh "$@"; rc=$?; echo "deps.sh exited $rc"; exit $rc' deps "$@"
}
no_kill() {
	if grep -Eq '^(pkill|killall|kill|systemctl|service|invoke-rc.d|start-stop-daemon) ' "$calls"; then
		fail "$1: stops or kills no process" "$(cat "$calls")"
	else
		pass "$1: stops or kills no process"
	fi
}

deps "deps: nothing missing: nothing run" 0 "^deps.sh exited 0" "" ok base
if [ -s "$calls" ]; then fail "deps: nothing missing: apt-get not called" "$(cat "$calls")"; fi

# the demo's group does not install what only the benchmarks need
deps "deps: base with nginx-light and nghttp2-client missing: exit 0" 0 "exited 0" \
	"nginx-light nghttp2-client" ok base
if grep -q 'nginx' "$calls"; then fail "deps: base never installs nginx" "$(cat "$calls")"; else pass "deps: base never installs nginx"; fi

deps "deps: bench installs nginx-light and h2load" 0 "dependencies installed" \
	"nginx-light nghttp2-client" ok bench
grep -q 'install .*nginx-light' "$calls" && grep -q 'install .*nghttp2-client' "$calls" && pass "deps: bench asked apt-get for both" ||
	fail "deps: bench asked apt-get for both" "$(cat "$calls")"
no_kill "deps: after installing nginx"

deps "deps: test installs the test tools, not nginx" 0 "dependencies installed" \
	"nginx-light python3-h2" ok test
grep -q 'install .*python3-h2' "$calls" && ! grep -q nginx "$calls" && pass "deps: test asked for python3-h2 only" ||
	fail "deps: test asked for python3-h2 only" "$(cat "$calls")"

deps "deps: tls-scan installs the scanners" 0 "dependencies installed" "sslscan testssl.sh nginx-light" ok tls-scan
grep -q 'install .*sslscan' "$calls" && ! grep -q nginx "$calls" && pass "deps: tls-scan asked for its own" ||
	fail "deps: tls-scan asked for its own" "$(cat "$calls")"

deps "deps: an unknown group is refused" 2 "unknown group" "" ok demo-extra

# a lock held by someone else: said so, with who holds it, not "network"
deps "deps: dpkg lock held: says the package manager is busy" 1 "package manager is busy.*process 4242" \
	"nginx-light" lock bench
if grep -qi 'network' "$out"; then fail "deps: dpkg lock held: does not blame the network" "$(cat "$out")"; else
	pass "deps: dpkg lock held: does not blame the network"; fi
no_kill "deps: dpkg lock held"
deps "deps: apt lists lock held: says the package manager is busy" 1 "package manager is busy.*process 777" \
	"nginx-light" listslock bench
grep -q 'DPkg::Lock::Timeout=' "$calls" && pass "deps: waits for the lock a while (DPkg::Lock::Timeout)" ||
	fail "deps: waits for the lock a while (DPkg::Lock::Timeout)" "$(cat "$calls")"
# and a real network failure is still called one
deps "deps: archive unreachable: says so" 1 "could not be reached" "nginx-light" net bench
exit "$failed"
