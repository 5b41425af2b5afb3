#!/usr/bin/env bash
# bench/h2/run.sh - HTTP/2 + mTLS benchmark: noordpoort vs Debian's nginx.
#
# Usage: bench/h2/run.sh [NOORDPOORT_BINARY] [CERTS_DIR]
#   NOORDPOORT_BINARY  default build/noordpoort
#   CERTS_DIR          default certs/dev (from `make certs`); needs ca.crt,
#                      crl.pem, server.crt/.key, provincie-groningen.crt/.key
#
# Both servers get the same server certificate, CA and CRL, require a client
# certificate, log every request to a file, run 2 workers, and serve a body
# of the same bytes: noordpoort answers GET /v1/whoami, nginx serves the body
# noordpoort returned as a static file. h2load (with bench/h2/h2load_cert_shim.so
# preloaded so it presents provincie-groningen's certificate) drives both, in
# the same run, rounds alternating between the servers.
#
# The machine has 2 cores shared by h2load and the server, so wall-clock req/s
# mostly measures the client. The figure that counts is work per SERVER
# CPU-second: utime+stime of the server process(es) from /proc/PID/stat
# before and after each h2load run (nginx: master + all workers; noordpoort:
# its one process, all threads).
#
#   throughput : h2load -c 16 -m 32 -n N  (N calibrated to ~BENCH_SECONDS)
#   handshakes : h2load -c 100 -m 1 -n 100 repeated for ~BENCH_HS_SECONDS,
#                every connection a full (non-resumed) mTLS handshake plus one
#                request
#
# Environment knobs (defaults in brackets):
#   BENCH_ROUNDS [3]        rounds per server; medians are reported
#   BENCH_SECONDS [5]       target length of one throughput run
#   BENCH_REQUESTS []       fixed -n for throughput runs (skips calibration)
#   BENCH_CONNS [16]        h2load -c for throughput
#   BENCH_STREAMS [32]      h2load -m for throughput
#   BENCH_THREADS [1]       h2load -t
#   BENCH_HS_CONNS [100]    connections per h2load invocation, handshake test
#   BENCH_HS_SECONDS [5]    length of one handshake run (loop of invocations)
#   BENCH_HS_MAX_LOOPS [500] upper bound on invocations per handshake run
#   BENCH_SERVERS ["noordpoort nginx"]  e.g. "nginx" to test the nginx side only
#   BENCH_TARGET [2.0]      required noordpoort/nginx requests-per-CPU-second ratio
#   BENCH_KEEP [0]          1: keep the temp dir (configs, logs, h2load output)
#
# Exit status: 0 when everything ran (PASS or MISS alike: it is a benchmark,
# not a test); 1 when something failed to run or a run had failed/errored
# requests (such runs are reported as FAILED and not counted); 2 on bad usage.
# Word splitting of pid lists and h2load result lines is intended:
# shellcheck disable=SC2086,SC2046,SC2206,SC2317

# Needs bash (arrays); `sh bench/h2/run.sh` re-runs itself under bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail

if [ $# -gt 2 ] || [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
	echo "usage: $0 [NOORDPOORT_BINARY] [CERTS_DIR]   (knobs: see the top of this file)" >&2
	exit 2
fi

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${1:-build/noordpoort}
CERTS=${2:-certs/dev}
# relative paths: from the current directory if they exist there, else from the repo root
abspath() { case $1 in /*) echo "$1" ;; *) if [ -e "$1" ]; then echo "$PWD/$1"; else echo "$ROOT/$1"; fi ;; esac; }
BIN=$(abspath "$BIN")
CERTS=$(abspath "$CERTS")
CLIENT=provincie-groningen

ROUNDS=${BENCH_ROUNDS:-3}
SECONDS_TARGET=${BENCH_SECONDS:-5}
REQUESTS=${BENCH_REQUESTS:-}
CONNS=${BENCH_CONNS:-16}
STREAMS=${BENCH_STREAMS:-32}
THREADS=${BENCH_THREADS:-1}
HS_CONNS=${BENCH_HS_CONNS:-100}
HS_SECONDS=${BENCH_HS_SECONDS:-5}
HS_MAX_LOOPS=${BENCH_HS_MAX_LOOPS:-500}
SERVERS=${BENCH_SERVERS:-noordpoort nginx}
TARGET=${BENCH_TARGET:-2.0}
KEEP=${BENCH_KEEP:-0}

say() { printf '%s\n' "$*"; }
die() { printf 'bench: ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- checks
for tool in h2load curl openssl awk ss timeout; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (make deps)"
done
NGINX=$(command -v nginx 2>/dev/null || true)
[ -n "$NGINX" ] || { [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx; } ||
	die "nginx not found (make deps installs nginx-light)"
for f in ca.crt crl.pem server.crt server.key $CLIENT.crt $CLIENT.key; do
	[ -r "$CERTS/$f" ] || die "$CERTS/$f missing (run: make certs)"
done
want_noordpoort=0
case " $SERVERS " in *" noordpoort "*) want_noordpoort=1 ;; esac
if [ $want_noordpoort = 1 ] && [ ! -x "$BIN" ]; then
	die "$BIN not found or not executable (run: make)"
fi
ldd "$(command -v h2load)" | grep -q 'libssl\.so' ||
	die "h2load is not dynamically linked to libssl; the certificate shim cannot work"

# ---------------------------------------------------------------- the shim
SHIM_SRC=$ROOT/bench/h2/h2load_cert_shim.c
SHIM=$ROOT/build/bench/h2load_cert_shim.so
if [ ! -f "$SHIM" ] || [ "$SHIM_SRC" -nt "$SHIM" ]; then
	mkdir -p "$ROOT/build/bench"
	${CC:-cc} -shared -fPIC -O2 -Wall -Wextra -o "$SHIM.tmp" "$SHIM_SRC" \
		-ldl -lssl -lcrypto || die "building $SHIM failed"
	mv "$SHIM.tmp" "$SHIM"
fi

# ---------------------------------------------------------------- temp dir, cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/noordpoort-bench.XXXXXX")
# nginx workers run as "nobody" when the bench runs as root: let them read
# whoami.json (the dir holds nothing secret; the keys stay in CERTS_DIR).
chmod 0755 "$WORK"
NP_PID=
NGX_PID=
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$NP_PID" ] && kill -0 "$NP_PID" 2>/dev/null; then
		kill -TERM "$NP_PID" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$NP_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$NP_PID" 2>/dev/null || true
	fi
	if [ -n "$NGX_PID" ] && kill -0 "$NGX_PID" 2>/dev/null; then
		kill -TERM "$NGX_PID" 2>/dev/null || true   # fast shutdown, workers too
		for _ in $(seq 50); do kill -0 "$NGX_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$NGX_PID" 2>/dev/null || true
	fi
	wait 2>/dev/null || true
	if [ "$KEEP" = 1 ]; then
		say "bench: kept $WORK"
	else
		rm -rf "$WORK"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers
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

CLK_TCK=$(getconf CLK_TCK)

# utime+stime in clock ticks of the given pids (fields 14, 15 of /proc/PID/stat;
# counted after the ")" that ends the command name, which may hold spaces).
cpu_ticks() {
	local t=0 pid s
	for pid in "$@"; do
		s=$(cat "/proc/$pid/stat" 2>/dev/null) || { echo "gone:$pid"; return; }
		s=${s##*) }
		# shellcheck disable=SC2086
		set -- $s
		t=$((t + ${12} + ${13}))
	done
	echo "$t"
}

# pids of a server: noordpoort = its one process; nginx = master + workers.
server_pids() {
	case $1 in
	noordpoort) echo "$NP_PID" ;;
	nginx) echo "$NGX_PID" $(pgrep -P "$NGX_PID" | sort -n) ;;
	esac
}

server_port() {
	case $1 in noordpoort) echo "$NP_PORT" ;; nginx) echo "$NGX_PORT" ;; esac
}

server_alive() {
	case $1 in
	noordpoort) kill -0 "$NP_PID" 2>/dev/null ;;
	nginx) kill -0 "$NGX_PID" 2>/dev/null ;;
	esac
}

wait_port() { # PORT PID NAME
	for _ in $(seq 100); do
		kill -0 "$2" 2>/dev/null || return 1
		if ss -Hltn "sport = :$1" | grep -q .; then return 0; fi
		sleep 0.1
	done
	return 1
}

curl_mtls() { # PORT [curl args...]
	local port=$1
	shift
	curl -sS --http2 --max-time 10 --cacert "$CERTS/ca.crt" \
		--cert "$CERTS/$CLIENT.crt" --key "$CERTS/$CLIENT.key" "$@" \
		"https://127.0.0.1:$port/v1/whoami"
}

# run_h2load OUTFILE LIMIT_SECONDS ARGS... -> h2load output in OUTFILE; status
run_h2load() {
	local out=$1 limit=$2
	shift 2
	LD_PRELOAD=$SHIM H2LOAD_CERT=$CERTS/$CLIENT.crt H2LOAD_KEY=$CERTS/$CLIENT.key \
		H2LOAD_CACERT=$CERTS/ca.crt \
		timeout -k 5 "$limit" h2load "$@" >"$out" 2>&1
}

# check_h2load OUTFILE EXPECTED -> prints "ok SUCCEEDED WALL_RPS" or "FAILED reason"
check_h2load() {
	local out=$1 expect=$2
	if ! grep -q '^h2load_cert_shim: client certificate loaded' "$out"; then
		echo "FAILED shim-not-active"; return
	fi
	awk -v expect="$expect" '
		/^Application protocol:/ { proto = $3 }
		/^finished in/ { rps = $4; sub(/,/, "", rps) }
		/^requests:/ {
			total = $2; succ = $8; failed = $10; errored = $12; tmo = $14
		}
		/^status codes:/ { s2 = $3 }
		END {
			if (total == "") { print "FAILED no-summary"; exit }
			if (proto != "h2") { print "FAILED protocol=" proto; exit }
			if (succ != expect || failed != 0 || errored != 0 || tmo != 0 || s2 != expect) {
				printf "FAILED %s/%s succeeded, %s failed, %s errored, %s timeout, %s 2xx\n",
					succ, expect, failed, errored, tmo, s2
				exit
			}
			print "ok", succ, rps
		}' "$out"
}

median() { # numbers on stdin
	sort -g | awk '{a[NR]=$1} END {
		if (NR == 0) { print "nan"; exit }
		if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2 }'
}

fmt() { awk -v x="$1" 'BEGIN { if (x == "nan" || x == "") print "-"; else printf "%.0f", x }'; }

# ---------------------------------------------------------------- noordpoort
if [ $want_noordpoort = 1 ]; then
	NP_PORT=$(free_port)
	mkdir -p "$WORK/noordpoort"
	cat >"$WORK/noordpoort/members.yaml" <<EOF
members:
  - id: provincie-groningen
    name: Provincie Groningen
    oin: "00000001001589623000"
    roles: [node]
EOF
	cat >"$WORK/noordpoort/gateway.yaml" <<EOF
listen:
  - 127.0.0.1:$NP_PORT
tls:
  certificate: $CERTS/server.crt
  key: $CERTS/server.key
  client_ca: $CERTS/ca.crt
  crl: $CERTS/crl.pem
members: $WORK/noordpoort/members.yaml
workers: 2
log:
  destination: $WORK/noordpoort/noordpoort.log
EOF
	"$BIN" serve -c "$WORK/noordpoort/gateway.yaml" \
		>"$WORK/noordpoort/stdout.log" 2>"$WORK/noordpoort/stderr.log" &
	NP_PID=$!
	ok=0
	for _ in $(seq 100); do
		kill -0 "$NP_PID" 2>/dev/null || break
		if grep -qs '"event":"listening"' "$WORK/noordpoort/stderr.log" \
			"$WORK/noordpoort/noordpoort.log" ||
			ss -Hltn "sport = :$NP_PORT" | grep -q .; then
			ok=1
			break
		fi
		sleep 0.1
	done
	if [ $ok = 0 ] || ! wait_port "$NP_PORT" "$NP_PID"; then
		tail -n 20 "$WORK/noordpoort/stderr.log" >&2 || true
		die "noordpoort did not start listening on 127.0.0.1:$NP_PORT"
	fi
	BODY_FILE=$WORK/whoami.json
	code=$(curl_mtls "$NP_PORT" -o "$BODY_FILE" -w '%{http_code}') ||
		die "curl to noordpoort /v1/whoami failed"
	[ "$code" = 200 ] || die "noordpoort /v1/whoami answered $code: $(head -c 300 "$BODY_FILE")"
else
	# nginx-only run (development): a stand-in body of a plausible size.
	BODY_FILE=$WORK/whoami.json
	printf '{"id":"provincie-groningen","name":"Provincie Groningen","oin":"00000001001589623000","roles":["node"],"certificate":{"subject":"CN=provincie-groningen","serial":"0123456789abcdef"}}\n' >"$BODY_FILE"
fi
BODY_BYTES=$(wc -c <"$BODY_FILE")

# ---------------------------------------------------------------- nginx
NGX_PORT=$(free_port)
mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
cp "$BODY_FILE" "$WORK/nginx/whoami.json"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    include /etc/nginx/mime.types;
    access_log $WORK/nginx/logs/access.log combined buffer=64k;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    keepalive_requests 1000000;
    http2_max_concurrent_streams 128;
    server {
        listen 127.0.0.1:$NGX_PORT ssl http2;
        ssl_certificate $CERTS/server.crt;
        ssl_certificate_key $CERTS/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_verify_client on;
        ssl_verify_depth 4;
        ssl_client_certificate $CERTS/ca.crt;
        ssl_crl $CERTS/crl.pem;
        location = /v1/whoami {
            default_type application/json;
            alias $WORK/nginx/whoami.json;
        }
        location / { return 404; }
    }
}
EOF
"$NGINX" -t -q -p "$WORK/nginx/" -e "$WORK/nginx/logs/error.log" -c "$WORK/nginx/nginx.conf" ||
	die "nginx rejected $WORK/nginx/nginx.conf"
"$NGINX" -p "$WORK/nginx/" -e "$WORK/nginx/logs/error.log" -c "$WORK/nginx/nginx.conf" \
	-g 'daemon off;' >"$WORK/nginx/stdout.log" 2>&1 &
NGX_PID=$!
wait_port "$NGX_PORT" "$NGX_PID" || {
	cat "$WORK/nginx/logs/error.log" >&2 || true
	die "nginx did not start listening on 127.0.0.1:$NGX_PORT"
}
for _ in $(seq 50); do [ "$(pgrep -c -P "$NGX_PID")" -ge 2 ] && break; sleep 0.1; done
code=$(curl_mtls "$NGX_PORT" -o "$WORK/nginx/check.json" -w '%{http_code}') ||
	die "curl to nginx failed"
[ "$code" = 200 ] || die "nginx answered $code"
cmp -s "$BODY_FILE" "$WORK/nginx/check.json" || die "nginx body differs from whoami body"

# Both must refuse a client without a certificate (nginx answers 400, a
# server may also fail the handshake): otherwise we are not comparing mTLS.
for s in $SERVERS; do
	p=$(server_port "$s")
	c=$(curl -s --http2 --max-time 10 --cacert "$CERTS/ca.crt" -o /dev/null \
		-w '%{http_code}' "https://127.0.0.1:$p/v1/whoami" || true)
	[ "$c" != 200 ] || die "$s answered 200 to a client without a certificate"
done

NGX_VERSION=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
H2LOAD_VERSION=$(h2load --version | awk '{print $2}')
say "bench: noordpoort h2/mTLS benchmark ($(nproc) cores, shared by client and server)"
say "bench: GET /v1/whoami, body $BODY_BYTES bytes, client cert $CLIENT, $H2LOAD_VERSION, $NGX_VERSION"
say "bench: servers: $SERVERS; work dir $WORK"

# ---------------------------------------------------------------- one measured run
# measure SERVER KIND OUTFILE LIMIT EXPECTED h2load-args...
#   KIND=rps: prints "ok SUCCEEDED CPU_SECONDS WALL_RPS" or "FAILED ..."
declare -A R_RPS R_RPC R_HPC R_HPS R_TLS
FAILED_RUNS=0

measure_rps() { # SERVER N ROUND
	local s=$1 n=$2 r=$3 pids c0 c1 res out limit
	out=$WORK/h2load-$s-rps-$r.txt
	limit=$((SECONDS_TARGET * 20 + 60))
	pids=$(server_pids "$s")
	# shellcheck disable=SC2086
	c0=$(cpu_ticks $pids)
	if run_h2load "$out" "$limit" -t "$THREADS" -c "$CONNS" -m "$STREAMS" -n "$n" \
		"https://127.0.0.1:$(server_port "$s")/v1/whoami"; then
		res=$(check_h2load "$out" "$n")
	else
		res="FAILED h2load exit $?: $(tail -n 1 "$out")"
	fi
	# shellcheck disable=SC2086
	c1=$(cpu_ticks $pids)
	server_alive "$s" || res="FAILED server-died"
	[ "$(server_pids "$s")" = "$pids" ] || res="FAILED server-processes-changed"
	case $c0$c1 in *gone*) res="FAILED server-process-gone" ;; esac
	if [ "${res%% *}" = ok ]; then
		set -- $res
		awk -v succ="$2" -v rps="$3" -v t=$((c1 - c0)) -v hz="$CLK_TCK" \
			'BEGIN { cpu = t / hz; printf "ok %d %.2f %.1f %.1f\n", succ, cpu, rps, (cpu > 0 ? succ / cpu : 0) }'
	else
		echo "$res"
	fi
}

measure_hs() { # SERVER ROUND
	local s=$1 r=$2 pids c0 c1 out start loops=0 total=0 res=ok t0 t1 chk
	out=$WORK/h2load-$s-hs-$r.txt
	: >"$out"
	pids=$(server_pids "$s")
	# shellcheck disable=SC2086
	c0=$(cpu_ticks $pids)
	t0=$(date +%s.%N)
	start=$SECONDS
	while [ $((SECONDS - start)) -lt "$HS_SECONDS" ] && [ $loops -lt "$HS_MAX_LOOPS" ]; do
		loops=$((loops + 1))
		if ! run_h2load "$out.one" 60 -t "$THREADS" -c "$HS_CONNS" -m 1 -n "$HS_CONNS" \
			"https://127.0.0.1:$(server_port "$s")/v1/whoami"; then
			res="FAILED h2load-exit loop $loops: $(tail -n 1 "$out.one")"
			cat "$out.one" >>"$out"
			break
		fi
		chk=$(check_h2load "$out.one" "$HS_CONNS")
		if [ "${chk%% *}" != ok ]; then
			res="FAILED loop $loops: $chk"
			cat "$out.one" >>"$out"
			break
		fi
		set -- $chk
		total=$((total + $2))
		[ $loops -gt 1 ] || cp "$out.one" "$out"
	done
	t1=$(date +%s.%N)
	rm -f "$out.one"
	# shellcheck disable=SC2086
	c1=$(cpu_ticks $pids)
	server_alive "$s" || res="FAILED server-died"
	[ "$(server_pids "$s")" = "$pids" ] || res="FAILED server-processes-changed"
	case $c0$c1 in *gone*) res="FAILED server-process-gone" ;; esac
	if [ "$res" = ok ]; then
		awk -v n="$total" -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v w0="$t0" -v w1="$t1" \
			'BEGIN { cpu = t / hz; printf "ok %d %.2f %.1f %.1f\n", n, cpu, n / (w1 - w0), (cpu > 0 ? n / cpu : 0) }'
	else
		echo "$res"
	fi
}

# ---------------------------------------------------------------- calibration / warm-up
# Two unmeasured runs per server: a short cold one, then one of about a
# second at the first one's rate; N for the rounds comes from the second.
declare -A NREQ
calib_n() { # WALL_RPS SECONDS -> request count, a multiple of CONNS
	awk -v rps="$1" -v sec="$2" -v c="$CONNS" -v m="$STREAMS" \
		'BEGIN { n = rps * sec; if (n < c * m * 20) n = c * m * 20; n = int(n / c) * c; print n }'
}
for s in $SERVERS; do
	n=$((CONNS * STREAMS * 40))
	for w in 1 2; do
		res=$(measure_rps "$s" "$n" "warmup$w")
		[ "${res%% *}" = ok ] || die "$s warm-up run failed: $res (see $WORK/h2load-$s-rps-warmup$w.txt)"
		set -- $res
		n=$(calib_n "$4" 1)
	done
	tls=$(awk '/^TLS Protocol:/ {p=$3} /^Cipher:/ {c=$2} /^Server Temp Key:/ {k=$4} END {print p "/" c "/" k}' \
		"$WORK/h2load-$s-rps-warmup2.txt")
	R_TLS[$s]=$tls
	if [ -n "$REQUESTS" ]; then
		NREQ[$s]=$REQUESTS
	else
		NREQ[$s]=$(calib_n "$4" "$SECONDS_TARGET")
	fi
	say "bench: warm-up $s: $(fmt "$4") req/s wall, $(fmt "$5") req/CPU-s, TLS $tls -> -n ${NREQ[$s]}"
done

# ---------------------------------------------------------------- rounds
order=($SERVERS)
for r in $(seq "$ROUNDS"); do
	# alternate which server goes first
	if [ $((r % 2)) = 0 ]; then
		list=$(printf '%s\n' "${order[@]}" | tac | tr '\n' ' ')
	else
		list="${order[*]}"
	fi
	for s in $list; do
		res=$(measure_rps "$s" "${NREQ[$s]}" "$r")
		if [ "${res%% *}" = ok ]; then
			set -- $res
			R_RPS[$s]="${R_RPS[$s]:-} $4"
			R_RPC[$s]="${R_RPC[$s]:-} $5"
			say "bench: round $r $s requests:   $2 in $3 server CPU-s: $(fmt "$5") req/CPU-s, $(fmt "$4") req/s wall"
		else
			FAILED_RUNS=$((FAILED_RUNS + 1))
			say "bench: round $r $s requests:   $res (see $WORK/h2load-$s-rps-$r.txt)"
		fi
		res=$(measure_hs "$s" "$r")
		if [ "${res%% *}" = ok ]; then
			set -- $res
			R_HPS[$s]="${R_HPS[$s]:-} $4"
			R_HPC[$s]="${R_HPC[$s]:-} $5"
			say "bench: round $r $s handshakes: $2 in $3 server CPU-s: $(fmt "$5") hs/CPU-s, $(fmt "$4") hs/s wall"
		else
			FAILED_RUNS=$((FAILED_RUNS + 1))
			say "bench: round $r $s handshakes: $res (see $WORK/h2load-$s-hs-$r.txt)"
		fi
	done
done

# ---------------------------------------------------------------- server-side errors
for s in $SERVERS; do
	case $s in
	noordpoort) logs="$WORK/noordpoort/noordpoort.log $WORK/noordpoort/stderr.log" ;;
	nginx) logs="$WORK/nginx/logs/error.log" ;;
	esac
	# shellcheck disable=SC2086
	n=$(cat $logs 2>/dev/null | grep -Eic '"level":"(error|fatal|crit|warn|warning)"|\[(error|crit|alert|emerg|warn)\]' || true)
	if [ "${n:-0}" -gt 0 ]; then
		say "bench: $s logged $n warning/error lines; most frequent:"
		# shellcheck disable=SC2086
		cat $logs 2>/dev/null | grep -Ei '"level":"(error|fatal|crit|warn|warning)"|\[(error|crit|alert|emerg|warn)\]' |
			sed -E 's/"(ts|time)":"[^"]*",?//; s/^[0-9\/]+ [0-9:]+ //; s/\*[0-9]+ //; s/(client: |"peer":")[0-9.:]+/\1ADDR/' |
			sort | uniq -c | sort -rn | head -n 5 | sed 's/^/bench:   /'
	fi
done

# ---------------------------------------------------------------- table
say ""
say "Results: medians of $ROUNDS rounds; $CONNS connections x $STREAMS streams; handshakes: new connection + 1 request, $HS_CONNS at a time"
printf '%-12s %12s %14s %12s %14s  %s\n' server "req/s wall" "req/CPU-s" "hs/s wall" "hs/CPU-s" "TLS"
declare -A M_RPC M_HPC
for s in $SERVERS; do
	M_RPC[$s]=$(echo ${R_RPC[$s]:-} | tr ' ' '\n' | grep . | median || echo nan)
	M_HPC[$s]=$(echo ${R_HPC[$s]:-} | tr ' ' '\n' | grep . | median || echo nan)
	m_rps=$(echo ${R_RPS[$s]:-} | tr ' ' '\n' | grep . | median || echo nan)
	m_hps=$(echo ${R_HPS[$s]:-} | tr ' ' '\n' | grep . | median || echo nan)
	printf '%-12s %12s %14s %12s %14s  %s\n' "$s" "$(fmt "$m_rps")" "$(fmt "${M_RPC[$s]}")" \
		"$(fmt "$m_hps")" "$(fmt "${M_HPC[$s]}")" "${R_TLS[$s]}"
done
if [ $want_noordpoort = 1 ] && case " $SERVERS " in *" nginx "*) true ;; *) false ;; esac; then
	verdict=$(awk -v a="${M_RPC[noordpoort]}" -v b="${M_RPC[nginx]}" -v c="${M_HPC[noordpoort]}" \
		-v d="${M_HPC[nginx]}" -v t="$TARGET" 'BEGIN {
		if (a == "nan" || b == "nan" || b == 0) { print "requests per CPU-second: n/a (failed runs)  MISS" }
		else { r = a / b; printf "requests per CPU-second:   %.2fx (target >= %.1fx)  %s\n", r, t, (r >= t ? "PASS" : "MISS") }
		if (c == "nan" || d == "nan" || d == 0) print "handshakes per CPU-second: n/a"
		else printf "handshakes per CPU-second: %.2fx\n", c / d }')
	say ""
	say "noordpoort / nginx:"
	say "$verdict" | sed 's/^/  /'
fi
if [ "$FAILED_RUNS" -gt 0 ]; then
	say ""
	say "bench: $FAILED_RUNS run(s) FAILED (failed/errored requests or a server problem); they are not in the medians"
	KEEP=1
	exit 1
fi
exit 0
