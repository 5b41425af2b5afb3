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
echo
echo "Run it yourself:"
echo "  build/noordpoort serve -c examples/single/gateway.yaml"
echo "  curl --http2 --cacert certs/dev/ca.crt --cert certs/dev/provincie-groningen.crt \\"
echo "       --key certs/dev/provincie-groningen.key https://localhost:8443/v1/whoami"
