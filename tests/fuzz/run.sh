#!/bin/sh
# tests/fuzz/run.sh - the campaign `make fuzz` runs: every target in turn,
# FUZZ_SECONDS each, from its committed seeds (tests/fuzz/corpus/NAME) into
# a corpus that grows in build/fuzz/corpus-NAME, with its dictionary
# (tests/fuzz/dict/*.dict) when it has one. The last FUZZ_LONG_PERCENT % of
# each target's time runs with -max_len=FUZZ_LONG_MAX_LEN -len_control=0:
# the inputs a default run grows stay small, and the quadratic parses and
# too-long fields live in big ones. Prints, per target and phase,
# executions, exec/s, coverage (cov: edges, ft: features) and corpus size,
# and writes the table to build/fuzz/report.md. Stops at the first target
# that crashes, with the sanitizer's summary.
#
# Usage: sh tests/fuzz/run.sh DIR FUZZER...   (DIR: build/fuzz/deep or build/fuzz)
set -u
cd "$(dirname "$0")/../.." || exit 2
dir=$1
shift
secs=${FUZZ_SECONDS:-60}
long_pct=${FUZZ_LONG_PERCENT:-33}
long_len=${FUZZ_LONG_MAX_LEN:-140000}
long=$((secs * long_pct / 100))
short=$((secs - long))
report=build/fuzz/report.md
mkdir -p build/fuzz/artifacts

dict_for() {
	case $1 in
	question | answer) echo tests/fuzz/dict/json.dict ;;
	config | policy) echo tests/fuzz/dict/yaml.dict ;;
	csv) echo tests/fuzz/dict/csv.dict ;;
	h2) echo tests/fuzz/dict/h2.dict ;;
	wire) echo tests/fuzz/dict/wire.dict ;;
	esac
}

# stats LOG: "executions exec/s cov ft corpus" from a libFuzzer log
stats() {
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$1" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$1" | tail -n 1)
	last=$(grep -E '^#[0-9]+.*(cov|ft):' "$1" | tail -n 1)
	cov=$(printf '%s' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	ft=$(printf '%s' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
	corp=$(printf '%s' "$last" | sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p')
	echo "${execs:-0} ${rate:-0} ${cov:-?} ${ft:-?} ${corp:-?}"
}

# phase NAME FUZZER SECONDS LABEL EXTRA...: one run; appends to the report
phase() {
	n=$1 f=$2 t=$3 label=$4
	shift 4
	[ "$t" -gt 0 ] || return 0
	log=build/fuzz/$n.$label.log
	d=$(dict_for "$n")
	set -- "$@" -max_total_time="$t" -print_final_stats=1 -artifact_prefix="build/fuzz/artifacts/$n-"
	[ -n "$d" ] && [ -f "$d" ] && set -- "$@" -dict="$d"
	echo "fuzz: $f ($label) for ${t}s${d:+, dictionary $d}"
	if ! "$f" "$@" "build/fuzz/corpus-$n" "tests/fuzz/corpus/$n" >"$log" 2>&1; then
		grep -E 'ERROR|SUMMARY|Test unit written' "$log"
		echo "fuzz: $f FAILED (log: $log)"
		exit 1
	fi
	set -- $(stats "$log")
	printf 'fuzz: %-14s %-22s %10s execs %8s exec/s  cov %6s  ft %6s  corpus %s\n' "$n" "$label" "$1" "$2" "$3" "$4" "$5"
	printf '| `fuzz_%s` | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$label" "$t" "$1" "$2" "$3" "$4" "$5" >>"$report"
}

{
	echo "| Target | Phase | Seconds | Executions | Exec/s | cov | ft | Corpus |"
	echo "|---|---|---:|---:|---:|---:|---:|---|"
} >"$report"
for f; do
	n=${f##*/fuzz_}
	mkdir -p "build/fuzz/corpus-$n"
	phase "$n" "$f" "$short" default
	phase "$n" "$f" "$long" "max_len $long_len" -max_len="$long_len" -len_control=0
done
echo "fuzz: libraries: $(if [ "$dir" = build/fuzz/deep ]; then tr '\n' ';' <build/fuzz/third_party/VERSIONS; else echo "the distribution's (uninstrumented)"; fi)"
echo "fuzz: report in $report"
