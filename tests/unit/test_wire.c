/*
 * Unit tests for the node→hub tokens wire (aggregate/wire.c): builder round
 * trips (nulls, no records, 1 and 8 fields, a full dictionary), order and
 * de-duplication on both sort paths, every decoder refusal including every
 * truncation point, the sealed box, and each allocation failing in turn;
 * dictionary de-duplication on values chosen to collide under the old
 * unkeyed hash, counts checked before decoding, and the decode deadline.
 * (How long colliding values take is bench/wire's job, not a unit test's.)
 */
#define CHECK_FILE "test_wire"
#include "check.h"

#include <sodium.h>

/* Allocation failure on demand: wire.c's allocations go through here.
 * fail_at = k fails the k-th allocation from now (1-based); 0 never. */
static unsigned long alloc_count, fail_at;
static int alloc_fails(void)
{
	return fail_at && ++alloc_count == fail_at;
}
static void *hook_malloc(size_t n)
{
	return alloc_fails() ? NULL : malloc(n);
}
static void *hook_calloc(size_t n, size_t m)
{
	return alloc_fails() ? NULL : calloc(n, m);
}
static void *hook_realloc(void *p, size_t n)
{
	return alloc_fails() ? NULL : realloc(p, n);
}
#define malloc(n) hook_malloc(n)
#define calloc(n, m) hook_calloc(n, m)
#define realloc(p, n) hook_realloc(p, n)
#include "../../aggregate/wire.c"
#undef malloc
#undef calloc
#undef realloc

static void fail_nth(unsigned long k)
{
	alloc_count = 0;
	fail_at = k;
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void token_of(uint64_t seed, unsigned char tok[WIRE_TOKEN_BYTES])
{
	uint64_t a = splitmix(&seed), b = splitmix(&seed);

	memcpy(tok, &a, 8);
	memcpy(tok + 8, &b, 8);
}

/* Builds |n| records from |tokens| and |vals| (n * nfields, NULL = null)
 * and decodes them; 0 or the failing step's code. */
static int build(uint32_t nfields, size_t n, const unsigned char *tokens, const char *const *vals,
		 unsigned char **plain, size_t *len, uint32_t *nrec)
{
	struct wire_builder *b;
	int rc;

	if ((rc = wire_builder_new(nfields, &b)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		if ((rc = wire_builder_add(b, tokens + i * WIRE_TOKEN_BYTES, vals ? vals + i * nfields : NULL)) < 0) {
			wire_builder_free(b);
			return rc;
		}
	rc = wire_builder_finish(b, plain, len, nrec);
	wire_builder_free(b);
	return rc;
}

/* The value of record |r| field |f| in |t|, or NULL for null. */
static const char *value_of(const struct wire_tokens *t, uint32_t r, uint32_t f)
{
	uint16_t c = t->codes[(size_t)r * t->nfields + f];

	return c == WIRE_NULL ? NULL : t->fields[f].values[c];
}

static int decodes(const unsigned char *buf, size_t len)
{
	struct wire_tokens t;
	char err[200] = "";
	int rc = wire_decode(buf, len, &t, err, sizeof(err));

	if (rc == 0)
		wire_tokens_free(&t);
	else if (!*err)
		printf("#   refusal without a sentence\n");
	return rc;
}

/* ---- round trips ---- */

static void round_trip_two_fields_with_nulls(void)
{
	unsigned char tok[3 * WIRE_TOKEN_BYTES];
	const char *vals[] = { "werk", NULL, NULL, "2023", "werk", "2024" };
	unsigned char *plain = NULL;
	size_t len = 0;
	uint32_t n = 0;
	struct wire_tokens t;
	char err[200];

	for (int i = 0; i < 3; i++)
		token_of((uint64_t)i, tok + i * WIRE_TOKEN_BYTES);
	CHECK(build(2, 3, tok, vals, &plain, &len, &n) == 0);
	CHECK(n == 3);
	CHECK(memcmp(plain, "NPT1", 4) == 0);
	CHECK(wire_decode(plain, len, &t, err, sizeof(err)) == 0);
	CHECK(t.nfields == 2 && t.nrecords == 3);
	CHECK(t.fields[0].nvalues == 1 && t.fields[1].nvalues == 2);
	for (uint32_t r = 0; r < t.nrecords; r++) {
		/* find the input row by token */
		int i;
		for (i = 0; i < 3; i++)
			if (memcmp(t.tokens + r * WIRE_TOKEN_BYTES, tok + i * WIRE_TOKEN_BYTES, WIRE_TOKEN_BYTES) == 0)
				break;
		CHECK(i < 3);
		if (i == 3)
			continue;
		for (int f = 0; f < 2; f++) {
			const char *want = vals[i * 2 + f], *got = value_of(&t, r, (uint32_t)f);
			CHECK((!want && !got) || (want && got && strcmp(want, got) == 0));
		}
		if (r)
			CHECK(memcmp(t.tokens + (r - 1) * WIRE_TOKEN_BYTES, t.tokens + r * WIRE_TOKEN_BYTES,
				     WIRE_TOKEN_BYTES) < 0);
	}
	wire_tokens_free(&t);
	wire_tokens_free(&t); /* a freed, zeroed struct frees again */
	wire_tokens_free(NULL);
	free(plain);
}

static void round_trip_edges(void)
{
	unsigned char tok[WIRE_TOKEN_BYTES];
	const char *eight[8] = { "a", "", NULL, "dddd", "e e", "fé", NULL, "hhhhhhhhhhhhhhhhhhh" };
	unsigned char *plain;
	size_t len;
	uint32_t n;
	struct wire_tokens t;
	char err[200];

	/* no records, with and without fields: the smallest answers */
	CHECK(build(0, 0, NULL, NULL, &plain, &len, &n) == 0);
	CHECK(n == 0 && len == 12);
	CHECK(wire_decode(plain, len, &t, err, sizeof(err)) == 0);
	CHECK(t.nfields == 0 && t.nrecords == 0 && !t.tokens && !t.codes);
	wire_tokens_free(&t);
	free(plain);
	CHECK(build(3, 0, NULL, NULL, &plain, &len, &n) == 0);
	CHECK(n == 0 && len == 24);
	CHECK(wire_decode(plain, len, &t, err, sizeof(err)) == 0);
	CHECK(t.nfields == 3 && t.nrecords == 0);
	wire_tokens_free(&t);
	free(plain);

	/* no fields, one record: only the person */
	token_of(7, tok);
	CHECK(build(0, 1, tok, NULL, &plain, &len, &n) == 0);
	CHECK(n == 1 && len == 12 + WIRE_TOKEN_BYTES);
	CHECK(wire_decode(plain, len, &t, err, sizeof(err)) == 0);
	CHECK(t.nrecords == 1 && memcmp(t.tokens, tok, WIRE_TOKEN_BYTES) == 0);
	wire_tokens_free(&t);
	free(plain);

	/* one field, one null record */
	{
		const char *one[1] = { NULL };
		CHECK(build(1, 1, tok, one, &plain, &len, &n) == 0);
		CHECK(wire_decode(plain, len, &t, err, sizeof(err)) == 0);
		CHECK(t.nfields == 1 && t.fields[0].nvalues == 0 && t.codes[0] == WIRE_NULL);
		wire_tokens_free(&t);
		free(plain);
	}

	/* eight fields, an empty string is a value and not null */
	CHECK(build(8, 1, tok, eight, &plain, &len, &n) == 0);
	CHECK(wire_decode(plain, len, &t, err, sizeof(err)) == 0);
	CHECK(t.nfields == 8 && t.nrecords == 1);
	for (uint32_t f = 0; f < 8; f++) {
		const char *got = value_of(&t, 0, f);
		CHECK((!eight[f] && !got) || (eight[f] && got && strcmp(got, eight[f]) == 0));
	}
	wire_tokens_free(&t);
	free(plain);

	/* nine fields: refused */
	{
		struct wire_builder *b = (struct wire_builder *)1;
		CHECK(wire_builder_new(9, &b) == WIRE_ERR_ARG && b == NULL);
	}
}

static void full_dictionary(void)
{
	struct wire_builder *b;
	unsigned char tok[WIRE_TOKEN_BYTES];
	char v[16];
	const char *vp[1] = { v };
	unsigned char *plain;
	size_t len;
	uint32_t n;
	struct wire_tokens t;
	char err[200];
	int ok = 1;

	CHECK(wire_builder_new(1, &b) == 0);
	for (uint32_t i = 0; i < 65535 && ok; i++) {
		snprintf(v, sizeof(v), "v%u", i);
		token_of(i, tok);
		ok = wire_builder_add(b, tok, vp) == 0;
	}
	CHECK(ok);
	/* the 65536th distinct value does not fit (0xFFFF is null) ... */
	snprintf(v, sizeof(v), "v65535");
	CHECK(wire_builder_add(b, tok, vp) == WIRE_ERR_LIMIT);
	/* ... an existing one and null still do */
	snprintf(v, sizeof(v), "v65534");
	CHECK(wire_builder_add(b, tok, vp) == 0);
	vp[0] = NULL;
	CHECK(wire_builder_add(b, tok, vp) == 0);
	CHECK(wire_builder_finish(b, &plain, &len, &n) == 0);
	CHECK(n == 65537 - 1); /* the repeated (token, v65534) is a duplicate */
	/* spent: no more adds or finishes */
	CHECK(wire_builder_add(b, tok, vp) == WIRE_ERR_ARG);
	wire_builder_free(b);
	CHECK(wire_decode(plain, len, &t, err, sizeof(err)) == 0);
	CHECK(t.fields[0].nvalues == 65535);
	CHECK_STR(t.fields[0].values[65534], "v65534");
	for (uint32_t r = 0; r < t.nrecords; r++) {
		uint16_t c = t.codes[r];
		/* every record's value is the one its token was made for */
		if (c != WIRE_NULL) {
			unsigned long i = strtoul(t.fields[0].values[c] + 1, NULL, 10);
			token_of(i, tok);
			if (memcmp(tok, t.tokens + (size_t)r * WIRE_TOKEN_BYTES, WIRE_TOKEN_BYTES) != 0) {
				CHECK(0);
				break;
			}
		}
	}
	wire_tokens_free(&t);
	free(plain);

	/* a value longer than 65535 bytes does not fit */
	{
		char *big = malloc(65537);
		const char *bp[1] = { big };

		memset(big, 'x', 65536);
		big[65536] = '\0';
		CHECK(wire_builder_new(1, &b) == 0);
		CHECK(wire_builder_add(b, tok, bp) == WIRE_ERR_LIMIT);
		big[65535] = '\0';
		CHECK(wire_builder_add(b, tok, bp) == 0);
		CHECK(wire_builder_finish(b, &plain, &len, &n) == 0);
		CHECK(wire_decode(plain, len, &t, err, sizeof(err)) == 0);
		CHECK(t.nrecords == 1 && strlen(t.fields[0].values[0]) == 65535);
		wire_tokens_free(&t);
		free(plain);
		wire_builder_free(b);
		free(big);
	}
}

/* ---- order and de-duplication ---- */

struct ref {
	unsigned char tok[WIRE_TOKEN_BYTES];
	uint16_t code;
};

static int ref_cmp(const void *a, const void *b)
{
	const struct ref *x = a, *y = b;
	int c = memcmp(x->tok, y->tok, WIRE_TOKEN_BYTES);

	return c ? c : (x->code > y->code) - (x->code < y->code);
}

/* |n| records over |npersons| tokens with repeats, in a scrambled order;
 * checks the output against a reference qsort + unique. */
static void sorted_and_unique(size_t n, size_t npersons, int shared_prefix)
{
	static const char *const vals[] = { "a", "b", "c", NULL };
	unsigned char *tok = malloc(n * WIRE_TOKEN_BYTES);
	const char **v = malloc(n * sizeof(*v));
	struct ref *ref = malloc(n * sizeof(*ref));
	uint64_t s = 42;
	size_t nref = 0;
	unsigned char *plain;
	size_t len;
	uint32_t nrec;
	struct wire_tokens t;
	char err[200];

	for (size_t i = 0; i < n; i++) {
		uint64_t p = splitmix(&s) % npersons;
		token_of(p, tok + i * WIRE_TOKEN_BYTES);
		if (shared_prefix) /* many equal 32-bit prefixes: the tie-break path */
			memset(tok + i * WIRE_TOKEN_BYTES, 0xAB, 4 + (p & 1));
		v[i] = vals[splitmix(&s) % 4];
	}
	CHECK(build(1, n, tok, v, &plain, &len, &nrec) == 0);
	CHECK(wire_decode(plain, len, &t, err, sizeof(err)) == 0);
	/* the reference: codes as the decoder says, then sort + unique */
	for (size_t i = 0; i < n; i++) {
		uint16_t code = WIRE_NULL;
		for (uint16_t c = 0; v[i] && c < t.fields[0].nvalues; c++)
			if (strcmp(t.fields[0].values[c], v[i]) == 0)
				code = c;
		memcpy(ref[i].tok, tok + i * WIRE_TOKEN_BYTES, WIRE_TOKEN_BYTES);
		ref[i].code = code;
	}
	qsort(ref, n, sizeof(*ref), ref_cmp);
	for (size_t i = 0; i < n; i++)
		if (!nref || ref_cmp(&ref[nref - 1], &ref[i]) != 0)
			ref[nref++] = ref[i];
	CHECK(nrec == nref && t.nrecords == nref);
	for (size_t i = 0; i < nref && i < t.nrecords; i++)
		if (memcmp(ref[i].tok, t.tokens + i * WIRE_TOKEN_BYTES, WIRE_TOKEN_BYTES) != 0 ||
		    ref[i].code != t.codes[i]) {
			printf("#   n %zu: record %zu differs from the reference\n", n, i);
			CHECK(0);
			break;
		}
	wire_tokens_free(&t);
	free(plain);
	free(tok);
	free(v);
	free(ref);
}

static void sort_and_dedup(void)
{
	/* small (comparison sort) and large (radix) paths, with many repeats */
	sorted_and_unique(10, 3, 0);
	sorted_and_unique(4095, 1000, 0);
	sorted_and_unique(4096, 1000, 0);
	sorted_and_unique(200000, 150000, 0);
	sorted_and_unique(20000, 5000, 1);
	/* one token, several combinations: ordered by code */
	{
		unsigned char tok[4 * WIRE_TOKEN_BYTES];
		const char *v[4] = { "z", "y", "z", NULL };
		unsigned char *plain;
		size_t len;
		uint32_t n;
		struct wire_tokens t;
		char err[200];

		for (int i = 0; i < 4; i++)
			token_of(5, tok + i * WIRE_TOKEN_BYTES);
		CHECK(build(1, 4, tok, v, &plain, &len, &n) == 0);
		CHECK(n == 3);
		CHECK(wire_decode(plain, len, &t, err, sizeof(err)) == 0);
		/* "z" was seen first: code 0, "y" code 1, null last */
		CHECK(t.codes[0] == 0 && t.codes[1] == 1 && t.codes[2] == WIRE_NULL);
		wire_tokens_free(&t);
		free(plain);
	}
}

/* ---- decoder refusals ---- */

/* A small valid plaintext: 2 fields, 3 records. */
static unsigned char *sample(size_t *len)
{
	unsigned char tok[3 * WIRE_TOKEN_BYTES];
	const char *vals[] = { "werk", NULL, "ziekte", "2023", "werk", "2024" };
	unsigned char *plain = NULL;
	uint32_t n;

	for (int i = 0; i < 3; i++)
		token_of((uint64_t)i + 100, tok + i * WIRE_TOKEN_BYTES);
	if (build(2, 3, tok, vals, &plain, len, &n) != 0)
		return NULL;
	return plain;
}

/* Offset of the record count in sample(): "NPT1", nfields, then the two
 * dictionaries ("werk", "ziekte" | "2023", "2024"). */
#define SAMPLE_NREC_AT (8 + 4 + 2 + 4 + 2 + 6 + 4 + 2 + 4 + 2 + 4)
#define SAMPLE_REC_AT (SAMPLE_NREC_AT + 4)
#define SAMPLE_RECLEN (WIRE_TOKEN_BYTES + 4)

static void expect_refused(const unsigned char *buf, size_t len, const char *needle)
{
	struct wire_tokens t;
	char err[200] = "";

	memset(&t, 0x5A, sizeof(t)); /* the decoder zeroes it whatever it held */
	CHECK(wire_decode(buf, len, &t, err, sizeof(err)) == WIRE_ERR_FORMAT);
	CHECK_CONTAINS(err, needle);
	CHECK(t.tokens == NULL && t.codes == NULL && t.nrecords == 0);
}

static void decoder_refusals(void)
{
	size_t len;
	unsigned char *s = sample(&len), *m;

	CHECK(s != NULL);
	if (!s)
		return;
	CHECK(len == SAMPLE_REC_AT + 3 * SAMPLE_RECLEN);
	CHECK(get_u32(s + SAMPLE_NREC_AT) == 3);
	CHECK(decodes(s, len) == 0);
	m = malloc(len + 8);

	/* every truncation point, the empty buffer included */
	for (size_t cut = 0; cut < len; cut++)
		if (decodes(s, cut) != WIRE_ERR_FORMAT) {
			printf("#   a plaintext cut at %zu of %zu bytes was accepted\n", cut, len);
			CHECK(0);
		}
	CHECK(decodes(NULL, 0) == WIRE_ERR_FORMAT);

	/* bad magic */
	memcpy(m, s, len);
	m[3] = '2';
	expect_refused(m, len, "magic");

	/* nine fields */
	memcpy(m, s, len);
	put_u32(m + 4, 9);
	expect_refused(m, len, "more than 8 fields");

	/* a dictionary claiming more values than bytes, or than 65535 */
	memcpy(m, s, len);
	put_u32(m + 8, 1000);
	expect_refused(m, len, "more values than");
	put_u32(m + 8, 65536);
	expect_refused(m, len, "more than 65535");
	/* a value length running past the end */
	memcpy(m, s, len);
	put_u16(m + 12, 0xFFFF);
	expect_refused(m, len, "past the end");
	/* NUL inside a value */
	memcpy(m, s, len);
	m[15] = '\0';
	expect_refused(m, len, "NUL");
	/* the same value twice: "werk" "ziekte" -> "werk" "werk" + 2 trailing bytes re-laid */
	{
		unsigned char d[] = { 'N', 'P', 'T', '1', 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 'x', 1, 0, 'x', 0, 0, 0, 0 };
		expect_refused(d, sizeof(d), "twice");
		d[17] = 'y';
		CHECK(decodes(d, sizeof(d)) == 0);
	}

	/* nrecords lying both ways */
	memcpy(m, s, len);
	put_u32(m + SAMPLE_NREC_AT, 4);
	expect_refused(m, len, "fewer records");
	put_u32(m + SAMPLE_NREC_AT, 0xFFFFFFFFu);
	expect_refused(m, len, "fewer records");
	put_u32(m + SAMPLE_NREC_AT, 2);
	expect_refused(m, len, "after its last record");

	/* trailing bytes */
	memcpy(m, s, len);
	m[len] = 0;
	expect_refused(m, len + 1, "after its last record");

	/* codes out of range: one past the dictionary, and just inside */
	memcpy(m, s, len);
	put_u16(m + SAMPLE_REC_AT + WIRE_TOKEN_BYTES, 2); /* field 0 has 2 values */
	expect_refused(m, len, "outside");
	put_u16(m + SAMPLE_REC_AT + WIRE_TOKEN_BYTES, 1);
	CHECK(decodes(m, len) == 0);
	put_u16(m + SAMPLE_REC_AT + WIRE_TOKEN_BYTES, 0xFFFE);
	expect_refused(m, len, "outside");
	put_u16(m + SAMPLE_REC_AT + WIRE_TOKEN_BYTES, 0xFFFF);
	CHECK(decodes(m, len) == 0);
	put_u16(m + SAMPLE_REC_AT + WIRE_TOKEN_BYTES + 2, 7); /* field 1 has 2 values */
	expect_refused(m, len, "outside");

	/* unsorted tokens: swap the last two records; equal tokens are fine */
	memcpy(m, s, len);
	memcpy(m + SAMPLE_REC_AT + 1 * SAMPLE_RECLEN, s + SAMPLE_REC_AT + 2 * SAMPLE_RECLEN, SAMPLE_RECLEN);
	memcpy(m + SAMPLE_REC_AT + 2 * SAMPLE_RECLEN, s + SAMPLE_REC_AT + 1 * SAMPLE_RECLEN, SAMPLE_RECLEN);
	expect_refused(m, len, "not sorted");
	memcpy(m, s, len);
	memcpy(m + SAMPLE_REC_AT + 2 * SAMPLE_RECLEN, s + SAMPLE_REC_AT + 1 * SAMPLE_RECLEN, WIRE_TOKEN_BYTES);
	CHECK(decodes(m, len) == 0);

	/* NULL arguments */
	CHECK(wire_decode(s, len, NULL, NULL, 0) == WIRE_ERR_ARG);
	free(m);
	free(s);
}

/* ---- the sealed box ---- */

/* Seals |len| bytes of |s| and appends |head|: a node's whole body. */
static unsigned char *seal_body(const unsigned char *s, size_t len, const unsigned char *pk, const char *head,
				size_t *bodylen)
{
	unsigned char *body = NULL;

	if (wire_seal(s, len, pk, strlen(head), &body, bodylen) != 0)
		return NULL;
	memcpy(body + *bodylen, head, strlen(head));
	*bodylen += strlen(head);
	return body;
}

static void seal_open(void)
{
	unsigned char pk[32], sk[32], pk2[32], sk2[32];
	size_t len, plen = 0, bodylen = 0, boxlen = 0, headlen = 0;
	unsigned char *s = sample(&len), *plain = NULL, *body;
	const unsigned char *box;
	const char *head, *h = "{\"dataset\":\"a/b\"}";
	char err[200] = "";

	crypto_box_keypair(pk, sk);
	crypto_box_keypair(pk2, sk2);
	body = seal_body(s, len, pk, h, &bodylen);
	CHECK(body && memcmp(body, "NPS1", 4) == 0);
	CHECK(bodylen == WIRE_SEALED_PREFIX + len + crypto_box_SEALBYTES + strlen(h));
	CHECK(wire_unwrap(body, bodylen, &box, &boxlen, &head, &headlen, err, sizeof(err)) == 0);
	CHECK(box == body + WIRE_SEALED_PREFIX && boxlen == len + crypto_box_SEALBYTES);
	CHECK(headlen == strlen(h) && memcmp(head, h, headlen) == 0);
	CHECK(wire_open(box, boxlen, pk, sk, &plain, &plen, err, sizeof(err)) == 0);
	CHECK(plen == len && plain && memcmp(plain, s, len) == 0);
	CHECK(decodes(plain, plen) == 0);
	free(plain);

	/* the wrong key pair */
	plain = (unsigned char *)1;
	CHECK(wire_open(box, boxlen, pk2, sk2, &plain, &plen, err, sizeof(err)) == WIRE_ERR_CRYPTO);
	CHECK(plain == NULL);
	CHECK_CONTAINS(err, "cannot be opened");
	/* the right public key with another secret key */
	CHECK(wire_open(box, boxlen, pk, sk2, &plain, &plen, err, sizeof(err)) == WIRE_ERR_CRYPTO);

	/* tampered: one byte changed in the ephemeral key, the tag, the body */
	{
		size_t at[] = { 0, 40, boxlen / 2, boxlen - 1 };
		unsigned char *b = body + WIRE_SEALED_PREFIX;

		for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
			b[at[i]] ^= 0x01;
			CHECK(wire_open(box, boxlen, pk, sk, &plain, &plen, err, sizeof(err)) == WIRE_ERR_CRYPTO);
			b[at[i]] ^= 0x01;
		}
		/* a box cut short, or one byte longer (the head's first byte) */
		CHECK(wire_open(box, boxlen - 1, pk, sk, &plain, &plen, err, sizeof(err)) == WIRE_ERR_CRYPTO);
		CHECK(wire_open(box, boxlen + 1, pk, sk, &plain, &plen, err, sizeof(err)) == WIRE_ERR_CRYPTO);
		CHECK(wire_open(box, crypto_box_SEALBYTES - 1, pk, sk, &plain, &plen, err, sizeof(err)) ==
		      WIRE_ERR_FORMAT);
		CHECK_CONTAINS(err, "too short");
		CHECK(plain == NULL);
	}
	free(body);

	/* an empty plaintext seals and opens (a box with nothing in it), and an
	 * empty head is allowed by the envelope (the hub refuses it later) */
	CHECK(wire_seal(NULL, 0, pk, 0, &body, &bodylen) == 0);
	CHECK(wire_unwrap(body, bodylen, &box, &boxlen, &head, &headlen, err, sizeof(err)) == 0 && headlen == 0);
	CHECK(wire_open(box, boxlen, pk, sk, &plain, &plen, err, sizeof(err)) == 0);
	CHECK(plen == 0 && plain != NULL);
	free(plain);
	free(body);
	free(s);
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(sk2, sizeof(sk2));
}

/* The envelope is peer data: every way it can lie about itself. */
static void unwrap_bad(void)
{
	unsigned char pk[32], sk[32], msg[5] = "abcde", *body;
	const unsigned char *box = (const unsigned char *)1;
	const char *head = (const char *)1;
	size_t bodylen = 0, boxlen = 7, headlen = 7;
	char err[200] = "";

	crypto_box_keypair(pk, sk);
	body = seal_body(msg, sizeof(msg), pk, "{}", &bodylen);
	CHECK(body != NULL);
	/* shorter than magic + length, including empty */
	for (size_t n = 0; n < WIRE_SEALED_PREFIX; n++) {
		CHECK(wire_unwrap(body, n, &box, &boxlen, &head, &headlen, err, sizeof(err)) == WIRE_ERR_FORMAT);
		CHECK(box == NULL && head == NULL && boxlen == 0 && headlen == 0);
	}
	/* another magic: JSON (the old base64 answer), NPT1 (a bare plaintext) */
	memcpy(body, "{\"da", 4);
	CHECK(wire_unwrap(body, bodylen, &box, &boxlen, &head, &headlen, err, sizeof(err)) == WIRE_ERR_FORMAT);
	CHECK_CONTAINS(err, "not a sealed token answer");
	memcpy(body, "NPT1", 4);
	CHECK(wire_unwrap(body, bodylen, &box, &boxlen, &head, &headlen, err, sizeof(err)) == WIRE_ERR_FORMAT);
	memcpy(body, "NPS1", 4);
	/* a box length past the end: by one, and by a lot (no overflow) */
	body[4] = (unsigned char)(bodylen - WIRE_SEALED_PREFIX + 1);
	CHECK(wire_unwrap(body, bodylen, &box, &boxlen, &head, &headlen, err, sizeof(err)) == WIRE_ERR_FORMAT);
	CHECK_CONTAINS(err, "longer than the answer");
	memset(body + 4, 0xFF, 4);
	CHECK(wire_unwrap(body, bodylen, &box, &boxlen, &head, &headlen, err, sizeof(err)) == WIRE_ERR_FORMAT);
	/* exactly to the end: an empty head */
	body[4] = (unsigned char)(bodylen - WIRE_SEALED_PREFIX);
	body[5] = body[6] = body[7] = 0;
	CHECK(wire_unwrap(body, bodylen, &box, &boxlen, &head, &headlen, err, sizeof(err)) == 0);
	CHECK(headlen == 0 && boxlen == bodylen - WIRE_SEALED_PREFIX);
	/* NULL arguments */
	CHECK(wire_unwrap(NULL, 4, &box, &boxlen, &head, &headlen, err, sizeof(err)) == WIRE_ERR_ARG);
	CHECK(wire_unwrap(body, bodylen, NULL, &boxlen, &head, &headlen, err, sizeof(err)) == WIRE_ERR_ARG);
	CHECK(wire_seal(msg, sizeof(msg), pk, 0, NULL, &bodylen) == WIRE_ERR_ARG);
	free(body);
	sodium_memzero(sk, sizeof(sk));
}

/* ---- records added by code; tokens that defeat the radix buckets ---- */

/* Builds the same records through wire_builder_add (strings) and through
 * wire_builder_set_dict + wire_builder_add_coded: the plaintexts must be
 * byte for byte the same. Tokens share their first two bytes (one bucket:
 * the qsort_r path), some share eight (ties on the 64-bit key), and every
 * fifth record repeats an earlier one (de-duplication). */
static void coded_matches_strings(void)
{
	static const char *const d0[] = { "werk", "ziekte", "lopend" }, *const d1[] = { "a", "bb" };
	size_t sizes[] = { 10, 50, 6000 };

	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		size_t n = sizes[si];
		unsigned char *tok = malloc(n * WIRE_TOKEN_BYTES), *p1 = NULL, *p2 = NULL;
		uint16_t *codes = malloc(n * 2 * sizeof(*codes));
		const char **vals = malloc(n * 2 * sizeof(*vals));
		struct wire_builder *b = NULL;
		size_t l1 = 0, l2 = 0;
		uint32_t r1 = 0, r2 = 0;

		for (size_t i = 0; i < n; i++) {
			unsigned char *t = tok + i * WIRE_TOKEN_BYTES;

			if (i % 5 == 4) {
				memcpy(t, tok + (i / 2) * WIRE_TOKEN_BYTES, WIRE_TOKEN_BYTES);
				codes[2 * i] = codes[2 * (i / 2)];
				codes[2 * i + 1] = codes[2 * (i / 2) + 1];
			} else {
				token_of(i, t);
				t[0] = 0xAB, t[1] = 0xCD;
				if (i % 7 == 0) /* same first 8 bytes as another record */
					memset(t + 2, 0x11, 6);
				codes[2 * i] = (uint16_t)(i % 4 == 3 ? WIRE_NULL : i % 3);
				codes[2 * i + 1] = (uint16_t)(i % 2);
			}
			vals[2 * i] = codes[2 * i] == WIRE_NULL ? NULL : d0[codes[2 * i]];
			vals[2 * i + 1] = d1[codes[2 * i + 1]];
		}
		CHECK(build(2, n, tok, vals, &p1, &l1, &r1) == 0);
		CHECK(wire_builder_new(2, &b) == 0);
		CHECK(wire_builder_reserve(b, n / 2) == 0);
		CHECK(wire_builder_set_dict(b, 0, d0, 3) == 0);
		CHECK(wire_builder_set_dict(b, 1, d1, 2) == 0);
		for (size_t i = 0; i < n; i++)
			CHECK(wire_builder_add_coded(b, tok + i * WIRE_TOKEN_BYTES, codes + 2 * i) == 0);
		CHECK(wire_builder_finish(b, &p2, &l2, &r2) == 0);
		wire_builder_free(b);
		CHECK(r1 == r2 && r1 < n && l1 == l2 && p1 && p2 && memcmp(p1, p2, l1) == 0);
		CHECK(decodes(p2, l2) == 0);
		free(p1);
		free(p2);
		free(tok);
		free(codes);
		free(vals);
	}

	/* refusals: a code outside the dictionary, a dictionary after a
	 * record or twice, the same value twice, a NULL value */
	{
		static const char *const twice[] = { "x", "x" }, *const withnull[] = { "x", NULL };
		struct wire_builder *b = NULL;
		unsigned char t[WIRE_TOKEN_BYTES] = { 1 };
		uint16_t c[2] = { 3, 0 };

		CHECK(wire_builder_new(2, &b) == 0);
		CHECK(wire_builder_set_dict(b, 0, twice, 2) == WIRE_ERR_ARG);
		wire_builder_free(b);
		CHECK(wire_builder_new(2, &b) == 0);
		CHECK(wire_builder_set_dict(b, 0, withnull, 2) == WIRE_ERR_ARG);
		wire_builder_free(b);
		CHECK(wire_builder_new(2, &b) == 0);
		CHECK(wire_builder_set_dict(b, 2, d1, 2) == WIRE_ERR_ARG);
		CHECK(wire_builder_set_dict(b, 0, d0, 3) == 0);
		CHECK(wire_builder_set_dict(b, 0, d0, 3) == WIRE_ERR_ARG);
		CHECK(wire_builder_add_coded(b, t, c) == WIRE_ERR_ARG);   /* 3 >= 3 values */
		c[0] = WIRE_NULL;
		CHECK(wire_builder_add_coded(b, t, c) == WIRE_ERR_ARG);   /* field 1 has no values */
		c[1] = WIRE_NULL;
		CHECK(wire_builder_add_coded(b, t, c) == 0);
		CHECK(wire_builder_set_dict(b, 1, d1, 2) == WIRE_ERR_ARG); /* after a record */
		wire_builder_free(b);
	}
}

/* ---- out of memory: each allocation fails in turn ---- */

static void out_of_memory(void)
{
	size_t len = 0;
	unsigned char *s = sample(&len);
	unsigned char pk[32], sk[32];
	int done = 0;

	crypto_box_keypair(pk, sk);
	/* build (small and radix sort paths) */
	for (size_t n = 3; n <= 5000; n += 4997) {
		unsigned char *tok = malloc(n * WIRE_TOKEN_BYTES);
		const char **v = malloc(n * 2 * sizeof(*v));
		char (*names)[8] = malloc(n * sizeof(*names));

		for (size_t i = 0; i < n; i++) {
			token_of(i % 100, tok + i * WIRE_TOKEN_BYTES);
			snprintf(names[i], sizeof(names[i]), "v%zu", i % 70);
			v[2 * i] = names[i];
			v[2 * i + 1] = i % 3 ? "x" : NULL;
		}
		done = 0;
		for (unsigned long k = 1; k < 10000 && !done; k++) {
			unsigned char *plain = NULL;
			size_t plen;
			uint32_t nrec;
			int rc;

			fail_nth(k);
			rc = build(2, n, tok, v, &plain, &plen, &nrec);
			fail_nth(0);
			if (rc == 0) {
				done = 1;
				CHECK(decodes(plain, plen) == 0);
				free(plain);
			} else {
				CHECK(rc == WIRE_ERR_NOMEM);
			}
		}
		CHECK(done);
		free(tok);
		free(v);
		free(names);
	}
	/* decode */
	done = 0;
	for (unsigned long k = 1; k < 100 && !done; k++) {
		struct wire_tokens t;
		char err[200];
		int rc;

		fail_nth(k);
		rc = wire_decode(s, len, &t, err, sizeof(err));
		fail_nth(0);
		if (rc == 0) {
			done = 1;
			wire_tokens_free(&t);
		} else {
			CHECK(rc == WIRE_ERR_NOMEM);
		}
	}
	CHECK(done);
	/* seal and open */
	done = 0;
	for (unsigned long k = 1; k < 100 && !done; k++) {
		char err[200];
		size_t bodylen, plen;
		unsigned char *body = NULL, *plain = NULL;
		int rc;

		fail_nth(k);
		rc = wire_seal(s, len, pk, 0, &body, &bodylen);
		if (rc == 0)
			rc = wire_open(body + WIRE_SEALED_PREFIX, bodylen - WIRE_SEALED_PREFIX, pk, sk, &plain, &plen,
				       err, sizeof(err));
		fail_nth(0);
		if (rc == 0)
			done = 1;
		else
			CHECK(rc == WIRE_ERR_NOMEM);
		free(body);
		free(plain);
	}
	CHECK(done);
	free(s);
}

/* ---- dictionaries: de-duplication, expectations, deadline ---- */

/* A plaintext of one field whose dictionary is |vals| (n of them, with
 * their lengths) and |nrec| records using code 0 (or null when n is 0). */
static unsigned char *raw_dict(const char *const *vals, const uint16_t *lens, size_t n, uint32_t nrec,
			       size_t *len)
{
	size_t size = 8 + 4 + 4 + (size_t)nrec * (WIRE_TOKEN_BYTES + 2), p = 12;
	unsigned char *buf;

	for (size_t i = 0; i < n; i++)
		size += 2 + lens[i];
	if (!(buf = malloc(size)))
		return NULL;
	memcpy(buf, "NPT1", 4);
	put_u32(buf + 4, 1);
	put_u32(buf + 8, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		put_u16(buf + p, lens[i]);
		memcpy(buf + p + 2, vals[i], lens[i]);
		p += 2 + (size_t)lens[i];
	}
	put_u32(buf + p, nrec);
	p += 4;
	for (uint32_t r = 0; r < nrec; r++, p += WIRE_TOKEN_BYTES + 2) {
		memset(buf + p, 0, WIRE_TOKEN_BYTES);
		put_u32(buf + p + WIRE_TOKEN_BYTES - 4, r); /* ascending */
		put_u16(buf + p + WIRE_TOKEN_BYTES, n ? 0 : WIRE_NULL);
	}
	*len = p;
	return buf;
}

/* The decoder's hash before issue 10 (FNV-1a, folded), for building values
 * that all fall into one slot of its table. */
static uint32_t old_slot(const char *s, size_t n, uint32_t mask)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
	return (uint32_t)(h ^ (h >> 29)) & mask;
}

#define NCOLL 1000 /* the old decoder's table for 1000 values: 2048 slots */

static void dedup_colliding(void)
{
	static char store[NCOLL + 2][12];
	const char *vals[NCOLL + 2];
	uint16_t lens[NCOLL + 2];
	size_t n = 0, len;
	unsigned char *buf;
	struct wire_tokens t;
	char err[200];

	/* values "c<i>" whose old slot is 7 in a 2048-slot table */
	for (uint32_t i = 0; n < NCOLL; i++) {
		int l = snprintf(store[n], sizeof(store[n]), "c%u", i);

		if (old_slot(store[n], (size_t)l, 2047) == 7) {
			vals[n] = store[n];
			lens[n++] = (uint16_t)l;
		}
	}
	/* all distinct: decoded, each in its place */
	buf = raw_dict(vals, lens, NCOLL, 2, &len);
	CHECK(buf && wire_decode(buf, len, &t, err, sizeof(err)) == 0);
	CHECK(t.fields[0].nvalues == NCOLL);
	for (size_t i = 0; i < NCOLL; i++)
		if (strcmp(t.fields[0].values[i], vals[i]) != 0) {
			CHECK(0);
			break;
		}
	wire_tokens_free(&t);
	free(buf);
	/* the first value again, last: refused (cap + 1 with a repeat) */
	vals[NCOLL] = vals[0];
	lens[NCOLL] = lens[0];
	buf = raw_dict(vals, lens, NCOLL + 1, 0, &len);
	CHECK(buf && wire_decode(buf, len, &t, err, sizeof(err)) == WIRE_ERR_FORMAT);
	CHECK_CONTAINS(err, "the same value twice");
	free(buf);
	/* a prefix of the first value (same bytes, one shorter) is another value */
	lens[NCOLL] = (uint16_t)(lens[0] - 1);
	buf = raw_dict(vals, lens, NCOLL + 1, 0, &len);
	CHECK(buf && wire_decode(buf, len, &t, err, sizeof(err)) == 0);
	CHECK(t.fields[0].nvalues == NCOLL + 1);
	wire_tokens_free(&t);
	free(buf);
	/* the empty value once is a value; twice is a repeat */
	vals[NCOLL] = vals[NCOLL + 1] = "";
	lens[NCOLL] = lens[NCOLL + 1] = 0;
	buf = raw_dict(vals, lens, NCOLL + 1, 0, &len);
	CHECK(buf && wire_decode(buf, len, &t, err, sizeof(err)) == 0);
	CHECK(t.nfields == 1 && t.fields[0].nvalues == NCOLL + 1 && t.fields[0].values[NCOLL][0] == '\0');
	wire_tokens_free(&t);
	free(buf);
	buf = raw_dict(vals, lens, NCOLL + 2, 0, &len);
	CHECK(buf && wire_decode(buf, len, &t, err, sizeof(err)) == WIRE_ERR_FORMAT);
	CHECK_CONTAINS(err, "the same value twice");
	free(buf);
	/* the builder agrees: the same colliding values code to 0..n-1, a repeat to its first code */
	{
		struct wire_builder *b;
		uint16_t code;
		int ok = 1;

		CHECK(wire_builder_new(1, &b) == 0);
		CHECK(wire_builder_set_dict(b, 0, vals, NCOLL) == 0);
		for (size_t i = 0; i < NCOLL && ok; i++)
			ok = dict_code(&b->dict[0], vals[i], &code) == 0 && code == i;
		CHECK(ok);
		CHECK(b->dict[0].n == NCOLL);
		wire_builder_free(b);
	}
}

static void expectations_before_decoding(void)
{
	static char store[3000][8];
	const char *vals[3000];
	uint16_t lens[3000];
	size_t len;
	unsigned char *buf;
	struct wire_tokens t;
	struct wire_expect x = { .nfields = 1, .nrecords = 3, .deadline_ns = 0 };
	char err[200];

	for (size_t i = 0; i < 3000; i++) {
		lens[i] = (uint16_t)snprintf(store[i], sizeof(store[i]), "w%zu", i);
		vals[i] = store[i];
	}
	buf = raw_dict(vals, lens, 3000, 3, &len);
	CHECK(buf != NULL);
	if (!buf)
		return;
	/* exactly as expected: decoded */
	CHECK(wire_decode_expect(buf, len, &x, &t, err, sizeof(err)) == 0);
	CHECK(t.nrecords == 3 && t.fields[0].nvalues == 3000);
	wire_tokens_free(&t);
	/* records 2 and 4 around the 3 the head says: refused */
	x.nrecords = 2;
	CHECK(wire_decode_expect(buf, len, &x, &t, err, sizeof(err)) == WIRE_ERR_FORMAT);
	CHECK_CONTAINS(err, "another number of records");
	x.nrecords = 4;
	CHECK(wire_decode_expect(buf, len, &x, &t, err, sizeof(err)) == WIRE_ERR_FORMAT);
	CHECK_CONTAINS(err, "another number of records");
	x.nrecords = 3;
	x.nfields = 2;
	CHECK(wire_decode_expect(buf, len, &x, &t, err, sizeof(err)) == WIRE_ERR_FORMAT);
	CHECK_CONTAINS(err, "another number of fields");
	x.nfields = 0;
	CHECK(wire_decode_expect(buf, len, &x, &t, err, sizeof(err)) == WIRE_ERR_FORMAT);
	CHECK(t.tokens == NULL && t.fields[0].values == NULL);
	/* the counts are checked before any value: a repeated value behind a
	 * wrong record count is refused for the count, not the repeat */
	x.nfields = 1;
	x.nrecords = 4;
	memcpy(buf + 12 + 4 + 2, "w0", 2); /* "w1" -> "w0" */
	CHECK(wire_decode_expect(buf, len, &x, &t, err, sizeof(err)) == WIRE_ERR_FORMAT);
	CHECK_CONTAINS(err, "another number of records");
	x.nrecords = 3;
	CHECK(wire_decode_expect(buf, len, &x, &t, err, sizeof(err)) == WIRE_ERR_FORMAT);
	CHECK_CONTAINS(err, "the same value twice");
	memcpy(buf + 12 + 4 + 2, "w1", 2);
	/* the deadline: none, far ahead, long past */
	x.deadline_ns = now_ns() + 60ull * 1000000000u;
	CHECK(wire_decode_expect(buf, len, &x, &t, err, sizeof(err)) == 0);
	wire_tokens_free(&t);
	x.deadline_ns = 1;
	memset(&t, 0x5A, sizeof(t));
	CHECK(wire_decode_expect(buf, len, &x, &t, err, sizeof(err)) == WIRE_ERR_DEADLINE);
	CHECK_CONTAINS(err, "deadline");
	CHECK(t.tokens == NULL && t.nfields == 0 && t.fields[0].values == NULL);
	/* a dictionary shorter than one clock reading is not interrupted */
	{
		unsigned char *small = raw_dict(vals, lens, DEADLINE_EVERY - 1, 3, &len);

		CHECK(small && wire_decode_expect(small, len, &x, &t, err, sizeof(err)) == 0);
		wire_tokens_free(&t);
		free(small);
		small = raw_dict(vals, lens, DEADLINE_EVERY, 3, &len);
		CHECK(small && wire_decode_expect(small, len, &x, &t, err, sizeof(err)) == WIRE_ERR_DEADLINE);
		free(small);
	}
	free(buf);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	RUN(round_trip_two_fields_with_nulls);
	RUN(round_trip_edges);
	RUN(full_dictionary);
	RUN(sort_and_dedup);
	RUN(decoder_refusals);
	RUN(seal_open);
	RUN(unwrap_bad);
	RUN(coded_matches_strings);
	RUN(out_of_memory);
	RUN(dedup_colliding);
	RUN(expectations_before_decoding);
	return check_total_failed ? 1 : 0;
}
