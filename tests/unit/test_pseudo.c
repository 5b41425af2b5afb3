/*
 * Unit tests for crypto/: the elfproef, key derivation (pinned vectors and an
 * independent recomputation from the hierarchy in pseudo.h), unlinkability,
 * key files, the keygen CLI, and every allocation failing in turn.
 */
#define CHECK_FILE "test_pseudo"
#include "check.h"

#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <sodium.h>

/*
 * Allocation hook: sodium_malloc in the code under test (and here) goes
 * through this, so a test can make the Nth allocation fail and check that
 * every block is released again.
 */
static long alloc_fail_at = -1; /* fail the allocation with this index; -1: never */
static long alloc_count;        /* allocations attempted since the last reset */
static long alloc_live;         /* blocks handed out and not yet freed */

static void *hook_sodium_malloc(size_t n)
{
	void *p;

	if (alloc_fail_at >= 0 && alloc_count++ == alloc_fail_at)
		return NULL;
	p = sodium_malloc(n);
	if (p)
		alloc_live++;
	return p;
}

static void hook_sodium_free(void *p)
{
	if (p)
		alloc_live--;
	sodium_free(p);
}

#define sodium_malloc(n) hook_sodium_malloc(n)
#define sodium_free(p) hook_sodium_free(p)

#include "../../crypto/pseudo.c"
#include "../../cli/cli.h"
#include "../../cli/keygen_cli.c"
/* Included too, so that the key file's buffer counts among the hooked
 * allocations (the archive's copy is then not linked). */
#include "../../common/keyfile.c"

static char dir[] = "/tmp/np-pseudo-XXXXXX";

static const unsigned char qid_a[16] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
static const unsigned char qid_b[16] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16 };

/* The fixed master key of the vectors: bytes 0x00..0x1f. */
static struct pseudo_master *fixed_master(void)
{
	unsigned char raw[32];
	struct pseudo_master *m = NULL;

	for (int i = 0; i < 32; i++)
		raw[i] = (unsigned char)i;
	CHECK(master_from_bytes(raw, &m) == 0);
	return m;
}

static void token_hex(const struct pseudo_key *k, uint32_t bsn, char hex[65])
{
	unsigned char t[PSEUDO_TOKEN_BYTES];

	pseudo_token(k, bsn, t);
	pseudo_hex(t, sizeof(t), hex);
}

static int same_token(const struct pseudo_key *a, const struct pseudo_key *b, uint32_t bsn)
{
	unsigned char ta[PSEUDO_TOKEN_BYTES], tb[PSEUDO_TOKEN_BYTES];

	pseudo_token(a, bsn, ta);
	pseudo_token(b, bsn, tb);
	return sodium_memcmp(ta, tb, sizeof(ta)) == 0;
}

/* ---- elfproef ----------------------------------------------------------- */

static int parse(const char *s, uint32_t *v)
{
	return bsn_parse(s, strlen(s), v);
}

static void bsn_valid(void)
{
	uint32_t v = 0;

	CHECK(parse("111222333", &v) == BSN_OK && v == 111222333);
	CHECK(parse("123456782", &v) == BSN_OK && v == 123456782);
	CHECK(parse("012345672", &v) == BSN_OK && v == 12345672);
	/* 8 digits are left-padded with one 0: the same number as the 9-digit form */
	v = 0;
	CHECK(parse("12345672", &v) == BSN_OK && v == 12345672);
	CHECK(parse("10000008", &v) == BSN_OK && v == 10000008);
	/* the last digit weighs -1: 999999990 sums to 396 = 36 * 11 */
	CHECK(parse("999999990", &v) == BSN_OK && v == 999999990);
}

static void bsn_errors(void)
{
	uint32_t v = 7;

	CHECK(bsn_parse("", 0, &v) == BSN_EMPTY);
	CHECK(bsn_parse(NULL, 0, &v) == BSN_EMPTY);
	CHECK(parse("11122233a", &v) == BSN_NOT_DIGITS);
	CHECK(parse(" 111222333", &v) == BSN_NOT_DIGITS);
	CHECK(parse("111222333 ", &v) == BSN_NOT_DIGITS);
	CHECK(parse("+11222333", &v) == BSN_NOT_DIGITS);
	CHECK(parse("-11222333", &v) == BSN_NOT_DIGITS);
	CHECK(parse("111-222-333", &v) == BSN_NOT_DIGITS);
	CHECK(bsn_parse("1112\0002333", 9, &v) == BSN_NOT_DIGITS); /* embedded NUL */
	CHECK(bsn_parse("111222333\0", 10, &v) == BSN_NOT_DIGITS); /* a NUL counted in len */
	CHECK(parse("1234567", &v) == BSN_LENGTH);                /* 7: one below 8 */
	CHECK(parse("1112223330", &v) == BSN_LENGTH);             /* 10: one above 9 */
	CHECK(parse("1", &v) == BSN_LENGTH);
	CHECK(parse("000000000", &v) == BSN_ZERO); /* passes the sum, refused anyway */
	CHECK(parse("00000000", &v) == BSN_ZERO);
	CHECK(parse("111222334", &v) == BSN_CHECKSUM);
	CHECK(parse("123456781", &v) == BSN_CHECKSUM);
	CHECK(parse("12345671", &v) == BSN_CHECKSUM);
	CHECK(parse("11222333", &v) == BSN_CHECKSUM); /* = 011222333 */
	CHECK(parse("000000001", &v) == BSN_CHECKSUM); /* sum -1: a negative rest */
	CHECK(v == 7); /* untouched on error */

	CHECK_STR(bsn_error_name(BSN_OK), "ok");
	CHECK_STR(bsn_error_name(BSN_EMPTY), "invalid_bsn_empty");
	CHECK_STR(bsn_error_name(BSN_NOT_DIGITS), "invalid_bsn_not_digits");
	CHECK_STR(bsn_error_name(BSN_LENGTH), "invalid_bsn_length");
	CHECK_STR(bsn_error_name(BSN_ZERO), "invalid_bsn_zero");
	CHECK_STR(bsn_error_name(BSN_CHECKSUM), "invalid_bsn_checksum");
	CHECK_STR(bsn_error_name(-99), "invalid_bsn");
}

/* Two pages, the second one inaccessible; NULL on failure. */
static char *mmap_page_pair(long page)
{
	char *p = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		CHECK(!"mmap");
		return NULL;
	}
	CHECK(mprotect(p + page, (size_t)page, PROT_NONE) == 0);
	return p;
}

/* Input that is not NUL-terminated, ending at an unreadable page: any strlen
 * or read past |len| faults. */
static void bsn_no_strlen(void)
{
	long page = sysconf(_SC_PAGESIZE);
	char *p = mmap_page_pair(page);
	uint32_t v = 0;

	if (!p)
		return;
	memcpy(p + page - 9, "123456782", 9);
	CHECK(bsn_parse(p + page - 9, 9, &v) == BSN_OK && v == 123456782);
	memcpy(p + page - 8, "12345672", 8);
	CHECK(bsn_parse(p + page - 8, 8, &v) == BSN_OK && v == 12345672);
	memcpy(p + page - 3, "12a", 3);
	CHECK(bsn_parse(p + page - 3, 3, &v) == BSN_NOT_DIGITS);
	munmap(p, (size_t)page * 2);
}

static void bsn_format_pads(void)
{
	char out[10];

	bsn_format(12345672, out);
	CHECK_STR(out, "012345672");
	bsn_format(111222333, out);
	CHECK_STR(out, "111222333");
	bsn_format(8, out);
	CHECK_STR(out, "000000008");
}

/* Every 9-digit number whose check digit is computable: parse agrees with a
 * direct computation, for a sample spread over the whole range. */
static void bsn_agrees_with_reference(void)
{
	int bad = 0, valid = 0;

	for (uint32_t n = 1; n < 1000000000u; n += 9973) {
		char s[10];
		uint32_t v;
		long sum = 0;
		int want, got;

		bsn_format(n, s);
		for (int i = 0; i < 8; i++)
			sum += (long)(9 - i) * (s[i] - '0');
		sum -= s[8] - '0';
		want = sum % 11 == 0 ? BSN_OK : BSN_CHECKSUM;
		got = bsn_parse(s, 9, &v);
		if (got != want || (got == BSN_OK && v != n))
			bad++;
		valid += got == BSN_OK;
	}
	CHECK(bad == 0);
	CHECK(valid > 8000 && valid < 10000); /* about 1 in 11 of ~100k */
}

/* ---- derivation ---------------------------------------------------------- */

/*
 * Pinned vectors: master 0x00..0x1f. If one of these changes, every
 * pseudonym in every deployment changes: that needs a new version string in
 * the derivation, not a new vector here.
 */
/* Cross-checked with an independent BLAKE2b (Python's hashlib.blake2b with
 * key, salt and person) following the hierarchy in pseudo.h. */
static const char *const vectors[4][2] = {
	/* purpose "arbeidsmarktanalyse": 111222333, 123456782 */
	{ "e9776eff91e370fdfb1279e47022d2ce9e1a5de5bdc75d878a6f7568e1166192",
	  "a2a133cfff763c696e1529b23c4a429db798cedd3f43cb575759f56a519797b8" },
	/* recipient ("arbeidsmarktanalyse", "00000001001589623000") */
	{ "c60ddfc608c162fb2d6a83869db38a500733a7c2cd3a4ec59e64e1340827eece",
	  "c287bcdf26b637226bcbd8aed85be51772e76c59cad5b8eedf7ec7c7d7fd690a" },
	/* query 00 01 .. 0f under the purpose key */
	{ "d798ee03d67d7334c0f1790fd7d43d7b76a898f021371d624e99d1f13b9ef17d",
	  "e1021bf6edbd067b6c801f5f10c52c46969e87d6fa022a167a3289d74187b0db" },
	/* audit */
	{ "5607d573ec63eb00587f0911c8daaf51d2f7b586225875b73ca7677195ef26ed",
	  "5baa1f5ed02bf1f2b9612664ae0f0241d499a247ea58dfbf76aed60da4419b91" },
};

static void fixed_vectors(void)
{
	struct pseudo_master *m = fixed_master();
	struct pseudo_key *kp = NULL, *kr = NULL, *kq = NULL, *ka = NULL;
	char hex[65];

	if (!m)
		return;
	CHECK(pseudo_key_purpose(m, "arbeidsmarktanalyse", &kp) == 0);
	CHECK(pseudo_key_recipient(m, "arbeidsmarktanalyse", "00000001001589623000", &kr) == 0);
	CHECK(kp && pseudo_key_query(kp, qid_a, &kq) == 0);
	CHECK(pseudo_key_audit(m, &ka) == 0);
	if (kp && kr && kq && ka) {
		const struct pseudo_key *keys[4] = { kp, kr, kq, ka };

		for (int i = 0; i < 4; i++) {
			token_hex(keys[i], 111222333, hex);
			if (getenv("PSEUDO_PRINT_VECTORS"))
				printf("# %d 111222333 %s\n", i, hex);
			CHECK_STR(hex, vectors[i][0]);
			token_hex(keys[i], 123456782, hex);
			if (getenv("PSEUDO_PRINT_VECTORS"))
				printf("# %d 123456782 %s\n", i, hex);
			CHECK_STR(hex, vectors[i][1]);
		}
	}
	pseudo_key_free(ka);
	pseudo_key_free(kq);
	pseudo_key_free(kr);
	pseudo_key_free(kp);
	pseudo_master_free(m);
	CHECK(alloc_live == 0);
}

static void lp(crypto_generichash_blake2b_state *st, const char *s)
{
	unsigned char le[8] = { 0 };
	size_t n = strlen(s);

	for (int i = 0; i < 8; i++)
		le[i] = (unsigned char)((uint64_t)n >> (8 * i));
	crypto_generichash_blake2b_update(st, le, 8);
	crypto_generichash_blake2b_update(st, (const unsigned char *)s, n);
}

static void pers16(unsigned char p[16], const char *s)
{
	memset(p, 0, 16);
	memcpy(p, s, strlen(s));
}

/*
 * The hierarchy as documented in pseudo.h, recomputed with plain libsodium
 * calls, and each token from scratch with crypto_generichash(out, 32, digits,
 * 9, key, 32): proves the one-compression token path equals the plain keyed
 * hash (tests/unit/test_pseudo_batch.c does so for 100k BSNs and both paths).
 */
static void matches_documented_derivation(void)
{
	struct pseudo_master *m = fixed_master();
	struct pseudo_key *kp = NULL, *kr = NULL, *kq = NULL, *ka = NULL;
	unsigned char master[32], rp[32], rr[32], kap[32], krp[32], kqp[32], zero[16] = { 0 }, pers[16];
	crypto_generichash_blake2b_state st;
	uint32_t bsns[] = { 111222333, 123456782, 12345672, 999999990, 10000008 };

	if (!m)
		return;
	for (int i = 0; i < 32; i++)
		master[i] = (unsigned char)i;
	CHECK(crypto_kdf_derive_from_key(rp, 32, 1, "NPpseudo", master) == 0);
	CHECK(crypto_kdf_derive_from_key(rr, 32, 2, "NPpseudo", master) == 0);
	CHECK(crypto_kdf_derive_from_key(kap, 32, 3, "NPpseudo", master) == 0);

	pers16(pers, "NP-purpose-v1");
	crypto_generichash_blake2b_init_salt_personal(&st, rp, 32, 32, zero, pers);
	lp(&st, "arbeidsmarktanalyse");
	crypto_generichash_blake2b_final(&st, krp, 32);

	pers16(pers, "NP-query-v1");
	crypto_generichash_blake2b_init_salt_personal(&st, krp, 32, 32, zero, pers);
	crypto_generichash_blake2b_update(&st, qid_a, 16);
	crypto_generichash_blake2b_final(&st, kqp, 32);

	CHECK(pseudo_key_purpose(m, "arbeidsmarktanalyse", &kp) == 0);
	CHECK(pseudo_key_audit(m, &ka) == 0);
	CHECK(kp && pseudo_key_query(kp, qid_a, &kq) == 0);
	if (kp && ka && kq) {
		CHECK(sodium_memcmp(kp->key, krp, 32) == 0);
		CHECK(sodium_memcmp(ka->key, kap, 32) == 0);
		CHECK(sodium_memcmp(kq->key, kqp, 32) == 0);
	}

	pers16(pers, "NP-recipient-v1");
	crypto_generichash_blake2b_init_salt_personal(&st, rr, 32, 32, zero, pers);
	lp(&st, "arbeidsmarktanalyse");
	lp(&st, "00000001001589623000");
	crypto_generichash_blake2b_final(&st, krp, 32);
	CHECK(pseudo_key_recipient(m, "arbeidsmarktanalyse", "00000001001589623000", &kr) == 0);
	if (kr)
		CHECK(sodium_memcmp(kr->key, krp, 32) == 0);

	if (kp && ka && kq && kr) {
		const struct pseudo_key *keys[4] = { kp, kr, kq, ka };

		for (int i = 0; i < 4; i++)
			for (size_t j = 0; j < sizeof(bsns) / sizeof(bsns[0]); j++) {
				unsigned char a[32], b[32];
				char d[10];

				bsn_format(bsns[j], d);
				pseudo_token(keys[i], bsns[j], a);
				crypto_generichash(b, 32, (const unsigned char *)d, 9, keys[i]->key, 32);
				CHECK(memcmp(a, b, 32) == 0);
			}
		/* the precomputed state is never consumed: the same token again */
		CHECK(same_token(kp, kp, 111222333));
		CHECK(((uintptr_t)kp & 63) == 0); /* the state is 64-byte aligned */
	}
	sodium_memzero(master, sizeof(master));
	pseudo_key_free(kr);
	pseudo_key_free(kq);
	pseudo_key_free(ka);
	pseudo_key_free(kp);
	pseudo_master_free(m);
	CHECK(alloc_live == 0);
}

static void pseudonyms_unlinkable(void)
{
	struct pseudo_master *m = fixed_master(), *m2 = NULL;
	struct pseudo_key *p1 = NULL, *p1b = NULL, *p2 = NULL, *r1 = NULL, *r2 = NULL, *r3 = NULL,
			  *q1 = NULL, *q1b = NULL, *q2 = NULL, *qr = NULL, *a = NULL, *a2 = NULL, *ab = NULL,
			  *pm2 = NULL;
	unsigned char other[32];

	if (!m)
		return;
	memset(other, 0x42, sizeof(other));
	CHECK(master_from_bytes(other, &m2) == 0);
	CHECK(pseudo_key_purpose(m, "arbeidsmarktanalyse", &p1) == 0);
	CHECK(pseudo_key_purpose(m, "arbeidsmarktanalyse", &p1b) == 0);
	CHECK(pseudo_key_purpose(m, "evaluatie-jtf", &p2) == 0);
	CHECK(pseudo_key_recipient(m, "arbeidsmarktanalyse", "uwv", &r1) == 0);
	CHECK(pseudo_key_recipient(m, "arbeidsmarktanalyse", "gemeente-groningen", &r2) == 0);
	/* length prefixes: ("ab","c") and ("a","bc") are different pairs */
	CHECK(pseudo_key_recipient(m, "arbeidsmarktanalyseu", "wv", &r3) == 0);
	CHECK(p1 && pseudo_key_query(p1, qid_a, &q1) == 0);
	CHECK(p1b && pseudo_key_query(p1b, qid_a, &q1b) == 0);
	CHECK(p1 && pseudo_key_query(p1, qid_b, &q2) == 0);
	CHECK(r1 && pseudo_key_query(r1, qid_a, &qr) == 0);
	CHECK(pseudo_key_audit(m, &a) == 0);
	CHECK(pseudo_key_audit(m, &a2) == 0);
	CHECK(pseudo_key_audit(m2, &ab) == 0);
	CHECK(pseudo_key_purpose(m2, "arbeidsmarktanalyse", &pm2) == 0);
	if (p1 && p1b && p2 && r1 && r2 && r3 && q1 && q1b && q2 && qr && a && a2 && ab && pm2) {
		const struct pseudo_key *distinct[] = { p1, p2, r1, r2, r3, q1, q2, qr, a, ab, pm2 };
		size_t n = sizeof(distinct) / sizeof(distinct[0]);
		uint32_t bsns[] = { 111222333, 123456782 };

		for (size_t b = 0; b < 2; b++) {
			/* stable within one key, and across re-derivations of it */
			CHECK(same_token(p1, p1, bsns[b]));
			CHECK(same_token(p1, p1b, bsns[b]));
			CHECK(same_token(q1, q1b, bsns[b]));
			CHECK(same_token(a, a2, bsns[b]));
			/* every other kind, purpose, recipient, query or master differs */
			for (size_t i = 0; i < n; i++)
				for (size_t j = i + 1; j < n; j++)
					if (same_token(distinct[i], distinct[j], bsns[b]))
						CHECK(!"two different keys gave the same token");
		}
		/* different people, different tokens under one key */
		{
			unsigned char x[32], y[32];

			pseudo_token(p1, 111222333, x);
			pseudo_token(p1, 123456782, y);
			CHECK(memcmp(x, y, 32) != 0);
		}
	}
	struct pseudo_key *all[] = { p1, p1b, p2, r1, r2, r3, q1, q1b, q2, qr, a, a2, ab, pm2 };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		pseudo_key_free(all[i]);
	pseudo_master_free(m2);
	pseudo_master_free(m);
	CHECK(alloc_live == 0);
}

static void bad_arguments(void)
{
	struct pseudo_master *m = fixed_master();
	struct pseudo_key *k = (struct pseudo_key *)1, *p = NULL;

	CHECK(pseudo_key_purpose(m, "", &k) == PSEUDO_ERR_ARG && k == NULL);
	k = (struct pseudo_key *)1;
	CHECK(pseudo_key_purpose(m, NULL, &k) == PSEUDO_ERR_ARG && k == NULL);
	CHECK(pseudo_key_purpose(NULL, "x", &k) == PSEUDO_ERR_ARG);
	CHECK(pseudo_key_recipient(m, "x", "", &k) == PSEUDO_ERR_ARG);
	CHECK(pseudo_key_recipient(m, "", "x", &k) == PSEUDO_ERR_ARG);
	CHECK(pseudo_key_recipient(m, "x", NULL, &k) == PSEUDO_ERR_ARG);
	CHECK(pseudo_key_query(NULL, qid_a, &k) == PSEUDO_ERR_ARG);
	CHECK(pseudo_key_purpose(m, "x", &p) == 0);
	CHECK(pseudo_key_query(p, NULL, &k) == PSEUDO_ERR_ARG);
	CHECK(pseudo_key_audit(NULL, &k) == PSEUDO_ERR_ARG);
	pseudo_key_free(NULL);
	pseudo_master_free(NULL);
	pseudo_key_free(p);
	pseudo_master_free(m);
	CHECK(alloc_live == 0);
}

/* The master and the keys are read-only once built: a write faults. */
static void keys_read_only(void)
{
	struct pseudo_master *m = fixed_master();
	struct pseudo_key *k = NULL;
	int status = 0;
	pid_t pid;

	if (!m || pseudo_key_audit(m, &k) != 0)
		goto out;
	for (int which = 0; which < 2; which++) {
		fflush(stdout);
		pid = fork();
		if (pid == 0) {
			signal(SIGSEGV, SIG_DFL); /* not ASan's report: just die */
			signal(SIGBUS, SIG_DFL);
			if (which == 0)
				((volatile unsigned char *)m->key)[0] = 1;
			else
				((volatile unsigned char *)k->key)[0] = 1;
			_exit(0);
		}
		CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
		CHECK(WIFSIGNALED(status) && (WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS));
	}
out:
	pseudo_key_free(k);
	pseudo_master_free(m);
}

/* ---- out of memory ------------------------------------------------------ */

/* Runs |fn| with allocation 0, 1, 2, ... failing until it succeeds; every
 * failure must be PSEUDO_ERR_NOMEM with *out NULL and nothing left allocated. */
static int oom_purpose(struct pseudo_master *m, struct pseudo_key **k)
{
	return pseudo_key_purpose(m, "arbeidsmarktanalyse", k);
}
static int oom_recipient(struct pseudo_master *m, struct pseudo_key **k)
{
	return pseudo_key_recipient(m, "arbeidsmarktanalyse", "uwv", k);
}
static int oom_audit(struct pseudo_master *m, struct pseudo_key **k)
{
	return pseudo_key_audit(m, k);
}
static int oom_query(struct pseudo_master *m, struct pseudo_key **k)
{
	struct pseudo_key *p = NULL;
	int rc;

	/* the parent is built before the hook counts, so only the query fails */
	long at = alloc_fail_at;

	alloc_fail_at = -1;
	rc = pseudo_key_purpose(m, "x", &p);
	alloc_fail_at = at;
	alloc_count = 0;
	if (rc == 0)
		rc = pseudo_key_query(p, qid_a, k);
	pseudo_key_free(p);
	return rc;
}

static void out_of_memory(void)
{
	int (*fns[])(struct pseudo_master *, struct pseudo_key **) = { oom_purpose, oom_recipient,
								       oom_audit, oom_query };
	struct pseudo_master *m = fixed_master();

	for (size_t f = 0; f < sizeof(fns) / sizeof(fns[0]) && m; f++) {
		long live = alloc_live, failures = 0;
		int rc;

		for (long at = 0;; at++) {
			struct pseudo_key *k = (struct pseudo_key *)1;

			alloc_fail_at = at;
			alloc_count = 0;
			rc = fns[f](m, &k);
			alloc_fail_at = -1;
			if (rc == 0) {
				CHECK(k != NULL);
				pseudo_key_free(k);
				break;
			}
			CHECK(rc == PSEUDO_ERR_NOMEM);
			CHECK(k == NULL);
			CHECK(alloc_live == live);
			failures++;
			if (at > 20) {
				CHECK(!"never succeeded");
				break;
			}
		}
		CHECK(failures >= 1);
		CHECK(alloc_live == live);
	}
	pseudo_master_free(m);

	/* master_from_bytes, load and generate */
	{
		unsigned char raw[32] = { 0 };
		struct pseudo_master *mm = (struct pseudo_master *)1;
		char err[256] = "", *path = NULL;
		size_t n = strlen(dir) + 16;

		alloc_fail_at = 0;
		alloc_count = 0;
		CHECK(master_from_bytes(raw, &mm) == PSEUDO_ERR_NOMEM && mm == NULL);

		path = malloc(n);
		snprintf(path, n, "%s/oom.key", dir);
		for (long at = 0; at < 2; at++) {
			alloc_fail_at = at;
			alloc_count = 0;
			CHECK(pseudo_master_generate(path, err, sizeof(err)) == PSEUDO_ERR_NOMEM);
			CHECK_CONTAINS(err, "out of memory");
			CHECK(access(path, F_OK) != 0); /* nothing left behind */
		}
		alloc_fail_at = -1;
		CHECK(pseudo_master_generate(path, err, sizeof(err)) == 0);
		for (long at = 0; at < 3; at++) {
			alloc_fail_at = at;
			alloc_count = 0;
			mm = (struct pseudo_master *)1;
			CHECK(pseudo_master_load(path, &mm, err, sizeof(err)) == PSEUDO_ERR_NOMEM);
			CHECK(mm == NULL);
			CHECK_CONTAINS(err, "out of memory");
		}
		alloc_fail_at = -1;
		CHECK(pseudo_master_load(path, &mm, err, sizeof(err)) == 0);
		pseudo_master_free(mm);
		unlink(path);
		free(path);
	}
	CHECK(alloc_live == 0);
}

/* ---- key files ---------------------------------------------------------- */

static char *path_in_dir(const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static void key_file_roundtrip(void)
{
	char *p = path_in_dir("master.key");
	char err[256] = "";
	struct stat st;
	struct pseudo_master *m = NULL, *m2 = NULL;
	char line[128] = "";
	FILE *f;
	mode_t old = umask(0); /* the mode must be 0600 whatever the umask */

	CHECK(pseudo_master_generate(p, err, sizeof(err)) == 0);
	umask(old);
	CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == 0600);
	CHECK(st.st_size == 90);
	f = fopen(p, "r");
	if (f) {
		CHECK(fgets(line, sizeof(line), f) != NULL);
		fclose(f);
	}
	CHECK(strncmp(line, "noordpoort-master-key-v1 ", 25) == 0);
	CHECK(strlen(line) == 90 && line[89] == '\n');
	for (int i = 25; i < 89; i++)
		CHECK(strchr("0123456789abcdef", line[i]) != NULL);

	CHECK(pseudo_master_load(p, &m, err, sizeof(err)) == 0);
	CHECK(m != NULL);
	if (m) {
		unsigned char raw[32];
		size_t bl;

		CHECK(sodium_hex2bin(raw, 32, line + 25, 64, NULL, &bl, NULL) == 0 && bl == 32);
		CHECK(sodium_memcmp(m->key, raw, 32) == 0);
	}
	/* generate again: refused, the key is untouched */
	CHECK(pseudo_master_generate(p, err, sizeof(err)) == PSEUDO_ERR_EXISTS);
	CHECK_CONTAINS(err, "never overwritten");
	CHECK(pseudo_master_load(p, &m2, err, sizeof(err)) == 0);
	if (m && m2)
		CHECK(sodium_memcmp(m->key, m2->key, 32) == 0);
	pseudo_master_free(m2);
	pseudo_master_free(m);

	/* two generated keys differ */
	{
		char *q = path_in_dir("master2.key");

		CHECK(pseudo_master_generate(q, err, sizeof(err)) == 0);
		m = m2 = NULL;
		CHECK(pseudo_master_load(p, &m, err, sizeof(err)) == 0);
		CHECK(pseudo_master_load(q, &m2, err, sizeof(err)) == 0);
		if (m && m2)
			CHECK(sodium_memcmp(m->key, m2->key, 32) != 0);
		pseudo_master_free(m2);
		pseudo_master_free(m);
		unlink(q);
		free(q);
	}
	/* a symlink at the path is not written through */
	{
		char *q = path_in_dir("link.key"), *t = path_in_dir("target.key");

		CHECK(symlink(t, q) == 0);
		CHECK(pseudo_master_generate(q, err, sizeof(err)) == PSEUDO_ERR_EXISTS);
		CHECK(access(t, F_OK) != 0);
		unlink(q);
		free(q);
		free(t);
	}
	/* a write that fails after the file was created: no half key left behind */
	{
		char *q = path_in_dir("full.key");
		int status = 0;
		pid_t pid;

		fflush(stdout);
		pid = fork();
		if (pid == 0) {
			struct rlimit rl = { 0, 0 };
			char e[256] = "";
			int rc;

			signal(SIGXFSZ, SIG_IGN); /* write then fails with EFBIG */
			setrlimit(RLIMIT_FSIZE, &rl);
			rc = pseudo_master_generate(q, e, sizeof(e));
			_exit(rc == PSEUDO_ERR_IO && strstr(e, "too large") ? 0 : 1);
		}
		CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		CHECK(access(q, F_OK) != 0);
		free(q);
	}
	/* a directory that does not exist */
	{
		char *q = path_in_dir("no/such/dir.key");

		CHECK(pseudo_master_generate(q, err, sizeof(err)) == PSEUDO_ERR_IO);
		CHECK_CONTAINS(err, "No such file");
		CHECK(pseudo_master_load(q, &m, err, sizeof(err)) == PSEUDO_ERR_IO && m == NULL);
		free(q);
	}
	CHECK(pseudo_master_generate("", err, sizeof(err)) == PSEUDO_ERR_ARG);
	CHECK(pseudo_master_load(NULL, &m, err, sizeof(err)) == PSEUDO_ERR_ARG);
	unlink(p);
	free(p);
	CHECK(alloc_live == 0);
}

static void key_file_refused(void)
{
	char *p = path_in_dir("perm.key");
	char err[256] = "";
	struct pseudo_master *m = (struct pseudo_master *)1;
	static const mode_t bad[] = { 0640, 0604, 0620, 0602, 0660, 0644, 0610 };

	CHECK(pseudo_master_generate(p, err, sizeof(err)) == 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char want[48];

		CHECK(chmod(p, bad[i]) == 0);
		m = (struct pseudo_master *)1;
		CHECK(pseudo_master_load(p, &m, err, sizeof(err)) == PSEUDO_ERR_INSECURE);
		CHECK(m == NULL);
		snprintf(want, sizeof(want), "(mode %04o); run: chmod 600 '", (unsigned)bad[i]);
		CHECK_CONTAINS(err, ": secret key file is accessible by group or others");
		CHECK_CONTAINS(err, want);
	}
	/* 0400 is fine: read-only for the owner */
	CHECK(chmod(p, 0400) == 0);
	CHECK(pseudo_master_load(p, &m, err, sizeof(err)) == 0);
	pseudo_master_free(m);
	unlink(p);

	/* not a regular file */
	m = (struct pseudo_master *)1;
	CHECK(pseudo_master_load(dir, &m, err, sizeof(err)) == PSEUDO_ERR_INSECURE && m == NULL);
	CHECK_CONTAINS(err, "not a regular file");
	free(p);
	CHECK(alloc_live == 0);
}

/* Writes |len| bytes to a new 0600 file. */
static char *write_key(const char *name, const char *text, size_t len)
{
	char *p = path_in_dir(name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd >= 0) {
		CHECK(write(fd, text, len) == (ssize_t)len);
		close(fd);
	}
	return p;
}

static void key_file_bad_format(void)
{
	static const char good[] =
		"noordpoort-master-key-v1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
	struct {
		const char *what;
		const char *text;
		size_t len;
		const char *msg;
	} cases[] = {
		{ "empty", "", 0, ": the file is empty" },
		{ "truncated", good, 60, "60 bytes, expected 90" },
		{ "one hex digit short", good, 88, "88 bytes" },
		{ "one byte long", "noordpoort-master-key-v1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n\n", 91, "91 bytes, more than the 90 allowed" },
		{ "raw 32 bytes", "0123456789abcdef0123456789abcdef", 32, "32 bytes" },
		{ "wrong magic", "noordpoort-master-key-v2 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", 90, "not a noordpoort master key" },
		{ "not hex", "noordpoort-master-key-v1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g\n", 90, "not a noordpoort master key" },
		{ "no newline but garbage", "noordpoort-master-key-v1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fX", 90, "not a noordpoort master key" },
		{ "NUL inside", "noordpoort-master-key-v1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", 90, "not a noordpoort master key" },
		{ "garbage", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 90, "not a noordpoort master key" },
	};
	struct pseudo_master *m;
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[128];
		char *p;

		memcpy(text, cases[i].text, cases[i].len);
		if (strcmp(cases[i].what, "NUL inside") == 0)
			text[40] = '\0';
		p = write_key("fmt.key", text, cases[i].len);

		m = (struct pseudo_master *)1;
		err[0] = '\0';
		if (pseudo_master_load(p, &m, err, sizeof(err)) != PSEUDO_ERR_FORMAT || m != NULL) {
			printf("#   case '%s' not refused as a format error\n", cases[i].what);
			CHECK(0);
		}
		CHECK_CONTAINS(err, cases[i].msg);
		CHECK_CONTAINS(err, p); /* names the file */
		CHECK(strstr(err, "0001020304") == NULL); /* never echoes key material */
		unlink(p);
		free(p);
	}
	/* the fixed key, with and without the newline, loads as 0x00..0x1f */
	for (size_t len = 89; len <= 90; len++) {
		char *p = write_key("fixed.key", good, len);

		m = NULL;
		CHECK(pseudo_master_load(p, &m, err, sizeof(err)) == 0);
		if (m)
			for (int i = 0; i < 32; i++)
				CHECK(m->key[i] == i);
		pseudo_master_free(m);
		unlink(p);
		free(p);
	}
	CHECK(alloc_live == 0);
}

/* ---- the keygen CLI ------------------------------------------------------ */

/* Runs the CLI with stdout and stderr captured into |out| and |errout|. */
static int run_cli(char **argv, int argc, char *out, size_t outlen, char *errout, size_t errlen)
{
	char *po = path_in_dir("cli.out"), *pe = path_in_dir("cli.err");
	int so, se, fo, fe, rc;
	ssize_t n;

	fflush(stdout);
	fflush(stderr);
	so = dup(1);
	se = dup(2);
	fo = open(po, O_RDWR | O_CREAT | O_TRUNC, 0600);
	fe = open(pe, O_RDWR | O_CREAT | O_TRUNC, 0600);
	dup2(fo, 1);
	dup2(fe, 2);
	rc = pseudo_keygen_cli(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(so, 1);
	dup2(se, 2);
	close(so);
	close(se);
	n = pread(fo, out, outlen - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	n = pread(fe, errout, errlen - 1, 0);
	errout[n > 0 ? n : 0] = '\0';
	close(fo);
	close(fe);
	unlink(po);
	unlink(pe);
	free(po);
	free(pe);
	return rc;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void keygen_cli(void)
{
	char out[2048], errout[2048];
	char *key = path_in_dir("cli.key");
	char keyarg[300];
	struct stat st;

	{
		char *argv[] = { "keygen", "--help", NULL };

		CHECK(run_cli(argv, 2, out, sizeof(out), errout, sizeof(errout)) == 0);
		CHECK_CONTAINS(out, "Usage: noordpoort keygen --out FILE");
		CHECK(errout[0] == '\0');
	}
	{
		char *argv[] = { "keygen", NULL };

		CHECK(run_cli(argv, 1, out, sizeof(out), errout, sizeof(errout)) == 2);
		CHECK_CONTAINS(errout, "missing --out FILE");
		CHECK(count_lines(errout) == 1);
	}
	{
		char *argv[] = { "keygen", "--out", NULL };

		CHECK(run_cli(argv, 2, out, sizeof(out), errout, sizeof(errout)) == 2);
		CHECK_CONTAINS(errout, "--out needs a file");
		CHECK(count_lines(errout) == 1);
	}
	{
		char *argv[] = { "keygen", "--sign", NULL };

		CHECK(run_cli(argv, 2, out, sizeof(out), errout, sizeof(errout)) == 2);
		CHECK_CONTAINS(errout, "unexpected argument '--sign'");
		CHECK(count_lines(errout) == 1);
	}
	{
		char *argv[] = { "keygen", "-o", "a", "--out=b", NULL };

		CHECK(run_cli(argv, 4, out, sizeof(out), errout, sizeof(errout)) == 2);
		CHECK_CONTAINS(errout, "given twice");
		CHECK(count_lines(errout) == 1);
	}
	{
		char *argv[] = { "keygen", "--out", key, NULL };

		CHECK(run_cli(argv, 3, out, sizeof(out), errout, sizeof(errout)) == 0);
		CHECK_CONTAINS(out, "new master key written");
		CHECK(stat(key, &st) == 0 && (st.st_mode & 07777) == 0600);
		/* again: refused, exit 1, one line naming the file */
		CHECK(run_cli(argv, 3, out, sizeof(out), errout, sizeof(errout)) == 1);
		CHECK_CONTAINS(errout, key);
		CHECK_CONTAINS(errout, "File exists");
		CHECK(count_lines(errout) == 1);
	}
	unlink(key);
	snprintf(keyarg, sizeof(keyarg), "--out=%s", key);
	{
		char *argv[] = { "keygen", keyarg, NULL };
		struct pseudo_master *m = NULL;
		char err[256];

		CHECK(run_cli(argv, 2, out, sizeof(out), errout, sizeof(errout)) == 0);
		CHECK(pseudo_master_load(key, &m, err, sizeof(err)) == 0);
		pseudo_master_free(m);
	}
	unlink(key);
	free(key);
	CHECK(alloc_live == 0);
}

int main(void)
{
	if (sodium_init() < 0 || !mkdtemp(dir)) {
		printf("not ok - test_pseudo: setup\n");
		return 1;
	}
	RUN(bsn_valid);
	RUN(bsn_errors);
	RUN(bsn_no_strlen);
	RUN(bsn_format_pads);
	RUN(bsn_agrees_with_reference);
	RUN(fixed_vectors);
	RUN(matches_documented_derivation);
	RUN(pseudonyms_unlinkable);
	RUN(bad_arguments);
	RUN(keys_read_only);
	RUN(out_of_memory);
	RUN(key_file_roundtrip);
	RUN(key_file_refused);
	RUN(key_file_bad_format);
	RUN(keygen_cli);
	rmdir(dir);
	return check_total_failed ? 1 : 0;
}
