#!/bin/sh
# bench/pseudo/run.sh - pseudonyms per second per core: pseudo_tokens (batch),
# pseudo_token (single) and a bare crypto_generichash loop over the same BSNs,
# same key, same run.
#
# Usage: sh bench/pseudo/run.sh [N] [ROUNDS]     (defaults: 5000000 5)
# Environment: CC (cc), BENCH_CFLAGS (-O2 -g).
# Builds build/bench/bench_pseudo from bench/pseudo/bench_pseudo.c (which
# #includes crypto/pseudo.c and crypto/blake2b_batch.c) and runs it. Exit status 0 whether the 5 M/s
# target is met or not; 1 if the loops computed different tokens.
set -eu
cd "$(dirname "$0")/../.."
CC=${CC:-cc}
BENCH_CFLAGS=${BENCH_CFLAGS:--O2 -g}
mkdir -p build/bench
# common/*.c: the helpers pseudo.c links with (errbuf, keyfile, ...).
# shellcheck disable=SC2086
$CC -D_GNU_SOURCE -std=c11 -Wall -Wextra -Wshadow -Wcast-qual -Wsign-compare $BENCH_CFLAGS -o build/bench/bench_pseudo \
	bench/pseudo/bench_pseudo.c common/*.c -lsodium -lyaml -lcjson
echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(nproc) cores online"
exec build/bench/bench_pseudo "${1:-5000000}" "${2:-5}"
