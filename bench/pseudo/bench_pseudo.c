/*
 * Pseudonyms per second per core: pseudo_token() against a bare
 * crypto_generichash(out, 32, digits, 9, key, 32) loop over the same BSNs
 * with the same key, in the same run. Single thread, CPU time of this
 * thread; rounds rotate which loop goes first; medians are reported. A third
 * loop, unkeyed crypto_generichash of the same 9 bytes, is a reference only:
 * it costs one BLAKE2b compression, a keyed hash of 9 bytes costs two (the
 * key block, then the data block), which is what bounds the pseudonym rate.
 * Not a test: the exit status is 0 whether the target is met or not.
 */
#include "../../crypto/pseudo.c"

#include <stdlib.h>
#include <time.h>

#define TARGET_PER_SEC 5e6

/* Called through a volatile pointer: the gateway calls pseudo_token from
 * another translation unit, so the benchmark must not inline it either. */
static void (*volatile token_fn)(const struct pseudo_key *, uint32_t, unsigned char *) = pseudo_token;

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

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000000;
	int rounds = argc > 2 ? atoi(argv[2]) : 5;
	uint32_t *bsn;
	unsigned char *digits, raw[32];
	struct pseudo_master *m = NULL;
	struct pseudo_key *k = NULL;
	double *rp, *rb, *ru, *ratio;
	uint64_t seed = 20240601, sum_p = 0, sum_b = 0, sum_u = 0;
	int mismatch = 0;

	if (n == 0 || rounds < 1 || sodium_init() < 0)
		return 2;
	bsn = malloc(n * sizeof(*bsn));
	digits = malloc(n * 9);
	rp = calloc((size_t)rounds, sizeof(double));
	rb = calloc((size_t)rounds, sizeof(double));
	ru = calloc((size_t)rounds, sizeof(double));
	ratio = calloc((size_t)rounds, sizeof(double));
	if (!bsn || !digits || !rp || !rb || !ru || !ratio)
		return 2;

	/* n valid BSNs: 8 random digits and the check digit that makes the
	 * elfproef hold (draws whose check digit would be 10 are redrawn). */
	for (size_t i = 0; i < n;) {
		uint32_t head = (uint32_t)(splitmix(&seed) % 100000000u), v = head, c;
		int sum = 0;

		for (int w = 2; w <= 9; w++, v /= 10)
			sum += w * (int)(v % 10);
		c = (uint32_t)(sum % 11);
		if (c == 10 || (head == 0 && c == 0))
			continue;
		bsn[i] = head * 10 + c;
		{
			char s[10];
			uint32_t chk;

			bsn_format(bsn[i], s);
			if (bsn_parse(s, 9, &chk) != BSN_OK || chk != bsn[i])
				return 3;
			memcpy(digits + i * 9, s, 9);
		}
		i++;
	}

	for (int i = 0; i < 32; i++)
		raw[i] = (unsigned char)(i * 7 + 1);
	if (master_from_bytes(raw, &m) != 0 || pseudo_key_purpose(m, "bench", &k) != 0)
		return 2;

	printf("pseudo bench: %zu valid BSNs, %d rounds, libsodium %s, single thread, CPU time\n",
	       n, rounds, sodium_version_string());
	for (int r = 0; r < rounds; r++) {
		for (int pass = 0; pass < 3; pass++) {
			int kind = (r + pass) % 3; /* rotate which loop goes first */
			unsigned char out[32];
			uint64_t acc = 0;
			double t0, dt;

			t0 = cpu_now();
			if (kind == 0) {
				for (size_t i = 0; i < n; i++) {
					token_fn(k, bsn[i], out);
					acc = fold(acc, out);
				}
			} else if (kind == 1) {
				for (size_t i = 0; i < n; i++) {
					crypto_generichash(out, 32, digits + i * 9, 9, k->key, 32);
					acc = fold(acc, out);
				}
			} else {
				for (size_t i = 0; i < n; i++) {
					crypto_generichash(out, 32, digits + i * 9, 9, NULL, 0);
					acc = fold(acc, out);
				}
			}
			dt = cpu_now() - t0;
			if (kind == 0)
				rp[r] = (double)n / dt, sum_p = acc;
			else if (kind == 1)
				rb[r] = (double)n / dt, sum_b = acc;
			else
				ru[r] = (double)n / dt, sum_u = acc;
		}
		if (sum_p != sum_b)
			mismatch = 1;
		printf("round %d: pseudo_token %6.3f M/s   bare keyed %6.3f M/s   ratio %.3f   "
		       "(unkeyed %6.3f M/s)   checksums %016llx %s %016llx\n",
		       r + 1, rp[r] / 1e6, rb[r] / 1e6, rp[r] / rb[r], ru[r] / 1e6,
		       (unsigned long long)sum_p, sum_p == sum_b ? "==" : "!=", (unsigned long long)sum_u);
	}
	{
		double mr, mp, mb, mu;

		/* the ratio is the median of the per-round ratios: each pair ran
		 * back to back, so it is less exposed to other load than mp / mb */
		for (int r = 0; r < rounds; r++)
			ratio[r] = rp[r] / rb[r];
		mr = median(ratio, rounds);
		mp = median(rp, rounds);
		mb = median(rb, rounds);
		mu = median(ru, rounds);
		printf("median: pseudo_token %.3f M/s (%.1f ns each)   bare keyed crypto_generichash "
		       "%.3f M/s (%.1f ns each)   ratio %.3f (median of rounds)\n",
		       mp / 1e6, 1e9 / mp, mb / 1e6, 1e9 / mb, mr);
		printf("reference: unkeyed crypto_generichash of the same 9 bytes (one BLAKE2b "
		       "compression; not a pseudonym) %.3f M/s (%.1f ns each)\n",
		       mu / 1e6, 1e9 / mu);
		printf("target: >= %.1f M pseudonyms/s per core: %s (%.3f M/s)\n", TARGET_PER_SEC / 1e6,
		       mp >= TARGET_PER_SEC ? "PASS" : "MISS", mp / 1e6);
	}
	if (mismatch)
		printf("ERROR: pseudo_token and the bare loop disagree\n");
	pseudo_key_free(k);
	pseudo_master_free(m);
	free(ratio);
	free(ru);
	free(rb);
	free(rp);
	free(digits);
	free(bsn);
	return mismatch ? 1 : 0;
}
