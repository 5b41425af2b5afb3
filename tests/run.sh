#!/bin/sh
# Runs every unit and integration test and prints one summary line,
# "N passed, N failed". Each test program prints "ok - name" or
# "not ok - name" per test; a program that dies without saying why counts
# as one failure. Unit and integration binaries are the ASan+UBSan builds.
set -u
cd "$(dirname "$0")/.." || exit 2

: "${NOORDPOORT_BIN:=build/asan/noordpoort}"
: "${CERTS_DIR:=certs/dev}"
PY=/usr/bin/python3
export NOORDPOORT_BIN CERTS_DIR
# halt_on_error makes any sanitizer report fail the program that hit it.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

out=$(mktemp)
# Every log, audit log and dataset the tests make is kept here until the
# end, for the check that no BSN reached any log (tests/check_no_personal_data.py).
NOORDPOORT_TEST_ARTIFACTS=$(mktemp -d)
export NOORDPOORT_TEST_ARTIFACTS
trap 'rm -rf "$out" "$NOORDPOORT_TEST_ARTIFACTS"' EXIT
passed=0
failed=0

run() {
	name=$1
	shift
	start=$(date +%s)
	"$@" >"$out" 2>&1
	rc=$?
	cat "$out"
	p=$(grep -c '^ok - ' "$out")
	f=$(grep -c '^not ok - ' "$out")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "not ok - $name: exited with status $rc"
		f=1
	fi
	if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
		echo "not ok - $name: ran no test"
		f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	echo "# $name: $p passed, $f failed ($(( $(date +%s) - start ))s)"
}

for t in build/asan/tests/test_*; do
	[ -x "$t" ] && run "$(basename "$t")" "$t"
done
for t in tests/integration/test_*.sh; do
	[ -f "$t" ] && run "$(basename "$t")" bash "$t"
done
for t in tests/integration/test_*.py tests/abuse/test_*.py tests/faults/test_*.py tests/privacy/test_*.py; do
	[ -f "$t" ] && run "$(basename "$t")" "$PY" "$t"
done

# Fuzzing smoke pass: each target replays its committed seed corpus (every
# crash ever fixed stays a regression test) and then fuzzes briefly.
# New inputs go to a scratch folder, never into tests/fuzz/corpus/.
fuzz_smoke() {
	f=$1
	n=${f#build/fuzz/fuzz_}
	scratch=$(mktemp -d)
	if "$f" -max_total_time="${FUZZ_SMOKE_SECONDS:-5}" -artifact_prefix="$scratch/" \
		"$scratch" "tests/fuzz/corpus/$n" >"$scratch/log" 2>&1; then
		echo "ok - fuzz: $n ($(grep -o 'Done [0-9]* runs' "$scratch/log" | head -1))"
	else
		grep -E 'ERROR|SUMMARY' "$scratch/log" | head -5 | sed 's/^/#   /'
		echo "not ok - fuzz: $n"
	fi
	rm -rf "$scratch"
}
for f in build/fuzz/fuzz_*; do
	[ -x "$f" ] && run "fuzz_$(basename "$f")" fuzz_smoke "$f"
done

run "check_no_personal_data" "$PY" tests/check_no_personal_data.py "$NOORDPOORT_TEST_ARTIFACTS"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
