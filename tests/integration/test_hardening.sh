#!/usr/bin/env bash
# tests/integration/test_hardening.sh -- the release binary carries the
# hardening distributions build with (issue 10, section 8): PIE, full RELRO
# (GNU_RELRO + BIND_NOW), stack canaries (__stack_chk_fail), fortified libc
# calls (__*_chk), and on x86-64 CET landing pads (endbr64) and stack-clash
# probes. Reads build/noordpoort (or $NOORDPOORT_RELEASE_BIN) with readelf
# and objdump; runs nothing.
set -u

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$root" || exit 1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/noordpoort-test-hardening.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

bin=${NOORDPOORT_RELEASE_BIN:-build/noordpoort}
if [ ! -x "$bin" ]; then
	fail "hardening: $bin exists (run: make)"
	exit "$failed"
fi
for tool in readelf objdump; do
	command -v "$tool" >/dev/null 2>&1 || { fail "hardening: $tool (binutils) is installed"; exit "$failed"; }
done

# check NAME FILE ERE: FILE has a line matching ERE
check() {
	if grep -Eq -- "$3" "$2"; then pass "$1"; else fail "$1" "no line of $(basename "$2") output matches: $3"; fi
}

readelf -h -W "$bin" >"$tmp/h"
readelf -l -W "$bin" >"$tmp/l"
readelf -d -W "$bin" >"$tmp/d"
readelf --dyn-syms -W "$bin" >"$tmp/s"
check "hardening: PIE (ELF type DYN)" "$tmp/h" "Type:[[:space:]]+DYN"
check "hardening: RELRO (a GNU_RELRO segment)" "$tmp/l" "^[[:space:]]*GNU_RELRO"
check "hardening: BIND_NOW (full RELRO: FLAGS BIND_NOW or FLAGS_1 NOW)" "$tmp/d" \
	"\(FLAGS\)[[:space:]].*BIND_NOW|\(FLAGS_1\)[[:space:]].*Flags:.*[[:space:]]NOW"
check "hardening: stack protector (__stack_chk_fail imported)" "$tmp/s" "[[:space:]]__stack_chk_fail(@|$)"
check "hardening: FORTIFY_SOURCE (fortified __*_chk calls imported)" "$tmp/s" \
	"[[:space:]]__(memcpy|memmove|memset|snprintf|vsnprintf|sprintf|strcpy|strncpy|fprintf|printf|fread|read)_chk(@|$)"

if [ "$(uname -m)" = x86_64 ]; then
	objdump -d --no-show-raw-insn "$bin" >"$tmp/dis"
	# -fcf-protection puts endbr64 at every function that can be reached
	# indirectly; without it only the few from crt files and libc_nonshared.
	funcs=$(readelf -s -W "$bin" | awk '$4 == "FUNC" && $7 != "UND"' | wc -l)
	endbr=$(grep -c 'endbr64' "$tmp/dis")
	if [ "$endbr" -ge $((funcs / 4)) ] && [ "$endbr" -ge 20 ]; then
		pass "hardening: CET (-fcf-protection): $endbr endbr64 for $funcs functions"
	else
		fail "hardening: CET (-fcf-protection)" "$endbr endbr64 for $funcs functions"
	fi
	# -fstack-clash-protection probes each page of a large frame (or $0x0,(%rsp)).
	if grep -Eq 'or[q]?[[:space:]]+\$0x0,\(%rsp\)' "$tmp/dis"; then
		pass "hardening: stack-clash probes (-fstack-clash-protection)"
	else
		fail "hardening: stack-clash probes (-fstack-clash-protection)" "no 'or \$0x0,(%rsp)' in the code"
	fi
fi
exit "$failed"
