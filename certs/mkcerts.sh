#!/bin/sh
# mkcerts.sh [OUTDIR] -- make the Noordpoort development PKI.
#
# Creates in OUTDIR (default: <repo>/certs/dev, git-ignored):
#   ca.crt/.key            dev federation CA "Noordpoort Dev Federation CA"
#   server.crt/.key        CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1
#   <id>.crt/.key          one client cert per org in certs/orgs.tsv, subject
#                          /C=NL/O=<name>/CN=<id>/serialNumber=<OIN>
#   revoked.crt/.key       valid client cert of provincie-groningen, revoked
#   expired.crt/.key       same subject, valid 2020-01-01..2021-01-01 only
#   rogue-ca.crt/.key      a second, untrusted CA
#   rogue.crt/.key         same subject, signed by the rogue CA
#   no-oin.crt/.key        dev-CA-signed client cert without serialNumber
#   crl.pem                CRL of the dev CA listing revoked.crt
#   .ca/                   CA state (index.txt, serial, crlnumber, newcerts/)
# Keys are EC P-256, mode 0600.  Leaf certs are valid 825 days, CAs 3650.
#
# Idempotent: if every file is there, certs/orgs.tsv is unchanged and
#   openssl verify -CAfile ca.crt -CRLfile crl.pem -crl_check server.crt
# passes, nothing is touched.  Otherwise the whole set is regenerated in a
# temporary directory inside OUTDIR and then moved in (ca.crt and crl.pem
# last, so an interrupted run is detected and redone next time).
#
# Environment: OPENSSL  openssl binary to use (default: openssl from PATH).
# Development only: these keys are not secret and must never be committed.
set -eu

say() { printf 'certs: %s\n' "$*" 2>/dev/null; }
die() { printf 'certs: error: %s\n' "$*" >&2; exit 1; }

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd -P) || die "cannot find the script directory"
root=$(dirname -- "$here")
orgs_tsv=$here/orgs.tsv
cnf=$here/openssl-ca.cnf
outdir=${1:-$root/certs/dev}
OPENSSL=${OPENSSL:-openssl}

command -v "$OPENSSL" >/dev/null 2>&1 ||
	die "'$OPENSSL' not found; install OpenSSL 3 (Debian: apt-get install openssl)"
[ -r "$orgs_tsv" ] || die "cannot read $orgs_tsv"
[ -r "$cnf" ] || die "cannot read $cnf"

tab=$(printf '\t')
days=825
ca_days=3650
crl_days=3650
ca_subj='/C=NL/O=Noordpoort/CN=Noordpoort Dev Federation CA'
rogue_ca_subj='/C=NL/O=Noordpoort Rogue/CN=Noordpoort Rogue CA'
# Test certs impersonate this member, so that only the certificate state
# (revoked, expired, wrong CA, missing OIN) is wrong with them.
test_member=provincie-groningen
reserved=" ca server crl revoked expired rogue rogue-ca no-oin "

# Print the validated orgs as "id<TAB>oin<TAB>name" lines.
read_orgs() {
	n=0
	seen=" "
	seen_oin=" "
	while IFS=$tab read -r id name oin roles || [ -n "${id:-}" ]; do
		n=$((n + 1))
		case $id in '' | '#'*) continue ;; esac
		roles=${roles%"$(printf '\r')"}
		case $id in *[!a-z0-9-]* | -*) die "orgs.tsv line $n: bad id '$id' (use a-z, 0-9, -)" ;; esac
		case $reserved in *" $id "*) die "orgs.tsv line $n: id '$id' is reserved" ;; esac
		case $seen in *" $id "*) die "orgs.tsv line $n: duplicate id '$id'" ;; esac
		[ -n "$name" ] || die "orgs.tsv line $n: empty name"
		case $oin in
		[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]) ;;
		*) die "orgs.tsv line $n: OIN '$oin' is not 20 digits" ;;
		esac
		case $seen_oin in *" $oin "*) die "orgs.tsv line $n: duplicate OIN $oin" ;; esac
		[ -n "$roles" ] || die "orgs.tsv line $n: no roles"
		seen="$seen$id "
		seen_oin="$seen_oin$oin "
		printf '%s\t%s\t%s\n' "$id" "$oin" "$name"
	done <"$orgs_tsv"
}
orgs=$(read_orgs)
[ -n "$orgs" ] || die "no organisations in $orgs_tsv"
test_line=$(printf '%s\n' "$orgs" | grep "^$test_member$tab") ||
	die "$test_member (used for the test certificates) is missing from $orgs_tsv"
test_oin=$(printf '%s\n' "$test_line" | cut -f2)
test_name=$(printf '%s\n' "$test_line" | cut -f3)

org_ids=$(printf '%s\n' "$orgs" | cut -f1)
names="ca server revoked expired rogue-ca rogue no-oin $org_ids"
expected=""
for b in $names; do expected="$expected $b.crt $b.key"; done
expected="${expected# } crl.pem"
orgs_hash=$("$OPENSSL" dgst -sha256 -r <"$orgs_tsv" | cut -d' ' -f1)

# Escape a value for use in an openssl -subj string.
esc() { printf '%s' "$1" | sed 's/[\\/+]/\\&/g'; }

# --- up to date? ------------------------------------------------------------
mkdir -p -- "$outdir" || die "cannot create $outdir"
outdir=$(CDPATH='' cd -- "$outdir" && pwd -P)

# Serialise concurrent runs on the same OUTDIR (e.g. parallel tests).  The
# lock file is opened read-only, so a no-op run does not modify anything.
lock=$outdir/.lock
[ -e "$lock" ] || : >"$lock"
locked=""
if command -v flock >/dev/null 2>&1; then
	exec 9<"$lock"
	flock -w 300 9 || die "timed out waiting for another mkcerts.sh on $outdir"
	locked=yes
fi

why=""
for f in $expected; do
	[ -f "$outdir/$f" ] || { why="missing $f"; break; }
done
if [ -z "$why" ]; then
	if [ "$(cat "$outdir/.ca/orgs.sha256" 2>/dev/null)" != "$orgs_hash" ]; then
		why="certs/orgs.tsv changed"
	elif ! (cd "$outdir" && "$OPENSSL" verify -CAfile ca.crt -CRLfile crl.pem \
		-crl_check server.crt) >/dev/null 2>&1 </dev/null; then
		why="server.crt does not verify against ca.crt + crl.pem"
	fi
fi
if [ -z "$why" ]; then
	say "$outdir up to date"
	exit 0
fi

# --- regenerate -------------------------------------------------------------
say "generating into $outdir ($why)"
umask 077
# Leftovers of a run that was killed (only safe to remove while holding the lock).
[ -z "$locked" ] || rm -rf "$outdir"/.tmp.??????
tmp=$(mktemp -d "$outdir/.tmp.XXXXXX") || die "cannot create a temp dir in $outdir"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT HUP PIPE TERM
work=$tmp/.work
log=$work/log
mkdir "$work" "$tmp/.ca" "$tmp/.ca/newcerts"
: >"$tmp/.ca/index.txt"
echo 01 >"$tmp/.ca/crlnumber"

NOORDPOORT_CA_DIR=$tmp/.ca
NOORDPOORT_CA_CERT=$tmp/ca.crt
NOORDPOORT_CA_KEY=$tmp/ca.key
export NOORDPOORT_CA_DIR NOORDPOORT_CA_CERT NOORDPOORT_CA_KEY

# Run openssl quietly; show its output only if it fails.
ossl() {
	if ! "$OPENSSL" "$@" >"$log" 2>&1 </dev/null; then
		cat "$log" >&2
		die "openssl $1 failed"
	fi
}
genkey() { # name
	ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
		-pkeyopt ec_param_enc:named_curve -out "$tmp/$1.key"
	chmod 600 "$tmp/$1.key"
}
csr() { # name subject
	genkey "$1"
	ossl req -config "$cnf" -new -utf8 -key "$tmp/$1.key" -subj "$2" -out "$work/$1.csr"
}
sign() { # name extensions [openssl ca options...]
	n=$1 ext=$2
	shift 2
	ossl ca -config "$cnf" -batch -notext -utf8 -extensions "$ext" -days "$days" \
		-in "$work/$n.csr" -out "$tmp/$n.crt" "$@"
}
member_subj() { # id name oin
	echo "/C=NL/O=$(esc "$2")/CN=$(esc "$1")/serialNumber=$3"
}

say "dev CA: Noordpoort Dev Federation CA ($ca_days days)"
genkey ca
ossl req -config "$cnf" -new -x509 -utf8 -key "$tmp/ca.key" -subj "$ca_subj" \
	-days "$ca_days" -extensions v3_ca -out "$tmp/ca.crt"

say "server: CN=localhost, DNS:localhost, IP:127.0.0.1, IP:::1"
csr server /CN=localhost
sign server server_cert

while IFS=$tab read -r id oin name; do
	say "client: $id (OIN $oin)"
	csr "$id" "$(member_subj "$id" "$name" "$oin")"
	sign "$id" client_cert
done <<EOF
$orgs
EOF

test_subj=$(member_subj "$test_member" "$test_name" "$test_oin")

say "test: revoked ($test_member's subject, revoked: keyCompromise)"
csr revoked "$test_subj"
sign revoked client_cert
ossl ca -config "$cnf" -batch -revoke "$tmp/revoked.crt" -crl_reason keyCompromise

say "test: expired ($test_member's subject, valid 2020-01-01..2021-01-01)"
csr expired "$test_subj"
sign expired client_cert -startdate 200101000000Z -enddate 210101000000Z

say "test: no-oin ($test_member's subject without serialNumber)"
csr no-oin "/C=NL/O=$(esc "$test_name")/CN=$test_member"
sign no-oin client_cert

say "test: rogue-ca + rogue ($test_member's subject, signed by the rogue CA)"
genkey rogue-ca
ossl req -config "$cnf" -new -x509 -utf8 -key "$tmp/rogue-ca.key" -subj "$rogue_ca_subj" \
	-days "$ca_days" -extensions v3_ca -out "$tmp/rogue-ca.crt"
csr rogue "$test_subj"
ossl x509 -req -in "$work/rogue.csr" -CA "$tmp/rogue-ca.crt" -CAkey "$tmp/rogue-ca.key" \
	-set_serial "0x$("$OPENSSL" rand -hex 16)" -days "$days" \
	-extfile "$cnf" -extensions client_cert -out "$tmp/rogue.crt"

say "crl.pem: lists revoked.crt ($crl_days days)"
ossl ca -config "$cnf" -batch -gencrl -crldays "$crl_days" -out "$tmp/crl.pem"

# Sanity check before replacing anything.
for b in server $org_ids; do
	case $b in server) purpose=sslserver ;; *) purpose=sslclient ;; esac
	(cd "$tmp" && "$OPENSSL" verify -CAfile ca.crt -CRLfile crl.pem -crl_check \
		-purpose "$purpose" "$b.crt") >"$log" 2>&1 </dev/null ||
		{ cat "$log" >&2; die "self-check failed for $b.crt"; }
done

echo "$orgs_hash" >"$tmp/.ca/orgs.sha256"
echo "$expected" | tr ' ' '\n' >"$tmp/.ca/manifest"
for f in $expected; do
	case $f in *.key) chmod 600 "$tmp/$f" ;; *) chmod 644 "$tmp/$f" ;; esac
done

# --- move in ----------------------------------------------------------------
# Files of a previous set that are no longer produced (e.g. a removed org).
if [ -f "$outdir/.ca/manifest" ]; then
	while read -r f; do
		case $f in '' | *[!a-z0-9.-]* | .*) continue ;; esac
		case " $expected " in *" $f "*) ;; *) rm -f -- "$outdir/$f" ;; esac
	done <"$outdir/.ca/manifest"
fi
last="server.key server.crt ca.key ca.crt crl.pem"
for f in $expected; do
	case " $last " in *" $f "*) ;; *) mv -f -- "$tmp/$f" "$outdir/$f" ;; esac
done
if [ -e "$outdir/.ca" ]; then
	mv -- "$outdir/.ca" "$work/old-ca"
fi
mv -- "$tmp/.ca" "$outdir/.ca"
for f in $last; do mv -f -- "$tmp/$f" "$outdir/$f"; done

say "$outdir ready"
