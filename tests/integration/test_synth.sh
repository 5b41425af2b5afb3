#!/usr/bin/env bash
# tests/integration/test_synth.sh -- `noordpoort synth` as a user runs it:
# files and headers per catalog dataset, the partners' totals at scale 1 and
# 0.1, byte-identical output for one seed, refusal to overwrite, clear usage
# errors. One line per check, "ok - name" or "not ok - name" (with "#"
# diagnostics); exit status 1 if any check failed.
set -u

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
bin=${NOORDPOORT_BIN:-build/asan/noordpoort}
case $bin in /*) ;; *) bin=$root/$bin ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/noordpoort-test-synth.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# distinct NUMBER FILES...: distinct BSNs (column 1) over the files, optionally
# only rows whose column 2 is PROGRAMME (distinct_prog PROGRAMME FILES...).
distinct() { tail -q -n +2 "$@" | cut -d, -f1 | sort -u | wc -l; }
distinct_prog() { local p=$1; shift; tail -q -n +2 "$@" | awk -F, -v p="$p" '$2 == p { print $1 }' | sort -u | wc -l; }
is() { # name got want
	if [ "$2" -eq "$3" ]; then pass "$1"; else fail "$1" "got $2, want $3"; fi
}

if ! "$bin" synth --help >/dev/null 2>&1; then
	fail "synth: $bin knows 'synth'" "build it first (make build/asan/noordpoort) and wire 'synth' in cli/main.c"
	exit 1
fi

d=$tmp/s1
expect "synth: scale 1 writes every dataset" 0 'synthetic data written' "$bin" synth --out "$d" --seed 42 --scale 1
is "synth: one summary line per file on stderr" "$(grep -c '^synth: .*rows, .*persons' "$out")" 9

ok=1
for f in provincie-groningen/jtf-deelnemers provincie-fryslan/jtf-deelnemers provincie-drenthe/jtf-deelnemers \
	gemeente-groningen/mobiliteitsteam-contacten gemeente-leeuwarden/mobiliteitsteam-contacten \
	gemeente-emmen/mobiliteitsteam-contacten uwv/ww-uitkeringen \
	opleidingsfonds-techniek/inschrijvingen opleidingsfonds-zorg/inschrijvingen; do
	[ -s "$d/$f.csv" ] || { fail "synth: $f.csv exists"; ok=0; }
done
[ "$ok" = 1 ] && pass "synth: nine CSV files, one per catalog dataset"
if [ -s "$d/MANIFEST.txt" ]; then pass "synth: MANIFEST.txt written"; else fail "synth: MANIFEST.txt written"; fi

is "synth: headers match the catalog" \
	"$(head -qn1 "$d"/provincie-*/jtf-deelnemers.csv | grep -cx 'bsn,traject,start_date,end_date,completed,birth_date,postcode,arbeidsmarktregio')" 3
is "synth: WW header" "$(head -n1 "$d/uwv/ww-uitkeringen.csv" | grep -cx 'bsn,start_date,end_date,end_reason,arbeidsmarktregio')" 1

enrol=("$d"/opleidingsfonds-*/inschrijvingen.csv)
is "synth: 600 persons in Noorden Leert Door tranche 1" "$(distinct_prog noorden-leert-door-1 "${enrol[@]}")" 600
is "synth: 450 persons in Noorden Leert Door tranche 2" "$(distinct_prog noorden-leert-door-2 "${enrol[@]}")" 450
is "synth: 600 persons in Kansrijk Verzilveren" "$(distinct_prog kansrijk-verzilveren "${enrol[@]}")" 600
is "synth: 5000 persons in contact with the mobility teams" "$(distinct "$d"/gemeente-*/mobiliteitsteam-contacten.csv)" 5000

bad=$(tail -q -n +2 "$d"/*/*.csv | cut -d, -f1 | sort -u | awk '
	{ s = 0; for (i = 1; i <= 8; i++) s += (10 - i) * substr($1, i, 1); s -= substr($1, 9, 1)
	  if (length($1) != 9 || s % 11 != 0) n++ } END { print n + 0 }')
is "synth: every BSN passes the elfproef" "$bad" 0

bad=$(awk -F, 'FNR == 1 { n = NF; next } NF != n { b++ } END { print b + 0 }' "$d"/*/*.csv)
is "synth: every row has the header's field count" "$bad" 0

d2=$tmp/s2
"$bin" synth --out "$d2" --seed 42 --scale 1 >/dev/null 2>&1
if diff -r "$d" "$d2" >"$out" 2>&1; then pass "synth: same seed, byte-identical output"
else fail "synth: same seed, byte-identical output" "$(head -5 "$out")"; fi
"$bin" synth --out "$tmp/s3" --seed 43 --scale 1 >/dev/null 2>&1
if cmp -s "$d/uwv/ww-uitkeringen.csv" "$tmp/s3/uwv/ww-uitkeringen.csv"; then
	fail "synth: another seed, other data"
else pass "synth: another seed, other data"; fi

expect "synth: refuses to overwrite" 1 'exists \(use --force' "$bin" synth --out "$d" --seed 1
if cmp -s "$d/uwv/ww-uitkeringen.csv" "$d2/uwv/ww-uitkeringen.csv"; then
	pass "synth: refused run left the files alone"
else fail "synth: refused run left the files alone"; fi
expect "synth: --force overwrites" 0 'written' "$bin" synth --out "$d" --seed 1 --force

d=$tmp/s01
expect "synth: scale 0.1" 0 'written' "$bin" synth --out "$d" --seed 9 --scale 0.1
enrol=("$d"/opleidingsfonds-*/inschrijvingen.csv)
is "synth: scale 0.1 -> 60 in tranche 1" "$(distinct_prog noorden-leert-door-1 "${enrol[@]}")" 60
is "synth: scale 0.1 -> 500 contacts' persons" "$(distinct "$d"/gemeente-*/mobiliteitsteam-contacten.csv)" 500
expect "synth: --progress reports on stderr" 0 'persons \(100%\)' "$bin" synth --out "$tmp/p" --scale 0.1 --progress

expect "synth: missing --out" 2 'missing --out' "$bin" synth --seed 1
expect "synth: --scale 0" 2 "--scale: '0'" "$bin" synth --out "$tmp/x" --scale 0
expect "synth: --scale -1" 2 "--scale: '-1'" "$bin" synth --out "$tmp/x" --scale -1
expect "synth: --scale abc" 2 "--scale: 'abc'" "$bin" synth --out "$tmp/x" --scale abc
expect "synth: --format other" 2 'not supported' "$bin" synth --out "$tmp/x" --format xml
expect "synth: --help" 0 'Usage: noordpoort synth' "$bin" synth --help
touch "$tmp/file"
expect "synth: unwritable output directory" 1 'cannot create directory' "$bin" synth --out "$tmp/file/sub"
if [ -e "$tmp/x" ]; then fail "synth: usage errors write nothing"; else pass "synth: usage errors write nothing"; fi

exit "$failed"
