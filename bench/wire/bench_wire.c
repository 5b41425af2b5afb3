/*
 * How long the hub takes to decode a tokens plaintext whose dictionary holds
 * values chosen to collide, against ordinary values of the same count and
 * length, same run: the hash-flooding regression of issue 10 (section 6).
 *
 * "Colliding" means colliding under the decoder's hash before issue 10
 * (FNV-1a, folded, linear probing in a table of 2n slots rounded up to a
 * power of two): brute force over short strings keeps those whose old slot
 * lies in one window of WINDOW slots (1 = one bucket). With the old hash
 * they form one cluster and every insertion probes through it: quadratic.
 * A keyed hash (what wire.c uses now) scatters them like any other values.
 *
 * Usage: bench_wire [NVALUES] [ROUNDS] [WINDOW] [FIELDS]
 *        (defaults 65535 5 64 1). Prints the median CPU time of one decode
 * of each kind and their ratio. Exit status 0 whatever the ratio; 1 if a
 * decode fails or returns other values than were sent.
 */
#include "../../aggregate/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VLEN 7 /* "q" + 4 counter characters + 2 brute-forced ones */
#define RATIO_OK 3.0

static const char alphabet[64] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t fnv_step(uint64_t h, unsigned char c)
{
	return (h ^ c) * 1099511628211ULL;
}

/* The old decoder's table mask for |n| values. */
static uint32_t old_mask(uint32_t n)
{
	uint32_t mask;

	for (mask = 15; mask + 1 < 2 * n; mask = mask * 2 + 1)
		;
	return mask;
}

/*
 * Fills |out| (n * VLEN bytes) with |n| distinct strings; when |window| is
 * non-zero only those whose old slot is in [0, window) of |mask|. Returns
 * the number of candidates tried.
 */
static uint64_t make_values(char *out, uint32_t n, uint32_t mask, uint32_t window)
{
	uint32_t got = 0;
	uint64_t tried = 0;

	for (uint32_t ctr = 0; got < n && ctr < (1u << 24); ctr++) {
		char s[VLEN];
		uint64_t h = 1469598103934665603ULL;

		s[0] = 'q';
		for (int k = 0; k < 4; k++)
			s[1 + k] = alphabet[(ctr >> (6 * k)) & 63];
		for (int k = 0; k < 5; k++)
			h = fnv_step(h, (unsigned char)s[k]);
		for (int a = 0; a < 64 && got < n; a++) {
			uint64_t ha = fnv_step(h, (unsigned char)alphabet[a]);

			for (int b = 0; b < 64 && got < n; b++) {
				uint64_t hb = fnv_step(ha, (unsigned char)alphabet[b]);

				tried++;
				if (window && (((uint32_t)(hb ^ (hb >> 29)) & mask) >= window))
					continue;
				memcpy(out + (size_t)got * VLEN, s, 5);
				out[(size_t)got * VLEN + 5] = alphabet[a];
				out[(size_t)got * VLEN + 6] = alphabet[b];
				got++;
			}
		}
	}
	return got == n ? tried : 0;
}

/* A plaintext with |fields| fields, each with the dictionary |vals|, and
 * one record. */
static unsigned char *plaintext(const char *vals, uint32_t n, uint32_t fields, size_t *len)
{
	size_t size = 8 + (size_t)fields * (4 + (size_t)n * (2 + VLEN)) + 4 + 16 + 2 * (size_t)fields;
	unsigned char *buf = malloc(size), *p;

	if (!buf)
		return NULL;
	memcpy(buf, "NPT1", 4);
	buf[4] = (unsigned char)fields, buf[5] = buf[6] = buf[7] = 0;
	p = buf + 8;
	for (uint32_t f = 0; f < fields; f++) {
		p[0] = (unsigned char)n, p[1] = (unsigned char)(n >> 8), p[2] = (unsigned char)(n >> 16), p[3] = 0;
		p += 4;
		for (uint32_t i = 0; i < n; i++) {
			p[0] = VLEN, p[1] = 0;
			memcpy(p + 2, vals + (size_t)i * VLEN, VLEN);
			p += 2 + VLEN;
		}
	}
	memcpy(p, "\1\0\0\0", 4);
	p += 4;
	memset(p, 0x42, 16);
	p += 16;
	memset(p, 0, 2 * (size_t)fields); /* code 0 everywhere */
	p += 2 * (size_t)fields;
	*len = (size_t)(p - buf);
	return buf;
}

/* CPU seconds for one decode; -1 if it fails or gets the values wrong. */
static double decode_once(const unsigned char *buf, size_t len, const char *vals, uint32_t n, uint32_t fields)
{
	struct wire_tokens t;
	char err[200] = "";
	double t0 = cpu_now(), dt;
	int rc = wire_decode(buf, len, &t, err, sizeof(err));

	dt = cpu_now() - t0;
	if (rc != 0) {
		fprintf(stderr, "bench_wire: decode failed: %s\n", err);
		return -1;
	}
	for (uint32_t f = 0; f < fields; f++)
		for (uint32_t i = 0; i < n; i++)
			if (strlen(t.fields[f].values[i]) != VLEN ||
			    memcmp(t.fields[f].values[i], vals + (size_t)i * VLEN, VLEN) != 0) {
				fprintf(stderr, "bench_wire: value %u of field %u differs\n", i, f);
				wire_tokens_free(&t);
				return -1;
			}
	wire_tokens_free(&t);
	return dt;
}

static int dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 65535;
	int rounds = argc > 2 ? atoi(argv[2]) : 5;
	uint32_t window = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 64;
	uint32_t fields = argc > 4 ? (uint32_t)strtoul(argv[4], NULL, 10) : 1;
	uint32_t mask;
	char *coll, *ord;
	unsigned char *bc, *bo;
	size_t lc, lo;
	double *tc, *to, *ratio, t0;
	uint64_t tried;

	if (n < 1 || n > 65535 || rounds < 1 || window < 1 || fields < 1 || fields > WIRE_MAX_FIELDS) {
		fprintf(stderr, "usage: bench_wire [NVALUES 1..65535] [ROUNDS] [WINDOW] [FIELDS 1..8]\n");
		return 2;
	}
	mask = old_mask(n);
	coll = malloc((size_t)n * VLEN);
	ord = malloc((size_t)n * VLEN);
	tc = calloc((size_t)rounds, sizeof(*tc));
	to = calloc((size_t)rounds, sizeof(*to));
	ratio = calloc((size_t)rounds, sizeof(*ratio));
	if (!coll || !ord || !tc || !to || !ratio)
		return 1;
	t0 = cpu_now();
	tried = make_values(coll, n, mask, window);
	if (!tried || !make_values(ord, n, mask, 0)) {
		fprintf(stderr, "bench_wire: could not generate %u values\n", n);
		return 1;
	}
	printf("wire: %u values of %d bytes x %u field(s); colliding = old FNV-1a slot in a window of %u of "
	       "%u slots (%llu candidates, %.1f s to find)\n",
	       n, VLEN, fields, window, mask + 1, (unsigned long long)tried, cpu_now() - t0);
	if (!(bc = plaintext(coll, n, fields, &lc)) || !(bo = plaintext(ord, n, fields, &lo)))
		return 1;
	/* rounds alternate which kind goes first */
	for (int r = 0; r < rounds; r++) {
		if (r & 1) {
			to[r] = decode_once(bo, lo, ord, n, fields);
			tc[r] = decode_once(bc, lc, coll, n, fields);
		} else {
			tc[r] = decode_once(bc, lc, coll, n, fields);
			to[r] = decode_once(bo, lo, ord, n, fields);
		}
		if (tc[r] < 0 || to[r] < 0)
			return 1;
		ratio[r] = tc[r] / (to[r] > 1e-9 ? to[r] : 1e-9);
	}
	qsort(tc, (size_t)rounds, sizeof(*tc), dcmp);
	qsort(to, (size_t)rounds, sizeof(*to), dcmp);
	qsort(ratio, (size_t)rounds, sizeof(*ratio), dcmp);
	printf("  decode, median of %d: colliding %.4f s, ordinary %.4f s, ratio %.2f (%s: under %.0f)\n",
	       rounds, tc[rounds / 2], to[rounds / 2], ratio[rounds / 2],
	       ratio[rounds / 2] < RATIO_OK ? "PASS" : "MISS", RATIO_OK);
	free(coll);
	free(ord);
	free(bc);
	free(bo);
	free(tc);
	free(to);
	free(ratio);
	return 0;
}
