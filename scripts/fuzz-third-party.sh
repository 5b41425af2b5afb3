#!/bin/sh
# scripts/fuzz-third-party.sh - builds the libraries under the parsers,
# nghttp2 and libyaml, from Debian's own source packages with the fuzzer's
# coverage instrumentation and AddressSanitizer, as static libraries in
# OUT/lib (headers in OUT/include), so the fuzz targets can follow an input
# into them (the distribution's uninstrumented builds are a blind spot: the
# HTTP/2 target plateaued at 242 edges). Used by `make fuzz` only; `make
# test`'s fuzz smoke pass links the distribution's libraries and needs none
# of this.
#
# Usage: sh scripts/fuzz-third-party.sh [OUT]    (default build/fuzz/third_party)
# Needs root the first time when the APT sources have no deb-src lines: it
# then adds /etc/apt/sources.list.d/noordpoort-deb-src.{sources,list}, the
# same archives as the deb lines, for source packages only, and runs
# apt-get update. Exit status 0 when both libraries are there (built now or
# before), 1 otherwise (make fuzz then uses the distribution's libraries).
set -eu

OUT=${1:-build/fuzz/third_party}
CC=${FUZZ_TP_CC:-clang}
# Coverage for the fuzzer and ASan; not UBSan: the libraries' own UB is
# theirs to fix, and -fno-sanitize-recover would end every campaign at it.
TPFLAGS=${FUZZ_TP_CFLAGS:--g -O1 -fsanitize=fuzzer-no-link,address -fno-omit-frame-pointer}

if [ -f "$OUT/lib/libnghttp2.a" ] && [ -f "$OUT/lib/libyaml.a" ] && [ -f "$OUT/VERSIONS" ]; then
	exit 0
fi
mkdir -p "$OUT/src" "$OUT/lib" "$OUT/include"
OUT=$(cd "$OUT" && pwd -P)

say() { echo "fuzz-third-party: $*" >&2; }

# 1. deb-src lines, the same archives as the deb ones
has_src() { apt-cache showsrc "$1" 2>/dev/null | grep -q '^Package:'; }
if ! has_src nghttp2 || ! has_src libyaml; then
	if [ "$(id -u)" -ne 0 ]; then
		say "no deb-src lines in the APT sources, and not root to add them; as root run: sh $0"
		exit 1
	fi
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		sed -n '/^Types:/s/.*/Types: deb-src/p; /^Types:/!p' /etc/apt/sources.list.d/debian.sources \
			>/etc/apt/sources.list.d/noordpoort-deb-src.sources
	fi
	if [ -f /etc/apt/sources.list ] && grep -q '^deb ' /etc/apt/sources.list; then
		sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >/etc/apt/sources.list.d/noordpoort-deb-src.list
	fi
	say "added deb-src lines (/etc/apt/sources.list.d/noordpoort-deb-src.*); apt-get update"
	apt-get -o DPkg::Lock::Timeout=60 update -qq || { say "apt-get update failed"; exit 1; }
	if ! has_src nghttp2 || ! has_src libyaml; then
		say "still no source packages for nghttp2 and libyaml after adding deb-src lines"
		exit 1
	fi
fi

# 2. the source packages of the versions installed (so headers and
#    libraries agree with what the rest of the build uses)
cd "$OUT/src"
for pkg in nghttp2 libyaml; do
	bin=$([ "$pkg" = nghttp2 ] && echo libnghttp2-dev || echo libyaml-dev)
	ver=$(dpkg-query -W -f='${Version}' "$bin" 2>/dev/null || true)
	if ! ls -d "$pkg"-*/ >/dev/null 2>&1; then
		say "apt-get source $pkg${ver:+=$ver}"
		apt-get source -qq "$pkg${ver:+=$ver}" >/dev/null 2>&1 || apt-get source -qq "$pkg" >/dev/null ||
			{ say "apt-get source $pkg failed"; exit 1; }
	fi
done
yamldir=$(ls -d libyaml-*/ | head -n 1)
h2dir=$(ls -d nghttp2-*/ | head -n 1)

# 3. libyaml: its sources compiled directly (no autotools needed)
yv=$(sed -n 's/^AC_INIT(\[yaml\], *\[\([0-9.]*\)\].*/\1/p; s/^m4_define(\[YAML_\(MAJOR\|MINOR\|PATCH\)\], *\([0-9]*\)).*/\2/p' \
	"$yamldir/configure.ac" | tr '\n' ' ')
set -- $yv
ymaj=${1:-0} ymin=${2:-2} ypat=${3:-5}
say "libyaml $ymaj.$ymin.$ypat ($yamldir)"
rm -rf "$OUT/obj-yaml" && mkdir -p "$OUT/obj-yaml"
for f in "$yamldir"/src/*.c; do
	# shellcheck disable=SC2086
	$CC $TPFLAGS -DYAML_VERSION_MAJOR="$ymaj" -DYAML_VERSION_MINOR="$ymin" -DYAML_VERSION_PATCH="$ypat" \
		-DYAML_VERSION_STRING="\"$ymaj.$ymin.$ypat\"" -I"$yamldir/include" -I"$yamldir/src" \
		-c "$f" -o "$OUT/obj-yaml/$(basename "$f" .c).o"
done
rm -f "$OUT/lib/libyaml.a"
ar rcs "$OUT/lib/libyaml.a" "$OUT"/obj-yaml/*.o
cp "$yamldir/include/yaml.h" "$OUT/include/"

# 4. nghttp2's library (lib/ only): nghttp2ver.h from its template, the
#    few configure results the library uses
hv=$(sed -n 's/^AC_INIT(\[nghttp2\], *\[\([0-9.]*\)[^]]*\].*/\1/p' "$h2dir/configure.ac" | head -n 1)
hnum=$(echo "$hv" | awk -F. '{ printf "0x%02x%02x%02x", $1, $2, $3 }')
say "nghttp2 $hv ($h2dir)"
sed -e "s/@PACKAGE_VERSION@/$hv/" -e "s/@PACKAGE_VERSION_NUM@/$hnum/" \
	"$h2dir/lib/includes/nghttp2/nghttp2ver.h.in" >"$h2dir/lib/includes/nghttp2/nghttp2ver.h"
cat >"$h2dir/config.h" <<'CONF'
#define HAVE_ARPA_INET_H 1
#define HAVE_NETINET_IN_H 1
#define HAVE_UNISTD_H 1
#define HAVE_STDDEF_H 1
#define HAVE_INTTYPES_H 1
#define HAVE_STDINT_H 1
#define HAVE_STRING_H 1
#define HAVE_TIME_H 1
#define HAVE_SYSINFO_H 1
#define HAVE_CLOCK_GETTIME 1
CONF
rm -rf "$OUT/obj-h2" && mkdir -p "$OUT/obj-h2"
for f in "$h2dir"/lib/*.c; do
	# shellcheck disable=SC2086
	$CC $TPFLAGS -DHAVE_CONFIG_H -DBUILDING_NGHTTP2 -I"$h2dir" -I"$h2dir/lib" -I"$h2dir/lib/includes" \
		-c "$f" -o "$OUT/obj-h2/$(basename "$f" .c).o"
done
rm -f "$OUT/lib/libnghttp2.a"
ar rcs "$OUT/lib/libnghttp2.a" "$OUT"/obj-h2/*.o
mkdir -p "$OUT/include/nghttp2"
cp "$h2dir"/lib/includes/nghttp2/nghttp2.h "$h2dir"/lib/includes/nghttp2/nghttp2ver.h "$OUT/include/nghttp2/"
printf 'libyaml %s.%s.%s (%s)\nnghttp2 %s (%s)\nflags: %s\n' "$ymaj" "$ymin" "$ypat" "$yamldir" "$hv" "$h2dir" \
	"$TPFLAGS" >"$OUT/VERSIONS"
say "built $OUT/lib/libyaml.a and $OUT/lib/libnghttp2.a"
