/*
 * Unit tests for the exact discrete Laplace sampler and the epsilon
 * conversion (aggregate/noise.c). Statistics run on a seeded RNG (cannot
 * flake), plus one run on libsodium. No libm: the Makefile's LIBS lack -lm.
 */
#define CHECK_FILE "test_noise"
#include "check.h"
#include "../../aggregate/noise.c"

/* ---- RNGs for tests ------------------------------------------------------ */

#include "rng_fixture.h"

/* exp(x) for -30 <= x <= 0 by halving, a Taylor series and squaring back. */
static double series_exp(double x)
{
	double term = 1, sum = 1;
	int halvings = 0;

	while (x < -0.5) {
		x /= 2;
		halvings++;
	}
	for (int k = 1; k < 30; k++) {
		term *= x / k;
		sum += term;
	}
	while (halvings--)
		sum *= sum;
	return sum;
}

/* |a - b| <= k * se, compared squared (var = se^2); no sqrt, no libm. */
static int within(double a, double b, double k, double var)
{
	return (a - b) * (a - b) <= k * k * var;
}

/* ---- epsilon ------------------------------------------------------------- */

static void epsilon_exact_cases(void)
{
	static const struct {
		double eps;
		uint32_t num, den;
	} cases[] = {
		{ 0.5, 1, 2 },
		{ 1, 1, 1 },
		{ 2, 2, 1 },
		{ 10, 10, 1 },
		{ 1.5, 3, 2 },
		{ 0.25, 1, 4 },
		{ 0.1, 1, 10 },            /* the double 0.1 lies just above 1/10 */
		{ 0.29, 289999, 1000000 }, /* the double 0.29 lies just below 29/100 */
		{ 0.3, 299999, 1000000 },  /* 0.29999999999999998889... */
		{ 0.7, 699999, 1000000 },  /* 0.69999999999999995559... */
		{ 0.000002, 1, 1000000 },  /* 1.99999999999999991e-06 */
		{ 2.675, 2674999, 1000000 },
		{ 0.0078125, 1953, 250000 }, /* 2^-7 exactly: 7812.5 millionths round down */
		{ 9.999999, 9999999, 1000000 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t num = 0, den = 0;

		CHECK(agg_epsilon_rational(cases[i].eps, &num, &den) == 0);
		if (num != cases[i].num || den != cases[i].den) {
			printf("#   eps %.17g: got %u/%u, expected %u/%u\n", cases[i].eps, num, den,
			       cases[i].num, cases[i].den);
			check_failures++;
		}
	}
}

/* For every decimal k/10^6 the result is k/10^6, or one step below it when
 * the double nearest the decimal is below the decimal. Never above. */
static void epsilon_never_rounds_up(void)
{
	uint64_t seed = 7;
	unsigned above = 0, below = 0;

	for (unsigned i = 0; i < 20000; i++) {
		uint32_t k = i < 10000 ? i + 1 : 1 + seeded_uniform(&seed, 10000000), num, den;
		char text[32];
		double eps;

		snprintf(text, sizeof(text), "%u.%06u", k / 1000000, k % 1000000);
		eps = strtod(text, NULL);
		if (agg_epsilon_rational(eps, &num, &den) < 0) {
			/* only 0.000001 itself: its double lies below 10^-6 */
			CHECK(k == 1);
			continue;
		}
		CHECK(1000000 % den == 0);
		num *= 1000000 / den;
		CHECK(num == k || num == k - 1);
		if (num == k)
			above++;
		else
			below++;
	}
	/* Both cases occur, so the test tells them apart. */
	CHECK(above > 1000 && below > 1000);
}

static void epsilon_invalid_refused(void)
{
	uint32_t num = 99, den = 99;
	const double bad[] = { 0.0, -0.0, -1, -0.5, 10.000001, 11, 1e300, 1e-7, 5e-324,
			       0.000001 /* 9.99999999999999955e-07: below 10^-6 */ };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(agg_epsilon_rational(bad[i], &num, &den) == AGG_EINVAL);
	CHECK(agg_epsilon_rational(__builtin_nan(""), &num, &den) == AGG_EINVAL);
	CHECK(agg_epsilon_rational(-__builtin_nan(""), &num, &den) == AGG_EINVAL);
	CHECK(agg_epsilon_rational(__builtin_inf(), &num, &den) == AGG_EINVAL);
	CHECK(agg_epsilon_rational(-__builtin_inf(), &num, &den) == AGG_EINVAL);
	CHECK(num == 99 && den == 99); /* untouched on error */
	CHECK(agg_epsilon_rational(1, NULL, &den) == AGG_EINVAL);
	CHECK(agg_epsilon_rational(1, &num, NULL) == AGG_EINVAL);
}

/* ---- Bernoulli building blocks ------------------------------------------- */

static double bernoulli_rate(int (*f)(const struct agg_rng *, uint32_t, uint32_t, int *), uint32_t n,
			     uint32_t d, unsigned draws, uint64_t seed)
{
	struct agg_rng rng = { seeded_uniform, &seed };
	unsigned ones = 0;
	int b;

	for (unsigned i = 0; i < draws; i++) {
		if (f(&rng, n, d, &b) < 0)
			return -1;
		ones += (unsigned)b;
	}
	return (double)ones / draws;
}

static void bernoulli_exp_rates(void)
{
	static const struct {
		uint32_t n, d;
	} g[] = { { 0, 1 }, { 1, 3 }, { 1, 1 }, { 5, 2 }, { 999999, 1000000 } };
	const unsigned draws = 100000;

	for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
		double p = series_exp(-(double)g[i].n / g[i].d);
		double got = bernoulli_rate(bernoulli_exp, g[i].n, g[i].d, draws, 11 + i);

		if (!within(got, p, 5, p * (1 - p) / draws + 1e-300)) {
			printf("#   Bernoulli(exp(-%u/%u)): rate %.5f, expected %.5f\n", g[i].n, g[i].d, got, p);
			check_failures++;
		}
	}
	CHECK(bernoulli_rate(bernoulli_exp, 0, 7, 1000, 1) == 1.0);
}

/* d * k above 2^32 takes the split path: Bernoulli(n/d) and Bernoulli(1/k). */
static void bernoulli_frac_split_path(void)
{
	uint64_t seed = 5;
	struct agg_rng rng = { seeded_uniform, &seed };
	const unsigned draws = 100000;
	unsigned ones = 0;
	int b;

	for (unsigned i = 0; i < draws; i++) {
		CHECK(bernoulli_frac(&rng, 1500000000u, 3000000000u, 2, &b) == 0);
		ones += (unsigned)b;
	}
	CHECK(within((double)ones / draws, 0.25, 5, 0.25 * 0.75 / draws));
}

/* ---- the discrete Laplace ------------------------------------------------ */

struct moments {
	double mean, var, p0, pos, neg, pk[7]; /* pk: P(Z = k) for k = -3..3 */
};

static int sample(const struct agg_rng *rng, uint32_t num, uint32_t den, unsigned draws, struct moments *m)
{
	double sum = 0, sq = 0;
	unsigned zero = 0, pos = 0, neg = 0, pk[7] = { 0 };
	int64_t z;

	for (unsigned i = 0; i < draws; i++) {
		if (agg_discrete_laplace_rng(rng, num, den, &z) < 0)
			return -1;
		sum += (double)z;
		sq += (double)z * (double)z;
		zero += z == 0;
		pos += z > 0;
		neg += z < 0;
		if (z >= -3 && z <= 3)
			pk[z + 3]++;
	}
	m->mean = sum / draws;
	m->var = sq / draws - m->mean * m->mean;
	m->p0 = (double)zero / draws;
	m->pos = pos;
	m->neg = neg;
	for (int k = 0; k < 7; k++)
		m->pk[k] = (double)pk[k] / draws;
	return 0;
}

/*
 * Checks |m| against the discrete Laplace with p = exp(-eps), each within
 * 5 standard errors. Z is the difference of two independent geometrics
 * (failures before success, success 1-p), so its odd cumulants vanish and
 * kappa2 = 2p/(1-p)^2, kappa4 = 2p(1+4p+p^2)/(1-p)^4 (the geometric's
 * cumulants doubled). Then:
 *   Var(mean)     = kappa2 / N
 *   Var(variance) ~ (mu4 - kappa2^2) / N, mu4 = kappa4 + 3 kappa2^2
 *   Var(P^(Z=k))  = P(k)(1 - P(k)) / N, P(k) = (1-p)/(1+p) p^|k|
 *   sign:          given Z != 0, positive ~ Binomial(., 1/2)
 * With a fixed seed the outcome is fixed; 5 SE is what would make a fresh
 * seed fail about once in 10^6 per check, so a pass is not luck, and a
 * wrong distribution (a different p, a biased sign, a doubled 0) lands far
 * outside: at eps = 1 a 2% error in the variance is already 5 SE.
 */
static int matches(const struct moments *m, double eps, unsigned draws, const char *what)
{
	double p = series_exp(-eps), q = 1 - p;
	double k2 = 2 * p / (q * q), k4 = 2 * p * (1 + 4 * p + p * p) / (q * q * q * q);
	double mu4 = k4 + 3 * k2 * k2, ok = 1;
	double nz = m->pos + m->neg;

	if (!within(m->mean, 0, 5, k2 / draws)) {
		printf("#   %s: mean %.5f, expected 0 (var %.4f)\n", what, m->mean, k2);
		ok = 0;
	}
	if (!within(m->var, k2, 5, (mu4 - k2 * k2) / draws)) {
		printf("#   %s: variance %.5f, expected %.5f\n", what, m->var, k2);
		ok = 0;
	}
	for (int k = -3; k <= 3; k++) {
		double pk = q / (1 + p), got = m->pk[k + 3];

		for (int j = 0; j < (k < 0 ? -k : k); j++)
			pk *= p;
		if (!within(got, pk, 5, pk * (1 - pk) / draws)) {
			printf("#   %s: P(Z=%d) %.5f, expected %.5f\n", what, k, got, pk);
			ok = 0;
		}
	}
	if (!within(m->p0, q / (1 + p), 5, q / (1 + p) * (1 - q / (1 + p)) / draws))
		ok = 0;
	if (nz > 0 && !within(m->pos, nz / 2, 5, nz / 4)) {
		printf("#   %s: %.0f positive and %.0f negative draws\n", what, m->pos, m->neg);
		ok = 0;
	}
	return ok;
}

static void laplace_statistics(void)
{
	static const struct {
		uint32_t num, den;
		double eps;
		unsigned draws;
	} e[] = {
		{ 1, 2, 0.5, 200000 },
		{ 1, 1, 1.0, 200000 },
		{ 2, 1, 2.0, 200000 },
		/* a large denominator: the shape agg_epsilon_rational(0.29) gives */
		{ 289999, 1000000, 0.289999, 50000 },
		/* and through a non-reduced fraction */
		{ 3000, 3000, 1.0, 50000 },
	};

	for (size_t i = 0; i < sizeof(e) / sizeof(e[0]); i++) {
		uint64_t seed = 0x5eed0000u + i;
		struct agg_rng rng = { seeded_uniform, &seed };
		struct moments m;
		char what[64];

		snprintf(what, sizeof(what), "eps %u/%u", e[i].num, e[i].den);
		CHECK(sample(&rng, e[i].num, e[i].den, e[i].draws, &m) == 0);
		CHECK(matches(&m, e[i].eps, e[i].draws, what));
	}
}

/* The default RNG (libsodium): fewer draws, real randomness, same bounds. */
static void laplace_statistics_libsodium(void)
{
	struct moments m;

	CHECK(sample(NULL, 1, 1, 20000, &m) == 0);
	CHECK(matches(&m, 1.0, 20000, "libsodium eps 1"));
}

static void laplace_deterministic(void)
{
	uint64_t s1 = 42, s2 = 42;
	struct agg_rng r1 = { seeded_uniform, &s1 }, r2 = { seeded_uniform, &s2 };
	int same = 1;

	for (int i = 0; i < 1000; i++) {
		int64_t a, b;

		CHECK(agg_discrete_laplace_rng(&r1, 1, 2, &a) == 0);
		CHECK(agg_discrete_laplace_rng(&r2, 1, 2, &b) == 0);
		same &= a == b;
	}
	CHECK(same);
}

/*
 * One draw at eps = 1 traced by hand (s = t = 1): U = 0 and the
 * Bernoulli(exp(0)) accept need no randomness; each Bernoulli(exp(-1)) is
 * A1 = 1 (bound 1, free), A2 = [u < 1] from bound 2, A3 = [u < 1] from bound
 * 3, ... and is 1 when the first zero A_k has k odd. Script: 0, 1 (A2 = 1,
 * A3 = 0: k = 3, V++), 0, 1 (V++), 1 (A2 = 0: k = 2, stop: V = 2), then the
 * sign 1: Z = -2.
 */
static void laplace_hand_trace(void)
{
	static const uint32_t vals[] = { 0, 1, 0, 1, 1, 1 };
	static const uint32_t bounds[] = { 2, 3, 2, 3, 2, 2 };
	struct script s = { vals, 6, 0, { 0 }, 0 };
	struct agg_rng rng = { scripted_uniform, &s };
	int64_t z = 0;

	CHECK(agg_discrete_laplace_rng(&rng, 1, 1, &z) == 0);
	CHECK(z == -2);
	CHECK(s.pos == 6);
	for (size_t i = 0; i < 6; i++)
		CHECK(s.bounds[i] == bounds[i]);

	/* Sign 1 with magnitude 0 is rejected and the loop starts again. */
	static const uint32_t again[] = { 1, 1, /* V = 0, minus zero: reject */ 1, 0 /* +0 */ };
	struct script s2 = { again, 4, 0, { 0 }, 0 };

	rng.arg = &s2;
	CHECK(agg_discrete_laplace_rng(&rng, 1, 1, &z) == 0);
	CHECK(z == 0);
	CHECK(s2.pos == 4);
}

static void laplace_errors(void)
{
	struct agg_rng broken = { broken_uniform, NULL }, none = { NULL, NULL };
	int64_t z = 7;

	CHECK(agg_discrete_laplace(0, 1, &z) == AGG_EINVAL);
	CHECK(agg_discrete_laplace(1, 0, &z) == AGG_EINVAL);
	CHECK(agg_discrete_laplace(1, 1, NULL) == AGG_EINVAL);
	CHECK(agg_discrete_laplace_rng(&none, 1, 1, &z) == AGG_EINVAL);
	CHECK(agg_discrete_laplace_rng(&broken, 1, 2, &z) == AGG_ERNG);
	CHECK(z == 7);
	CHECK(agg_discrete_laplace(1, 1, &z) == 0);
}

int main(void)
{
	RUN(epsilon_exact_cases);
	RUN(epsilon_never_rounds_up);
	RUN(epsilon_invalid_refused);
	RUN(bernoulli_exp_rates);
	RUN(bernoulli_frac_split_path);
	RUN(laplace_statistics);
	RUN(laplace_statistics_libsodium);
	RUN(laplace_deterministic);
	RUN(laplace_hand_trace);
	RUN(laplace_errors);
	return check_total_failed != 0;
}
