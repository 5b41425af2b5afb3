#!/usr/bin/env bash
# tests/integration/test_bench_smoke.sh -- the benchmarks still build and
# run end to end, at a toy size, so a change cannot break `make bench`
# unnoticed (bench/pseudo once stopped linking after a refactor). Measures
# nothing: the figures at this size mean nothing and are not checked, only
# that each bench runs, its loops agree, and the federation's table equals
# SQLite's (bench/aggregate refuses to time otherwise). bench/h2 needs
# h2load and nginx and minutes; it is left to `make bench`.
set -u

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$root" || exit 1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/noordpoort-test-bench.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

# the release build, as `make bench` uses (make test builds it too)
expect "bench/pseudo builds, and its loops compute the same tokens" 0 \
	"pseudo_tokens (PASS|MISS)" sh bench/pseudo/run.sh 20000 1
if grep -q "DIFFER" "$out"; then fail "bench/pseudo checksums" "$(cat "$out")"; fi

expect "bench/wire builds and decodes colliding and ordinary dictionaries" 0 \
	"decode, median of 1: colliding" sh bench/wire/run.sh 2000 1

if [ -w /proc/self/clear_refs ]; then
	expect "bench/aggregate at scale 0.5: federation table == SQLite table, one timed round" 0 \
		"check: federation table == SQLite table" \
		env BENCH_SCALES=0.5 BENCH_REPS=1 bash bench/aggregate/run.sh build/noordpoort certs/dev
	grep -q "^  scale 0.5 " "$out" || fail "bench/aggregate prints its result line" "$(tail -n 5 "$out")"
else
	echo "ok - bench/aggregate skipped: /proc/self/clear_refs not writable (not root)"
fi
exit "$failed"
