/*
 * Unit tests for the one-compression token path (crypto/blake2b_batch.c):
 * pseudo_tokens == pseudo_token == crypto_generichash(out, 32, digits, 9,
 * key, 32) for 100k random valid BSNs, every batch size around the 4-way
 * tail, several keys, on the AVX2 path and on the forced scalar path.
 */
#define CHECK_FILE "test_pseudo_batch"
#include "check.h"

#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>

#include <sodium.h>

#include "../../crypto/pseudo.c"
#include "../../crypto/blake2b_batch.c"

#define NBSN 100000

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A valid BSN: 8 random digits and the check digit the elfproef needs. */
static uint32_t random_bsn(uint64_t *seed)
{
	for (;;) {
		uint32_t head = (uint32_t)(splitmix(seed) % 100000000u), v = head, c;
		int sum = 0;

		for (int w = 2; w <= 9; w++, v /= 10)
			sum += w * (int)(v % 10);
		c = (uint32_t)(sum % 11);
		if (c != 10 && !(head == 0 && c == 0))
			return head * 10 + c;
	}
}

/* The reference: libsodium's keyed BLAKE2b over the formatted digits. */
static void reference(const struct pseudo_key *k, uint32_t bsn, unsigned char out[32])
{
	char d[10];

	bsn_format(bsn, d);
	CHECK(crypto_generichash(out, 32, (const unsigned char *)d, 9, k->key, 32) == 0);
}

/* The paths this CPU can run, narrowest first: scalar always, then AVX2
 * and AVX-512F where the CPU has them. Each is compared with libsodium. */
static const enum b2b_path all_paths[] = { B2B_SCALAR, B2B_AVX2, B2B_AVX512 };
static const char *const path_name[] = { "scalar", "avx2", "avx512" };

static int have_path(enum b2b_path p)
{
	switch (p) {
#ifdef B2B_HAVE_AVX512
	case B2B_AVX512:
		return __builtin_cpu_supports("avx512f");
#endif
#ifdef B2B_HAVE_AVX2
	case B2B_AVX2:
		return __builtin_cpu_supports("avx2");
#endif
	case B2B_SCALAR:
		return 1;
	default:
		return 0;
	}
}

static int npaths(void)
{
	int n = 0;

	while (n < 3 && have_path(all_paths[n]))
		n++;
	return n;
}

static void set_path(int p)
{
	b2b_limit = all_paths[p];
	CHECK_STR(pseudo_b2b_impl(), path_name[p]);
}

static void reset_path(void)
{
	b2b_limit = B2B_AVX512;
}

/* ---- digits --------------------------------------------------------------- */

static int words_match(uint32_t bsn)
{
	char d[10];
	unsigned char w[16] = { 0 };
	uint64_t w0, w1;

	bsn_format(bsn, d);
	bsn_words(bsn, &w0, &w1);
	for (int i = 0; i < 8; i++) {
		w[i] = (unsigned char)(w0 >> (8 * i));
		w[8 + i] = (unsigned char)(w1 >> (8 * i));
	}
	return memcmp(w, d, 9) == 0 && w1 >> 8 == 0;
}

/* The division-free digit split equals bsn_format, including the lane
 * boundaries (9999/10000 in each half, 99/100 in each pair) and values
 * above 999999999 (reduced modulo 10^9, as documented). */
static void digits_as_words(void)
{
	static const uint32_t edge[] = { 0, 1, 9, 10, 99, 100, 999, 1000, 9999, 10000, 99999, 100000,
					 999999, 1000000, 9999999, 10000000, 99999999, 100000000,
					 99990000, 99999990, 999999999, 1000000000, 1000000001,
					 1999999999, 4294967295u, 12345672, 111222333, 123456782,
					 909090909, 90909090 };
	uint64_t seed = 7;
	long bad = 0;

	for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); i++)
		if (!words_match(edge[i])) {
			printf("#   digits of %u\n", (unsigned)edge[i]);
			bad++;
		}
	for (uint64_t v = 0; v <= 4294967295u; v += 4099)
		bad += !words_match((uint32_t)v);
	for (int i = 0; i < 200000; i++)
		bad += !words_match((uint32_t)splitmix(&seed));
	/* every value of a 4-digit half and of the check digit */
	for (uint32_t v = 0; v < 100000; v++)
		bad += !words_match(v * 10000 + 1234) + !words_match(12340000 + v);
	CHECK(bad == 0);
}

/* ---- equivalence ---------------------------------------------------------- */

/* Keys: the four kinds under the fixed master, and two under random masters. */
#define NKEYS 6
static int make_keys(struct pseudo_master *ms[2], struct pseudo_key *ks[NKEYS])
{
	static const unsigned char qid[16] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
	unsigned char raw[32];
	int ok = 1;

	for (int i = 0; i < 32; i++)
		raw[i] = (unsigned char)i;
	ok &= master_from_bytes(raw, &ms[0]) == 0;
	randombytes_buf(raw, sizeof(raw));
	ok &= master_from_bytes(raw, &ms[1]) == 0;
	sodium_memzero(raw, sizeof(raw));
	if (!ok)
		return 0;
	ok &= pseudo_key_purpose(ms[0], "arbeidsmarktanalyse", &ks[0]) == 0;
	ok &= pseudo_key_recipient(ms[0], "arbeidsmarktanalyse", "00000001001589623000", &ks[1]) == 0;
	ok &= ks[0] && pseudo_key_query(ks[0], qid, &ks[2]) == 0;
	ok &= pseudo_key_audit(ms[0], &ks[3]) == 0;
	ok &= pseudo_key_purpose(ms[1], "evaluatie-jtf", &ks[4]) == 0;
	ok &= pseudo_key_recipient(ms[1], "p", "r", &ks[5]) == 0;
	return ok;
}

static void free_keys(struct pseudo_master *ms[2], struct pseudo_key *ks[NKEYS])
{
	for (int i = NKEYS - 1; i >= 0; i--)
		pseudo_key_free(ks[i]);
	pseudo_master_free(ms[1]);
	pseudo_master_free(ms[0]);
}

/*
 * 100k random valid BSNs per key, hashed by libsodium once; then, per path,
 * pseudo_token for each and pseudo_tokens over consecutive slices whose
 * sizes cycle through 0-5,7,8,9,15-17,1000 (each slice in a buffer of
 * exactly its size, so ASan catches a tail that writes too far).
 */
static void batch_equals_single_equals_libsodium(void)
{
	static const size_t sizes[] = { 0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 1000 };
	struct pseudo_master *ms[2] = { NULL, NULL };
	struct pseudo_key *ks[NKEYS] = { NULL };
	uint32_t *bsn = malloc(NBSN * sizeof(*bsn));
	unsigned char (*ref)[32] = malloc(NBSN * sizeof(*ref));
	uint64_t seed = 20240601;
	long bad_single = 0, bad_batch = 0, calls = 0;

	if (!bsn || !ref || !make_keys(ms, ks)) {
		CHECK(!"setup");
		goto out;
	}
	for (size_t i = 0; i < NBSN; i++)
		bsn[i] = random_bsn(&seed);
	for (int k = 0; k < NKEYS; k++) {
		for (size_t i = 0; i < NBSN; i++)
			reference(ks[k], bsn[i], ref[i]);
		for (int p = 0; p < npaths(); p++) {
			size_t at = 0, s = 0;

			set_path(p);
			for (size_t i = 0; i < NBSN; i++) {
				unsigned char t[32];

				pseudo_token(ks[k], bsn[i], t);
				bad_single += memcmp(t, ref[i], 32) != 0;
			}
			while (at < NBSN) {
				size_t n = sizes[s++ % (sizeof(sizes) / sizeof(sizes[0]))];
				unsigned char (*o)[32];

				if (n > NBSN - at)
					n = NBSN - at;
				o = malloc(n ? n * sizeof(*o) : 1);
				if (!o) {
					CHECK(!"malloc");
					break;
				}
				pseudo_tokens(ks[k], bsn + at, n, o);
				calls++;
				for (size_t j = 0; j < n; j++)
					bad_batch += memcmp(o[j], ref[at + j], 32) != 0;
				free(o);
				at += n;
			}
		}
	}
	reset_path();
	printf("# %d keys x %d BSNs, paths: scalar%s%s, %ld pseudo_tokens calls\n", NKEYS, NBSN,
	       npaths() > 1 ? " + avx2" : " (no avx2 on this CPU)",
	       npaths() > 2 ? " + avx512" : " (no avx512f on this CPU)", calls);
	CHECK(bad_single == 0);
	CHECK(bad_batch == 0);
out:
	free_keys(ms, ks);
	free(ref);
	free(bsn);
}

/* Every batch size 0..67 from every start offset 0..4: whatever the tail,
 * each token lands in its own slot and nothing beyond |n| is written. */
static void batch_sizes_and_offsets(void)
{
	struct pseudo_master *ms[2] = { NULL, NULL };
	struct pseudo_key *ks[NKEYS] = { NULL };
	uint32_t b[72];
	unsigned char ref[72][32], o[72 + 1][32];
	uint64_t seed = 99;
	long bad = 0;

	if (!make_keys(ms, ks)) {
		CHECK(!"setup");
		goto out;
	}
	for (size_t i = 0; i < 72; i++)
		b[i] = random_bsn(&seed);
	for (size_t i = 0; i < 72; i++)
		reference(ks[4], b[i], ref[i]);
	for (int p = 0; p < npaths(); p++) {
		set_path(p);
		for (size_t off = 0; off <= 4; off++)
			for (size_t n = 0; n + off <= 67; n++) {
				memset(o, 0xa5, sizeof(o));
				pseudo_tokens(ks[4], b + off, n, o);
				for (size_t j = 0; j < n; j++)
					bad += memcmp(o[j], ref[off + j], 32) != 0;
				for (size_t j = n; j < 73; j++)
					for (size_t c = 0; c < 32; c++)
						bad += o[j][c] != 0xa5;
			}
		/* n == 0 reads and writes nothing: NULL pointers are fine */
		pseudo_tokens(ks[4], NULL, 0, NULL);
		/* an output array at an odd address */
		{
			unsigned char raw[5 * 32 + 1];
			unsigned char (*odd)[32] = (unsigned char (*)[32])(raw + 1);

			pseudo_tokens(ks[4], b, 5, odd);
			for (size_t j = 0; j < 5; j++)
				bad += memcmp(odd[j], ref[j], 32) != 0;
		}
	}
	reset_path();
	CHECK(bad == 0);
out:
	free_keys(ms, ks);
}

/* Numbers that are not valid BSNs and values above 999999999 hash as the
 * documented digits (bsn % 10^9) on every path. */
static void any_uint32(void)
{
	struct pseudo_master *ms[2] = { NULL, NULL };
	struct pseudo_key *ks[NKEYS] = { NULL };
	uint32_t b[64];
	unsigned char ref[64][32], o[64][32], t[32];
	uint64_t seed = 3;
	long bad = 0;

	if (!make_keys(ms, ks)) {
		CHECK(!"setup");
		goto out;
	}
	b[0] = 0;
	b[1] = 999999999;
	b[2] = 1000000000;
	b[3] = 4294967295u;
	for (size_t i = 4; i < 64; i++)
		b[i] = (uint32_t)splitmix(&seed);
	for (size_t i = 0; i < 64; i++)
		reference(ks[1], b[i], ref[i]);
	for (int p = 0; p < npaths(); p++) {
		set_path(p);
		pseudo_tokens(ks[1], b, 64, o);
		for (size_t i = 0; i < 64; i++) {
			pseudo_token(ks[1], b[i], t);
			bad += memcmp(o[i], ref[i], 32) != 0;
			bad += memcmp(t, ref[i], 32) != 0;
		}
	}
	reset_path();
	CHECK(bad == 0);
out:
	free_keys(ms, ks);
}

/* The pinned vectors of test_pseudo.c (purpose and audit keys), through the
 * batch API on every path. */
static void fixed_vectors_batch(void)
{
	static const char *const want[2][2] = {
		{ "e9776eff91e370fdfb1279e47022d2ce9e1a5de5bdc75d878a6f7568e1166192",
		  "a2a133cfff763c696e1529b23c4a429db798cedd3f43cb575759f56a519797b8" },
		{ "5607d573ec63eb00587f0911c8daaf51d2f7b586225875b73ca7677195ef26ed",
		  "5baa1f5ed02bf1f2b9612664ae0f0241d499a247ea58dfbf76aed60da4419b91" },
	};
	struct pseudo_master *ms[2] = { NULL, NULL };
	struct pseudo_key *ks[NKEYS] = { NULL };
	const uint32_t b[2] = { 111222333, 123456782 };
	unsigned char o[2][32];
	char hex[65];

	if (!make_keys(ms, ks)) {
		CHECK(!"setup");
		goto out;
	}
	for (int p = 0; p < npaths(); p++) {
		set_path(p);
		for (int w = 0; w < 2; w++) {
			pseudo_tokens(ks[w == 0 ? 0 : 3], b, 2, o);
			for (int j = 0; j < 2; j++) {
				pseudo_hex(o[j], 32, hex);
				CHECK_STR(hex, want[w][j]);
			}
		}
	}
	reset_path();
out:
	free_keys(ms, ks);
}

/* ---- the chaining value is key material ----------------------------------- */

/* It is computed from the key alone, lives inside the key's sodium_malloc
 * block (wiped by pseudo_key_free with the key) and is read-only there. */
static void chaining_value_is_key_material(void)
{
	struct pseudo_master *ms[2] = { NULL, NULL };
	struct pseudo_key *ks[NKEYS] = { NULL };
	uint64_t cv[8];
	int status = 0;
	pid_t pid;

	if (!make_keys(ms, ks)) {
		CHECK(!"setup");
		goto out;
	}
	pseudo_b2b_key_cv(ks[0]->key, cv);
	CHECK(memcmp(cv, ks[0]->cv, sizeof(cv)) == 0);
	pseudo_b2b_key_cv(ks[4]->key, cv);
	CHECK(memcmp(cv, ks[0]->cv, sizeof(cv)) != 0);
	CHECK((const char *)ks[0]->cv >= (const char *)ks[0] &&
	      (const char *)(ks[0]->cv + 8) <= (const char *)(ks[0] + 1));
	sodium_memzero(cv, sizeof(cv));
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		((volatile uint64_t *)ks[0]->cv)[0] = 1;
		_exit(0);
	}
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status) && (WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS));
out:
	free_keys(ms, ks);
}

int main(void)
{
	if (sodium_init() < 0) {
		printf("not ok - test_pseudo_batch: setup\n");
		return 1;
	}
	RUN(digits_as_words);
	RUN(batch_equals_single_equals_libsodium);
	RUN(batch_sizes_and_offsets);
	RUN(any_uint32);
	RUN(fixed_vectors_batch);
	RUN(chaining_value_is_key_material);
	return check_total_failed ? 1 : 0;
}
