#!/bin/sh
# bench/parse/run.sh - worst-case request-body parse time per MiB: the
# bodies an attacker would send (120 000 keys, long shared-prefix keys at the
# 1 000-member cap, many small values, deep chains, a string of escapes)
# through gw_json_body_parse(), against cJSON_Parse of an ordinary 1 MiB body
# in the same run. Not a timed test: it prints medians and ratios.
#
# Usage: sh bench/parse/run.sh [ROUNDS]     (default 15)
# Environment: CC (cc), BENCH_CFLAGS (-O2 -g).
# Builds build/bench/bench_parse from bench/parse/bench_parse.c (which
# #includes gateway/jsonbody.c). Exit status 1 if a body was answered other
# than expected (accepted, refused for a cap, refused as a duplicate).
set -eu
cd "$(dirname "$0")/../.."
CC=${CC:-cc}
BENCH_CFLAGS=${BENCH_CFLAGS:--O2 -g}
mkdir -p build/bench
# shellcheck disable=SC2086
$CC -D_GNU_SOURCE -std=c11 -Wall -Wextra -Wshadow -Wcast-qual -Wsign-compare $BENCH_CFLAGS -o build/bench/bench_parse \
	bench/parse/bench_parse.c -lcjson
echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(nproc) cores online"
exec build/bench/bench_parse "${1:-15}"
