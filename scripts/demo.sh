#!/bin/sh
# make demo: starts a gateway on loopback with the development PKI, shows who
# it lets in and who it refuses, then stops it cleanly. Federated questions
# join this demo when the hub and nodes exist.
set -eu
cd "$(dirname "$0")/.."
BIN=build/noordpoort
CERTS=certs/dev
tmp=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

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
for org in provincie-groningen provincie-fryslan uwv arbeidsmarkttafel; do
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
echo "-- what the gateway counted (metrics, as uwv):"
curl -s --http2 --cacert "$CERTS/ca.crt" --cert "$CERTS/uwv.crt" --key "$CERTS/uwv.key" "$url/metrics" |
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
echo "-- UWV is not a requester under this purpose:"
lookup uwv '["programme"]'
kill -TERM "$pid"
wait "$pid" && echo "== node drained and stopped (exit 0)"
pid=
echo "-- the node's audit log (one hash-chained line per request, the person only as a keyed pseudonym):"
"$BIN" audit verify "$tmp/audit.log"
"$BIN" audit subject --bsn "$bsn" --key "$tmp/master.key" "$tmp/audit.log"

echo
echo "Run them yourself:"
echo "  build/noordpoort serve -c examples/single/gateway.yaml      # the gateway (README)"
echo "  build/noordpoort serve -c examples/node/gateway.yaml        # a node (README, 'A partner node')"
echo "Federated questions across all partners (the hub) are the next step: issue 5."
