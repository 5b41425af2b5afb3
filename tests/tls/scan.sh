#!/bin/sh
# TLS scan of a gateway on loopback with the development certificates:
# Debian's testssl (package testssl.sh) and sslscan, plus openssl s_client
# for what neither can test behind mutual TLS (renegotiation, the client
# certificate requirement, ALPN refusal). Prints one PASS/FAIL line per
# property of docs/security.md ("TLS scan") and a summary; exit status 1 if
# anything failed, 2 if a tool is missing.
#
#   sh tests/tls/scan.sh [BIN] [CERTS_DIR]     (defaults build/noordpoort certs/dev)
#   SCAN_QUICK=1 sh tests/tls/scan.sh          (testssl without the per-cipher
#                                               and client-simulation runs: ~15 s)
#
# Reports stay in build/tls-scan/: testssl.txt/.json, sslscan.txt/.xml,
# sclient-*.txt and the gateway's log. Run as root, the gateway binds and then
# drops to `user: nobody`, so the scan also covers a dropped gateway.
set -u
cd "$(dirname "$0")/../.." || exit 2

BIN=${1:-build/noordpoort}
CERTS=${2:-certs/dev}
OUT=build/tls-scan
PY=/usr/bin/python3
CLIENT=gemeente-groningen

for tool in testssl sslscan openssl "$PY"; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "scan: $tool is missing (apt-get install -y testssl.sh sslscan openssl python3)" >&2
		exit 2
	fi
done
[ -x "$BIN" ] || { echo "scan: no gateway binary $BIN (make)" >&2; exit 2; }
[ -f "$CERTS/server.crt" ] || { echo "scan: no certificates in $CERTS (make certs)" >&2; exit 2; }

CERTS=$(cd "$CERTS" && pwd)
rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CONF=$OUT/gateway.yaml
LOG=$OUT/gateway.log

{
	echo "listen: 127.0.0.1:0"
	echo "tls:"
	echo "  certificate: $CERTS/server.crt"
	echo "  key: $CERTS/server.key"
	echo "  client_ca: $CERTS/ca.crt"
	echo "  crl: $CERTS/crl.pem"
	echo "members: $(pwd)/examples/single/members.yaml"
	echo "workers: 2"
	echo "log: {destination: $LOG}"
	[ "$(id -u)" -eq 0 ] && echo "user: nobody"
} >"$CONF"

"$BIN" serve -c "$CONF" >"$OUT/gateway.stderr" 2>&1 &
GW=$!
trap 'kill "$GW" 2>/dev/null; wait "$GW" 2>/dev/null' EXIT INT TERM
PORT=
i=0
while [ $i -lt 100 ] && [ -z "$PORT" ]; do
	PORT=$(sed -n 's/.*"event":"listening","address":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$LOG" 2>/dev/null | head -n 1)
	[ -n "$PORT" ] || sleep 0.1
	i=$((i + 1))
done
if [ -z "$PORT" ]; then
	echo "scan: the gateway did not start:" >&2
	cat "$LOG" "$OUT/gateway.stderr" >&2
	exit 2
fi
T=127.0.0.1:$PORT
echo "# gateway $BIN on $T (pid $GW$( [ "$(id -u)" -eq 0 ] && echo ', dropped to nobody'))"

# --- the scans ----------------------------------------------------------------
# testssl 3.0 has no client-certificate option: its openssl calls take extra
# s_client options from the variable keyopts. Its own socket probes cannot
# present a certificate, but they only need the ServerHello.
QUICK_OPTS=
[ "${SCAN_QUICK:-0}" = 1 ] && QUICK_OPTS="-p -s -f -P -S -U"
echo "# testssl ${QUICK_OPTS:-(full run)} ..."
# shellcheck disable=SC2086
keyopts="-cert $CERTS/$CLIENT.crt -key $CERTS/$CLIENT.key" \
	testssl --quiet --color 0 --warnings off --openssl-timeout 10 \
	--jsonfile "$OUT/testssl.json" $QUICK_OPTS "$T" >"$OUT/testssl.txt" 2>&1
echo "# sslscan ..."
sslscan --no-colour --certs="$CERTS/$CLIENT.crt" --pk="$CERTS/$CLIENT.key" \
	--xml="$OUT/sslscan.xml" "$T" >"$OUT/sslscan.txt" 2>&1

# --- openssl s_client probes ------------------------------------------------
S="openssl s_client -connect $T -servername localhost -CAfile $CERTS/ca.crt"
K="-cert $CERTS/$CLIENT.crt -key $CERTS/$CLIENT.key"
probe() { # NAME STDIN-SCRIPT ARGS...
	name=$1 script=$2
	shift 2
	# shellcheck disable=SC2086
	(eval "$script") | timeout 10 $S "$@" >"$OUT/sclient-$name.txt" 2>&1
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj "/CN=stranger/serialNumber=00000001001589609000" \
	-keyout "$OUT/stranger.key" -out "$OUT/stranger.crt" >/dev/null 2>&1
# shellcheck disable=SC2086
{
	probe h2 'sleep 1' $K -alpn h2
	probe h2-tls12 'sleep 1' $K -alpn h2 -tls1_2
	probe http11 'sleep 1' $K -alpn http/1.1
	probe noalpn 'sleep 1' $K
	probe tls11 'sleep 1' $K -tls1_1
	probe nocert13 'sleep 1' -alpn h2 -tls1_3
	probe nocert12 'sleep 1' -alpn h2 -tls1_2
	probe stranger 'sleep 1' -cert "$OUT/stranger.crt" -key "$OUT/stranger.key" -alpn h2
	probe reneg 'sleep 1; printf "R\n"; sleep 2' $K -alpn h2 -tls1_2
}
sleep 0.5

# --- verdicts ---------------------------------------------------------------
"$PY" - "$OUT" <<'EOF'
import json, re, sys
from pathlib import Path

out = Path(sys.argv[1])
results = []


def verdict(ok, what, detail=""):
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {what}" + (f"  [{detail}]" if detail else ""))


def text(name):
    p = out / name
    return p.read_bytes().decode("utf-8", "replace") if p.exists() else ""


try:
    ts = {x["id"]: x for x in json.loads(text("testssl.json") or "[]")}
except ValueError:
    ts = {}
ss = text("sslscan.txt")
log = [json.loads(l) for l in text("gateway.log").splitlines() if l.startswith("{")]
f = lambda i: ts.get(i, {}).get("finding", "(missing)")

# 1. protocols
old = {i: f(i) for i in ("SSLv2", "SSLv3", "TLS1", "TLS1_1")}
verdict(all(v.startswith("not offered") for v in old.values()) and
        f("TLS1_2").startswith("offered") and f("TLS1_3").startswith("offered"),
        "testssl: nothing below TLS 1.2; TLS 1.2 and 1.3 offered",
        ", ".join(f"{k} {v}" for k, v in old.items()) + f", TLS1_2 {f('TLS1_2')}, TLS1_3 {f('TLS1_3')}")
verdict(all(re.search(rf"^{p}\s+disabled", ss, re.M) for p in ("SSLv2", "SSLv3", r"TLSv1\.0", r"TLSv1\.1"))
        and re.search(r"^TLSv1\.2\s+enabled", ss, re.M) and re.search(r"^TLSv1\.3\s+enabled", ss, re.M),
        "sslscan: SSLv2, SSLv3, TLS 1.0, 1.1 disabled; 1.2, 1.3 enabled")
verdict("alert protocol version" in text("sclient-tls11.txt"),
        "s_client -tls1_1: refused with a protocol_version alert")

# 2. ciphers
weak = {i: f(i) for i in ("cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT",
                          "cipherlist_LOW", "cipherlist_3DES_IDEA", "cipherlist_AVERAGE")}
verdict(all(v.startswith("not offered") for v in weak.values()),
        "testssl: no NULL, anonymous, export, LOW, 3DES/IDEA or CBC (obsolete) ciphers",
        ", ".join(f"{k[11:]} {v}" for k, v in weak.items()))
verdict(f("PFS").startswith("offered"), "testssl: forward secrecy offered", f("PFS"))
accepted = re.findall(r"^(?:Preferred|Accepted)\s+(TLSv1\.[23])\s+\d+ bits\s+(\S+)", ss, re.M)
good = re.compile(r"^(TLS_AES_(128|256)_GCM_SHA(256|384)|TLS_CHACHA20_POLY1305_SHA256|"
                  r"ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305))$")
bad = [c for _, c in accepted if not good.match(c)]
verdict(accepted and not bad, "sslscan: every accepted cipher is ECDHE + AEAD",
        f"{len(accepted)} accepted: " + " ".join(c for _, c in accepted) + (f"; NOT OK: {bad}" if bad else ""))

# 3. renegotiation
verdict("Session renegotiation not supported" in ss, "sslscan: session renegotiation not supported")
rn = text("sclient-reneg.txt")
verdict("RENEGOTIATING" in rn and "no renegotiation" in rn,
        "s_client 'R' (client-initiated renegotiation, TLS 1.2): refused (no_renegotiation)")

# 4. client certificate
verdict("certificate required" in text("sclient-nocert13.txt"),
        "s_client without a certificate, TLS 1.3: alert certificate_required")
verdict("handshake failure" in text("sclient-nocert12.txt"),
        "s_client without a certificate, TLS 1.2: alert handshake_failure")
verdict("unknown ca" in text("sclient-stranger.txt"),
        "s_client with a self-signed certificate: alert unknown_ca")
reasons = sorted({o.get("reason") for o in log if o.get("event") == "handshake_failed"})
verdict({"no_certificate", "unknown_ca"} <= set(reasons),
        "gateway log: the refusals are counted with their reason", ", ".join(map(str, reasons)))

# 5. ALPN
verdict("ALPN protocol: h2" in text("sclient-h2.txt") and "ALPN protocol: h2" in text("sclient-h2-tls12.txt"),
        "s_client -alpn h2 (TLS 1.3 and 1.2): h2 selected")
verdict("no application protocol" in text("sclient-http11.txt"),
        "s_client -alpn http/1.1: alert no_application_protocol")
verdict("no_alpn" in reasons, "s_client without ALPN: closed after the handshake (no_alpn)")
verdict(f("ALPN_HTTP2") == "h2" and f("NPN").startswith("not offered"),
        "testssl: ALPN h2 only, no NPN", f"ALPN {f('ALPN_HTTP2')}, NPN {f('NPN')}")

# 6. resumption, compression, known attacks
verdict(f("sessionresumption_ticket").startswith("not supported") and
        f("sessionresumption_ID").startswith("No Session ID"),
        "testssl: no session resumption (tickets, IDs)",
        f"{f('sessionresumption_ticket')}; {f('sessionresumption_ID')}")
vulns = ("heartbleed", "CCS", "ticketbleed", "ROBOT", "CRIME_TLS", "POODLE_SSL", "fallback_SCSV",
         "SWEET32", "FREAK", "DROWN", "LOGJAM", "BEAST", "LUCKY13", "RC4")
present = [v for v in vulns if v in ts]
notok = [f"{v}: {ts[v]['severity']} {ts[v]['finding']}" for v in present
         if ts[v]["severity"] not in ("OK", "INFO")]
verdict(present and not notok, f"testssl: not vulnerable ({len(present)} checks: {', '.join(present)})",
        "; ".join(notok))

# Expected with the development PKI, reported, not failed:
# testssl's service detection is timing-dependent on a busy machine: it says
# "certificate-based authentication" or "Couldn't determine service" (an h2-only
# server never answers its HTTP/1.1 probe); the s_client probes above decide.
for i in ("service", "cert_chain_of_trust", "cert_revocation", "secure_client_renego", "BREACH"):
    if i in ts:
        print(f"NOTE  testssl {i}: {ts[i]['severity']} {ts[i]['finding']}")
n_fail = results.count(False)
print(f"{results.count(True)} PASS, {n_fail} FAIL")
sys.exit(1 if n_fail else 0)
EOF
