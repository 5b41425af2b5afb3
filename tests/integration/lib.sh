# Shared helpers for the bash integration tests (sourced, not run).
# Each test prints "ok - NAME" or "not ok - NAME" (tests/run.sh counts them)
# and exits with $failed at the end. Callers set $out to a scratch file.

failed=0
pass() { echo "ok - $1"; }
fail() { # name [diagnostic...]
	echo "not ok - $1"
	shift
	local line
	for line in "$@"; do printf '%s\n' "$line" | sed 's/^/#   /'; done
	failed=1
}
# expect NAME STATUS PATTERN CMD...: CMD exits with STATUS and its output
# (stdout and stderr) matches the extended regular expression PATTERN.
expect() {
	local name=$1 want=$2 pattern=$3 rc
	shift 3
	"$@" >"$out" 2>&1
	rc=$?
	if [ "$rc" -ne "$want" ]; then
		fail "$name" "exit status $rc, expected $want" "$(cat "$out")"
	elif ! grep -Eq -- "$pattern" "$out"; then
		fail "$name" "output does not match: $pattern" "$(cat "$out")"
	else
		pass "$name"
	fi
}
