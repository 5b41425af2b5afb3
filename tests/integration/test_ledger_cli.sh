#!/usr/bin/env bash
# tests/integration/test_ledger_cli.sh -- `noordpoort ledger init|verify` as
# an operator types them: --help prints the usage and makes nothing, an
# option-looking argument is refused (it once became a ledger file called
# "--help"), an existing ledger is never overwritten.
set -u

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
bin=${NOORDPOORT_BIN:-build/asan/noordpoort}
case $bin in /*) ;; *) bin=$root/$bin ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/noordpoort-test-ledger.XXXXXX") || exit 1
outdir=$(mktemp -d "${TMPDIR:-/tmp}/noordpoort-test-ledger-out.XXXXXX") || exit 1
trap 'rm -rf "$tmp" "$outdir"' EXIT
out=$outdir/out

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

cd "$tmp" || exit 1
expect "ledger: init --help prints the usage" 0 'noordpoort ledger init' "$bin" ledger init --help
if [ -z "$(ls -A "$tmp")" ]; then
	pass "ledger: init --help makes no file"
else
	fail "ledger: init --help makes no file" "$(ls -A "$tmp")"
fi
expect "ledger: init with an unknown option is a usage error" 2 "unknown option '-x'" "$bin" ledger init -x
expect "ledger: init makes a ledger" 0 'created budget ledger' "$bin" ledger init "$tmp/l.db"
expect "ledger: init never overwrites one" 1 'l.db' "$bin" ledger init "$tmp/l.db"
exit "$failed"
