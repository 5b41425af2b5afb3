#!/usr/bin/env bash
# bench/aggregate/run.sh - the linked question answered by the federation
# (hub + 3 nodes on loopback) and by sqlite3 over the same CSVs pooled into
# one indexed database, in the same run, at two data sizes.
#
# Usage: sh bench/aggregate/run.sh [NOORDPOORT_BINARY] [CERTS_DIR]
#   NOORDPOORT_BINARY  default build/noordpoort (the release build: make)
#   CERTS_DIR          default certs/dev (make certs)
#
# The question (bench/aggregate/question.json): population = the persons in
# EITHER training fund (opleidingsfonds-techniek/inschrijvingen and
# opleidingsfonds-zorg/inschrijvingen, de-duplicated), linked to
# uwv/ww-uitkeringen, distinct persons grouped by the techniek fund's
# programme x WW end_reason (null where a person is not in that dataset).
# Policy: bench/aggregate/policy.yaml (epsilon 10, no rounding, min_cell 1,
# no budget, max_cells_per_person 1), so the federation's table is nearly exact and
# is checked against SQLite's, cell for cell, before anything is timed.
#
# Data: `noordpoort synth --seed SEED --scale S` per scale, cached under
# build/bench/aggregate/data-sS-seedSEED/ (complete when MANIFEST.txt is
# there); the pooled SQLite database (CSV import, CREATE INDEX on bsn of
# every table, ANALYZE) next to it as pooled-sS-seedSEED.sqlite. Both are
# made once and reused by later runs.
#
# Per scale: start the hub and the three nodes, one unmeasured warm-up of
# each side (also the correctness check), then BENCH_REPS rounds, each
# timing one federation question (`noordpoort query --format json`, wall
# time of the client process) and one sqlite3 run of the same question
# (wall time of the sqlite3 process), alternating which goes first.
# Medians are printed, and the ratio of the medians.
#
# Hub memory per linked record: before each question the hub's peak RSS is
# reset (`echo 5 > /proc/PID/clear_refs`) and its idle VmRSS read; after the
# answer, (VmHWM - idle VmRSS) / (population + link records the nodes sent,
# from the nodes' audit lines). Node-side time is the nodes' own request
# log (duration_ms of POST /v1/federation/subquery).
#
# Environment knobs (defaults in brackets):
#   BENCH_SCALES ["12.5 125"]  synth scales (WW = 8000 x scale persons)
#   BENCH_SEED [1]             synth seed
#   BENCH_REPS [5]             timed repetitions per side and scale
#   BENCH_TARGET [1.0]         federation/SQLite time ratio to meet
#   BENCH_MEM_TARGET [64]      hub bytes per linked record to meet
#   BENCH_WORKERS [1]          event-loop workers of hub and nodes
#   BENCH_KEEP [0]             1: keep the temp dir (configs, logs, answers)
#
# Exit status: 0 when everything ran (PASS or MISS alike: a benchmark, not
# a test); 1 when something failed (a server, a refused question, or the
# federation's table differing from SQLite's); 2 on bad usage.
# shellcheck disable=SC2086,SC2317

if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail

if [ $# -gt 2 ] || [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
	echo "usage: $0 [NOORDPOORT_BINARY] [CERTS_DIR]   (knobs: see the top of this file)" >&2
	exit 2
fi

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/bench/aggregate
abspath() { case $1 in /*) echo "$1" ;; *) if [ -e "$1" ]; then echo "$PWD/$1"; else echo "$ROOT/$1"; fi ;; esac; }
BIN=$(abspath "${1:-build/noordpoort}")
CERTS=$(abspath "${2:-certs/dev}")
SCALES=${BENCH_SCALES:-12.5 125}
SEED=${BENCH_SEED:-1}
REPS=${BENCH_REPS:-5}
TARGET=${BENCH_TARGET:-1.0}
MEM_TARGET=${BENCH_MEM_TARGET:-64}
WORKERS=${BENCH_WORKERS:-1}
KEEP=${BENCH_KEEP:-0}
CACHE=$ROOT/build/bench/aggregate

say() { printf '%s\n' "$*"; }
die() { printf 'bench: ERROR: %s\n' "$*" >&2; exit 1; }

for tool in sqlite3 python3 ss awk; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (make deps)"
done
[ -x "$BIN" ] || die "$BIN not found or not executable (run: make)"
for f in ca.crt crl.pem server.crt server.key hub.crt hub.key arbeidsmarkttafel.crt arbeidsmarkttafel.key; do
	[ -r "$CERTS/$f" ] || die "$CERTS/$f missing (run: make certs)"
done
[ -w /proc/self/clear_refs ] || die "/proc/PID/clear_refs not writable: cannot reset the hub's peak RSS"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/noordpoort-bench-agg.XXXXXX")
PIDS=()
FAILED=0
stop_servers() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	PIDS=()
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_servers
	if [ "$KEEP" = 1 ] || [ $rc != 0 ]; then say "bench: kept $WORK"; else rm -rf "$WORK"; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
	local p used
	used=$(ss -Htan | awk '{n=split($4,a,":"); print a[n]}' | sort -u)
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 40000))
		if ! grep -qx "$p" <<<"$used" && ! grep -qx "$p" <<<"${TAKEN_PORTS:-}"; then
			TAKEN_PORTS="${TAKEN_PORTS:-}"$'\n'"$p"
			echo "$p"
			return
		fi
	done
	die "no free port found"
}
median() {
	sort -g | awk '{a[NR]=$1} END { if (NR == 0) { print "nan"; exit }
		if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2 }'
}
now_ns() { date +%s%N; }
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e6 }'; }
kb_of() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
# minor page faults of a process so far (field 10 of /proc/PID/stat; the
# command name in field 2 has no spaces here)
minflt() { awk '{ print $10 }' "/proc/$1/stat"; }

# ---------------------------------------------------------------- data and the pooled database
ENR_COLS="bsn INTEGER, programme TEXT, sector TEXT, start_year INTEGER, completed TEXT, birth_date TEXT, postcode TEXT"
WW_COLS="bsn INTEGER, start_date TEXT, end_date TEXT, end_reason TEXT, arbeidsmarktregio TEXT"
prepare_data() { # SCALE -> sets DATA, DB
	local s=$1 t0
	DATA=$CACHE/data-s$s-seed$SEED
	DB=$CACHE/pooled-s$s-seed$SEED.sqlite
	mkdir -p "$CACHE"
	if [ ! -f "$DATA/MANIFEST.txt" ]; then
		t0=$(now_ns)
		rm -rf "$DATA"
		"$BIN" synth --out "$DATA" --seed "$SEED" --scale "$s" 2>"$WORK/synth-$s.log" ||
			die "synth --scale $s failed: $(tail -n 2 "$WORK/synth-$s.log")"
		say "bench: scale $s: synth data written in $(ms_between "$t0" "$(now_ns)") ms -> $DATA"
	fi
	if [ ! -f "$DB" ] || [ "$DATA/MANIFEST.txt" -nt "$DB" ]; then
		t0=$(now_ns)
		rm -f "$DB.tmp"
		sqlite3 "$DB.tmp" >/dev/null <<EOF || die "building $DB failed"
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
CREATE TABLE techniek ($ENR_COLS);
CREATE TABLE zorg ($ENR_COLS);
CREATE TABLE ww ($WW_COLS);
.import --csv --skip 1 $DATA/opleidingsfonds-techniek/inschrijvingen.csv techniek
.import --csv --skip 1 $DATA/opleidingsfonds-zorg/inschrijvingen.csv zorg
.import --csv --skip 1 $DATA/uwv/ww-uitkeringen.csv ww
CREATE INDEX techniek_bsn ON techniek (bsn);
CREATE INDEX zorg_bsn ON zorg (bsn);
CREATE INDEX ww_bsn ON ww (bsn);
ANALYZE;
EOF
		mv "$DB.tmp" "$DB"
		say "bench: scale $s: pooled SQLite database (import + indexes + ANALYZE) built in $(ms_between "$t0" "$(now_ns)") ms -> $DB"
	fi
}

# The question in SQL (timed): a person counts once if in either fund; per
# dataset its attributes come from its first record in source order; null
# where the person is absent. The federation's node picks a random record
# (max_cells_per_person 1) instead: SQL_CHECK below is what it must match.
SQL="SELECT programme, end_reason, count(*) FROM (
  SELECT (SELECT t.programme FROM techniek t WHERE t.bsn = p.bsn ORDER BY t.rowid LIMIT 1) AS programme,
         (SELECT w.end_reason FROM ww w WHERE w.bsn = p.bsn ORDER BY w.rowid LIMIT 1) AS end_reason
  FROM (SELECT bsn FROM techniek UNION SELECT bsn FROM zorg) AS p)
GROUP BY 1, 2 ORDER BY 1, 2;"

sqlite_query() { # DB OUT
	sqlite3 -batch -readonly -separator '|' -cmd '.nullvalue null' "$1" "$SQL" >"$2"
}

# The check (not timed): since issue 11 a node keeps a person's record
# chosen uniformly at random per question, not its first, so the table the
# federation must match is a distribution: per cell the mean and variance
# of its count, each person's records weighted by their share of its rows
# (docs/federation.md, "Contribution bounding"). The timed query above does
# the same work with the first record.
SQL_CHECK="SELECT programme, end_reason, SUM(pk), SUM(pk * (1 - pk)) FROM (
  SELECT p.bsn, t.programme, w.end_reason, SUM(COALESCE(t.w, 1.0) * COALESCE(w.w, 1.0)) AS pk
  FROM (SELECT bsn FROM techniek UNION SELECT bsn FROM zorg) AS p
  LEFT JOIN (SELECT bsn, programme, COUNT(*) * 1.0 / MAX(n) AS w FROM
             (SELECT bsn, programme, COUNT(*) OVER (PARTITION BY bsn) AS n FROM techniek)
             GROUP BY bsn, programme) AS t ON t.bsn = p.bsn
  LEFT JOIN (SELECT bsn, end_reason, COUNT(*) * 1.0 / MAX(n) AS w FROM
             (SELECT bsn, end_reason, COUNT(*) OVER (PARTITION BY bsn) AS n FROM ww)
             GROUP BY bsn, end_reason) AS w ON w.bsn = p.bsn
  GROUP BY p.bsn, t.programme, w.end_reason)
GROUP BY 1, 2 ORDER BY 1, 2;"

sqlite_check() { # DB OUT
	sqlite3 -batch -readonly -separator '|' -cmd '.nullvalue null' "$1" "$SQL_CHECK" >"$2"
}

# ---------------------------------------------------------------- the federation
cp "$HERE/question.json" "$WORK/question.json"
"$BIN" keygen --out "$WORK/master.key" >/dev/null 2>&1 || die "keygen failed"
"$BIN" keygen --box --out "$WORK/hubbox" >/dev/null 2>&1 || die "keygen --box failed"
NODES="uwv opleidingsfonds-techniek opleidingsfonds-zorg"
declare -A PORT DSET NODE_PID
DSET[uwv]=uwv/ww-uitkeringen
DSET[opleidingsfonds-techniek]=opleidingsfonds-techniek/inschrijvingen
DSET[opleidingsfonds-zorg]=opleidingsfonds-zorg/inschrijvingen
HUB_PORT=$(free_port)
for n in $NODES; do PORT[$n]=$(free_port); done
cat >"$WORK/members.yaml" <<EOF
members:
  - {id: uwv, name: UWV, oin: "00000001812014542000", roles: [node], endpoint: "https://127.0.0.1:${PORT[uwv]}"}
  - {id: opleidingsfonds-techniek, name: Opleidingsfonds Techniek, oin: "00000003412345670000", roles: [node], endpoint: "https://127.0.0.1:${PORT[opleidingsfonds-techniek]}"}
  - {id: opleidingsfonds-zorg, name: Opleidingsfonds Zorg, oin: "00000003412345680000", roles: [node], endpoint: "https://127.0.0.1:${PORT[opleidingsfonds-zorg]}"}
  - {id: arbeidsmarkttafel, name: Arbeidsmarkttafel Noord, oin: "00000001009876543000", roles: [coordinator]}
  - {id: hub, name: Noordpoort Hub, oin: "00000001009876544000", roles: [hub]}
EOF
common_cfg() { # PORT
	cat <<EOF
listen: [127.0.0.1:$1]
tls:
  certificate: $CERTS/server.crt
  key: $CERTS/server.key
  client_ca: $CERTS/ca.crt
  crl: $CERTS/crl.pem
members: $WORK/members.yaml
catalog: $ROOT/policies/examples/catalog.yaml
policies: [$HERE/policy.yaml]
require_signed_policies: false   # a benchmark; production signs (docs/config.md)
workers: $WORKERS
EOF
}

start_server() { # NAME CONFIG -> pid in LAST_PID
	local name=$1 cfg=$2 pid
	"$BIN" serve -c "$cfg" >"$WORK/$name.out" 2>"$WORK/$name.err" &
	pid=$!
	PIDS+=("$pid")
	for _ in $(seq 600); do
		kill -0 "$pid" 2>/dev/null || { tail -n 5 "$WORK/$name.err" >&2; die "$name exited at start"; }
		grep -qs '"event":"listening"' "$WORK/$name.log" && { LAST_PID=$pid; return; }
		sleep 0.1
	done
	die "$name did not start listening"
}

start_federation() { # DATA
	local n
	rm -f "$WORK"/*.log "$WORK"/*-audit.log "$WORK/ledger.sqlite"*
	# serve never creates a ledger (docs/ledger.md)
	"$BIN" ledger init "$WORK/ledger.sqlite" >/dev/null || die "ledger init failed"
	for n in $NODES; do
		{
			echo "roles: [node]"
			common_cfg "${PORT[$n]}"
			cat <<EOF
node:
  organisation: $n
  master_key: $WORK/master.key
  hub_public_key: $WORK/hubbox.pub
  datasets:
    - id: ${DSET[$n]}
      source: {type: csv, path: $1/${DSET[$n]}.csv}
audit: {path: $WORK/$n-audit.log}
log: {destination: $WORK/$n.log}
EOF
		} >"$WORK/$n.yaml"
		start_server "$n" "$WORK/$n.yaml"
		NODE_PID[$n]=$LAST_PID
	done
	{
		echo "roles: [hub]"
		common_cfg "$HUB_PORT"
		cat <<EOF
hub:
  box_key: $WORK/hubbox.sec
  client_certificate: $CERTS/hub.crt
  client_key: $CERTS/hub.key
  ledger: $WORK/ledger.sqlite
  node_timeout: 120s
audit: {path: $WORK/hub-audit.log}
log: {destination: $WORK/hub.log}
EOF
	} >"$WORK/hub.yaml"
	start_server hub "$WORK/hub.yaml"
	HUB_PID=$LAST_PID
}

fed_query() { # OUT -> 0/1
	"$BIN" query --hub "https://127.0.0.1:$HUB_PORT" -f "$WORK/question.json" --format json \
		--cert "$CERTS/arbeidsmarkttafel.crt" --key "$CERTS/arbeidsmarkttafel.key" \
		--cacert "$CERTS/ca.crt" >"$1" 2>"$1.err"
}

# the federation's nonzero cells as SQLite prints them
fed_cells() {
	python3 -c 'import json, sys
a = json.load(open(sys.argv[1]))
for c in a["cells"]:
    if c.get("persons"):
        print("|".join(["null" if k is None else k for k in c["key"]] + [str(c["persons"])]))' "$1" | sort
}
fed_total() { python3 -c 'import json, sys; print(sum(c.get("persons", 0) for c in json.load(open(sys.argv[1]))["cells"]))' "$1"; }

# The federation's table against SQLite's (FED_JSON SQL_TXT): no policy may
# release exact counts, so the bench policy has epsilon 10, where a cell is
# off by one with probability 9e-5 and by two with 4e-9. Every cell must be
# within 1 and at most 2 + 1% of the cells off at all: a wrong join moves
# whole groups and fails this; a correct federation fails it about once in
# a million runs. A suppressed cell (noisy count below min_cell 1) counts 0.
fed_matches_sql() {
	python3 -c 'import json, sys
a = json.load(open(sys.argv[1]))
fed = {"|".join("null" if k is None else k for k in c["key"]): (0 if c.get("suppressed") else c["persons"])
       for c in a["cells"]}
sql, sd = {}, {}
for line in open(sys.argv[2]):
    parts = line.rstrip("\n").split("|")
    if len(parts) > 3:
        k = "|".join(parts[:-2])
        sql[k] = float(parts[-2])
        sd[k] = max(float(parts[-1]), 0.0) ** 0.5
# a key the federation lacks may be one whose persons all counted elsewhere
extra = [k for k in set(sql) - set(fed) if sql[k] - 5 * sd[k] > 0.5]
# the noise (+-1 at epsilon 10) plus 5 sd of the random bound
far = [(k, fed.get(k), sql.get(k, 0)) for k in fed if abs(fed[k] - sql.get(k, 0)) > 1 + 5 * sd.get(k, 0)]
off = [k for k in fed if sd.get(k, 0) == 0 and fed[k] != sql.get(k, 0)]
if extra or far or len(off) > 2 + len(fed) // 100:
    print("keys only in SQLite:", sorted(extra)[:5], "off by more than 1:", far[:5],
          "off at all:", len(off), "of", len(fed), file=sys.stderr)
    sys.exit(1)' "$1" "$2"
}

# last subquery line of a node's request log -> duration_ms
node_ms() { grep '"/v1/federation/subquery"' "$WORK/$1.log" | tail -n 1 | sed -n 's/.*"duration_ms":\([0-9.]*\).*/\1/p'; }
hub_ms() { grep '"/v1/aggregate"' "$WORK/hub.log" | tail -n 1 | sed -n 's/.*"duration_ms":\([0-9.]*\).*/\1/p'; }
node_records() { grep '"operation":"subquery"' "$WORK/$1-audit.log" | tail -n 1 | sed -n 's/.*"records":\([0-9]*\).*/\1/p'; }

# ---------------------------------------------------------------- per scale
say "bench: federated linked count vs sqlite3 on pooled data; $(nproc) cores (shared), $(sqlite3 --version | awk '{print "sqlite3 " $1}'), $REPS reps, seed $SEED"
say "bench: question: population = techniek + zorg enrolments (de-duplicated), link = uwv/ww-uitkeringen, group by techniek.programme x ww.end_reason"
SUMMARY=()
for s in $SCALES; do
	prepare_data "$s"
	pop=$(awk -F'\t' '$1 ~ /^opleidingsfonds-(techniek|zorg)\/inschrijvingen$/ {r += $3; p += $4} END {print r " rows, " p " persons (sum of both)"}' "$DATA/MANIFEST.txt")
	ww=$(awk -F'\t' '$1 == "uwv/ww-uitkeringen" {print $3 " rows, " $4 " persons"}' "$DATA/MANIFEST.txt")
	say ""
	say "bench: === scale $s: population funds $pop; link WW $ww"
	start_federation "$DATA"

	# warm-up and correctness: the tables must be the same. The warm-up is
	# the hub's first question since its start, so its idle RSS holds no
	# heap left over from earlier answers: its peak is the headline memory.
	idle0=$(kb_of "$HUB_PID" VmRSS)
	echo 5 >"/proc/$HUB_PID/clear_refs"
	fed_query "$WORK/fed-$s-warm.json" || die "federation question failed: $(cat "$WORK/fed-$s-warm.json.err")"
	hwm0=$(kb_of "$HUB_PID" VmHWM)
	recs0=0
	for n in $NODES; do recs0=$((recs0 + $(node_records "$n"))); done
	mem0=$(awk -v h="$hwm0" -v i="$idle0" -v n="$recs0" 'BEGIN { printf "%.1f", (h - i) * 1024 / n }')
	say "bench: first question: hub idle ${idle0} kB, peak ${hwm0} kB, $recs0 linked records -> $mem0 B/record"
	sqlite_check "$DB" "$WORK/sql-$s-warm.txt" || die "sqlite3 query failed"
	fed_cells "$WORK/fed-$s-warm.json" >"$WORK/fed-$s-cells.txt"
	sort "$WORK/sql-$s-warm.txt" >"$WORK/sql-$s-cells.txt"
	if fed_matches_sql "$WORK/fed-$s-warm.json" "$WORK/sql-$s-cells.txt"; then
		say "bench: check: federation table == SQLite table within the noise of epsilon 10 and 5 sd of the random contribution bound ($(wc -l <"$WORK/sql-$s-cells.txt") nonzero cells, total $(fed_total "$WORK/fed-$s-warm.json") persons)"
	else
		diff "$WORK/fed-$s-cells.txt" "$WORK/sql-$s-cells.txt" | head -n 20 >&2 || true
		die "scale $s: the federation's table differs from SQLite's"
	fi

	F=() Q=() N=() H=() M=()
	for r in $(seq "$REPS"); do
		if [ $((r % 2)) = 1 ]; then order="fed sql"; else order="sql fed"; fi
		for side in $order; do
			if [ $side = sql ]; then
				t0=$(now_ns)
				sqlite_query "$DB" "$WORK/sql-$s-$r.txt" || { FAILED=1; say "bench: round $r sqlite3 FAILED"; continue; }
				t1=$(now_ns)
				Q+=("$(ms_between "$t0" "$t1")")
				continue
			fi
			idle=$(kb_of "$HUB_PID" VmRSS)
			echo 5 >"/proc/$HUB_PID/clear_refs"
			hf0=$(minflt "$HUB_PID") uf0=$(minflt "${NODE_PID[uwv]}")
			t0=$(now_ns)
			if ! fed_query "$WORK/fed-$s-$r.json"; then
				FAILED=1
				say "bench: round $r federation FAILED: $(cat "$WORK/fed-$s-$r.json.err")"
				continue
			fi
			t1=$(now_ns)
			hwm=$(kb_of "$HUB_PID" VmHWM)
			faults="page faults: hub $(($(minflt "$HUB_PID") - hf0)), uwv $(($(minflt "${NODE_PID[uwv]}") - uf0))"
			recs=0 nodes=""
			for n in $NODES; do
				recs=$((recs + $(node_records "$n")))
				nodes="$nodes ${n#opleidingsfonds-}=$(node_ms "$n")"
			done
			F+=("$(ms_between "$t0" "$t1")")
			H+=("$(hub_ms)")
			N+=("$(node_ms uwv)")
			b=$(awk -v h="$hwm" -v i="$idle" -v n="$recs" 'BEGIN { printf "%.1f", (h - i) * 1024 / n }')
			M+=("$b")
			say "bench: round $r federation ${F[-1]} ms (hub log ${H[-1]} ms; node ms:$nodes); hub idle ${idle} kB, peak ${hwm} kB, $recs records -> $b B/record; $faults"
		done
		say "bench: round $r sqlite3    ${Q[-1]:-FAILED} ms"
	done
	mf=$(printf '%s\n' "${F[@]}" | median)
	mq=$(printf '%s\n' "${Q[@]}" | median)
	mh=$(printf '%s\n' "${H[@]}" | median)
	mn=$(printf '%s\n' "${N[@]}" | median)
	mm=$(printf '%s\n' "${M[@]}" | median)
	line=$(awk -v f="$mf" -v q="$mq" -v h="$mh" -v n="$mn" -v m="$mm" -v m0="$mem0" -v t="$TARGET" -v mt="$MEM_TARGET" -v s="$s" 'BEGIN {
		r = f / q
		printf "scale %-5s federation %7.1f ms (hub log %7.1f, uwv node %7.1f)  sqlite3 %7.1f ms  ratio %5.2fx (target <= %.1fx) %-4s  hub memory %5.1f B/linked record (first question; later ones %.1f) (target <= %d) %s",
			s, f, h, n, q, r, t, (r <= t ? "PASS" : "MISS"), m0, m, mt, (m0 <= mt && m <= mt ? "PASS" : "MISS") }')
	SUMMARY+=("$line")
	stop_servers
done

say ""
say "Results: medians of $REPS reps (wall ms of the client process: noordpoort query / sqlite3)"
for l in "${SUMMARY[@]}"; do say "  $l"; done
[ "$FAILED" = 0 ] || { say "bench: some runs FAILED (not in the medians)"; exit 1; }
exit 0
