#!/bin/sh
# make federation (scripts/federation.sh run): the demo's federation — the
# hub and one node per demo organisation on loopback, synthetic data at
# scale 1 — kept running in the foreground until Ctrl-C (or SIGTERM), so
# you can ask your own questions with `build/noordpoort query`.
# Set-up shared with scripts/demo.sh: scripts/federation-lib.sh.
set -eu
cd "$(dirname "$0")/.."
. scripts/federation-lib.sh

case ${1:-} in
run) ;;
*)
	echo "usage: scripts/federation.sh run    (or: make federation)" >&2
	exit 2
	;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/noordpoort-federation.XXXXXX")
stopping=
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
	[ -n "$stopping" ] && return
	stopping=1
	echo
	echo "== Stopping: SIGTERM to the hub and the nine nodes"
	rc=0
	fed_stop || rc=1
	[ "$rc" -eq 0 ] && echo "   all ten drained and exited 0"
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

fed_init "$tmp"
fed_setup
fed_start

cat <<EOF
== Noordpoort federation on loopback (synthetic data, scale 1; files, logs and audit in $tmp)
EOF
fed_list
cat <<EOF
  hub                        $FED_HUB_URL

Ask it, from $PWD, as the Arbeidsmarkttafel Noord (the coordinator; certs/dev):
  build/noordpoort query --hub $FED_HUB_URL -f examples/federation/bereik-per-provincie.json
  build/noordpoort query --hub $FED_HUB_URL -f examples/federation/nld-ww-uitstroom.json --format csv
  build/noordpoort query --hub $FED_HUB_URL -f examples/federation/mobiliteit-naar-scholing-techniek.json --format json
Every question file in examples/federation/ (README there) is a starting point; the question is
described in docs/federation.md, the client in docs/query.md, what is granted in
policies/examples/*.yaml. Each answered question spends privacy budget (epsilon 0.5 of 5 or 3 a
year); the ledger is new every time the federation starts.
Logs: $tmp/hub.log, $tmp/hub-audit.log, $tmp/NODE.log, $tmp/NODE-audit.log.

Running; Ctrl-C stops everything.
EOF

# Wait for the hub; a signal interrupts the wait and runs the trap.
hub_pid=${FED_PROCS##*:}
st=0
wait "$hub_pid" || st=$?
echo "federation: the hub stopped by itself (status $st); see $tmp/hub.err" >&2
cat "$tmp/hub.err" >&2 2>/dev/null || true
exit 1
