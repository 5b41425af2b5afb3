#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317,SC2015  # helpers run via check / bash -c
# tests/integration/test_certs.sh -- checks certs/mkcerts.sh (and that
# examples/single/members.yaml matches certs/orgs.tsv).
#
# Runs mkcerts.sh into a fresh temp dir and checks the generated PKI: files,
# key modes, verify results per kind of certificate, subjects, extensions,
# the CRL, a TLS 1.3 mTLS handshake, idempotence and regeneration.
# Output: one line per check, "ok - <name>" or "not ok - <name>" (followed by
# "# " diagnostic lines on failure); exit status 1 if any check failed.
set -u

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
mk=$root/certs/mkcerts.sh
orgs_tsv=$root/certs/orgs.tsv
members=$root/examples/single/members.yaml
OPENSSL=${OPENSSL:-openssl}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/noordpoort-test-certs.XXXXXX") || exit 1
out=$tmp/out
server_pid=""
cleanup() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null
		wait "$server_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# check NAME CMD...: passes if CMD exits 0; shows its output if not.
check() {
	local name=$1 outp
	shift
	if outp=$("$@" 2>&1); then pass "$name"; else fail "$name" "$outp"; fi
}

verify() { # cert [extra verify options]: openssl verify against the dev CA + CRL
	local c=$1
	shift
	(cd "$out" && "$OPENSSL" verify -CAfile ca.crt -CRLfile crl.pem -crl_check "$@" "$c.crt" 2>&1)
}
verify_ok() { # cert purpose
	local v
	v=$(verify "$1" -purpose "$2") && [ "$v" = "$1.crt: OK" ] || { echo "$v"; return 1; }
}
verify_fails_with() { # cert message
	local v
	if v=$(verify "$1"); then echo "verified OK but should not: $v"; return 1; fi
	grep -qF "$2" <<<"$v" || { echo "$v"; return 1; }
}
subject() { # cert
	"$OPENSSL" x509 -in "$out/$1.crt" -noout -subject -nameopt utf8,sep_comma_plus | sed 's/^subject=//'
}
hashes() { # dir: sha256 + mtime of every file, including .ca/
	(cd "$1" && find . -type f | LC_ALL=C sort | while read -r f; do
		printf '%s %s %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$(stat -c %Y "$f")" "$f"
	done)
}

# Orgs from orgs.tsv: parallel arrays.
ids=() names=() oins=()
while IFS=$'\t' read -r id name oin _roles; do
	case $id in '' | '#'*) continue ;; esac
	ids+=("$id") names+=("$name") oins+=("$oin")
done <"$orgs_tsv"
pg_oin=""
for i in "${!ids[@]}"; do [ "${ids[$i]}" = provincie-groningen ] && pg_oin=${oins[$i]}; done
kinds=(ca server revoked expired rogue-ca rogue no-oin "${ids[@]}")

# --- mkcerts.sh -------------------------------------------------------------
check "orgs.tsv has provincie-groningen with OIN 00000001001589623000" \
	test "$pg_oin" = 00000001001589623000

nossl_out=$(cd / && OPENSSL=/nonexistent/openssl "$mk" "$tmp/nossl" 2>&1)
nossl_rc=$?
if [ "$nossl_rc" -ne 0 ] && grep -q "not found" <<<"$nossl_out" && [ ! -e "$tmp/nossl" ]; then
	pass "missing openssl: clear error, nothing created"
else
	fail "missing openssl: clear error, nothing created" "rc=$nossl_rc: $nossl_out"
fi

run1=$(cd / && "$mk" "$out" 2>&1)
rc=$?
if [ "$rc" -eq 0 ]; then pass "mkcerts.sh into a new dir (from another cwd)"; else
	fail "mkcerts.sh into a new dir (from another cwd)" "rc=$rc" "$run1"
	echo "# cannot continue without certificates"
	exit 1
fi
check "one output line per step (>= 10 lines)" test "$(wc -l <<<"$run1")" -ge 10

missing=()
for k in "${kinds[@]}"; do
	for f in "$k.crt" "$k.key"; do [ -s "$out/$f" ] || missing+=("$f"); done
done
[ -s "$out/crl.pem" ] || missing+=(crl.pem)
if [ "${#missing[@]}" -eq 0 ]; then pass "all ${#kinds[@]} cert/key pairs and crl.pem exist"; else
	fail "all ${#kinds[@]} cert/key pairs and crl.pem exist" "missing: ${missing[*]}"
fi

bad_modes=$(cd "$out" && stat -c '%a %n' ./*.key | grep -v '^600 ')
if [ -z "$bad_modes" ]; then pass "all keys have mode 0600"; else fail "all keys have mode 0600" "$bad_modes"; fi

not_p256=""
for k in "${kinds[@]}"; do
	"$OPENSSL" pkey -in "$out/$k.key" -noout -text 2>/dev/null | grep -q 'ASN1 OID: prime256v1' ||
		not_p256="$not_p256 $k"
done
check "all keys are EC P-256${not_p256:+ (not:$not_p256)}" test -z "$not_p256"

check "no temp dirs left in OUTDIR" test -z "$(find "$out" -maxdepth 1 -name '.tmp.*')"

# --- verify results ------------------------------------------------------------
check "verify: server.crt OK (purpose sslserver)" verify_ok server sslserver
for id in "${ids[@]}"; do
	check "verify: $id.crt OK (purpose sslclient)" verify_ok "$id" sslclient
done
check "verify: no-oin.crt OK (it is a valid cert, just without OIN)" verify_ok no-oin sslclient
check "verify: revoked.crt -> certificate revoked" verify_fails_with revoked "certificate revoked"
check "revoked.crt is otherwise valid (verify without CRL)" \
	"$OPENSSL" verify -CAfile "$out/ca.crt" -purpose sslclient "$out/revoked.crt"
check "verify: expired.crt -> certificate has expired" verify_fails_with expired "certificate has expired"
check "expired.crt is valid 2020-01-01..2021-01-01" test \
	"$("$OPENSSL" x509 -in "$out/expired.crt" -noout -startdate -enddate | tr '\n' ' ')" = \
	"notBefore=Jan  1 00:00:00 2020 GMT notAfter=Jan  1 00:00:00 2021 GMT "
check "verify: rogue.crt fails against the dev CA" verify_fails_with rogue "unable to get local issuer certificate"
check "rogue.crt verifies against rogue-ca.crt" \
	"$OPENSSL" verify -CAfile "$out/rogue-ca.crt" -purpose sslclient "$out/rogue.crt"
check "rogue-ca.crt is not the dev CA" test "$(subject rogue-ca)" != "$(subject ca)"

# --- subjects and extensions ----------------------------------------------------
pg_subj=$(subject provincie-groningen)
check "provincie-groningen subject contains serialNumber=00000001001589623000 ($pg_subj)" \
	grep -qF "serialNumber=00000001001589623000" <<<"$pg_subj"

bad_subj=()
for i in "${!ids[@]}"; do
	want="C=NL,O=${names[$i]},CN=${ids[$i]},serialNumber=${oins[$i]}"
	got=$(subject "${ids[$i]}")
	[ "$got" = "$want" ] || bad_subj+=("${ids[$i]}: got '$got', want '$want'")
done
if [ "${#bad_subj[@]}" -eq 0 ]; then pass "org subjects are C=NL,O=<name>,CN=<id>,serialNumber=<OIN>"; else
	fail "org subjects are C=NL,O=<name>,CN=<id>,serialNumber=<OIN>" "${bad_subj[@]}"
fi

# The last organizationName in the DER is the subject's (the issuer's comes first).
fry_o=$("$OPENSSL" asn1parse -in "$out/provincie-fryslan.crt" | grep -A1 ':organizationName$' | tail -n1)
check "provincie-fryslan O is a UTF8String 'Provincie Fryslân'" \
	grep -qE 'UTF8STRING +:Provincie Fryslân$' <<<"$fry_o"

no_oin_subj=$(subject no-oin)
check "no-oin subject lacks serialNumber ($no_oin_subj)" \
	bash -c '! grep -qi serialNumber <<<"$1" && grep -q "CN=provincie-groningen" <<<"$1"' _ "$no_oin_subj"

check "revoked/expired/rogue carry provincie-groningen's subject and OIN" test \
	"$(subject revoked)|$(subject expired)|$(subject rogue)" = "$pg_subj|$pg_subj|$pg_subj"

server_ext=$("$OPENSSL" x509 -in "$out/server.crt" -noout -subject -ext subjectAltName,extendedKeyUsage 2>&1)
check "server.crt: CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1, serverAuth" bash -c '
	grep -q "subject=CN = localhost" <<<"$1" &&
	grep -qF "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1" <<<"$1" &&
	grep -q "TLS Web Server Authentication" <<<"$1"' _ "$server_ext"

client_ext=$("$OPENSSL" x509 -in "$out/provincie-groningen.crt" -noout -ext extendedKeyUsage,basicConstraints 2>&1)
check "client cert: EKU clientAuth, CA:FALSE" bash -c '
	grep -q "TLS Web Client Authentication" <<<"$1" && ! grep -q "Server Auth" <<<"$1" &&
	grep -q "CA:FALSE" <<<"$1"' _ "$client_ext"

ca_ext=$("$OPENSSL" x509 -in "$out/ca.crt" -noout -subject -ext basicConstraints,keyUsage 2>&1)
check "ca.crt: Noordpoort Dev Federation CA, CA:TRUE, keyCertSign+cRLSign" bash -c '
	grep -q "CN = Noordpoort Dev Federation CA" <<<"$1" && grep -q "CA:TRUE" <<<"$1" &&
	grep -q "Certificate Sign, CRL Sign" <<<"$1"' _ "$ca_ext"

leaf_days=$(( ($(date -d "$("$OPENSSL" x509 -in "$out/server.crt" -noout -enddate | cut -d= -f2)" +%s) - $(date +%s)) / 86400 ))
ca_days=$(( ($(date -d "$("$OPENSSL" x509 -in "$out/ca.crt" -noout -enddate | cut -d= -f2)" +%s) - $(date +%s)) / 86400 ))
check "validity: leaf ~825 days ($leaf_days), CA ~3650 days ($ca_days)" \
	test "$leaf_days" -ge 823 -a "$leaf_days" -le 826 -a "$ca_days" -ge 3648 -a "$ca_days" -le 3651

revoked_serial=$("$OPENSSL" x509 -in "$out/revoked.crt" -noout -serial | cut -d= -f2)
crl_text=$("$OPENSSL" crl -in "$out/crl.pem" -CAfile "$out/ca.crt" -noout -text 2>&1)
crl_next=$("$OPENSSL" crl -in "$out/crl.pem" -noout -nextupdate | cut -d= -f2)
crl_days=$(( ($(date -d "$crl_next" +%s) - $(date +%s)) / 86400 ))
check "crl.pem: signed by ca.crt, lists only revoked.crt, valid ~3650 days ($crl_days)" bash -c '
	grep -q "^verify OK" <<<"$1" && grep -q "Serial Number: $2\$" <<<"$1" &&
	[ "$(grep -c "Serial Number:" <<<"$1")" -eq 1 ] && [ "$3" -ge 3600 ]' _ \
	"$crl_text" "$revoked_serial" "$crl_days"

# --- TLS 1.3 mTLS handshake -------------------------------------------------------
(cd "$out" && exec "$OPENSSL" s_server -www -tls1_3 -Verify 1 -verify_return_error \
	-CAfile ca.crt -CRL crl.pem -crl_check -cert server.crt -key server.key \
	-accept 127.0.0.1:0 -naccept 3 </dev/null >"$tmp/s_server.log" 2>&1) &
server_pid=$!
port=""
for _ in $(seq 50); do
	port=$(sed -n 's/^ACCEPT 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$tmp/s_server.log")
	[ -n "$port" ] && break
	sleep 0.1
done
handshake() { # cert: prints s_client output, fails unless the HTTP request succeeded over TLS 1.3
	local o
	o=$(cd "$out" && printf 'GET / HTTP/1.0\r\n\r\n' | timeout 5 "$OPENSSL" s_client -tls1_3 \
		-connect "127.0.0.1:$port" -servername localhost -verify_return_error -CAfile ca.crt \
		-cert "$1.crt" -key "$1.key" -ign_eof 2>&1)
	grep -q "HTTP/1.0 200 ok" <<<"$o" && grep -q "Protocol  : TLSv1.3" <<<"$o" || { echo "$o" | tail -5; return 1; }
}
not_handshake() { # cert: must be refused
	if handshake "$1" >/dev/null; then echo "handshake with $1.crt succeeded"; return 1; fi
}
if [ -n "$port" ]; then
	check "TLS 1.3 mTLS handshake: s_server + provincie-groningen.crt" handshake provincie-groningen
	check "TLS 1.3 mTLS handshake: rogue.crt refused" not_handshake rogue
	check "TLS 1.3 mTLS handshake: revoked.crt refused (server uses crl.pem)" not_handshake revoked
else
	fail "TLS 1.3 mTLS handshake: s_server did not start" "$(cat "$tmp/s_server.log")"
fi
kill "$server_pid" 2>/dev/null
wait "$server_pid" 2>/dev/null
server_pid=""

# --- idempotence and regeneration ---------------------------------------------------
before=$(hashes "$out")
run2=$("$mk" "$out" 2>&1)
rc=$?
check "second run exits 0 and says 'certs: $out up to date'" \
	test "$rc" -eq 0 -a "$run2" = "certs: $out up to date"
after=$(hashes "$out")
if [ "$before" = "$after" ]; then pass "second run leaves all files byte-identical (sha256, mtime)"; else
	fail "second run leaves all files byte-identical (sha256, mtime)" "$(diff <(echo "$before") <(echo "$after"))"
fi

old_ca=$(sha256sum <"$out/ca.crt")
rm -f "$out/crl.pem"
run3=$("$mk" "$out" 2>&1)
rc=$?
check "run after removing crl.pem regenerates (exit 0, not 'up to date')" \
	bash -c '[ "$1" -eq 0 ] && ! grep -q "up to date" <<<"$2"' _ "$rc" "$run3"
check "regenerated set has a new CA and verifies" bash -c '
	[ "$(sha256sum <"$1/ca.crt")" != "$2" ] &&
	cd "$1" && "$3" verify -CAfile ca.crt -CRLfile crl.pem -crl_check provincie-fryslan.crt server.crt' _ \
	"$out" "$old_ca" "$OPENSSL"
check "regenerated set: revoked.crt still revoked" verify_fails_with revoked "certificate revoked"

rel_out=$(cd "$tmp" && "$mk" rel 2>&1)
check "relative OUTDIR is relative to the cwd" bash -c '[ -s "$1/rel/ca.crt" ] && [ -s "$1/rel/crl.pem" ]' _ "$tmp"
[ -s "$tmp/rel/ca.crt" ] || fail "mkcerts.sh output (relative OUTDIR)" "$rel_out"

# --- members.yaml -------------------------------------------------------------------
want_members=$(for i in "${!ids[@]}"; do printf '%s %s\n' "${ids[$i]}" "${oins[$i]}"; done)
got_members=$(sed -n -e 's/^  - id: *\([a-z0-9-]*\) *$/\1/p' -e 's/^    oin: *"\([0-9]*\)".*$/\1/p' "$members" | paste -d' ' - -)
if [ "$want_members" = "$got_members" ]; then pass "examples/single/members.yaml lists exactly the orgs (id, oin) of orgs.tsv"; else
	fail "examples/single/members.yaml lists exactly the orgs (id, oin) of orgs.tsv" \
		"$(diff <(echo "$want_members") <(echo "$got_members"))"
fi

exit "$failed"
