#!/usr/bin/env bash
# tests/integration/test_policy_cli.sh -- the policy tools as a privacy
# officer runs them: `noordpoort policy check|test|explain|diff|sign|verify`
# and `noordpoort keygen --sign`, on the shipped examples and on broken
# copies of them. One line per check, "ok - name" or "not ok - name" (with
# "#" diagnostics); exit status 1 if any check failed.
set -u

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
bin=${NOORDPOORT_BIN:-build/asan/noordpoort}
case $bin in /*) ;; *) bin=$root/$bin ;; esac
ex=$root/policies/examples
members=$root/examples/single/members.yaml

tmp=$(mktemp -d "${TMPDIR:-/tmp}/noordpoort-test-policy.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out
export NOORDPOORT_NOW=2025-06-01

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

if [ ! -x "$bin" ]; then
	fail "policy cli: $bin is built" "build it first (make build/asan/noordpoort)"
	exit 1
fi

# --- check ---
expect "check: the shipped examples pass (catalog.yaml and tests in the glob)" 0 '^ok: 4 files, 4 purposes' \
	"$bin" policy check --members "$members" "$ex"/*.yaml
expect "check: with an explicit catalog" 0 'sha256 [0-9a-f]{64}' \
	"$bin" policy check --members "$members" --catalog "$ex/catalog.yaml" "$ex/jtf-monitoring.yaml"

sed -e 's/min_cell: 10 /min_cell: 3 /' -e 's/provincie-drenthe\]/provincie-drenthe, gemeente-assen]/' \
	-e 's/      until: 2027-12-31 .*/      until: 2023-12-31/' -e 's/ *legal_basis:$/    legal_base:/' \
	-e 's/            end_date: quarter/            end_date: week/' \
	"$ex/jtf-monitoring.yaml" >"$tmp/broken.yaml"
"$bin" policy check --members "$members" --catalog "$ex/catalog.yaml" "$tmp/broken.yaml" >"$out" 2>&1
rc=$?
if [ "$rc" -eq 1 ] &&
	grep -q "broken.yaml:[0-9]*:[0-9]*: error: grant 'jtf-gezamenlijke-monitor'.min_cell: 3 is below 5" "$out" &&
	grep -q "broken.yaml:[0-9]*:[0-9]*: error: grant 'jtf-gezamenlijke-monitor'.requesters: 'gemeente-assen' is not a member" "$out" &&
	grep -q "broken.yaml:[0-9]*:[0-9]*: error: purposes\[0\]: unknown key 'legal_base'; did you mean 'legal_basis'?" "$out" &&
	grep -q "missing required key 'legal_basis'" "$out" &&
	grep -q "until 2023-12-31 is before from 2024-01-01" "$out" &&
	grep -q "unknown generalisation 'week'" "$out"; then
	pass "check: every problem with file:line:col, exit 1"
else
	fail "check: every problem with file:line:col, exit 1" "exit status $rc" "$(cat "$out")"
fi
expect "check: a typo'd key names the nearest valid one" 1 \
	"typo.yaml:[0-9]+:[0-9]+: error: jtf-monitoring/grant\\[0\\]: unknown key 'min_cel'; did you mean 'min_cell'\\?" bash -c "
	sed 's/min_cell: 10 /min_cel: 10 /' '$ex/jtf-monitoring.yaml' >'$tmp/typo.yaml' &&
	'$bin' policy check --members '$members' '$tmp/typo.yaml'"
expect "check: a key three edits away gets no suggestion" 1 \
	"typo3.yaml:[0-9]+:[0-9]+: error: jtf-monitoring/grant\\[0\\]: unknown key 'mn_ce'\$" bash -c "
	sed 's/min_cell: 10 /mn_ce: 10 /' '$ex/jtf-monitoring.yaml' >'$tmp/typo3.yaml' &&
	'$bin' policy check --members '$members' '$tmp/typo3.yaml'"
# The catalog next to the policies is used without --catalog.
mkdir "$tmp/node"
cp "$ex/catalog.yaml" "$tmp/node/catalog.yaml"
sed 's/end_reason: exact/end_reasn: exact/' "$ex/jtf-monitoring.yaml" >"$tmp/node/fieldtypo.yaml"
cp "$tmp/node/fieldtypo.yaml" "$tmp/fieldtypo.yaml"
"$bin" policy check --members "$members" "$tmp/node/fieldtypo.yaml" >"$out" 2>&1
rc=$?
if [ "$rc" -eq 1 ] && grep -q "^catalog: $tmp/node/catalog.yaml (next to the policy file)$" "$out" &&
	grep -q "fieldtypo.yaml:[0-9]*:[0-9]*: error: .*has no field 'end_reasn' in the catalog" "$out"; then
	pass "check: catalog.yaml next to the policy file is used and named"
else
	fail "check: catalog.yaml next to the policy file is used and named" "exit status $rc" "$(cat "$out")"
fi
expect "check: no catalog next to the file, none used, and it says so" 0 \
	'^catalog: none \(datasets and fields not checked\)$' \
	"$bin" policy check --members "$members" "$tmp/fieldtypo.yaml"
expect "check: --no-catalog skips the catalog next to the file" 0 '^catalog: none' \
	"$bin" policy check --no-catalog --members "$members" "$tmp/node/fieldtypo.yaml"
expect "check: an explicit --catalog is named" 0 "^catalog: $ex/catalog.yaml\$" \
	"$bin" policy check --catalog "$ex/catalog.yaml" "$ex/jtf-monitoring.yaml"
expect "check: --no-catalog with --catalog is a usage error" 2 'together' \
	"$bin" policy check --no-catalog --catalog "$ex/catalog.yaml" "$ex/jtf-monitoring.yaml"
expect "check: acknowledged min_cell below 5 passes" 0 '^ok' bash -c "
	sed 's/min_cell: 5/min_cell: 3\n        acknowledge: [{risk: min_cell_below_5, reason: interne kwaliteitscontrole}]/' \
		'$ex/jtf-monitoring.yaml' >'$tmp/ack.yaml' && '$bin' policy check '$tmp/ack.yaml'"
expect "check: a purpose expiring within 30 days is a warning" 0 'warning: purpose .hnld-kv-monitoring. expires on 2028-12-31, within 30 days' \
	env NOORDPOORT_NOW=2028-12-15 "$bin" policy check "$ex/hnld-kv-monitoring.yaml"
expect "check: epsilon 0 is refused" 1 'epsilon: must be greater than 0' bash -c "
	sed 's/epsilon: 0.5}/epsilon: 0}/' '$ex/hnld-kv-monitoring.yaml' >'$tmp/eps.yaml' && '$bin' policy check '$tmp/eps.yaml'"
expect "check: noise none on an aggregate grant is refused, pointing at docs/disclosure.md" 1 \
	"grant 'amt-programmamonitor'.noise: an aggregate grant needs 'noise: .*docs/disclosure.md" bash -c "
	sed 's/noise: {mechanism: discrete_laplace, epsilon: 0.5}/noise: none/' '$ex/hnld-kv-monitoring.yaml' >'$tmp/none.yaml' &&
	'$bin' policy check '$tmp/none.yaml'"
expect "check: an aggregate grant without a noise key is refused too" 1 "exact counts \(no noise\) are never released" bash -c "
	sed '/noise: {mechanism: discrete_laplace, epsilon: 0.5}/d' '$ex/hnld-kv-monitoring.yaml' >'$tmp/nonoise.yaml' &&
	'$bin' policy check '$tmp/nonoise.yaml'"
expect "check: noise none on a lookup-only grant is still fine" 0 '^ok' bash -c "
	sed 's/^\(        operations: \[lookup\]\)$/\1\n        noise: none/' '$ex/mobiliteitsteam-lookup.yaml' >'$tmp/lookupnone.yaml' &&
	grep -q 'noise: none' '$tmp/lookupnone.yaml' && '$bin' policy check '$tmp/lookupnone.yaml'"
expect "check: no files is a usage error" 2 'no policy files given' "$bin" policy check
expect "check: --help" 0 'Usage: noordpoort policy check' "$bin" policy check --help

# A partner cannot cap (starve) another partner's dataset: dataset_budgets
# names only the owner's own datasets, and needs the owner named.
cat >"$tmp/dsb-other.yaml" <<'POL'
owner: uwv
dataset_budgets:
  opleidingsfonds-techniek/inschrijvingen: {epsilon: 0.001, per: year}
purposes: []
POL
expect "check: dataset_budgets on another member's dataset is refused" 1 \
	"dsb-other.yaml:3:3: error: dataset_budgets: .opleidingsfonds-techniek/inschrijvingen. belongs to .opleidingsfonds-techniek., not to this file.s owner .uwv." \
	"$bin" policy check --members "$members" "$tmp/dsb-other.yaml"
sed -e '1d' "$tmp/dsb-other.yaml" >"$tmp/dsb-noowner.yaml"
expect "check: dataset_budgets without owner: is refused" 1 "dsb-noowner.yaml:[0-9]*:[0-9]*: error: dataset_budgets: needs 'owner: MEMBER'" \
	"$bin" policy check --members "$members" "$tmp/dsb-noowner.yaml"
sed -e 's#opleidingsfonds-techniek/inschrijvingen#uwv/ww-uitkeringen#' "$tmp/dsb-other.yaml" >"$tmp/dsb-own.yaml"
expect "check: dataset_budgets on the owner's own dataset passes" 0 '^ok' \
	"$bin" policy check --members "$members" "$tmp/dsb-own.yaml"

# --- test ---
expect "test: the shipped policy tests all pass" 0 '^[0-9]+ passed, 0 failed$' \
	"$bin" policy test "$ex"/*.test.yaml
cat >"$tmp/wrong.test.yaml" <<EOF
policies: [$ex/mobiliteitsteam-lookup.yaml]
cases:
  - name: expects a permit that is a deny
    request: {as: gemeente-emmen, purpose: mobiliteit-scholingscheck, operation: lookup,
              at: 2025-10-01, fields: [opleidingsfonds-zorg/inschrijvingen.sector]}
    expect: {decision: permit}
  - name: right
    request: {as: gemeente-emmen, purpose: mobiliteit-scholingscheck, operation: lookup,
              at: 2025-10-01, fields: [opleidingsfonds-zorg/inschrijvingen.programme]}
    expect: {decision: permit, rule: mobiliteitsteam-inschrijving}
EOF
"$bin" policy test "$tmp/wrong.test.yaml" >"$out" 2>&1
rc=$?
if [ "$rc" -eq 1 ] && grep -q '^not ok - .*expects a permit that is a deny' "$out" &&
	grep -q "^#   decision: expected permit; got deny (field_not_granted)$" "$out" &&
	grep -q "^#   the decision: deny (field_not_granted): field 'sector'" "$out" &&
	grep -q '^1 passed, 1 failed$' "$out"; then
	pass "test: a failing case shows the actual decision and reason, exit 1"
else
	fail "test: a failing case shows the actual decision and reason, exit 1" "exit status $rc" "$(cat "$out")"
fi
# Every mismatched control of a case, each on its own line; the summary
# counts cases (one failed case with three mismatches is "1 failed").
cat >"$tmp/many.test.yaml" <<EOF
policies: [$ex/hnld-kv-monitoring.yaml]
cases:
  - name: three controls wrong, two right
    request: {as: arbeidsmarkttafel, purpose: hnld-kv-monitoring, operation: linked_aggregate,
              at: 2025-03-15, fields: [opleidingsfonds-techniek/inschrijvingen.programme,
              uwv/ww-uitkeringen.end_reason]}
    expect:
      decision: permit
      rule: amt-andere-regel
      output: {min_cell: 20, epsilon: 0.5, round_to: 10, max_cells_per_person: 1, budget_epsilon: 3}
  - name: a deny with the wrong reason and rule
    request: {as: arbeidsmarkttafel, purpose: hnld-kv-monitoring, operation: lookup,
              at: 2025-03-15, fields: [uwv/ww-uitkeringen.end_reason]}
    expect: {decision: permit, reason: field_not_granted, rule: amt-programmamonitor,
             output: {min_cell: 20}}
EOF
"$bin" policy test "$tmp/many.test.yaml" >"$out" 2>&1
rc=$?
if [ "$rc" -eq 1 ] && [ "$(grep -c '^#   ' "$out")" -eq 8 ] &&
	grep -q "^#   rule: expected 'amt-andere-regel'; got 'amt-programmamonitor'$" "$out" &&
	grep -q '^#   output.min_cell: expected 20; got 10$' "$out" &&
	grep -q '^#   output.round_to: expected 10; got 5$' "$out" &&
	! grep -q '^#   output.epsilon\|^#   output.budget_epsilon\|^#   output.max_cells' "$out" &&
	grep -q '^#   decision: expected permit; got deny (forbidden)$' "$out" &&
	grep -q '^#   reason: expected field_not_granted; got forbidden$' "$out" &&
	grep -q "^#   rule: expected 'amt-programmamonitor'; got 'uwv-ww-nooit-per-persoon'$" "$out" &&
	[ "$(grep -c '^#   the decision: ' "$out")" -eq 2 ] &&
	grep -q '^0 passed, 2 failed$' "$out"; then
	pass "test: every mismatched control of a case, one line each; the summary counts cases"
else
	fail "test: every mismatched control of a case, one line each; the summary counts cases" "exit status $rc" "$(cat "$out")"
fi
expect "test: --policies overrides the file's list" 1 '^0 passed, 2 failed$' \
	"$bin" policy test --policies "$ex/jtf-monitoring.yaml" "$tmp/wrong.test.yaml"

# --- explain ---
cat >"$tmp/deny.json" <<'EOF'
{"operation": "linked_aggregate",
 "datasets": ["opleidingsfonds-zorg/inschrijvingen", "uwv/ww-uitkeringen"],
 "fields": ["opleidingsfonds-zorg/inschrijvingen.birth_date as birth_year",
            "uwv/ww-uitkeringen.end_reason"]}
EOF
"$bin" policy explain --as arbeidsmarkttafel --purpose hnld-kv-monitoring --at 2025-06-01 \
	--policies "$ex/hnld-kv-monitoring.yaml" "$tmp/deny.json" >"$out" 2>&1
rc=$?
if [ "$rc" -eq 1 ] && grep -q '^Decision: DENY (generalisation_too_fine)' "$out" &&
	grep -q "^Nearest grant: 'amt-programmamonitor'" "$out" &&
	grep -q "only as age_band_10 or coarser, not as birth_year" "$out"; then
	pass "explain: a deny names the nearest grant and what it lacks"
else
	fail "explain: a deny names the nearest grant and what it lacks" "exit status $rc" "$(cat "$out")"
fi
sed 's/ as birth_year//' "$tmp/deny.json" >"$tmp/permit.json"
expect "explain: a permit shows the rule and output controls" 0 'noise: discrete Laplace, epsilon 0.5' \
	"$bin" policy explain --as arbeidsmarkttafel --purpose hnld-kv-monitoring \
	--policies "$ex/hnld-kv-monitoring.yaml" "$ex/jtf-monitoring.yaml" "$tmp/permit.json"
expect "explain: a forbid is named" 1 "Deciding rule: forbid 'uwv-ww-nooit-per-persoon'" bash -c "
	sed 's/linked_aggregate/lookup/' '$tmp/permit.json' >'$tmp/lookup.json' &&
	'$bin' policy explain --as arbeidsmarkttafel --purpose hnld-kv-monitoring --policies '$ex/hnld-kv-monitoring.yaml' '$tmp/lookup.json'"
expect "explain: missing --as is a usage error" 2 '--as ORG and --purpose P are required' \
	"$bin" policy explain --purpose x --policies "$ex/hnld-kv-monitoring.yaml" "$tmp/deny.json"

# --- diff ---
sed -e 's/requesters: \[arbeidsmarkttafel\]/requesters: [arbeidsmarkttafel, provincie-groningen]/' \
	-e 's/epsilon: 0.5}/epsilon: 1.0}/' -e 's/min_cell: 10/min_cell: 20/' \
	"$ex/hnld-kv-monitoring.yaml" >"$tmp/new.yaml"
"$bin" policy diff "$ex/hnld-kv-monitoring.yaml" "$tmp/new.yaml" >"$out" 2>&1
rc=$?
loose=$(grep -n 'Newly allowed' "$out" | cut -d: -f1)
tight=$(grep -n 'Newly forbidden or tightened' "$out" | cut -d: -f1)
if [ "$rc" -eq 1 ] && [ -n "$loose" ] && [ -n "$tight" ] && [ "$loose" -lt "$tight" ] &&
	grep -q "provincie-groningen is a new requester" "$out" &&
	grep -q "epsilon raised from 0.5 to 1" "$out" &&
	grep -q "min_cell raised from 10 to 20" "$out"; then
	pass "diff: loosenings first, then tightenings, exit 1"
else
	fail "diff: loosenings first, then tightenings, exit 1" "exit status $rc" "$(cat "$out")"
fi
expect "diff: identical files, exit 0" 0 'No change in what is allowed' \
	"$bin" policy diff "$ex/hnld-kv-monitoring.yaml" "$ex/hnld-kv-monitoring.yaml"
expect "diff: one file is a usage error" 2 'exactly two files' "$bin" policy diff "$ex/hnld-kv-monitoring.yaml"

# --- keygen, sign, verify ---
expect "keygen: writes a key pair" 0 'wrote .*officer.sec' "$bin" keygen --sign --out "$tmp/officer"
if [ "$(stat -c %a "$tmp/officer.sec")" = 600 ]; then
	pass "keygen: the secret key has mode 0600"
else
	fail "keygen: the secret key has mode 0600" "$(stat -c %a "$tmp/officer.sec")"
fi
expect "keygen: refuses to overwrite" 1 'refusing to overwrite' "$bin" keygen --sign --out "$tmp/officer"
cp "$ex/mobiliteitsteam-lookup.yaml" "$tmp/signed.yaml"
expect "verify: an unsigned file is refused" 1 'is missing: the file is not signed' \
	"$bin" policy verify --pub "$tmp/officer.pub" "$tmp/signed.yaml"
expect "sign: a file without serial: is refused" 1 "'serial:' is required" \
	"$bin" policy sign --key "$tmp/officer.sec" "$tmp/signed.yaml"
# serial_version N [EXTRA]: the example with serial N (and an extra comment line)
serial_version() {
	{ printf 'serial: %s\nvalid_until: 2099-12-31\n%s' "$1" "${2:+# $2
}"; cat "$ex/mobiliteitsteam-lookup.yaml"; } >"$tmp/signed.yaml"
}
serial_version 3
expect "sign: writes FILE.sig" 0 'signed .*signed.yaml: .*signed.yaml.sig \(serial 3, valid until 2099-12-31\)' \
	"$bin" policy sign --key "$tmp/officer.sec" "$tmp/signed.yaml"
if grep -Eq '^signed.yaml 3 [0-9a-f]{64}$' "$tmp/officer.serials"; then
	pass "sign: records the serial next to the key (officer.serials)"
else
	fail "sign: records the serial next to the key (officer.serials)" "$(cat "$tmp/officer.serials" 2>&1)"
fi
expect "verify: a good signature, with serial and validity" 0 'good signature, serial 3, valid until 2099-12-31' \
	"$bin" policy verify --pub "$tmp/officer.pub" "$tmp/signed.yaml"
expect "sign: the same serial and bytes again is fine" 0 'serial 3' \
	"$bin" policy sign --key "$tmp/officer.sec" "$tmp/signed.yaml"
serial_version 2
expect "sign: a lower serial is refused, naming the file, the serial and the last one" 1 \
	"signed.yaml: serial 2 is below the last one signed for 'signed.yaml', 3 \\(.*officer.serials\\); raise 'serial:' to 4" \
	"$bin" policy sign --key "$tmp/officer.sec" "$tmp/signed.yaml"
serial_version 3 changed
expect "sign: the same serial with other bytes is refused" 1 \
	"serial 3 was already signed for 'signed.yaml' with other content .*raise 'serial:' to 4" \
	"$bin" policy sign --key "$tmp/officer.sec" "$tmp/signed.yaml"
expect "verify: the refused sign left the old signature (now bad)" 1 'BAD: bad signature' \
	"$bin" policy verify --pub "$tmp/officer.pub" "$tmp/signed.yaml"
serial_version 4
expect "sign: serial + 1 signs" 0 'serial 4' "$bin" policy sign --key "$tmp/officer.sec" "$tmp/signed.yaml"
expect "verify: valid_until is the last valid day (today = valid_until)" 0 'serial 4, valid until 2099-12-31' \
	env NOORDPOORT_NOW=2099-12-31 "$bin" policy verify --pub "$tmp/officer.pub" "$tmp/signed.yaml"
expect "verify: past valid_until a gateway refuses it" 1 'EXPIRED, a gateway refuses it' \
	env NOORDPOORT_NOW=2100-01-01 "$bin" policy verify --pub "$tmp/officer.pub" "$tmp/signed.yaml"
"$bin" keygen --sign --out "$tmp/other" >/dev/null 2>&1
expect "verify: another key is refused" 1 'BAD: bad signature' \
	"$bin" policy verify --pub "$tmp/other.pub" "$tmp/signed.yaml"
sed -i 's/identifiers: pseudonym/identifiers: bsn      /' "$tmp/signed.yaml"
expect "verify: a tampered file is refused" 1 'changed after signing' \
	"$bin" policy verify --pub "$tmp/officer.pub" "$tmp/signed.yaml"
chmod 0644 "$tmp/officer.sec"
expect "sign: a secret key readable by others is refused" 1 'secret key file is accessible by group or others \(mode 0644\); run: chmod 600' \
	"$bin" policy sign --key "$tmp/officer.sec" "$tmp/signed.yaml"
expect "sign: missing --key is a usage error" 2 '--key FILE is required' "$bin" policy sign "$tmp/signed.yaml"
expect "policy: unknown command is a usage error" 2 "unknown command 'frob'" "$bin" policy frob

exit $failed
