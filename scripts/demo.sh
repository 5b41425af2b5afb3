#!/bin/sh
# make demo: everything on loopback with the development PKI and synthetic
# data, in three parts, each stopped cleanly:
#   1. a gateway: who it lets in and who it refuses;
#   2. a partner node: a mobility team's lookup, and the audit log;
#   3. the federation: the hub and one node per demo organisation; the
#      Arbeidsmarkttafel asks the partners' linked questions and gets tables.
# The federation's set-up is shared with `make federation`
# (scripts/federation-lib.sh).
set -eu
cd "$(dirname "$0")/.."
. scripts/federation-lib.sh
BIN=build/noordpoort
CERTS=certs/dev
tmp=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	fed_stop >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sed -e 's/127.0.0.1:8443/127.0.0.1:0/' -e "s|\.\./\.\./certs/dev|$PWD/$CERTS|" \
	-e "s|members: members.yaml|members: $PWD/examples/single/members.yaml|" \
	-e "s|destination: stderr|destination: $tmp/gateway.log|" \
	examples/single/gateway.yaml >"$tmp/gateway.yaml"
"$BIN" serve -c "$tmp/gateway.yaml" 2>"$tmp/stderr" &
pid=$!
port=
for _ in $(seq 50); do
	port=$(sed -n 's/.*"event":"listening","address":"127.0.0.1:\([0-9]*\)".*/\1/p' "$tmp/gateway.log" 2>/dev/null | head -1)
	[ -n "$port" ] && break
	sleep 0.1
done
if [ -z "$port" ]; then
	echo "demo: the gateway did not start:" >&2
	cat "$tmp/stderr" "$tmp/gateway.log" >&2 2>/dev/null
	exit 1
fi
url="https://localhost:$port"
ask() { # ask ORG PATH: prints the status and body, or why TLS refused
	who=$1
	set -- --cacert "$CERTS/ca.crt" -w ' (HTTP %{http_code})' "$url$2"
	[ "$who" = none ] || set -- --cert "$CERTS/$who.crt" --key "$CERTS/$who.key" "$@"
	if out=$(curl -sS --http2 "$@" 2>&1); then
		echo "$out"
	else
		echo "refused at the TLS handshake: ${out#*)}" | sed 's/ (HTTP 000)$//'
	fi
}

echo "== Noordpoort gateway on $url (mutual TLS, HTTP/2 only)"
for org in provincie-fryslan arbeidsmarkttafel; do
	echo "-- $org asks: who am I?"
	ask "$org" /v1/whoami
done
echo "-- a certificate without an OIN:"
ask no-oin /v1/whoami
echo "-- a revoked certificate:"
ask revoked /v1/whoami
echo "-- a certificate from another CA:"
ask rogue /v1/whoami
echo "-- no certificate at all:"
ask none /v1/whoami
echo "-- what the gateway counted (metrics, as provincie-groningen, the operator):"
curl -s --http2 --cacert "$CERTS/ca.crt" --cert "$CERTS/provincie-groningen.crt" --key "$CERTS/provincie-groningen.key" "$url/metrics" |
	grep -E '^noordpoort_(requests_total|tls_handshake_failures_total|authn_refusals_total)' | grep -v ' 0$'
kill -TERM "$pid"
wait "$pid" && echo "== gateway drained and stopped (exit 0)"
pid=

# ---- a partner node: Opleidingsfonds Techniek, with synthetic data ----
echo
echo "== A partner node: Opleidingsfonds Techniek serves enrolments to the mobility teams"
"$BIN" synth --out "$tmp/data" --seed 1 2>/dev/null >/dev/null
"$BIN" keygen --out "$tmp/master.key" >/dev/null
sed -e 's/127.0.0.1:8444/127.0.0.1:0/' -e "s|\.\./\.\./certs/dev|$PWD/$CERTS|" \
	-e "s|\.\./single/members.yaml|$PWD/examples/single/members.yaml|" \
	-e "s|\.\./\.\./policies/|$PWD/policies/|" \
	-e "s|\.\./\.\./var/node/master.key|$tmp/master.key|" \
	-e "s|\.\./\.\./var/node/audit.log|$tmp/audit.log|" \
	-e "s|\.\./\.\./var/data|$tmp/data|" \
	-e "s|destination: stderr|destination: $tmp/node.log|" \
	examples/node/gateway.yaml >"$tmp/node.yaml"
"$BIN" serve -c "$tmp/node.yaml" 2>"$tmp/stderr" &
pid=$!
port=
for _ in $(seq 50); do
	port=$(sed -n 's/.*"event":"listening","address":"127.0.0.1:\([0-9]*\)".*/\1/p' "$tmp/node.log" 2>/dev/null | head -1)
	[ -n "$port" ] && break
	sleep 0.1
done
if [ -z "$port" ]; then
	echo "demo: the node did not start:" >&2
	cat "$tmp/stderr" "$tmp/node.log" >&2 2>/dev/null
	exit 1
fi
url="https://localhost:$port"
bsn=$(sed -n 2p "$tmp/data/opleidingsfonds-techniek/inschrijvingen.csv" | cut -d, -f1)
lookup() { # lookup ORG FIELDS-JSON
	curl -sS --http2 --cacert "$CERTS/ca.crt" --cert "$CERTS/$1.crt" --key "$CERTS/$1.key" \
		-w ' (HTTP %{http_code})' -d "{\"purpose\":\"mobiliteit-scholingscheck\",
		\"dataset\":\"opleidingsfonds-techniek/inschrijvingen\",
		\"subject\":{\"bsn\":\"$bsn\"},\"fields\":$2}" "$url/v1/lookup"
	echo
}
echo "-- gemeente-emmen's mobility team: is this client already enrolled? (synthetic BSN)"
lookup gemeente-emmen '["programme","start_year","completed"]'
echo "-- the same question from gemeente-groningen gets another pseudonym for the same person:"
lookup gemeente-groningen '["programme"]'
echo "-- asking for the birth date (data minimisation forbids it):"
lookup gemeente-emmen '["birth_date"]'
kill -TERM "$pid"
wait "$pid" && echo "== node drained and stopped (exit 0)"
pid=
echo "-- the node's audit log (one hash-chained line per request, the person only as a keyed pseudonym):"
"$BIN" audit verify "$tmp/audit.log"
"$BIN" audit subject --bsn "$bsn" --key "$tmp/master.key" "$tmp/audit.log"


# ---- the federation: the hub and one node per demo organisation ----
echo
echo "== The federation: a hub and a node for each of the nine partners, on loopback (synthetic data, scale 1)"
t0=$(date +%s%N)
fed_init "$tmp/fed"
fed_setup
fed_start
t1=$(date +%s%N)
echo "   Every node serves its own CSV files, holds the federation's shared pseudonymisation key"
echo "   (phase 1) and seals linked answers to the hub's key; the hub keeps no personal data."
fed_list
echo "  hub                        $FED_HUB_URL  (all ten set up and started in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e9 }') s)"
echo "   The Arbeidsmarkttafel Noord (the coordinator) asks, under the partners' policies"
echo "   (policies/examples/amt-bereik-monitoring.yaml, hnld-kv-monitoring.yaml): cells under 10 persons"
echo "   suppressed, discrete Laplace noise (epsilon 0.5 per question), rounded to 5, a budget per year."

ask_hub() { # QUESTION-FILE: prints the command and the hub's table
	echo "   \$ $BIN query --hub $FED_HUB_URL -f $1"
	"$BIN" query --hub "$FED_HUB_URL" -f "$1" | sed 's/^/   /'
}
persons() { # DATASET...: the synthetic data's own distinct persons per file, added up
	for d in "$@"; do awk -F '\t' -v d="$d" '$1 == d { print $4 }' "$FED_DIR/data/MANIFEST.txt"; done |
		awk '{ s += $1 } END { print s }'
}

echo
echo "-- 1. How many different people did the training programmes reach, and in which province?"
echo "   Counted: persons in JTF leven lang ontwikkelen (the three provinces) or enrolled at either training"
echo "   fund (Noorden Leert Door 1 and 2, Kansrijk Verzilveren), each person ONCE however many partners"
echo "   hold them. A row says in which province's JTF scheme a person was found (the province they live"
echo "   in); 'false false false' are people reached only by a fund's programme: the funds record no"
echo "   province, and a node cannot yet turn a postcode into a region."
echo "   Added up per partner, the five files hold $(persons provincie-groningen/jtf-deelnemers \
	provincie-fryslan/jtf-deelnemers provincie-drenthe/jtf-deelnemers \
	opleidingsfonds-techniek/inschrijvingen opleidingsfonds-zorg/inschrijvingen) persons; the total below counts each once."
ask_hub examples/federation/bereik-per-provincie.json

echo
echo "-- 2. Of the Noorden Leert Door participants, how many had WW, and how did their WW end, per region?"
echo "   Counted: persons enrolled in Noorden Leert Door 1 or 2 at either fund (the filter is applied at"
echo "   the funds' nodes), linked to UWV's WW benefits; region and end reason are UWV's. 'werk' = left"
echo "   WW for work; '(none)' = no WW benefit at UWV. (In the synthetic data a participant's benefit"
echo "   started 30-300 days before the programme; a table cannot check that timing itself.)"
ask_hub examples/federation/nld-ww-uitstroom.json

echo
echo "-- 3. How many people who talked to a mobility team then enrolled in a training, in which sector?"
echo "   Counted: the persons in the three mobility teams' contacts (Het Noorden Werkt Door), once each,"
echo "   linked to Opleidingsfonds Techniek's enrolments (sector as the fund records it; '(none)' = not"
echo "   enrolled there) ..."
ask_hub examples/federation/mobiliteit-naar-scholing-techniek.json
echo "   ... and to Opleidingsfonds Zorg's (its enrolments are all in the sector zorg). Two tables, not"
echo "   one: the few people enrolled at both funds would be small cells, and hiding them would hide"
echo "   their whole row and column too (secondary suppression, docs/disclosure.md)."
ask_hub examples/federation/mobiliteit-naar-scholing-zorg.json

echo
echo "-- A refused question: the exact birth date of the participants"
echo "   \$ $BIN query --hub $FED_HUB_URL -f examples/federation/geweigerd-geboortedatum.json"
st=0
out=$("$BIN" query --hub "$FED_HUB_URL" -f examples/federation/geweigerd-geboortedatum.json 2>&1) || st=$?
echo "$out" | fold -s -w 100 | sed 's/^/   /'
echo "   (exit status $st; the hub decided before asking any node, so no budget was spent)"

echo
echo "== Stopping the federation: SIGTERM to the hub and the nine nodes"
fed_stop
echo "   all ten drained and exited 0"
echo "-- the hub's audit log (one hash-chained line per question, refusals included; never a token):"
"$BIN" audit verify "$FED_DIR/hub-audit.log" | sed "s|$FED_DIR/||; s/^/   /"

echo
echo "Your turn:"
echo "  make federation        # the same federation, kept running until Ctrl-C; prints the hub's URL"
echo "  build/noordpoort query --hub https://localhost:PORT -f examples/federation/nld-ww-uitstroom.json"
echo "                         # any question in examples/federation/ (README there); --format csv|json"
echo "  build/noordpoort serve -c examples/single/gateway.yaml      # the gateway alone (README)"
echo "  build/noordpoort serve -c examples/node/gateway.yaml        # one node alone (README, 'A partner node')"
