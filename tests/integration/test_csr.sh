#!/usr/bin/env bash
# tests/integration/test_csr.sh -- `noordpoort csr`, a new partner's first
# step: a private key (0600) and a PKCS#10 request with the OIN as the
# subject's serialNumber, checked with openssl; bad OINs (19, 21 digits, a
# letter) and existing files refused; the request signed by the dev CA gives
# a certificate that chains to it with the OIN in place.
set -u

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
bin=${NOORDPOORT_BIN:-build/asan/noordpoort}
case $bin in /*) ;; *) bin=$root/$bin ;; esac
certs=${CERTS_DIR:-certs/dev}
case $certs in /*) ;; *) certs=$root/$certs ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/noordpoort-test-csr.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out
oin=00000003999999990000
org="MBO College Noord-Nederland"

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

expect "csr: writes the key and the request" 0 "serialNumber=$oin" \
	"$bin" csr --org "$org" --oin "$oin" --out "$tmp/mbo"
if [ "$(stat -c %a "$tmp/mbo.key" 2>/dev/null)" = 600 ]; then
	pass "csr: the key is mode 0600"
else
	fail "csr: the key is mode 0600" "$(stat -c %a "$tmp/mbo.key" 2>&1)"
fi
openssl req -verify -noout -subject -nameopt RFC2253 -in "$tmp/mbo.csr" >"$out" 2>&1
if grep -q "verify OK" "$out" && grep -q "^subject=serialNumber=$oin,CN=$org,O=$org,C=NL$" "$out"; then
	pass "csr: openssl req -verify: self-signature good, subject C=NL, O, CN, serialNumber=OIN"
else
	fail "csr: openssl req -verify: self-signature good, subject C=NL, O, CN, serialNumber=OIN" "$(cat "$out")"
fi
if [ -s "$tmp/mbo.key" ] && openssl pkey -in "$tmp/mbo.key" -pubout 2>/dev/null | cmp -s - <(openssl req -in "$tmp/mbo.csr" -noout -pubkey 2>/dev/null); then
	pass "csr: the request carries the key's public half"
else
	fail "csr: the request carries the key's public half"
fi
expect "csr: --cn sets the CN (the member id, as the demo certificates)" 0 "CN=mbo-noord" \
	"$bin" csr --org "$org" --oin "$oin" --cn mbo-noord --out "$tmp/cn"

for bad in 0000000399999999000 000000039999999900001 0000000399999999000x ""; do
	expect "csr: --oin '$bad' refused (exit 2, 20 digits)" 2 "must be exactly 20 digits" \
		"$bin" csr --org "$org" --oin "$bad" --out "$tmp/bad"
done
[ -e "$tmp/bad.key" ] && fail "csr: a refused OIN leaves no file" || pass "csr: a refused OIN leaves no file"
expect "csr: --org missing is usage" 2 "required" "$bin" csr --oin "$oin" --out "$tmp/bad"

before=$(sha256sum "$tmp/mbo.key" "$tmp/mbo.csr")
expect "csr: an existing key is never overwritten" 1 "exists: refusing to overwrite" \
	"$bin" csr --org "$org" --oin "$oin" --out "$tmp/mbo"
[ "$before" = "$(sha256sum "$tmp/mbo.key" "$tmp/mbo.csr")" ] && pass "csr: the existing files are unchanged" ||
	fail "csr: the existing files are unchanged"
: >"$tmp/only.csr"
expect "csr: an existing request alone is refused too, and no key is made" 1 "only.csr exists" \
	"$bin" csr --org "$org" --oin "$oin" --out "$tmp/only"
[ -e "$tmp/only.key" ] && fail "csr: no key beside a refused request" || pass "csr: no key beside a refused request"

# The CA's side, as certs/mkcerts.sh signs members (client certificate).
if [ -f "$certs/ca.key" ]; then
	printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >"$tmp/ext"
	if openssl x509 -req -in "$tmp/mbo.csr" -CA "$certs/ca.crt" -CAkey "$certs/ca.key" -CAcreateserial \
		-CAserial "$tmp/ca.srl" -days 30 -extfile "$tmp/ext" -out "$tmp/mbo.crt" >"$out" 2>&1 &&
		openssl verify -CAfile "$certs/ca.crt" "$tmp/mbo.crt" >>"$out" 2>&1 &&
		openssl x509 -in "$tmp/mbo.crt" -noout -subject -nameopt RFC2253 | grep -q "serialNumber=$oin,"; then
		pass "csr: signed by the dev CA, the certificate chains and carries the OIN"
	else
		fail "csr: signed by the dev CA, the certificate chains and carries the OIN" "$(cat "$out")"
	fi
else
	fail "csr: signed by the dev CA" "no $certs/ca.key (make certs)"
fi
exit $failed
