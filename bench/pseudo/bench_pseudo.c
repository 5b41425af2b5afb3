/*
 * Pseudonyms per second per core, same run, same BSNs, same key:
 *   batch      pseudo_tokens() over chunks of CHUNK records (AVX2 when the CPU
 *              has it: this is how the node pseudonymises a dataset)
 *   single     pseudo_token() per record, through a function pointer
 *   bare       crypto_generichash(out, 32, digits, 9, key, 32) per record
 *   scalar     pseudo_tokens() with the AVX2 path switched off (reference)
 *   unkeyed    crypto_generichash of the same 9 bytes without a key: one
 *              libsodium compression, not a pseudonym (reference)
 * Single thread, CPU time of this thread; rounds rotate which loop goes
 * first; medians are reported, ratios are medians of per-round ratios. Every
 * token is folded into a checksum; the four pseudonym loops must agree or
 * the run exits 1. Otherwise the exit status is 0, target met or not.
 */
#include "../../crypto/pseudo.c"
#include "../../crypto/blake2b_batch.c"

#include <stdlib.h>
#include <time.h>

#define TARGET_PER_SEC 5e6
#define CHUNK 4096 /* records per pseudo_tokens call: 128 KiB of tokens */

/* Called through volatile pointers: the node calls these from another
 * translation unit, so the benchmark must not inline them either. */
static void (*volatile token_fn)(const struct pseudo_key *, uint32_t, unsigned char *) = pseudo_token;
static void (*volatile tokens_fn)(const struct pseudo_key *, const uint32_t *, size_t,
				  unsigned char (*)[PSEUDO_TOKEN_BYTES]) = pseudo_tokens;

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Folds a token into the checksum so no call can be optimised away. */
static inline uint64_t fold(uint64_t acc, const unsigned char t[32])
{
	uint64_t w;

	memcpy(&w, t, 8);
	return (acc ^ w) * 0x100000001b3ULL + t[31];
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

enum { L_BATCH, L_SINGLE, L_BARE, L_AVX2, L_SCALAR, L_UNKEYED, NLOOPS };
static const char *const loop_name[NLOOPS] = { "batch", "single", "bare", "avx2", "scalar", "unkeyed" };

/* One pass of loop |kind| over all n records; returns the checksum. */
static uint64_t run_loop(int kind, const struct pseudo_key *k, const uint32_t *bsn,
			 const unsigned char *digits, size_t n, unsigned char (*buf)[32])
{
	unsigned char out[32];
	uint64_t acc = 0;

	switch (kind) {
	case L_BATCH:
	case L_AVX2:
	case L_SCALAR:
		/* batch: the widest path the CPU has; avx2 and scalar: capped */
		b2b_limit = kind == L_SCALAR ? B2B_SCALAR : kind == L_AVX2 ? B2B_AVX2 : B2B_AVX512;
		for (size_t i = 0; i < n; i += CHUNK) {
			size_t c = n - i < CHUNK ? n - i : CHUNK;

			tokens_fn(k, bsn + i, c, buf);
			for (size_t j = 0; j < c; j++)
				acc = fold(acc, buf[j]);
		}
		b2b_limit = B2B_AVX512;
		break;
	case L_SINGLE:
		for (size_t i = 0; i < n; i++) {
			token_fn(k, bsn[i], out);
			acc = fold(acc, out);
		}
		break;
	case L_BARE:
		for (size_t i = 0; i < n; i++) {
			crypto_generichash(out, 32, digits + i * 9, 9, k->key, 32);
			acc = fold(acc, out);
		}
		break;
	default:
		for (size_t i = 0; i < n; i++) {
			crypto_generichash(out, 32, digits + i * 9, 9, NULL, 0);
			acc = fold(acc, out);
		}
	}
	return acc;
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 5000000;
	int rounds = argc > 2 ? atoi(argv[2]) : 5;
	uint32_t *bsn;
	unsigned char *digits, raw[32], (*buf)[32];
	struct pseudo_master *m = NULL;
	struct pseudo_key *k = NULL;
	double *rate[NLOOPS], *rb_ratio, *rs_ratio, med[NLOOPS];
	uint64_t seed = 20240601, sum[NLOOPS] = { 0 };
	int mismatch = 0;

	if (n == 0 || rounds < 1 || sodium_init() < 0)
		return 2;
	bsn = malloc(n * sizeof(*bsn));
	digits = malloc(n * 9);
	buf = malloc(CHUNK * sizeof(*buf));
	rb_ratio = calloc((size_t)rounds, sizeof(double));
	rs_ratio = calloc((size_t)rounds, sizeof(double));
	if (!bsn || !digits || !buf || !rb_ratio || !rs_ratio)
		return 2;
	for (int l = 0; l < NLOOPS; l++)
		if (!(rate[l] = calloc((size_t)rounds, sizeof(double))))
			return 2;

	/* n valid BSNs: 8 random digits and the check digit that makes the
	 * elfproef hold (draws whose check digit would be 10 are redrawn). */
	for (size_t i = 0; i < n;) {
		uint32_t head = (uint32_t)(splitmix(&seed) % 100000000u), v = head, c;
		int s = 0;

		for (int w = 2; w <= 9; w++, v /= 10)
			s += w * (int)(v % 10);
		c = (uint32_t)(s % 11);
		if (c == 10 || (head == 0 && c == 0))
			continue;
		bsn[i] = head * 10 + c;
		{
			char d[10];
			uint32_t chk;

			bsn_format(bsn[i], d);
			if (bsn_parse(d, 9, &chk) != BSN_OK || chk != bsn[i])
				return 3;
			memcpy(digits + i * 9, d, 9);
		}
		i++;
	}

	for (int i = 0; i < 32; i++)
		raw[i] = (unsigned char)(i * 7 + 1);
	if (master_from_bytes(raw, &m) != 0 || pseudo_key_purpose(m, "bench", &k) != 0)
		return 2;

	printf("pseudo bench: %zu valid BSNs, %d rounds, libsodium %s, batch path %s (chunks of %d), "
	       "single thread, CPU time\n",
	       n, rounds, sodium_version_string(), pseudo_b2b_impl(), CHUNK);
	for (int r = 0; r < rounds; r++) {
		for (int pass = 0; pass < NLOOPS; pass++) {
			int kind = (r + pass) % NLOOPS; /* rotate which loop goes first */
			double t0 = cpu_now(), dt;
			uint64_t acc = run_loop(kind, k, bsn, digits, n, buf);

			dt = cpu_now() - t0;
			rate[kind][r] = (double)n / dt;
			sum[kind] = acc;
		}
		if (sum[L_BATCH] != sum[L_BARE] || sum[L_SINGLE] != sum[L_BARE] || sum[L_SCALAR] != sum[L_BARE] ||
		    sum[L_AVX2] != sum[L_BARE])
			mismatch = 1;
		rb_ratio[r] = rate[L_BATCH][r] / rate[L_BARE][r];
		rs_ratio[r] = rate[L_SINGLE][r] / rate[L_BARE][r];
		printf("round %d: batch %6.3f  single %6.3f  bare %6.3f  avx2 %6.3f  scalar %6.3f  unkeyed %6.3f M/s   "
		       "batch/bare %.2f   checksums %016llx %016llx %016llx %016llx %s\n",
		       r + 1, rate[L_BATCH][r] / 1e6, rate[L_SINGLE][r] / 1e6, rate[L_BARE][r] / 1e6,
		       rate[L_AVX2][r] / 1e6, rate[L_SCALAR][r] / 1e6, rate[L_UNKEYED][r] / 1e6, rb_ratio[r],
		       (unsigned long long)sum[L_BATCH], (unsigned long long)sum[L_SINGLE],
		       (unsigned long long)sum[L_BARE], (unsigned long long)sum[L_SCALAR],
		       mismatch ? "DIFFER" : "agree");
	}
	for (int l = 0; l < NLOOPS; l++)
		med[l] = median(rate[l], rounds);
	printf("median M/s (ns each):");
	for (int l = 0; l < NLOOPS; l++)
		printf("  %s %.3f (%.1f)", loop_name[l], med[l] / 1e6, 1e9 / med[l]);
	printf("\n");
	printf("ratio (median of rounds): pseudo_tokens / bare keyed crypto_generichash %.2f   "
	       "pseudo_token / bare %.2f\n",
	       median(rb_ratio, rounds), median(rs_ratio, rounds));
	printf("target: >= %.1f M pseudonyms/s per core: pseudo_tokens %s (%.3f M/s)   pseudo_token %s (%.3f M/s)\n",
	       TARGET_PER_SEC / 1e6, med[L_BATCH] >= TARGET_PER_SEC ? "PASS" : "MISS", med[L_BATCH] / 1e6,
	       med[L_SINGLE] >= TARGET_PER_SEC ? "PASS" : "MISS", med[L_SINGLE] / 1e6);
	if (mismatch)
		printf("ERROR: the pseudonym loops computed different tokens (checksums differ)\n");
	pseudo_key_free(k);
	pseudo_master_free(m);
	for (int l = 0; l < NLOOPS; l++)
		free(rate[l]);
	free(rs_ratio);
	free(rb_ratio);
	free(buf);
	free(digits);
	free(bsn);
	return mismatch ? 1 : 0;
}
