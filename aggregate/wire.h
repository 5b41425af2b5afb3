/*
 * The wire between a node and the hub for linked questions: per-query tokens
 * with their dictionary-coded attributes, in the binary plaintext of
 * docs/federation.md ("Mode tokens"), sealed to the hub's X25519 key. The
 * node builds and seals; the hub opens and decodes, refusing anything that is
 * not exactly what a node builds. Library code: never logs, never exits.
 */
#ifndef NOORDPOORT_WIRE_H
#define NOORDPOORT_WIRE_H

#include "../common/err.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define WIRE_TOKEN_BYTES 16
#define WIRE_NULL 0xFFFFu
#define WIRE_MAX_FIELDS 8

/* What the functions below return (0 on success). */
enum wire_error {
	WIRE_OK = 0,
	WIRE_ERR_ARG = NP_ERR_ARG,    /* NULL argument, nfields > WIRE_MAX_FIELDS */
	WIRE_ERR_NOMEM = NP_ERR_NOMEM,
	WIRE_ERR_LIMIT = NP_ERR_LIMIT,  /* builder: a 65536th distinct value in a field, a value longer
	                       * than 65535 bytes, or more than 2^32-1 records */
	WIRE_ERR_FORMAT = NP_ERR_FORMAT, /* decode/open: malformed input (|err| says what) */
	WIRE_ERR_CRYPTO = NP_ERR_CRYPTO, /* open: wrong key or altered ciphertext; seal, builder, decode:
	                       * libsodium failed to initialise */
	WIRE_ERR_DEADLINE = NP_ERR_DEADLINE, /* decode: past the caller's deadline (wire_decode_expect) */
};

/* The value dictionary of one field: values[code], NUL-terminated (a value
 * never contains a NUL byte). */
struct wire_field {
	char **values;
	uint16_t nvalues;
};

/* A decoded tokens answer; every pointer is owned by it (wire_tokens_free). */
struct wire_tokens {
	uint32_t nfields;
	struct wire_field fields[WIRE_MAX_FIELDS];
	uint32_t nrecords;
	unsigned char *tokens;  /* nrecords * WIRE_TOKEN_BYTES, sorted ascending */
	uint16_t *codes;        /* nrecords * nfields, row-major; WIRE_NULL = null */
};

/*
 * Token order is memcmp order of the 16 bytes. These compare them as two
 * big-endian 64-bit words instead: no library call per comparison, which
 * matters where a million records are checked or joined (the hub's join,
 * the decoder's sort check).
 */
static inline uint64_t wire_token_word(const unsigned char *t)
{
	uint64_t w;

	memcpy(&w, t, sizeof(w));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	w = __builtin_bswap64(w);
#endif
	return w;
}

static inline int wire_token_less(const unsigned char *a, const unsigned char *b)
{
	uint64_t a0 = wire_token_word(a), b0 = wire_token_word(b);

	return a0 < b0 || (a0 == b0 && wire_token_word(a + 8) < wire_token_word(b + 8));
}

static inline int wire_token_equal(const unsigned char *a, const unsigned char *b)
{
	uint64_t a0, b0, a1, b1;

	memcpy(&a0, a, 8);
	memcpy(&b0, b, 8);
	memcpy(&a1, a + 8, 8);
	memcpy(&b1, b + 8, 8);
	return ((a0 ^ b0) | (a1 ^ b1)) == 0;
}

_Static_assert(WIRE_TOKEN_BYTES == 16, "wire_token_less and wire_token_equal compare 16-byte tokens");

struct wire_builder;

/* A builder for records of |nfields| (0..WIRE_MAX_FIELDS; 0 is a population
 * dataset that contributes only its persons). 0 and |*out| (free with
 * wire_builder_free), or WIRE_ERR_ARG / WIRE_ERR_NOMEM / WIRE_ERR_CRYPTO
 * (libsodium cannot be initialised) with |*out| = NULL. */
int wire_builder_new(uint32_t nfields, struct wire_builder **out);

/*
 * Adds one record; |values| has nfields entries (NUL-terminated, copied),
 * NULL = null; |values| may be NULL when nfields is 0. Values are
 * dictionary-coded (at most 65535 distinct per field, each at most 65535
 * bytes). Returns 0, WIRE_ERR_ARG, WIRE_ERR_NOMEM or WIRE_ERR_LIMIT; on an
 * error no record is added (a value it coded may stay in the dictionary).
 */
int wire_builder_add(struct wire_builder *b, const unsigned char token[WIRE_TOKEN_BYTES],
		     const char *const *values);

/*
 * Room for |n| records in all (no realloc while adding: a million records
 * fault their pages in once). Returns 0, WIRE_ERR_ARG, WIRE_ERR_NOMEM, or
 * WIRE_ERR_LIMIT for more than 2^32-1 records.
 */
int wire_builder_reserve(struct wire_builder *b, size_t n);

/*
 * For a caller that has already coded its values (the node's scan does):
 * sets field |field|'s dictionary to |values| (NUL-terminated, copied;
 * code i = values[i]), before any record is added and at most once per
 * field. Returns 0, WIRE_ERR_ARG (after the first record, twice, a NULL
 * value, the same value twice), WIRE_ERR_NOMEM, WIRE_ERR_LIMIT.
 */
int wire_builder_set_dict(struct wire_builder *b, uint32_t field, const char *const *values, size_t nvalues);

/*
 * Adds one record by its codes (nfields of them; WIRE_NULL = null) into the
 * dictionaries of wire_builder_set_dict; no string is looked up. Returns 0,
 * WIRE_ERR_ARG (a code outside its dictionary), WIRE_ERR_NOMEM,
 * WIRE_ERR_LIMIT; on an error no record is added.
 */
int wire_builder_add_coded(struct wire_builder *b, const unsigned char token[WIRE_TOKEN_BYTES],
			   const uint16_t *codes);

/*
 * Sorts by token (then codes), drops exact duplicates, serialises the
 * plaintext of docs/federation.md. On 0, |*plain| (malloc'd, |*len| bytes)
 * belongs to the caller, who wipes it (sodium_memzero: it holds tokens) and
 * frees it; |*nrecords| is the number of records written. The builder is
 * spent either way: only wire_builder_free may follow. Returns 0,
 * WIRE_ERR_ARG, WIRE_ERR_NOMEM.
 */
int wire_builder_finish(struct wire_builder *b, unsigned char **plain, size_t *len, uint32_t *nrecords);

/* Wipes the tokens it holds and frees |b|; NULL is a no-op. */
void wire_builder_free(struct wire_builder *b);

/*
 * Strict decoder: magic, counts within the buffer, no NUL in a value, no
 * value twice in a dictionary, codes in range, tokens sorted (ascending;
 * equal tokens are one person's several combinations), no trailing bytes.
 * On 0, |*out| is filled (free with wire_tokens_free). On any problem returns
 * WIRE_ERR_FORMAT (or WIRE_ERR_ARG, WIRE_ERR_NOMEM, WIRE_ERR_CRYPTO) with one sentence in
 * |err| and |*out| zeroed, nothing to free. |buf| is only read.
 */
int wire_decode(const unsigned char *buf, size_t len, struct wire_tokens *out, char *err, size_t errlen);

/* What a caller knows before decoding (the hub: the fields it asked for,
 * the records the answer's head announces, its own deadline). */
struct wire_expect {
	uint32_t nfields;     /* exactly this many fields */
	uint32_t nrecords;    /* exactly this many records */
	uint64_t deadline_ns; /* CLOCK_MONOTONIC nanoseconds; 0: none */
};

/*
 * wire_decode, but the layout (every count and length) is walked first,
 * without allocating or hashing, and an answer whose field or record count
 * is not |x|'s is refused (WIRE_ERR_FORMAT) before any value is decoded;
 * decoding stops with WIRE_ERR_DEADLINE once the monotonic clock passes
 * |x->deadline_ns| (checked every 1024 values). |x| may be NULL (=
 * wire_decode). Ownership and the other errors as wire_decode.
 */
int wire_decode_expect(const unsigned char *buf, size_t len, const struct wire_expect *x,
		       struct wire_tokens *out, char *err, size_t errlen);

/* Wipes the tokens (sodium_memzero) and the codes, frees everything and
 * zeroes |t|; NULL is a no-op. */
void wire_tokens_free(struct wire_tokens *t);

/*
 * The body of a node's tokens answer (docs/federation.md, "Mode tokens"):
 *
 *   "NPS1"          magic
 *   u32 boxlen      little-endian
 *   boxlen bytes    crypto_box_seal(plaintext, hub public key)
 *   the rest        the head: a small JSON object (dataset, policy_hash,
 *                   records, audit_id)
 *
 * Binary, so a million records cost no base64 and no JSON parse of tens of
 * megabytes; the head comes last because the node learns its audit id
 * after sealing (nothing leaves before the audit line, and sealing must
 * not be able to fail after it).
 */
#define WIRE_SEALED_MAGIC "NPS1"
#define WIRE_SEALED_PREFIX 8 /* magic + boxlen */
#define WIRE_SEALED_CONTENT_TYPE "application/vnd.noordpoort.sealed"

/*
 * The node's side: seals |plain| (|len| bytes) to the hub's X25519 public
 * key into a new buffer that holds the magic, the box length and the box,
 * with room for |head_room| more bytes after it (the head, appended by the
 * caller at *body + *bodylen). On 0, |*body| is malloc'd (the caller frees
 * it) and |*bodylen| = WIRE_SEALED_PREFIX + the box length. Returns 0,
 * WIRE_ERR_ARG (NULL argument, a box over 4 GiB), WIRE_ERR_NOMEM or
 * WIRE_ERR_CRYPTO.
 */
int wire_seal(const unsigned char *plain, size_t len, const unsigned char hub_pk[32], size_t head_room,
	      unsigned char **body, size_t *bodylen);

/*
 * The hub's side, step 1: splits a tokens answer body (peer data, |len|
 * bytes) into its box and its head, checking the magic and that the box
 * length fits. Pointers go into |body|. Returns 0, or WIRE_ERR_FORMAT with
 * one sentence in |err| (WIRE_ERR_ARG for NULL arguments).
 */
int wire_unwrap(const unsigned char *body, size_t len, const unsigned char **box, size_t *boxlen,
		const char **head, size_t *headlen, char *err, size_t errlen);

/*
 * Step 2: opens |box| (|boxlen| bytes) with the hub's key pair. On 0,
 * |*plain| (malloc'd, |*len| bytes, never NULL even when empty) belongs to
 * the caller, who wipes (sodium_memzero) and frees it. Returns
 * WIRE_ERR_FORMAT (too short to be a sealed box), WIRE_ERR_CRYPTO (wrong
 * key, altered), WIRE_ERR_ARG or WIRE_ERR_NOMEM with one sentence in |err|
 * and |*plain| = NULL.
 */
int wire_open(const unsigned char *box, size_t boxlen, const unsigned char hub_pk[32],
	      const unsigned char hub_sk[32], unsigned char **plain, size_t *len, char *err, size_t errlen);

#endif
