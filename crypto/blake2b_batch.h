/*
 * Internal to crypto/: how pseudo_token and pseudo_tokens evaluate keyed
 * BLAKE2b-256 of the 9 BSN digits with ONE compression per token, starting
 * from the chaining value left by the key block (computed once per key).
 * The result is crypto_generichash(out, 32, digits, 9, key, 32), bit for bit.
 */
#ifndef NOORDPOORT_BLAKE2B_BATCH_H
#define NOORDPOORT_BLAKE2B_BATCH_H

#include <stddef.h>
#include <stdint.h>

#define PSEUDO_B2B_CV_WORDS 8

/*
 * The BLAKE2b-256 chaining value after the key block of a 32-byte key
 * (parameter block: digest 32, key 32, fanout 1, depth 1; block 1 = the key
 * zero-padded to 128 bytes, counter 128, not final). As secret as the key:
 * the caller keeps it in the key's sodium_malloc memory. Wipes its temporaries.
 */
void pseudo_b2b_key_cv(const unsigned char key[32], uint64_t cv[PSEUDO_B2B_CV_WORDS]);

/* One token: the final block holds the 9 ASCII digits of |bsn| % 10^9,
 * zero-padded; counter 137, final flag. Wipes the digits it formatted. */
void pseudo_b2b_token(const uint64_t cv[PSEUDO_B2B_CV_WORDS], uint32_t bsn, unsigned char out[32]);

/* |n| tokens (n may be 0): eight at a time with AVX-512F when the CPU has
 * it, four at a time with AVX2, otherwise one at a time. Wipes its
 * temporaries once per call. */
void pseudo_b2b_tokens(const uint64_t cv[PSEUDO_B2B_CV_WORDS], const uint32_t *bsns, size_t n,
		       unsigned char (*out)[32]);

/* "avx512", "avx2" or "scalar": what pseudo_b2b_tokens uses on this CPU now. */
const char *pseudo_b2b_impl(void);

#endif
