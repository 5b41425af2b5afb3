/*
 * The exact discrete Laplace sampler and the conversion of a policy's epsilon
 * to a fraction. No floating point touches a draw: a textbook sampler built on
 * doubles leaks the secret through which doubles it can and cannot produce
 * (Mironov 2012), so every step here is an integer comparison.
 */
#include <string.h>

#include <sodium.h>

#include "disclose.h"

/* ---- epsilon ------------------------------------------------------------ */

uint32_t agg_gcd(uint32_t a, uint32_t b)
{
	while (b) {
		uint32_t r = a % b;

		a = b;
		b = r;
	}
	return a;
}

int agg_epsilon_rational(double eps, uint32_t *num, uint32_t *den)
{
	uint64_t bits, m, a, b, n;
	unsigned s, e;
	uint32_t g;

	if (!num || !den)
		return AGG_EINVAL;
	/* Written so that NaN fails too: every comparison with NaN is false. */
	if (!(eps > 0 && eps <= 10))
		return AGG_EINVAL;
	/*
	 * eps is exactly m * 2^-s (IEEE 754 binary64). floor(m * DEN / 2^s) in
	 * integers is exact, where eps * DEN in doubles could round up across
	 * an integer and give an epsilon larger than the policy's. eps <= 10
	 * means s >= 49; m < 2^53 is split at bit 26 so nothing overflows.
	 */
	memcpy(&bits, &eps, sizeof(bits));
	e = (unsigned)(bits >> 52) & 0x7ffu;
	if (e == 0)
		return AGG_EINVAL; /* subnormal: far below 1 / AGG_EPS_DEN */
	m = (bits & (((uint64_t)1 << 52) - 1)) | ((uint64_t)1 << 52);
	s = 1075 - e;
	a = (m >> 26) * AGG_EPS_DEN;                  /* < 2^47 */
	b = (m & (((uint64_t)1 << 26) - 1)) * AGG_EPS_DEN; /* < 2^46 */
	/* floor((a * 2^26 + b) / 2^s) = floor((a + floor(b / 2^26)) / 2^(s-26)) */
	n = s - 26 >= 64 ? 0 : (a + (b >> 26)) >> (s - 26);
	if (n == 0)
		return AGG_EINVAL; /* below 1 / AGG_EPS_DEN: would round down to no answer */
	g = agg_gcd((uint32_t)n, AGG_EPS_DEN);
	*num = (uint32_t)n / g;
	*den = AGG_EPS_DEN / g;
	return 0;
}

/* ---- the RNG ------------------------------------------------------------ */

static uint32_t sodium_uniform(void *arg, uint32_t upper_bound)
{
	(void)arg;
	return randombytes_uniform(upper_bound);
}

static const struct agg_rng sodium_rng = { sodium_uniform, NULL };

/* Uniform in [0, bound), bound >= 1; a bound of 1 needs no randomness. */
static int draw(const struct agg_rng *rng, uint32_t bound, uint32_t *out)
{
	uint32_t v;

	if (bound == 1) {
		*out = 0;
		return 0;
	}
	v = rng->uniform(rng->arg, bound);
	if (v >= bound)
		return AGG_ERNG;
	*out = v;
	return 0;
}

/*
 * Bernoulli(n / (d * k)) for 0 <= n <= d, k >= 1. When d * k does not fit
 * in 32 bits the event is split into two independent ones, Bernoulli(n / d)
 * and Bernoulli(1 / k), whose conjunction has exactly that probability.
 */
static int bernoulli_frac(const struct agg_rng *rng, uint32_t n, uint32_t d, uint32_t k, int *b)
{
	uint64_t dk = (uint64_t)d * k;
	uint32_t u;
	int r;

	if (n == 0) {
		*b = 0;
		return 0;
	}
	if (dk <= UINT32_MAX) {
		if ((r = draw(rng, (uint32_t)dk, &u)) < 0)
			return r;
		*b = u < n;
		return 0;
	}
	if ((r = draw(rng, d, &u)) < 0)
		return r;
	if (u >= n) {
		*b = 0;
		return 0;
	}
	if ((r = draw(rng, k, &u)) < 0)
		return r;
	*b = u == 0;
	return 0;
}

/*
 * Bernoulli(exp(-n/d)) for 0 <= n <= d (CKS 2020, Algorithm 1, gamma in
 * [0, 1]): draw A_k ~ Bernoulli(gamma / k) for k = 1, 2, ... until the first
 * A_k = 0; the answer is 1 when that k is odd. P(first zero at k) =
 * gamma^(k-1)/(k-1)! - gamma^k/k!, and summing over odd k gives
 * sum_j (-gamma)^j / j! = exp(-gamma).
 */
static int bernoulli_exp_le1(const struct agg_rng *rng, uint32_t n, uint32_t d, int *b)
{
	uint32_t k = 1;
	int a, r;

	for (;;) {
		if ((r = bernoulli_frac(rng, n, d, k, &a)) < 0)
			return r;
		if (!a)
			break;
		if (k == UINT32_MAX) /* probability 1/(2^32)!: never, but stay defined */
			return AGG_ERANGE;
		k++;
	}
	*b = k & 1;
	return 0;
}

/*
 * Bernoulli(exp(-n/d)) for any n/d >= 0 (Algorithm 1, gamma > 1): exp(-gamma)
 * = exp(-1)^floor(gamma) * exp(-(gamma - floor(gamma))), each factor an
 * independent trial, stopping at the first failure.
 */
static int bernoulli_exp(const struct agg_rng *rng, uint32_t n, uint32_t d, int *b)
{
	int r;

	for (uint32_t i = 0; i < n / d; i++) {
		if ((r = bernoulli_exp_le1(rng, 1, 1, b)) < 0)
			return r;
		if (!*b)
			return 0;
	}
	return bernoulli_exp_le1(rng, n % d, d, b);
}

/* ---- discrete Laplace ---------------------------------------------------- */

int agg_discrete_laplace_rng(const struct agg_rng *rng, uint32_t eps_num, uint32_t eps_den,
			     int64_t *out)
{
	uint32_t s, t, g, u, sign;
	uint64_t v, x, y;
	int b, r;

	if (!out || eps_num == 0 || eps_den == 0)
		return AGG_EINVAL;
	if (!rng) {
		/* Idempotent; randombytes_* must not run before it (libsodium docs). */
		if (sodium_init() < 0)
			return AGG_ERNG;
		rng = &sodium_rng;
	} else if (!rng->uniform) {
		return AGG_EINVAL;
	}
	/*
	 * CKS 2020, Algorithm 2, with scale t/s = 1/eps: a reduced fraction
	 * only makes the loops shorter, the distribution is the same.
	 */
	g = agg_gcd(eps_num, eps_den);
	s = eps_num / g;
	t = eps_den / g;
	for (;;) {
		/*
		 * X = U + t*V with U uniform in [0, t) accepted with probability
		 * exp(-U/t), and V geometric (P(V >= k) = exp(-k)), is geometric
		 * with P(X = x) proportional to exp(-x/t).
		 */
		if ((r = draw(rng, t, &u)) < 0)
			return r;
		if ((r = bernoulli_exp_le1(rng, u, t, &b)) < 0)
			return r;
		if (!b)
			continue;
		for (v = 0;; v++) {
			if ((r = bernoulli_exp(rng, 1, 1, &b)) < 0)
				return r;
			if (!b)
				break;
			if (v == INT32_MAX) /* t*V + U would pass 2^63: probability exp(-2^31) */
				return AGG_ERANGE;
		}
		x = u + (uint64_t)t * v;
		/* Y = floor(X/s) is geometric with P(Y = y) proportional to exp(-y*s/t). */
		y = x / s;
		if ((r = draw(rng, 2, &sign)) < 0)
			return r;
		/* (-, 0) is rejected so that 0 is not counted twice. */
		if (sign && y == 0)
			continue;
		*out = sign ? -(int64_t)y : (int64_t)y;
		return 0;
	}
}

int agg_discrete_laplace(uint32_t eps_num, uint32_t eps_den, int64_t *out)
{
	return agg_discrete_laplace_rng(NULL, eps_num, eps_den, out);
}
