#!/usr/bin/env bash
# tests/integration/test_install.sh -- `make install DESTDIR=... PREFIX=/usr`
# as a packager runs it: the files land where a sysadmin looks, the binary
# runs, systemd-analyze verifies the units, man renders the pages without a
# warning, the installed example configs pass check-config (copied to
# /etc/noordpoort in a chroot of the install, with the development
# certificates as their tls/ files), and `make uninstall` removes it all.
# One line per check, "ok - name" or "not ok - name".
set -u

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
certs=${CERTS_DIR:-certs/dev}
case $certs in /*) ;; *) certs=$root/$certs ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/noordpoort-test-install.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out
dest=$tmp/dest

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

if make -C "$root" --no-print-directory install DESTDIR="$dest" PREFIX=/usr >"$out" 2>&1; then
	pass "install: make install DESTDIR PREFIX=/usr"
else
	fail "install: make install DESTDIR PREFIX=/usr" "$(tail -20 "$out")"
fi

units="noordpoort-node@.service noordpoort-hub.service"
pages="man1/noordpoort.1 man5/noordpoort.conf.5 man5/noordpoort-policy.5"
examples="node.yaml hub.yaml"
missing=
for f in usr/bin/noordpoort usr/lib/sysusers.d/noordpoort.conf \
	$(for u in $units; do echo "usr/lib/systemd/system/$u"; done) \
	$(for p in $pages; do echo "usr/share/man/$p"; done) \
	$(for e in $examples members.yaml policies/catalog.yaml policies/mobiliteitsteam-lookup.yaml \
		federation/nld-ww-uitstroom.json; do echo "usr/share/noordpoort/examples/$e"; done); do
	[ -f "$dest/$f" ] || missing="$missing $f"
done
if [ -z "$missing" ]; then
	pass "install: binary, units, sysusers.d, man pages and examples in place"
else
	fail "install: binary, units, sysusers.d, man pages and examples in place" "missing:$missing"
fi

expect "install: the installed binary runs (--version)" 0 '^noordpoort [0-9]' "$dest/usr/bin/noordpoort" --version

# --- systemd units ---
# No systemd runs as PID 1 here: `systemd-analyze verify --root=DIR` checks
# the units offline against DIR. It needs the targets they name and the
# commands they run inside DIR, so the check runs on a copy of the install
# with the host's units and /bin/kill added. Any output is a failure too:
# an unknown key is only a warning for systemd-analyze.
if ! command -v systemd-analyze >/dev/null 2>&1; then
	for u in $units; do
		fail "units: systemd-analyze verify $u" "systemd-analyze not found (Debian package systemd; sh scripts/deps.sh test)"
	done
else
	vroot=$tmp/vroot
	mkdir -p "$vroot"
	cp -a "$dest/." "$vroot/"
	mkdir -p "$vroot/usr/lib/systemd/system" "$vroot/usr/bin"
	cp -a /usr/lib/systemd/system/. "$vroot/usr/lib/systemd/system/" 2>/dev/null
	cp /bin/kill "$vroot/usr/bin/kill"  # procps; bash's kill is a builtin
	[ -e "$vroot/bin" ] || ln -s usr/bin "$vroot/bin"
	for u in $units; do
		cp "$dest/usr/lib/systemd/system/$u" "$vroot/usr/lib/systemd/system/$u" 2>/dev/null
		name=${u/@./@node.}
		(cd "$vroot/usr/lib/systemd/system" &&
			systemd-analyze verify --man=no --root="$vroot" "$name") >"$out" 2>&1
		rc=$?
		if [ "$rc" -eq 0 ] && [ ! -s "$out" ] && [ -f "$dest/usr/lib/systemd/system/$u" ]; then
			pass "units: systemd-analyze verify $u"
		else
			fail "units: systemd-analyze verify $u" "exit status $rc" "$(cat "$out")"
		fi
	done
	# The sandbox the issue asks for, line by line (verify accepts a unit
	# without any of it).
	for u in $units; do
		f=$dest/usr/lib/systemd/system/$u
		lacking=
		for want in '^User=noordpoort$' '^ProtectSystem=strict$' '^NoNewPrivileges=yes$' \
			'^PrivateTmp=yes$' '^CapabilityBoundingSet=$' '^ReadWritePaths=/var/lib/noordpoort$' \
			'^ExecReload=/bin/kill -HUP \$MAINPID$' '^ProtectHome=yes$' '^PrivateDevices=yes$' \
			'^RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX$' '^SystemCallFilter=@system-service$' \
			'^ExecStart=/usr/bin/noordpoort serve -c /etc/noordpoort/'; do
			grep -Eq -- "$want" "$f" 2>/dev/null || lacking="$lacking $want"
		done
		if [ -z "$lacking" ]; then
			pass "units: $u is sandboxed (User, ProtectSystem, capabilities, ReadWritePaths, ExecReload)"
		else
			fail "units: $u is sandboxed (User, ProtectSystem, capabilities, ReadWritePaths, ExecReload)" "lacking:$lacking"
		fi
	done
fi

# --- man pages ---
for p in $pages; do
	f=$dest/usr/share/man/$p
	if ! command -v man >/dev/null 2>&1; then
		fail "man: $p renders without warnings" "man not found (Debian packages man-db groff-base; sh scripts/deps.sh test)"
		continue
	fi
	warn=$(MANWIDTH=80 man --warnings -l "$f" 2>&1 >/dev/null)
	text=$(MANWIDTH=80 man -l "$f" 2>/dev/null)
	if [ -f "$f" ] && [ -z "$warn" ] && printf '%s\n' "$text" | grep -q '^NAME'; then
		pass "man: $p renders without warnings"
	else
		fail "man: $p renders without warnings" "${warn:-no such page or no NAME section}"
	fi
done
if grep -Eq '^ +noordpoort (serve|check-config|policy|query|audit|ledger|keygen|csr|synth)' \
	<(MANWIDTH=80 man -l "$dest/usr/share/man/man1/noordpoort.1" 2>/dev/null) &&
	missing=$(for c in serve check-config "policy check" "policy test" "policy explain" "policy diff" \
		"policy sign" "policy verify" query "audit verify" "audit subject" "ledger init" \
		"ledger verify" keygen csr synth; do
		MANWIDTH=200 man -l "$dest/usr/share/man/man1/noordpoort.1" 2>/dev/null | grep -q "^ *$c\b" || echo "$c"
	done) && [ -z "$missing" ]; then
	pass "man: noordpoort(1) describes every command"
else
	fail "man: noordpoort(1) describes every command" "missing: ${missing:-the page}"
fi

# --- the installed examples, as an operator puts them in /etc/noordpoort ---
# They name files relative to /etc/noordpoort and under /var/lib/noordpoort
# only: nothing of the source tree.
ex=$dest/usr/share/noordpoort/examples
bad=$(grep -nE '^[^#]*(\.\./|certs/dev|var/node|var/data)' "$ex"/node.yaml "$ex"/hub.yaml 2>&1)
if [ -f "$ex/node.yaml" ] && [ -z "$bad" ]; then
	pass "examples: name only /etc/noordpoort and /var/lib/noordpoort, nothing of the source tree"
else
	fail "examples: name only /etc/noordpoort and /var/lib/noordpoort, nothing of the source tree" "$bad"
fi

# A chroot of the install: the binary's libraries, the examples copied to
# /etc/noordpoort unchanged, the development certificates as tls/, and the
# state an operator makes with the installed binary (master key, synthetic
# data, box key, ledger). As root a plain chroot; otherwise in a user
# namespace (unshare -r).
croot=$tmp/chroot
in_chroot() {
	if [ "$(id -u)" -eq 0 ]; then chroot "$croot" "$@"; else unshare -r chroot "$croot" "$@"; fi
}
setup_chroot() {
	cp -a "$dest/." "$croot/" || return 1
	for lib in $(ldd "$dest/usr/bin/noordpoort" | grep -oE '/[^ ]+'); do
		mkdir -p "$croot$(dirname "$lib")" && cp -L "$lib" "$croot$lib" || return 1
	done
	mkdir -p "$croot/etc/noordpoort/tls" "$croot/var/lib/noordpoort" "$croot/tmp" "$croot/dev" || return 1
	cp -r "$ex/." "$croot/etc/noordpoort/" || return 1
	for f in server.crt server.key ca.crt crl.pem hub.crt hub.key; do
		cp "$certs/$f" "$croot/etc/noordpoort/tls/$f" || return 1
	done
	chmod 0600 "$croot"/etc/noordpoort/tls/*.key
	: >"$croot/dev/null"
	in_chroot /usr/bin/noordpoort keygen --out /var/lib/noordpoort/master.key &&
		in_chroot /usr/bin/noordpoort synth --out /var/lib/noordpoort/data --scale 0.1 &&
		in_chroot /usr/bin/noordpoort keygen --box --out /var/lib/noordpoort/hubbox &&
		in_chroot /usr/bin/noordpoort ledger init /var/lib/noordpoort/ledger.sqlite
}
mkdir -p "$croot"
if [ ! -f "$certs/server.crt" ]; then
	fail "examples: check-config on the installed examples" "no certificates in $certs (make certs)"
elif ! setup_chroot >"$out" 2>&1; then
	fail "examples: check-config on the installed examples" "setting up the chroot failed" "$(tail -20 "$out")"
else
	for e in $examples; do
		expect "examples: check-config -c /etc/noordpoort/$e (installed example, unchanged)" 0 ': ok \(' \
			in_chroot /usr/bin/noordpoort check-config -c "/etc/noordpoort/$e"
		cmp -s "$ex/$e" "$croot/etc/noordpoort/$e" || fail "examples: $e was copied unchanged"
	done
fi

# --- uninstall ---
if make -C "$root" --no-print-directory uninstall DESTDIR="$dest" PREFIX=/usr >"$out" 2>&1 &&
	left=$(find "$dest" -type f) && [ -z "$left" ]; then
	pass "uninstall: removes every installed file"
else
	fail "uninstall: removes every installed file" "$(cat "$out")" "${left:-}"
fi

exit $failed
