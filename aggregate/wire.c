/*
 * The node→hub tokens plaintext (docs/federation.md, "Mode tokens"): a
 * builder that dictionary-codes values and sorts a million records without
 * a comparison sort over all of them, a decoder that trusts no count it
 * reads, and the sealed box around both.
 */
#include "wire.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const unsigned char magic[4] = { 'N', 'P', 'T', '1' };

/* ---- little-endian helpers ---- */

static void put_u16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static void put_u32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint16_t get_u16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/*
 * The dictionaries' hash: SipHash-2-4 (libsodium's crypto_shorthash) under a
 * key drawn once per process. The decoder hashes values a node chose; with
 * an unkeyed hash (FNV-1a until issue 10) a node could send 65 535 values
 * that all land in one slot, and the linear probe went quadratic: 7.6 s of
 * the hub's CPU per field (bench/wire measures it). Nobody outside this
 * process knows the key, so nobody can choose colliding values.
 */
static unsigned char hash_key[crypto_shorthash_KEYBYTES];
static pthread_once_t hash_once = PTHREAD_ONCE_INIT;
static int hash_ready;

static void hash_key_init(void)
{
	if (sodium_init() < 0)
		return;
	randombytes_buf(hash_key, sizeof(hash_key));
	hash_ready = 1;
}

/* 0, or WIRE_ERR_CRYPTO when libsodium cannot be initialised. */
static int hash_init(void)
{
	pthread_once(&hash_once, hash_key_init);
	return hash_ready ? 0 : WIRE_ERR_CRYPTO;
}

/* Only after hash_init() returned 0. */
static uint64_t hash_bytes(const char *s, size_t n)
{
	unsigned char out[crypto_shorthash_BYTES];
	uint64_t h;

	crypto_shorthash(out, (const unsigned char *)s, n, hash_key);
	memcpy(&h, out, sizeof(h));
	return h;
}

/* ---- the builder ---- */

struct dict {
	char **values;   /* code -> value, malloc'd copies */
	uint16_t *lens;
	uint32_t n;
	uint32_t *slots; /* open addressing: code + 1, 0 = empty */
	uint32_t mask;   /* slots - 1; a power of two minus one */
};

struct wire_builder {
	uint32_t nfields;
	struct dict dict[WIRE_MAX_FIELDS];
	unsigned char *tokens; /* n * WIRE_TOKEN_BYTES, in insertion order */
	uint16_t *codes;       /* n * nfields */
	size_t n, cap;
	int spent;
};

int wire_builder_new(uint32_t nfields, struct wire_builder **out)
{
	struct wire_builder *b;

	if (!out)
		return WIRE_ERR_ARG;
	*out = NULL;
	if (nfields > WIRE_MAX_FIELDS)
		return WIRE_ERR_ARG;
	if (hash_init() < 0)
		return WIRE_ERR_CRYPTO;
	if (!(b = calloc(1, sizeof(*b))))
		return WIRE_ERR_NOMEM;
	b->nfields = nfields;
	*out = b;
	return 0;
}

static int dict_grow(struct dict *d)
{
	uint32_t cap = d->mask ? (d->mask + 1) * 2 : 64;
	uint32_t *slots = calloc(cap, sizeof(*slots));

	if (!slots)
		return WIRE_ERR_NOMEM;
	for (uint32_t c = 0; c < d->n; c++) {
		uint32_t i = (uint32_t)hash_bytes(d->values[c], d->lens[c]) & (cap - 1);

		while (slots[i])
			i = (i + 1) & (cap - 1);
		slots[i] = c + 1;
	}
	free(d->slots);
	d->slots = slots;
	d->mask = cap - 1;
	return 0;
}

/* The code of |s| in |d|, adding it when new; 0 or a negative error. */
static int dict_code(struct dict *d, const char *s, uint16_t *code)
{
	size_t len = strlen(s);
	uint64_t h = hash_bytes(s, len);
	uint32_t i;
	char *copy;

	if (len > 0xFFFF)
		return WIRE_ERR_LIMIT;
	if ((d->n + 1) * 2 > d->mask && dict_grow(d) < 0)
		return WIRE_ERR_NOMEM;
	for (i = (uint32_t)h & d->mask; d->slots[i]; i = (i + 1) & d->mask) {
		uint32_t c = d->slots[i] - 1;

		if (d->lens[c] == len && memcmp(d->values[c], s, len) == 0) {
			*code = (uint16_t)c;
			return 0;
		}
	}
	if (d->n >= WIRE_NULL) /* 0xFFFF is null: 65535 values, codes 0..65534 */
		return WIRE_ERR_LIMIT;
	if ((d->n & (d->n - 1)) == 0) {
		/* the arrays are full whenever n is 0 or a power of two */
		size_t cap = d->n ? (size_t)d->n * 2 : 1;
		char **v = realloc(d->values, cap * sizeof(*v));
		uint16_t *l;

		if (!v)
			return WIRE_ERR_NOMEM;
		d->values = v;
		if (!(l = realloc(d->lens, cap * sizeof(*l))))
			return WIRE_ERR_NOMEM;
		d->lens = l;
	}
	if (!(copy = malloc(len + 1)))
		return WIRE_ERR_NOMEM;
	memcpy(copy, s, len + 1);
	d->values[d->n] = copy;
	d->lens[d->n] = (uint16_t)len;
	d->slots[i] = d->n + 1;
	*code = (uint16_t)d->n++;
	return 0;
}

static int grow(struct wire_builder *b)
{
	size_t cap = b->cap ? b->cap * 2 : 1024;

	return wire_builder_reserve(b, cap > UINT32_MAX ? UINT32_MAX : cap);
}

int wire_builder_add(struct wire_builder *b, const unsigned char token[WIRE_TOKEN_BYTES],
		     const char *const *values)
{
	uint16_t codes[WIRE_MAX_FIELDS];

	if (!b || !token || b->spent || (b->nfields && !values))
		return WIRE_ERR_ARG;
	/* A value that fails to code, or a record refused after its values were
	 * coded, may leave a new dictionary entry behind; harmless (a value
	 * without a record), and the record is not added. */
	for (uint32_t f = 0; f < b->nfields; f++) {
		int rc;

		if (!values[f])
			codes[f] = WIRE_NULL;
		else if ((rc = dict_code(&b->dict[f], values[f], &codes[f])) < 0)
			return rc;
	}
	return wire_builder_add_coded(b, token, codes);
}

int wire_builder_reserve(struct wire_builder *b, size_t n)
{
	unsigned char *t;
	uint16_t *c = NULL;

	if (!b || b->spent)
		return WIRE_ERR_ARG;
	if (n > UINT32_MAX)
		return WIRE_ERR_LIMIT;
	if (n <= b->cap)
		return 0;
	if (!(t = malloc(n * WIRE_TOKEN_BYTES)))
		return WIRE_ERR_NOMEM;
	if (b->nfields && !(c = realloc(b->codes, n * b->nfields * sizeof(*c)))) {
		free(t);
		return WIRE_ERR_NOMEM;
	}
	if (b->nfields)
		b->codes = c;
	/* the tokens move by hand so the old copy can be wiped */
	if (b->tokens) {
		memcpy(t, b->tokens, b->n * WIRE_TOKEN_BYTES);
		sodium_memzero(b->tokens, b->cap * WIRE_TOKEN_BYTES);
		free(b->tokens);
	}
	b->tokens = t;
	b->cap = n;
	return 0;
}

int wire_builder_set_dict(struct wire_builder *b, uint32_t field, const char *const *values, size_t nvalues)
{
	struct dict *d;

	if (!b || b->spent || field >= b->nfields || (nvalues && !values))
		return WIRE_ERR_ARG;
	d = &b->dict[field];
	if (b->n || d->n)
		return WIRE_ERR_ARG; /* before any record, once */
	if (nvalues > 0xFFFF)
		return WIRE_ERR_LIMIT;
	for (size_t i = 0; i < nvalues; i++) {
		uint16_t code;
		int rc;

		if (!values[i])
			return WIRE_ERR_ARG;
		if ((rc = dict_code(d, values[i], &code)) < 0)
			return rc;
		if (code != i)
			return WIRE_ERR_ARG; /* the same value twice */
	}
	return 0;
}

int wire_builder_add_coded(struct wire_builder *b, const unsigned char token[WIRE_TOKEN_BYTES],
			   const uint16_t *codes)
{
	if (!b || !token || b->spent || (b->nfields && !codes))
		return WIRE_ERR_ARG;
	for (uint32_t f = 0; f < b->nfields; f++)
		if (codes[f] != WIRE_NULL && codes[f] >= b->dict[f].n)
			return WIRE_ERR_ARG;
	if (b->n == UINT32_MAX)
		return WIRE_ERR_LIMIT;
	if (b->n == b->cap) {
		int rc = grow(b);

		if (rc < 0)
			return rc;
	}
	memcpy(b->tokens + b->n * WIRE_TOKEN_BYTES, token, WIRE_TOKEN_BYTES);
	if (b->nfields)
		memcpy(b->codes + b->n * b->nfields, codes, b->nfields * sizeof(*codes));
	b->n++;
	return 0;
}

static int rec_cmp(const void *pa, const void *pb, void *arg)
{
	const struct wire_builder *b = arg;
	uint32_t x = *(const uint32_t *)pa, y = *(const uint32_t *)pb;
	int c = memcmp(b->tokens + (size_t)x * WIRE_TOKEN_BYTES, b->tokens + (size_t)y * WIRE_TOKEN_BYTES,
		       WIRE_TOKEN_BYTES);

	for (uint32_t f = 0; !c && f < b->nfields; f++) {
		uint16_t u = b->codes[(size_t)x * b->nfields + f], v = b->codes[(size_t)y * b->nfields + f];
		c = (u > v) - (u < v);
	}
	return c;
}

struct kv {
	uint64_t key; /* wire_token_word: the first 8 bytes, big-endian */
	uint64_t idx;
};

/* (key, then the whole record) */
static int kv_less(const struct wire_builder *b, const struct kv *x, const struct kv *y)
{
	uint32_t i = (uint32_t)x->idx, j = (uint32_t)y->idx;

	if (x->key != y->key)
		return x->key < y->key;
	return rec_cmp(&i, &j, (void *)(uintptr_t)b) < 0;
}

/*
 * Record order into |order|, and each record's key into |keys| (in that
 * order). Tokens are uniformly random, so one counting pass on their top
 * 16 bits leaves buckets of a few records each (n / 65536), which an
 * insertion sort on the 64-bit prefix finishes; equal prefixes (one
 * person's several combinations, or a 1-in-2^64 coincidence) fall back to
 * comparing the whole record. A bucket can only grow large if the tokens
 * are not random; the insertion sort is then slow but still correct, and
 * buckets past 64 records go to qsort_r instead.
 */
static int sort_records(const struct wire_builder *b, uint32_t *order, uint64_t *keys)
{
	size_t n = b->n;
	struct kv *a;
	uint32_t *count;

	if (!(a = malloc(n * sizeof(*a))) || !(count = calloc(65537, sizeof(*count)))) {
		free(a);
		return WIRE_ERR_NOMEM;
	}
	for (size_t i = 0; i < n; i++)
		count[(b->tokens[i * WIRE_TOKEN_BYTES] << 8 | b->tokens[i * WIRE_TOKEN_BYTES + 1]) + 1]++;
	for (size_t d = 1; d <= 65536; d++)
		count[d] += count[d - 1];
	for (size_t i = 0; i < n; i++) {
		const unsigned char *p = b->tokens + i * WIRE_TOKEN_BYTES;
		struct kv *e = &a[count[p[0] << 8 | p[1]]++];

		e->key = wire_token_word(p);
		e->idx = i;
	}
	/* count[d] is now the end of bucket d, which starts where d - 1 ends */
	for (size_t d = 0, lo = 0; d < 65536; lo = count[d++]) {
		size_t hi = count[d];

		if (hi - lo > 64) {
			for (size_t i = lo; i < hi; i++)
				order[i] = (uint32_t)a[i].idx;
			qsort_r(order + lo, hi - lo, sizeof(*order), rec_cmp, (void *)(uintptr_t)b);
			for (size_t i = lo; i < hi; i++) {
				a[i].idx = order[i];
				a[i].key = wire_token_word(b->tokens + (size_t)order[i] * WIRE_TOKEN_BYTES);
			}
			continue;
		}
		for (size_t i = lo + 1; i < hi; i++) {
			struct kv x = a[i];
			size_t j = i;

			for (; j > lo && kv_less(b, &x, &a[j - 1]); j--)
				a[j] = a[j - 1];
			a[j] = x;
		}
	}
	for (size_t i = 0; i < n; i++) {
		order[i] = (uint32_t)a[i].idx;
		keys[i] = a[i].key;
	}
	sodium_memzero(a, n * sizeof(*a)); /* token prefixes */
	free(a);
	free(count);
	return 0;
}

int wire_builder_finish(struct wire_builder *b, unsigned char **plain, size_t *len, uint32_t *nrecords)
{
	size_t size = 12, reclen, kept = 0;
	uint32_t *order = NULL;
	uint64_t *keys = NULL;
	unsigned char *buf, *p, *countp;
	int rc;

	if (!b || !plain || !len || !nrecords || b->spent)
		return WIRE_ERR_ARG;
	*plain = NULL;
	*len = 0;
	*nrecords = 0;
	b->spent = 1;
	reclen = WIRE_TOKEN_BYTES + 2 * (size_t)b->nfields;
	for (uint32_t f = 0; f < b->nfields; f++) {
		size += 4;
		for (uint32_t c = 0; c < b->dict[f].n; c++)
			size += 2 + (size_t)b->dict[f].lens[c];
	}
	size += b->n * reclen;
	if (b->n && (!(order = malloc(b->n * sizeof(*order))) || !(keys = malloc(b->n * sizeof(*keys))))) {
		free(order);
		return WIRE_ERR_NOMEM;
	}
	if (b->n && b->n < 4096) {
		for (size_t i = 0; i < b->n; i++)
			order[i] = (uint32_t)i;
		qsort_r(order, b->n, sizeof(*order), rec_cmp, (void *)(uintptr_t)b);
		for (size_t i = 0; i < b->n; i++)
			keys[i] = wire_token_word(b->tokens + (size_t)order[i] * WIRE_TOKEN_BYTES);
	} else if (b->n && (rc = sort_records(b, order, keys)) < 0) {
		free(order);
		free(keys); /* sort_records filled nothing */
		return rc;
	}
	if (!(buf = malloc(size))) {
		free(order);
		if (keys)
			sodium_memzero(keys, b->n * sizeof(*keys));
		free(keys);
		return WIRE_ERR_NOMEM;
	}
	memcpy(buf, magic, 4);
	put_u32(buf + 4, b->nfields);
	p = buf + 8;
	for (uint32_t f = 0; f < b->nfields; f++) {
		put_u32(p, b->dict[f].n);
		p += 4;
		for (uint32_t c = 0; c < b->dict[f].n; c++) {
			put_u16(p, b->dict[f].lens[c]);
			memcpy(p + 2, b->dict[f].values[c], b->dict[f].lens[c]);
			p += 2 + b->dict[f].lens[c];
		}
	}
	countp = p;
	p += 4;
	for (size_t i = 0; i < b->n; i++) {
		uint32_t r = order[i];

		if (i && keys[i] == keys[i - 1] && rec_cmp(&order[i - 1], &order[i], b) == 0)
			continue; /* an exact duplicate */
		memcpy(p, b->tokens + (size_t)r * WIRE_TOKEN_BYTES, WIRE_TOKEN_BYTES);
		p += WIRE_TOKEN_BYTES;
		for (uint32_t f = 0; f < b->nfields; f++, p += 2)
			put_u16(p, b->codes[(size_t)r * b->nfields + f]);
		kept++;
	}
	put_u32(countp, (uint32_t)kept);
	free(order);
	if (keys)
		sodium_memzero(keys, b->n * sizeof(*keys));
	free(keys);
	*plain = buf;
	*len = (size_t)(p - buf);
	*nrecords = (uint32_t)kept;
	return 0;
}

void wire_builder_free(struct wire_builder *b)
{
	if (!b)
		return;
	for (uint32_t f = 0; f < b->nfields; f++) {
		for (uint32_t c = 0; c < b->dict[f].n; c++)
			free(b->dict[f].values[c]);
		free(b->dict[f].values);
		free(b->dict[f].lens);
		free(b->dict[f].slots);
	}
	if (b->tokens)
		sodium_memzero(b->tokens, b->cap * WIRE_TOKEN_BYTES);
	free(b->tokens);
	free(b->codes);
	free(b);
}

/* ---- the decoder ---- */

static int fail(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", msg);
	return WIRE_ERR_FORMAT;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The clock is read once per this many values or records: cheap next to
 * the work between two reads, and a few microseconds apart at most. */
#define DEADLINE_EVERY 1024

static int past_deadline(uint64_t deadline_ns, char *err, size_t errlen)
{
	if (!deadline_ns || now_ns() < deadline_ns)
		return 0;
	if (err && errlen)
		snprintf(err, errlen, "decoding the plaintext took longer than its deadline allows");
	return WIRE_ERR_DEADLINE;
}

/*
 * Walks the layout without allocating, copying or hashing anything: the
 * magic, the number of fields, every dictionary's count and value lengths,
 * the number of records and the total length. The counts it finds go into
 * |*nfields| and |*nrecords|, so a caller's expectations are checked before
 * any dictionary is decoded. 0 or WIRE_ERR_FORMAT.
 */
static int scan_layout(const unsigned char *buf, size_t len, uint32_t *nfields, uint32_t *nrecords, char *err,
		       size_t errlen)
{
	size_t p = 8, need;
	uint32_t nf, n;

	if (len < 4 || memcmp(buf, magic, 4) != 0)
		return fail(err, errlen, "the plaintext does not start with the magic NPT1");
	if (len < 8)
		return fail(err, errlen, "the plaintext ends before the number of fields");
	nf = get_u32(buf + 4);
	if (nf > WIRE_MAX_FIELDS)
		return fail(err, errlen, "the plaintext declares more than 8 fields");
	for (uint32_t f = 0; f < nf; f++) {
		uint32_t nvalues;

		if (len - p < 4)
			return fail(err, errlen, "the plaintext ends inside a value dictionary");
		nvalues = get_u32(buf + p);
		p += 4;
		if (nvalues > 0xFFFE + 1u)
			return fail(err, errlen, "a value dictionary has more than 65535 values");
		if ((size_t)nvalues * 2 > len - p)
			return fail(err, errlen, "a value dictionary declares more values than the plaintext holds");
		for (uint32_t c = 0; c < nvalues; c++) {
			uint16_t vlen;

			if (len - p < 2)
				return fail(err, errlen, "the plaintext ends inside a value dictionary");
			vlen = get_u16(buf + p);
			p += 2;
			if (len - p < vlen)
				return fail(err, errlen, "a dictionary value runs past the end of the plaintext");
			p += vlen;
		}
	}
	if (len - p < 4)
		return fail(err, errlen, "the plaintext ends before the number of records");
	n = get_u32(buf + p);
	p += 4;
	/* n * reclen fits a size_t on every platform we build for (< 2^37) */
	need = (size_t)n * (WIRE_TOKEN_BYTES + 2 * (size_t)nf);
	if (need > len - p)
		return fail(err, errlen, "the plaintext holds fewer records than it declares");
	if (need < len - p)
		return fail(err, errlen, "the plaintext has bytes after its last record");
	*nfields = nf;
	*nrecords = n;
	return 0;
}

/* Reads field |f|'s dictionary at |*pos| (scan_layout has checked every
 * length); 0 or a negative error. */
static int decode_dict(const unsigned char *buf, size_t len, size_t *pos, struct wire_field *wf,
		       uint64_t deadline_ns, char *err, size_t errlen)
{
	uint32_t nvalues, mask;
	uint32_t *slots = NULL;
	uint16_t *lens = NULL;
	size_t p = *pos;
	int rc = 0;

	nvalues = get_u32(buf + p);
	p += 4;
	if (nvalues == 0) {
		*pos = p;
		return 0;
	}
	for (mask = 15; mask + 1 < 2 * nvalues; mask = mask * 2 + 1)
		;
	wf->values = calloc(nvalues, sizeof(*wf->values));
	slots = calloc((size_t)mask + 1, sizeof(*slots));
	lens = malloc(nvalues * sizeof(*lens));
	if (!wf->values || !slots || !lens) {
		snprintf(err, errlen, "out of memory");
		rc = WIRE_ERR_NOMEM;
		goto done;
	}
	for (uint32_t c = 0; c < nvalues; c++) {
		uint16_t vlen = get_u16(buf + p);
		uint32_t i;

		p += 2;
		if (c % DEADLINE_EVERY == DEADLINE_EVERY - 1 && (rc = past_deadline(deadline_ns, err, errlen)) < 0)
			goto done;
		if (len - p < vlen) { /* scan_layout's check, kept beside the read */
			rc = fail(err, errlen, "a dictionary value runs past the end of the plaintext");
			goto done;
		}
		if (memchr(buf + p, 0, vlen)) {
			rc = fail(err, errlen, "a dictionary value contains a NUL byte");
			goto done;
		}
		for (i = (uint32_t)hash_bytes((const char *)buf + p, vlen) & mask; slots[i]; i = (i + 1) & mask) {
			uint32_t o = slots[i] - 1;

			if (lens[o] == vlen && memcmp(wf->values[o], buf + p, vlen) == 0) {
				rc = fail(err, errlen, "a value dictionary holds the same value twice");
				goto done;
			}
		}
		if (!(wf->values[c] = malloc((size_t)vlen + 1))) {
			snprintf(err, errlen, "out of memory");
			rc = WIRE_ERR_NOMEM;
			goto done;
		}
		memcpy(wf->values[c], buf + p, vlen);
		wf->values[c][vlen] = '\0';
		wf->nvalues = (uint16_t)(c + 1);
		lens[c] = vlen;
		slots[i] = c + 1;
		p += vlen;
	}
	*pos = p;
done:
	free(lens);
	free(slots);
	return rc;
}

int wire_decode(const unsigned char *buf, size_t len, struct wire_tokens *out, char *err, size_t errlen)
{
	return wire_decode_expect(buf, len, NULL, out, err, errlen);
}

int wire_decode_expect(const unsigned char *buf, size_t len, const struct wire_expect *x,
		       struct wire_tokens *out, char *err, size_t errlen)
{
	size_t p = 8, reclen;
	uint32_t nfields, n;
	uint64_t deadline = x ? x->deadline_ns : 0;
	int rc;

	if (!out)
		return WIRE_ERR_ARG;
	memset(out, 0, sizeof(*out));
	if (!buf && len)
		return WIRE_ERR_ARG;
	/* Counts and sizes first: nothing is allocated or hashed for an answer
	 * whose shape is wrong. */
	if ((rc = scan_layout(buf, len, &nfields, &n, err, errlen)) < 0)
		return rc;
	if (x && nfields != x->nfields)
		return fail(err, errlen, "the plaintext has another number of fields than asked");
	if (x && n != x->nrecords)
		return fail(err, errlen, "the plaintext holds another number of records than its head says");
	if (hash_init() < 0) {
		if (err && errlen)
			snprintf(err, errlen, "libsodium cannot be initialised");
		return WIRE_ERR_CRYPTO;
	}
	out->nfields = nfields;
	for (uint32_t f = 0; f < nfields; f++)
		if ((rc = decode_dict(buf, len, &p, &out->fields[f], deadline, err, errlen)) < 0)
			goto fail;
	p += 4; /* the number of records, |n| */
	reclen = WIRE_TOKEN_BYTES + 2 * (size_t)nfields;
	if (n) {
		out->tokens = malloc((size_t)n * WIRE_TOKEN_BYTES);
		if (nfields)
			out->codes = malloc((size_t)n * nfields * sizeof(*out->codes));
		if (!out->tokens || (nfields && !out->codes)) {
			snprintf(err, errlen, "out of memory");
			rc = WIRE_ERR_NOMEM;
			goto fail;
		}
	}
	out->nrecords = n;
	for (uint32_t r = 0; r < n; r++, p += reclen) {
		unsigned char *tok = out->tokens + (size_t)r * WIRE_TOKEN_BYTES;

		if (r % (64 * DEADLINE_EVERY) == 64 * DEADLINE_EVERY - 1 &&
		    (rc = past_deadline(deadline, err, errlen)) < 0)
			goto fail;
		memcpy(tok, buf + p, WIRE_TOKEN_BYTES);
		if (r && wire_token_less(tok, tok - WIRE_TOKEN_BYTES)) {
			rc = fail(err, errlen, "the records are not sorted by token");
			goto fail;
		}
		for (uint32_t f = 0; f < nfields; f++) {
			uint16_t c = get_u16(buf + p + WIRE_TOKEN_BYTES + 2 * f);

			if (c != WIRE_NULL && c >= out->fields[f].nvalues) {
				rc = fail(err, errlen, "a record has a code outside its field's dictionary");
				goto fail;
			}
			out->codes[(size_t)r * nfields + f] = c;
		}
	}
	return 0;
fail:
	wire_tokens_free(out);
	return rc;
}

void wire_tokens_free(struct wire_tokens *t)
{
	if (!t)
		return;
	for (uint32_t f = 0; f < t->nfields && f < WIRE_MAX_FIELDS; f++) {
		for (uint32_t c = 0; t->fields[f].values && c < t->fields[f].nvalues; c++)
			free(t->fields[f].values[c]);
		free(t->fields[f].values);
	}
	if (t->tokens)
		sodium_memzero(t->tokens, (size_t)t->nrecords * WIRE_TOKEN_BYTES);
	if (t->codes)
		sodium_memzero(t->codes, (size_t)t->nrecords * t->nfields * sizeof(*t->codes));
	free(t->tokens);
	free(t->codes);
	memset(t, 0, sizeof(*t));
}

/* ---- the sealed box ---- */

int wire_seal(const unsigned char *plain, size_t len, const unsigned char hub_pk[32], size_t head_room,
	      unsigned char **body, size_t *bodylen)
{
	unsigned char *buf;
	size_t boxlen;

	if (!body || !bodylen || !hub_pk || (!plain && len))
		return WIRE_ERR_ARG;
	*body = NULL;
	*bodylen = 0;
	if (sodium_init() < 0)
		return WIRE_ERR_CRYPTO;
	if (len > UINT32_MAX - crypto_box_SEALBYTES || head_room > SIZE_MAX / 2)
		return WIRE_ERR_ARG;
	boxlen = len + crypto_box_SEALBYTES;
	if (!(buf = malloc(WIRE_SEALED_PREFIX + boxlen + head_room)))
		return WIRE_ERR_NOMEM;
	memcpy(buf, WIRE_SEALED_MAGIC, 4);
	put_u32(buf + 4, (uint32_t)boxlen);
	if (crypto_box_seal(buf + WIRE_SEALED_PREFIX, plain ? plain : (const unsigned char *)"", len, hub_pk) != 0) {
		free(buf);
		return WIRE_ERR_CRYPTO;
	}
	*body = buf;
	*bodylen = WIRE_SEALED_PREFIX + boxlen;
	return 0;
}

int wire_unwrap(const unsigned char *body, size_t len, const unsigned char **box, size_t *boxlen,
		const char **head, size_t *headlen, char *err, size_t errlen)
{
	size_t n;

	if (!box || !boxlen || !head || !headlen || (!body && len)) {
		if (err && errlen)
			snprintf(err, errlen, "a NULL argument");
		return WIRE_ERR_ARG;
	}
	*box = NULL;
	*head = NULL;
	*boxlen = *headlen = 0;
	if (len < WIRE_SEALED_PREFIX || memcmp(body, WIRE_SEALED_MAGIC, 4) != 0)
		return fail(err, errlen, "it is not a sealed token answer (no magic)");
	n = get_u32(body + 4);
	if (n > len - WIRE_SEALED_PREFIX)
		return fail(err, errlen, "its box is longer than the answer");
	*box = body + WIRE_SEALED_PREFIX;
	*boxlen = n;
	*head = (const char *)body + WIRE_SEALED_PREFIX + n;
	*headlen = len - WIRE_SEALED_PREFIX - n;
	return 0;
}

int wire_open(const unsigned char *box, size_t boxlen, const unsigned char hub_pk[32],
	      const unsigned char hub_sk[32], unsigned char **plain, size_t *len, char *err, size_t errlen)
{
	unsigned char *out;

	if (!plain || !len || !hub_pk || !hub_sk || (!box && boxlen)) {
		if (err && errlen)
			snprintf(err, errlen, "a NULL argument");
		return WIRE_ERR_ARG;
	}
	*plain = NULL;
	*len = 0;
	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium cannot be initialised");
		return WIRE_ERR_CRYPTO;
	}
	if (boxlen < crypto_box_SEALBYTES)
		return fail(err, errlen, "the sealed answer is too short to be a sealed box");
	if (!(out = malloc(boxlen - crypto_box_SEALBYTES + 1))) {
		snprintf(err, errlen, "out of memory");
		return WIRE_ERR_NOMEM;
	}
	if (crypto_box_seal_open(out, box, boxlen, hub_pk, hub_sk) != 0) {
		free(out);
		if (err && errlen)
			snprintf(err, errlen, "the sealed answer cannot be opened with the hub's key (wrong key, or altered)");
		return WIRE_ERR_CRYPTO;
	}
	*plain = out;
	*len = boxlen - crypto_box_SEALBYTES;
	return 0;
}
