#!/bin/sh
# bench/wire/run.sh - the hub's tokens decoder on a dictionary of values
# chosen to collide under its pre-issue-10 hash, against ordinary values,
# same run (issue 10, section 6).
#
# Usage: sh bench/wire/run.sh [NVALUES] [ROUNDS] [WINDOW] [FIELDS]
#        (defaults: 65535 5 64 1)
# Environment: CC (cc), BENCH_CFLAGS (-O2 -g), WIRE_SRC (aggregate/wire.c:
# point it at an older wire.c to measure that one).
# Exit status 0 whether the ratio passes or not; 1 if a decode failed.
set -eu
cd "$(dirname "$0")/../.."
CC=${CC:-cc}
BENCH_CFLAGS=${BENCH_CFLAGS:--O2 -g}
WIRE_SRC=${WIRE_SRC:-aggregate/wire.c}
mkdir -p build/bench
# shellcheck disable=SC2086
$CC -D_GNU_SOURCE -std=c11 -Wall -Wextra -Wshadow -Wcast-qual -Wsign-compare $BENCH_CFLAGS -Iaggregate \
	-o build/bench/bench_wire bench/wire/bench_wire.c "$WIRE_SRC" -lsodium -lpthread
echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(nproc) cores online"
exec build/bench/bench_wire "$@"
