/*
 * Pseudonymisation: BSN validation and keyed pseudonyms. A plain hash of a
 * BSN protects nothing (there are only about 91 million valid numbers), so
 * every pseudonym is a keyed BLAKE2b under a key derived from one master key.
 *
 * Words: BSN = burgerservicenummer, the Dutch citizen service number; the
 * elfproef ("eleven test") is its checksum.
 *
 * Key hierarchy (all keys 32 bytes; BLAKE2b = libsodium's crypto_generichash,
 * "personal" = its 16-byte personalisation parameter, LP(s) = the length of s
 * as 8 bytes little-endian followed by the bytes of s):
 *
 *   M                 the master key (`noordpoort keygen`)
 *   R_purpose       = crypto_kdf_derive_from_key(id 1, context "NPpseudo", M)
 *   R_recipient     = crypto_kdf_derive_from_key(id 2, context "NPpseudo", M)
 *   K_audit         = crypto_kdf_derive_from_key(id 3, context "NPpseudo", M)
 *   K_purpose(p)    = BLAKE2b-256(key R_purpose,   personal "NP-purpose-v1",
 *                                 LP(p))
 *   K_recipient(p,r)= BLAKE2b-256(key R_recipient, personal "NP-recipient-v1",
 *                                 LP(p) || LP(r))
 *   K_query(K, q)   = BLAKE2b-256(key K,           personal "NP-query-v1",
 *                                 q)            (q: 16-byte query id)
 *   token(K, bsn)   = BLAKE2b-256(key K, the 9 ASCII digits of the BSN,
 *                                 zero-padded)  (no personalisation)
 *
 * Why two steps instead of a hashed 64-bit crypto_kdf subkey id per string:
 * 64-bit ids from strings collide after about 2^32 strings and truncate the
 * input; a keyed BLAKE2b over a length-prefixed encoding is injective up to
 * BLAKE2b collisions. Domain separation: each kind of key hangs off its own
 * crypto_kdf root (ids 1, 2, 3), so purpose, recipient and audit keys are
 * independent even for equal strings; query keys use a personalisation that
 * tokens never use, so deriving a query key from K is not a token under K.
 * Tokens of different kinds therefore come from independent keys and cannot
 * be joined. Changing any of this changes every pseudonym: the unit tests pin
 * fixed vectors (tests/unit/test_pseudo.c).
 *
 * Master key file: one line of text, "noordpoort-master-key-v1 " followed by
 * 64 lower-case hex digits and a newline (90 bytes; the newline may be
 * missing). Mode 0600: a file that group or others may read or write is
 * refused, as is one owned by another user than the process or root.
 *
 * Memory: the master and every derived key live in sodium_malloc memory
 * (guard pages, mlock'd, wiped on free), read-only once built. A derived key
 * also holds the BLAKE2b chaining value after its key block (so a token costs
 * one compression, not two); that value is as secret as the key. Each key costs
 * a few pages of address space and one locked page; per-query keys are meant
 * to be freed when the query ends. Keys are immutable after derivation, so
 * one key may be used by several threads at once.
 */
#ifndef NOORDPOORT_PSEUDO_H
#define NOORDPOORT_PSEUDO_H

#include "../common/err.h"

#include <stddef.h>
#include <stdint.h>

/* BSN: burgerservicenummer. Validation by the elfproef. */
enum bsn_error { BSN_OK = 0, BSN_EMPTY = -640, BSN_NOT_DIGITS = -641, BSN_LENGTH = -642, BSN_ZERO = -643, BSN_CHECKSUM = -644 };

/*
 * Parses |len| bytes (peer data: never strlen'd): 9 digits, or 8 digits
 * left-padded with 0; weights 9..2 and -1; sum % 11 == 0; 000000000 refused.
 * Checks in this order: len 0 -> BSN_EMPTY; any byte not '0'..'9' (including
 * NUL, spaces, signs) -> BSN_NOT_DIGITS; not 8 or 9 digits -> BSN_LENGTH;
 * all zero -> BSN_ZERO; elfproef -> BSN_CHECKSUM. On BSN_OK writes the number
 * to |*out| (0 < *out <= 999999999); otherwise leaves |*out| alone.
 */
int bsn_parse(const char *s, size_t len, uint32_t *out);

/* "ok", "invalid_bsn_empty", "invalid_bsn_not_digits", "invalid_bsn_length",
 * "invalid_bsn_zero", "invalid_bsn_checksum"; "invalid_bsn" for anything else. */
const char *bsn_error_name(int err);

/* 9 digits + NUL, zero-padded. |bsn| must be <= 999999999 (as from bsn_parse);
 * larger values are reduced modulo 10^9. */
void bsn_format(uint32_t bsn, char out[10]);

#define PSEUDO_TOKEN_BYTES 32
#define PSEUDO_KEY_BYTES 32
#define PSEUDO_QUERY_ID_BYTES 16

struct pseudo_master;   /* the master key, sodium_malloc'd, read-only (sodium_mprotect_readonly) after load */
struct pseudo_key;      /* a derived key with the BLAKE2b chaining value after its key block precomputed */

/* What the functions below return (0 on success). */
enum pseudo_error {
	PSEUDO_OK = 0,
	PSEUDO_ERR_NOMEM = NP_ERR_NOMEM,    /* sodium_malloc failed (or sodium_init) */
	PSEUDO_ERR_ARG = NP_ERR_ARG,      /* NULL or empty argument */
	PSEUDO_ERR_IO = NP_ERR_IO,       /* open/read/write/fsync failed; errno text in err */
	PSEUDO_ERR_EXISTS = NP_ERR_EXISTS,   /* generate: the file exists (never overwritten) */
	PSEUDO_ERR_INSECURE = NP_ERR_INSECURE, /* load: group/other permissions, foreign owner, not a regular file */
	PSEUDO_ERR_FORMAT = NP_ERR_FORMAT,   /* load: wrong size or not a master key line */
	PSEUDO_ERR_CRYPTO = NP_ERR_CRYPTO,   /* a libsodium call failed (should not happen) */
};

/*
 * Writes a new random master key to |path|: O_CREAT|O_EXCL (refuses to
 * overwrite, refuses a symlink at |path|), mode 0600 whatever the umask,
 * fsync'd. On failure after creating the file, removes it. Returns 0,
 * PSEUDO_ERR_ARG, _EXISTS, _IO, _NOMEM; |err| names the path and the reason.
 */
int pseudo_master_generate(const char *path, char *err, size_t errlen);

/*
 * Loads the master key at |path| into sodium_malloc memory, read-only.
 * Refuses a file readable/writable by group or others, owned by another user
 * than the process or root, not a regular file, of the wrong size or format.
 * Returns 0 and sets |*out| (the caller frees it with pseudo_master_free), or
 * PSEUDO_ERR_ARG, _IO, _INSECURE, _FORMAT, _NOMEM with |*out| = NULL.
 */
int pseudo_master_load(const char *path, struct pseudo_master **out, char *err, size_t errlen);
void pseudo_master_free(struct pseudo_master *m); /* wipes; NULL is a no-op */

/*
 * Derivations (see the key hierarchy above). Each returns 0 and sets |*out|,
 * or PSEUDO_ERR_ARG (NULL, or an empty purpose/recipient), PSEUDO_ERR_NOMEM
 * or PSEUDO_ERR_CRYPTO with |*out| = NULL. The caller frees with
 * pseudo_key_free. The parent (master or key) is only read.
 * pseudo_key_query accepts any derived key as the parent; the design uses the
 * purpose key.
 */
int pseudo_key_purpose(const struct pseudo_master *m, const char *purpose, struct pseudo_key **out);
int pseudo_key_recipient(const struct pseudo_master *m, const char *purpose, const char *recipient, struct pseudo_key **out);
int pseudo_key_query(const struct pseudo_key *purpose_key, const unsigned char query_id[16], struct pseudo_key **out);
int pseudo_key_audit(const struct pseudo_master *m, struct pseudo_key **out);   /* for the audit log's subject pseudonyms */
void pseudo_key_free(struct pseudo_key *k); /* wipes; NULL is a no-op */

/*
 * Keyed BLAKE2b of the canonical 9-digit BSN under |k|: equal to
 * crypto_generichash(out, 32, digits, 9, key, 32). Hot path: no allocation;
 * one BLAKE2b compression (the final block: the 9 digits, zero-padded) from
 * the chaining value the key block left, which was computed once when |k|
 * was derived. Wipes the digits and the stack it used. |bsn| as for
 * bsn_format.
 */
void pseudo_token(const struct pseudo_key *k, uint32_t bsn, unsigned char out[PSEUDO_TOKEN_BYTES]);

/*
 * pseudo_token for |n| BSNs at once (n may be 0; then nothing is read or
 * written): out[i] = token of bsns[i], bit-identical to pseudo_token. For
 * whole datasets: four tokens per compression pass on CPUs with AVX2 (chosen
 * at run time), one at a time otherwise. No allocation; wipes its stack once
 * per call. |bsns| and |out| must not overlap. Like pseudo_token, safe to
 * call from several threads with one key.
 */
void pseudo_tokens(const struct pseudo_key *k, const uint32_t *bsns, size_t n,
		   unsigned char (*out)[PSEUDO_TOKEN_BYTES]);

/* Lower-case hex of |n| bytes; |out| has room for 2n+1 (NUL-terminated). */
void pseudo_hex(const unsigned char *in, size_t n, char *out);

#endif
