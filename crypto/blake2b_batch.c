/*
 * Keyed BLAKE2b-256 of a BSN's 9 digits at one compression per token. A
 * keyed BLAKE2b hash of 9 bytes is two compressions (the key block, then the
 * data block); libsodium buffers the key block until final, so it pays both
 * every time. Here the key block is compressed once per key
 * (pseudo_b2b_key_cv) and each token is the one final compression (RFC 7693
 * section 3.2) from that chaining value: the same function, evaluated
 * differently. The tests compare it with crypto_generichash on every run.
 */
#include <string.h>

#include <sodium.h>

#include "blake2b_batch.h"

static const uint64_t b2b_iv[8] = {
	0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
	0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

/* Parameter block word 0: digest length 32, key length 32, fanout 1, depth 1. */
#define B2B_PARAM0 0x01012020ULL
/* Counter of the token block: the key block (128) plus the 9 digits. */
#define B2B_TOKEN_T (128 + 9)

/*
 * The twelve rounds over v[0..15] with message words m[0..15], for any word
 * type: scalar uint64_t or a GCC vector of them (one record per lane). The
 * four rotations are macros of the includer, so each type gets its cheapest
 * form. Indices are constants, so for the token block, whose message is two
 * words and fourteen zeros, the compiler drops the 168 additions of zero.
 */
#define B2B_G(a, b, c, d, x, y)            \
	do {                               \
		v[a] = v[a] + v[b] + (x);  \
		v[d] = ROT32(v[d] ^ v[a]); \
		v[c] = v[c] + v[d];        \
		v[b] = ROT24(v[b] ^ v[c]); \
		v[a] = v[a] + v[b] + (y);  \
		v[d] = ROT16(v[d] ^ v[a]); \
		v[c] = v[c] + v[d];        \
		v[b] = ROT63(v[b] ^ v[c]); \
	} while (0)

#define B2B_ROUND(s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15) \
	do {                                                                             \
		B2B_G(0, 4, 8, 12, m[s0], m[s1]);                                        \
		B2B_G(1, 5, 9, 13, m[s2], m[s3]);                                        \
		B2B_G(2, 6, 10, 14, m[s4], m[s5]);                                       \
		B2B_G(3, 7, 11, 15, m[s6], m[s7]);                                       \
		B2B_G(0, 5, 10, 15, m[s8], m[s9]);                                       \
		B2B_G(1, 6, 11, 12, m[s10], m[s11]);                                     \
		B2B_G(2, 7, 8, 13, m[s12], m[s13]);                                      \
		B2B_G(3, 4, 9, 14, m[s14], m[s15]);                                      \
	} while (0)

#define B2B_ROUNDS()                                                          \
	do {                                                                  \
		B2B_ROUND(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); \
		B2B_ROUND(14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3); \
		B2B_ROUND(11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4); \
		B2B_ROUND(7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8); \
		B2B_ROUND(9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13); \
		B2B_ROUND(2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9); \
		B2B_ROUND(12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11); \
		B2B_ROUND(13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10); \
		B2B_ROUND(6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5); \
		B2B_ROUND(10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0); \
		B2B_ROUND(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); \
		B2B_ROUND(14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3); \
	} while (0)

/* ---- scalar ------------------------------------------------------------- */

#define ROTR64(x, n) (((x) >> (n)) | ((x) << (64 - (n))))
#define ROT32(x) ROTR64(x, 32)
#define ROT24(x) ROTR64(x, 24)
#define ROT16(x) ROTR64(x, 16)
#define ROT63(x) ROTR64(x, 63)

static uint64_t load64_le(const unsigned char *p)
{
	uint64_t w = 0;

	for (int i = 7; i >= 0; i--)
		w = w << 8 | p[i];
	return w;
}

static void store64_le(unsigned char *p, uint64_t w)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(w >> (8 * i));
}

/*
 * The 9 ASCII digits of |bsn| % 10^9 as message words: digits 0..7 (most
 * significant first) are the bytes of |*w0| in little-endian order, digit 8
 * is |*w1|. Division-free after two divisions: the 8 leading digits are split
 * into 4-digit halves, then pairs, then digits, several lanes per 64-bit
 * multiply (the lanes never carry into each other: every product fits).
 */
static inline void bsn_words(uint32_t bsn, uint64_t *w0, uint64_t *w1)
{
	uint32_t b = bsn % 1000000000u, q = b / 10, hi = q / 10000, lo = q - hi * 10000;
	uint64_t x = hi | (uint64_t)lo << 32, a, z, t;

	a = ((x * 10486) >> 20) & 0x0000007f0000007fULL;        /* x / 100, per 32-bit lane (x < 10^4) */
	z = a | (x - a * 100) << 16;                             /* 4 pairs in 16-bit lanes */
	t = ((z * 103) >> 10) & 0x000f000f000f000fULL;           /* z / 10, per 16-bit lane (z < 100) */
	*w0 = 0x3030303030303030ULL | t | (z - t * 10) << 8;     /* tens, ones in 8-bit lanes */
	*w1 = 0x30 | (uint64_t)(b - q * 10);
}

/* Generic compression, scalar: for the key block (once per key). */
static void compress(uint64_t h[8], const uint64_t m[16], uint64_t t, int last)
{
	uint64_t v[16];

	for (int i = 0; i < 8; i++) {
		v[i] = h[i];
		v[i + 8] = b2b_iv[i];
	}
	v[12] ^= t;
	if (last)
		v[14] = ~v[14];
	B2B_ROUNDS();
	for (int i = 0; i < 8; i++)
		h[i] ^= v[i] ^ v[i + 8];
	sodium_memzero(v, sizeof(v));
}

void pseudo_b2b_key_cv(const unsigned char key[32], uint64_t cv[PSEUDO_B2B_CV_WORDS])
{
	uint64_t m[16] = { 0 };

	for (int i = 0; i < 4; i++)
		m[i] = load64_le(key + 8 * i);
	for (int i = 0; i < 8; i++)
		cv[i] = b2b_iv[i];
	cv[0] ^= B2B_PARAM0;
	compress(cv, m, 128, 0);
	sodium_memzero(m, sizeof(m));
}

/*
 * The token block, scalar: message (w0, w1, 0, ..., 0). Only the first four
 * output words are needed (BLAKE2b-256). Inlined into the two callers.
 */
static inline void token_block(const uint64_t cv[8], uint64_t w0, uint64_t w1, unsigned char out[32])
{
	const uint64_t m[16] = { w0, w1 };
	uint64_t v[16];

	for (int i = 0; i < 8; i++) {
		v[i] = cv[i];
		v[i + 8] = b2b_iv[i];
	}
	v[12] ^= B2B_TOKEN_T;
	v[14] = ~v[14];
	B2B_ROUNDS();
	for (int i = 0; i < 4; i++)
		store64_le(out + 8 * i, cv[i] ^ v[i] ^ v[i + 8]);
}

/*
 * Registers spilled by the rounds hold key-dependent state and digits; after
 * the work is done, overwrite the stack the worker used (gcrypt's
 * burn_stack): the buffer lands where the worker's frame was. Sizes are
 * above the workers' frames (gcc -fstack-usage, x86-64 -O2: tokens_scalar
 * 184 bytes, tokens_avx2 1344, tokens_avx512 1792). One memset per call, not per token.
 */
#define BURN_STACK(name, size)                                    \
	static __attribute__((noinline)) void name(void)          \
	{                                                         \
		unsigned char buf[size];                          \
                                                                  \
		sodium_memzero(buf, sizeof(buf));                 \
	}
BURN_STACK(burn_stack_small, 512)
BURN_STACK(burn_stack, 4096)

static __attribute__((noinline)) void tokens_scalar(const uint64_t cv[8], const uint32_t *bsns, size_t n,
						    unsigned char (*out)[32])
{
	for (size_t i = 0; i < n; i++) {
		uint64_t w0, w1;

		bsn_words(bsns[i], &w0, &w1);
		token_block(cv, w0, w1, out[i]);
	}
}

void pseudo_b2b_token(const uint64_t cv[PSEUDO_B2B_CV_WORDS], uint32_t bsn, unsigned char out[32])
{
	tokens_scalar(cv, &bsn, 1, (unsigned char (*)[32])out);
	burn_stack_small();
}

#undef ROT32
#undef ROT24
#undef ROT16
#undef ROT63

/* ---- four at a time, AVX2 ------------------------------------------------ */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define B2B_HAVE_AVX2 1

typedef uint64_t v4u64 __attribute__((vector_size(32)));
typedef uint32_t v8u32 __attribute__((vector_size(32)));
typedef uint8_t v32u8 __attribute__((vector_size(32)));

/* Lane permutations: GCC spells them __builtin_shuffle, clang (the fuzz
 * build) __builtin_shufflevector. The masks never cross a 128-bit lane, so
 * they compile to one vpshufd / vpshufb each. */
#ifdef __clang__
#define SHUF32(x, ...) ((v4u64)__builtin_shufflevector((v8u32)(x), (v8u32)(x), __VA_ARGS__))
#define SHUF8(x, ...) ((v4u64)__builtin_shufflevector((v32u8)(x), (v32u8)(x), __VA_ARGS__))
#define SHUF64X2(a, b, i0, i1, i2, i3) __builtin_shufflevector((a), (b), i0, i1, i2, i3)
#else
#define SHUF32(x, ...) ((v4u64)__builtin_shuffle((v8u32)(x), (v8u32){ __VA_ARGS__ }))
#define SHUF8(x, ...) ((v4u64)__builtin_shuffle((v32u8)(x), (v32u8){ __VA_ARGS__ }))
#define SHUF64X2(a, b, i0, i1, i2, i3) __builtin_shuffle((a), (b), (v4u64){ i0, i1, i2, i3 })
#endif

#define ROT32(x) SHUF32(x, 1, 0, 3, 2, 5, 4, 7, 6)
#define ROT24(x)                                                                                       \
	SHUF8(x, 3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10, 19, 20, 21, 22, 23, 16, 17, 18, \
	      27, 28, 29, 30, 31, 24, 25, 26)
#define ROT16(x)                                                                                       \
	SHUF8(x, 2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9, 18, 19, 20, 21, 22, 23, 16, 17, \
	      26, 27, 28, 29, 30, 31, 24, 25)
/* rotr 63 = rotl 1; x + x issues on more ports than a shift */
#define ROT63(x) (((x) >> 63) | ((x) + (x)))

/* Tokens of bsns[0..3] into out[0..3]. */
__attribute__((target("avx2"), always_inline)) static inline void token_block4(const uint64_t cv[8],
									    const uint32_t *bsns,
									    unsigned char (*out)[32])
{
	uint64_t w0[4], w1[4];
	v4u64 v[16], m[16] = { { 0 } }, h[4], t[4];

	for (int j = 0; j < 4; j++)
		bsn_words(bsns[j], &w0[j], &w1[j]);
	m[0] = (v4u64){ w0[0], w0[1], w0[2], w0[3] };
	m[1] = (v4u64){ w1[0], w1[1], w1[2], w1[3] };
	for (int i = 0; i < 8; i++) {
		v[i] = (v4u64){ cv[i], cv[i], cv[i], cv[i] };
		v[i + 8] = (v4u64){ b2b_iv[i], b2b_iv[i], b2b_iv[i], b2b_iv[i] };
	}
	v[12] ^= B2B_TOKEN_T;
	v[14] = ~v[14];
	B2B_ROUNDS();
	for (int i = 0; i < 4; i++)
		h[i] = v[i] ^ v[i + 8] ^ cv[i];
	/* h[word][record] -> record-major: a 4x4 transpose of 64-bit words */
	t[0] = SHUF64X2(h[0], h[1], 0, 4, 2, 6);
	t[1] = SHUF64X2(h[0], h[1], 1, 5, 3, 7);
	t[2] = SHUF64X2(h[2], h[3], 0, 4, 2, 6);
	t[3] = SHUF64X2(h[2], h[3], 1, 5, 3, 7);
	h[0] = SHUF64X2(t[0], t[2], 0, 1, 4, 5);
	h[1] = SHUF64X2(t[1], t[3], 0, 1, 4, 5);
	h[2] = SHUF64X2(t[0], t[2], 2, 3, 6, 7);
	h[3] = SHUF64X2(t[1], t[3], 2, 3, 6, 7);
	for (int j = 0; j < 4; j++)
		memcpy(out[j], &h[j], 32); /* x86-64: little-endian, as BLAKE2b */
}

__attribute__((target("avx2"), noinline)) static void tokens_avx2(const uint64_t cv[8], const uint32_t *bsns,
								   size_t n, unsigned char (*out)[32])
{
	size_t i;

	for (i = 0; i + 4 <= n; i += 4)
		token_block4(cv, bsns + i, out + i);
	if (i < n) {
		/* the 1-3 left over, padded to four; only the real ones are copied out */
		uint32_t b[4] = { 0 };
		unsigned char o[4][32];

		memcpy(b, bsns + i, (n - i) * sizeof(*b));
		token_block4(cv, b, o);
		memcpy(out + i, o, (n - i) * sizeof(o[0]));
		sodium_memzero(o, sizeof(o));
		sodium_memzero(b, sizeof(b));
	}
}

#undef ROT32
#undef ROT24
#undef ROT16
#undef ROT63
#endif

/* ---- eight at a time, AVX-512 ---------------------------------------------- */

#ifdef B2B_HAVE_AVX2
#define B2B_HAVE_AVX512 1

typedef uint64_t v8u64 __attribute__((vector_size(64)));

/* With AVX-512F each rotation is one vprorq. */
#define ROT(x, n) (((x) >> (n)) | ((x) << (64 - (n))))
#define ROT32(x) ROT(x, 32)
#define ROT24(x) ROT(x, 24)
#define ROT16(x) ROT(x, 16)
#define ROT63(x) ROT(x, 63)

/* Tokens of bsns[0..7] into out[0..7]. */
__attribute__((target("avx512f"), always_inline)) static inline void token_block8(const uint64_t cv[8],
									       const uint32_t *bsns,
									       unsigned char (*out)[32])
{
	uint64_t w0[8], w1[8], h[4][8];
	v8u64 v[16], m[16] = { { 0 } };

	for (int j = 0; j < 8; j++)
		bsn_words(bsns[j], &w0[j], &w1[j]);
	memcpy(&m[0], w0, sizeof(m[0]));
	memcpy(&m[1], w1, sizeof(m[1]));
	for (int i = 0; i < 8; i++) {
		v[i] = (v8u64){ 0 } + cv[i];
		v[i + 8] = (v8u64){ 0 } + b2b_iv[i];
	}
	v[12] ^= B2B_TOKEN_T;
	v[14] = ~v[14];
	B2B_ROUNDS();
	for (int i = 0; i < 4; i++) {
		v8u64 x = v[i] ^ v[i + 8] ^ cv[i];

		memcpy(h[i], &x, sizeof(x));
	}
	/* h[word][record] -> record-major (x86-64: little-endian, as BLAKE2b) */
	for (int j = 0; j < 8; j++)
		for (int i = 0; i < 4; i++)
			memcpy(out[j] + 8 * i, &h[i][j], 8);
}

__attribute__((target("avx512f"), noinline)) static void tokens_avx512(const uint64_t cv[8],
									 const uint32_t *bsns, size_t n,
									 unsigned char (*out)[32])
{
	size_t i;

	for (i = 0; i + 8 <= n; i += 8)
		token_block8(cv, bsns + i, out + i);
	if (i < n) {
		/* the 1-7 left over, padded to eight; only the real ones are copied out */
		uint32_t b[8] = { 0 };
		unsigned char o[8][32];

		memcpy(b, bsns + i, (n - i) * sizeof(*b));
		token_block8(cv, b, o);
		memcpy(out + i, o, (n - i) * sizeof(o[0]));
		sodium_memzero(o, sizeof(o));
		sodium_memzero(b, sizeof(b));
	}
}

#undef ROT
#undef ROT32
#undef ROT24
#undef ROT16
#undef ROT63
#endif

/* The widest path this CPU has, unless a test lowered the limit to reach
 * the narrower ones on a wide machine. */
enum b2b_path { B2B_SCALAR, B2B_AVX2, B2B_AVX512 };
static enum b2b_path b2b_limit = B2B_AVX512;

static enum b2b_path b2b_path(void)
{
#ifdef B2B_HAVE_AVX512
	if (b2b_limit >= B2B_AVX512 && __builtin_cpu_supports("avx512f"))
		return B2B_AVX512;
#endif
#ifdef B2B_HAVE_AVX2
	if (b2b_limit >= B2B_AVX2 && __builtin_cpu_supports("avx2"))
		return B2B_AVX2;
#endif
	return B2B_SCALAR;
}

const char *pseudo_b2b_impl(void)
{
	static const char *const name[] = { "scalar", "avx2", "avx512" };

	return name[b2b_path()];
}

void pseudo_b2b_tokens(const uint64_t cv[PSEUDO_B2B_CV_WORDS], const uint32_t *bsns, size_t n,
		       unsigned char (*out)[32])
{
	if (n == 0)
		return;
	switch (b2b_path()) {
#ifdef B2B_HAVE_AVX512
	case B2B_AVX512:
		tokens_avx512(cv, bsns, n, out);
		break;
#endif
#ifdef B2B_HAVE_AVX2
	case B2B_AVX2:
		tokens_avx2(cv, bsns, n, out);
		break;
#endif
	default:
		tokens_scalar(cv, bsns, n, out);
	}
	burn_stack();
}
