/*
 * Unit tests for the disclosure pipeline (aggregate/disclose.c): noise on
 * every cell, min_cell on both sides of the NOISY count, suppression as a
 * function of noisy counts only, the 95% interval against the sampler,
 * rounding, clamping, margins from released values only, failing closed.
 */
#define CHECK_FILE "test_disclose"
#include "check.h"
#include "../../aggregate/noise.c"

/* Out of memory on demand: disclose.c's malloc goes through here. */
static int malloc_fails;
__attribute__((unused))
static void *test_malloc(size_t n)
{
	return malloc_fails ? NULL : malloc(n);
}
#define malloc(n) test_malloc(n)
#include "../../aggregate/disclose.c"
#undef malloc

/* ---- helpers -------------------------------------------------------------- */

#include "rng_fixture.h"

/* At eps = 1 (see test_noise.c, laplace_hand_trace): +2, -2, 0. */
#define PLUS_TWO 0, 1, 0, 1, 1, 0
#define MINUS_TWO 0, 1, 0, 1, 1, 1
#define ZERO 1, 0
#define PLUS_ONE 0, 1, 1, 0
#define MINUS_ONE 0, 1, 1, 1

static struct policy_output controls(unsigned min_cell, int noise, double eps, unsigned round)
{
	struct policy_output o;

	memset(&o, 0, sizeof(o));
	o.min_cell = min_cell;
	o.noise = noise;
	o.epsilon = eps;
	o.round_to = round;
	o.max_cells_per_person = 1;
	return o;
}

/* A table over |cells| (nrows x ncols) with margins in |rm| and |cm|. */
static struct agg_table table(struct agg_cell *cells, size_t nrows, size_t ncols, struct agg_cell *rm,
			      struct agg_cell *cm)
{
	struct agg_table t;

	memset(&t, 0, sizeof(t));
	t.nrows = nrows;
	t.ncols = ncols;
	t.cells = cells;
	t.row_margin = rm;
	t.col_margin = cm;
	return t;
}

static void fill(struct agg_cell *cells, const uint64_t *n, size_t k)
{
	for (size_t i = 0; i < k; i++) {
		cells[i].n = n[i];
		cells[i].value = -1;
		cells[i].flags = 0xff;
	}
}

/* ---- noise first, then the threshold on the noisy count -------------------- */

/*
 * min_cell on both sides of the NOISY count, traced at eps 1: 9 + 0 is
 * suppressed, 10 + 0 released, 0 + 0 suppressed, 9 + 1 released, 10 - 1
 * suppressed. Every cell draws noise, zeros and suppressed ones included.
 */
static void min_cell_boundaries(void)
{
	static const uint32_t vals[] = { ZERO, ZERO, ZERO, PLUS_ONE, MINUS_ONE, ZERO };
	struct script s = { vals, sizeof(vals) / sizeof(vals[0]), 0, { 0 }, 0 };
	struct agg_rng rng = { scripted_uniform, &s };
	const uint64_t n[] = { 9, 10, 0, 9, 10, 11 };
	struct agg_cell c[6];
	struct policy_output o = controls(10, 1, 1.0, 1);
	struct agg_table t = table(c, 1, 6, NULL, NULL);
	char err[128];

	fill(c, n, 6);
	CHECK(agg_disclose(&t, &o, &rng, err, sizeof(err)) == 0);
	CHECK_STR(err, "");
	CHECK(s.pos == s.n);
	CHECK(c[0].flags == AGG_PRIMARY && c[0].value == 0);  /* noisy 9: min_cell - 1 */
	CHECK(c[1].flags == AGG_NOISY && c[1].value == 10);   /* noisy 10: min_cell */
	CHECK(c[2].flags == AGG_PRIMARY && c[2].value == 0);  /* zero: noisy 0 */
	CHECK(c[3].flags == AGG_NOISY && c[3].value == 10);   /* exact 9, noisy 10: released */
	CHECK(c[4].flags == AGG_PRIMARY && c[4].value == 0);  /* exact 10, noisy 9: suppressed */
	CHECK(c[5].flags == AGG_NOISY && c[5].value == 11);
	CHECK(t.total.flags == AGG_SECONDARY && t.total.value == 0);
	CHECK(t.halfwidth == 3);

	/* min_cell 1: noisy 1 is released, noisy 0 is not; the total is whole only when no cell is suppressed. */
	static const uint32_t one[] = { ZERO, ZERO, MINUS_ONE };
	struct script s2 = { one, sizeof(one) / sizeof(one[0]), 0, { 0 }, 0 };
	const uint64_t m[] = { 1, 5, 1 };

	rng.arg = &s2;
	o = controls(1, 1, 1.0, 1);
	fill(c, m, 3);
	t.ncols = 3;
	CHECK(agg_disclose(&t, &o, &rng, NULL, 0) == 0);
	CHECK(c[0].flags == AGG_NOISY && c[0].value == 1);
	CHECK(c[1].flags == AGG_NOISY && c[1].value == 5);
	CHECK(c[2].flags == AGG_PRIMARY && c[2].value == 0);
	CHECK(t.total.flags == AGG_SECONDARY);
	fill(c, m, 2);
	t.ncols = 2;
	s2.pos = 0;
	CHECK(agg_disclose(&t, &o, &rng, NULL, 0) == 0);
	CHECK(t.total.flags == AGG_NOISY && t.total.value == 6);
}

static unsigned rng_calls;
static uint32_t counting_uniform(void *arg, uint32_t b)
{
	rng_calls++;
	return seeded_uniform(arg, b);
}

static void empty_table(void)
{
	struct policy_output o = controls(10, 1, 1.0, 5);
	uint64_t seed = 1;
	struct agg_rng rng = { counting_uniform, &seed };
	struct agg_cell cm[3];
	struct agg_table t = table(NULL, 0, 3, NULL, cm);

	rng_calls = 0;
	t.total.flags = 0xff;
	CHECK(agg_disclose(&t, &o, &rng, NULL, 0) == 0);
	CHECK(rng_calls == 0);
	CHECK(t.total.flags == 0 && t.total.value == 0);
	for (int i = 0; i < 3; i++)
		CHECK(cm[i].flags == 0 && cm[i].value == 0);
	t = table(NULL, 0, 0, NULL, NULL);
	CHECK(agg_disclose(&t, &o, &rng, NULL, 0) == 0);
}

/* Zeros get noise like every cell: with min_cell 1 some are released (noisy >= 1), some not. */
static void zeros_are_noisy(void)
{
	struct agg_cell c[50];
	uint64_t n[50] = { 0 };
	uint64_t seed = 3;
	struct agg_rng rng = { counting_uniform, &seed };
	struct policy_output o = controls(1, 1, 0.5, 1);
	struct agg_table t = table(c, 5, 10, NULL, NULL);
	int released = 0, suppressed = 0;

	fill(c, n, 50);
	rng_calls = 0;
	CHECK(agg_disclose(&t, &o, &rng, NULL, 0) == 0);
	CHECK(rng_calls >= 50 * 2);
	for (int i = 0; i < 50; i++) {
		CHECK(c[i].flags == AGG_NOISY || c[i].flags == AGG_PRIMARY);
		if (c[i].flags == AGG_NOISY)
			CHECK(c[i].value >= 1);
		released += c[i].flags == AGG_NOISY;
		suppressed += c[i].flags == AGG_PRIMARY;
	}
	/* P(Z >= 1) at eps 0.5 is about 0.31: 50 cells all one way would be a bug. */
	CHECK(released > 0 && suppressed > 0);
}

/*
 * Which cells are suppressed is a function of the noisy counts only: the
 * same RNG stream drawn by hand gives z_i, and cell i is suppressed exactly
 * when n_i + z_i < min_cell, over 400 random tables with many counts near
 * the threshold. Exact-count suppression (the old pipeline) fails this.
 */
static void suppression_reads_only_the_noisy_count(void)
{
	uint64_t seed = 99;
	struct agg_cell c[64];
	uint64_t n[64];
	struct policy_output o = controls(10, 1, 0.5, 5);
	int bad = 0;

	for (int round = 0; round < 400 && !bad; round++) {
		size_t nr = 1 + seeded_uniform(&seed, 7), nc = 1 + seeded_uniform(&seed, 8);
		struct agg_table t = table(c, nr, nc, NULL, NULL);
		uint64_t s1 = 1000 + (uint64_t)round, s2 = s1;
		struct agg_rng r1 = { seeded_uniform, &s1 }, r2 = { seeded_uniform, &s2 };

		for (size_t i = 0; i < nr * nc; i++)
			n[i] = seeded_uniform(&seed, 3) ? 5 + seeded_uniform(&seed, 10) : seeded_uniform(&seed, 60);
		fill(c, n, nr * nc);
		if (agg_disclose(&t, &o, &r1, NULL, 0) != 0) {
			bad = 1;
			break;
		}
		for (size_t i = 0; i < nr * nc && !bad; i++) {
			int64_t z, v, want;

			if (agg_discrete_laplace_rng(&r2, 1, 2, &z) != 0)
				bad = 2;
			v = (int64_t)n[i] + z;
			if ((v < 10) != (c[i].flags == AGG_PRIMARY))
				bad = 3;
			if (v >= 10 && (round_to(v, 5, &want) != 0 || c[i].value != want ||
					c[i].flags != AGG_NOISY))
				bad = 4;
		}
		if (bad)
			printf("#   round %d (%zux%zu): rule %d broken\n", round, nr, nc, bad);
	}
	CHECK(!bad);
}

/* ---- the 95% interval ------------------------------------------------------ */

/* P(|Z| > k) for discrete Laplace at eps, with exp from a plain long-double
 * series (independent of disclose.c's exp_neg). */
static long double tail(long double eps, uint64_t k)
{
	long double p = 0, term = 1, q = 1;

	for (int i = 1; i < 120; i++) {
		p += term;
		term *= -eps / i;
	}
	for (uint64_t i = 0; i < k + 1; i++)
		q *= p;
	return 2 * q / (1 + p);
}

static void halfwidth_exact(void)
{
	/* num/den, k = ceil(ln(40 / (1 + e^-eps)) / eps) - 1: eps 1 -> 3 (P(|Z|>3) = 0.027,
	 * P(|Z|>2) = 0.073); 1/2 -> 6; 2 -> 1; 1/10 -> 30; 1/1000 -> 2996. */
	const struct { uint32_t num, den; uint64_t k; } cases[] = {
		{ 1, 1, 3 }, { 1, 2, 6 }, { 2, 1, 1 }, { 1, 10, 30 }, { 10, 1, 0 }, { 1, 1000, 2996 },
	};
	uint64_t k = 99;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK(agg_noise_halfwidth(cases[i].num, cases[i].den, &k) == 0);
		if (k != cases[i].k)
			printf("#   %u/%u: %llu, expected %llu\n", cases[i].num, cases[i].den,
			       (unsigned long long)k, (unsigned long long)cases[i].k);
		CHECK(k == cases[i].k);
	}
	/* The smallest k with P <= 0.05, for 334 epsilons from 0.01 to 10. */
	for (uint32_t num = 1; num <= 1000; num += 3) {
		long double eps = (long double)num / 100;

		CHECK(agg_noise_halfwidth(num, 100, &k) == 0);
		CHECK(tail(eps, k) <= 0.05L);
		CHECK(k == 0 || tail(eps, k - 1) > 0.05L * (1 - 1e-6L));
	}
	CHECK(agg_noise_halfwidth(0, 1, &k) == AGG_EINVAL);
	CHECK(agg_noise_halfwidth(1, 0, &k) == AGG_EINVAL);
	CHECK(agg_noise_halfwidth(1, 1, NULL) == AGG_EINVAL);
}

/* The interval holds for the sampler: the share of draws outside +-k is
 * the exact tail (<= 0.05), and outside +-(k-1) it is above 0.05. */
static void halfwidth_matches_the_sampler(void)
{
	const struct { uint32_t num, den; } eps[] = { { 1, 2 }, { 1, 1 }, { 2, 1 }, { 1, 10 }, { 1, 6 } };
	uint64_t seed = 5;
	struct agg_rng rng = { seeded_uniform, &seed };
	const unsigned draws = 100000;

	for (size_t e = 0; e < sizeof(eps) / sizeof(eps[0]); e++) {
		uint64_t k = 0;
		unsigned out = 0, out1 = 0;
		double se = __builtin_sqrt(0.06 * 0.94 / draws), f, f1;
		long double t = (long double)eps[e].num / eps[e].den;

		CHECK(agg_noise_halfwidth(eps[e].num, eps[e].den, &k) == 0);
		for (unsigned i = 0; i < draws; i++) {
			int64_t z = 0;
			uint64_t a;

			CHECK(agg_discrete_laplace_rng(&rng, eps[e].num, eps[e].den, &z) == 0);
			a = (uint64_t)(z < 0 ? -z : z);
			out += a > k;
			out1 += k > 0 && a > k - 1;
		}
		f = (double)out / draws;
		f1 = (double)out1 / draws;
		CHECK(f < (double)tail(t, k) + 5 * se && f > (double)tail(t, k) - 5 * se);
		CHECK(f < 0.05 + 5 * se);
		CHECK(k == 0 || f1 > 0.05);
		printf("#   eps %u/%u: k %llu, P(|Z|>k) %.4f (exact %.4f), P(|Z|>k-1) %.4f\n", eps[e].num,
		       eps[e].den, (unsigned long long)k, f, (double)tail(t, k), f1);
	}
}

/* ---- rounding, clamping, noise ------------------------------------------- */

/* Zero noise scripted for |k| cells at eps 1. */
static const uint32_t zeros14[] = { ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO,
				    ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO };

static void rounding_bases(void)
{
	const uint64_t n[] = { 10, 11, 12, 13, 14, 15, 16, 17, 18, 22, 23, 25, 35, 45 };
	const int64_t b1[] = { 10, 11, 12, 13, 14, 15, 16, 17, 18, 22, 23, 25, 35, 45 };
	const int64_t b2[] = { 10, 12, 12, 12, 14, 16, 16, 16, 18, 22, 24, 24, 36, 44 };
	const int64_t b5[] = { 10, 10, 10, 15, 15, 15, 15, 15, 20, 20, 25, 25, 35, 45 };
	/* Base 10 ties go to the even multiple: 15 -> 20, 25 -> 20, 35 -> 40, 45 -> 40. */
	const int64_t b10[] = { 10, 10, 10, 10, 10, 20, 20, 20, 20, 20, 20, 20, 40, 40 };
	const struct {
		unsigned base;
		const int64_t *want;
	} cases[] = { { 1, b1 }, { 2, b2 }, { 5, b5 }, { 10, b10 } };
	struct agg_cell c[14];

	for (size_t k = 0; k < 4; k++) {
		struct script s = { zeros14, 28, 0, { 0 }, 0 };
		struct agg_rng rng = { scripted_uniform, &s };
		struct policy_output o = controls(10, 1, 1.0, cases[k].base);
		struct agg_table t = table(c, 1, 14, NULL, NULL);
		int64_t sum = 0;

		fill(c, n, 14);
		CHECK(agg_disclose(&t, &o, &rng, NULL, 0) == 0);
		CHECK(s.pos == 28);
		for (size_t i = 0; i < 14; i++) {
			if (c[i].value != cases[k].want[i] || c[i].flags != AGG_NOISY) {
				printf("#   base %u: %llu -> %lld, expected %lld\n", cases[k].base,
				       (unsigned long long)n[i], (long long)c[i].value, (long long)cases[k].want[i]);
				check_failures++;
			}
			sum += cases[k].want[i];
		}
		/* The total adds up the rounded cells: a multiple of the base too. */
		CHECK(t.total.flags == AGG_NOISY && t.total.value == sum);
	}
}

/* Noise, then the threshold, then round (a released value is >= min_cell, so
 * nothing is ever clamped): traced with a scripted RNG at eps 1. */
static void clamp_and_round_after_noise(void)
{
	static const uint32_t vals[] = { MINUS_TWO, MINUS_TWO, PLUS_TWO, ZERO, PLUS_TWO };
	struct script s = { vals, sizeof(vals) / sizeof(vals[0]), 0, { 0 }, 0 };
	struct agg_rng rng = { scripted_uniform, &s };
	const uint64_t n[] = { 0, 3, 12, 12, 13 };
	struct agg_cell c[5];
	struct policy_output o = controls(1, 1, 1.0, 5);
	struct agg_table t = table(c, 1, 5, NULL, NULL);

	fill(c, n, 5);
	CHECK(agg_disclose(&t, &o, &rng, NULL, 0) == 0);
	CHECK(s.pos == s.n);
	CHECK(c[0].value == 0 && c[0].flags == AGG_PRIMARY); /* 0 - 2: below min_cell 1 */
	CHECK(c[1].value == 0 && c[1].flags == AGG_NOISY);   /* 3 - 2 = 1 -> rounds to 0, released */
	CHECK(c[2].value == 15 && c[2].flags == AGG_NOISY);  /* 12 + 2 = 14 -> 15 */
	CHECK(c[3].value == 10 && c[3].flags == AGG_NOISY);  /* 12 + 0 -> 10 */
	CHECK(c[4].value == 15 && c[4].flags == AGG_NOISY);  /* 13 + 2 = 15 -> 15 */
	CHECK(t.total.value == 0 && t.total.flags == AGG_SECONDARY);
}

/* Every cell draws once, in key order, suppressed or not. */
static void noise_on_every_cell_in_key_order(void)
{
	static const uint32_t vals[] = { PLUS_TWO, MINUS_TWO, ZERO, PLUS_TWO };
	struct script s = { vals, 20, 0, { 0 }, 0 };
	struct agg_rng rng = { scripted_uniform, &s };
	const uint64_t n[] = { 5, 30, 6, 20 };
	struct agg_cell c[4], rm[1];
	struct policy_output o = controls(10, 1, 1.0, 1);
	struct agg_table t = table(c, 1, 4, rm, NULL);

	fill(c, n, 4);
	CHECK(agg_disclose(&t, &o, &rng, NULL, 0) == 0);
	CHECK(s.pos == 20);
	CHECK(c[0].flags == AGG_PRIMARY && c[0].value == 0); /* 7 */
	CHECK(c[1].flags == AGG_NOISY && c[1].value == 28);
	CHECK(c[2].flags == AGG_PRIMARY && c[2].value == 0); /* 6 */
	CHECK(c[3].flags == AGG_NOISY && c[3].value == 22);
	CHECK(rm[0].flags == AGG_SECONDARY && t.total.flags == AGG_SECONDARY);
}

/* With max_cells_per_person m each cell's noise is at epsilon/m. */
static double noise_variance(double eps, unsigned m, unsigned tables)
{
	uint64_t seed = 21;
	struct agg_rng rng = { seeded_uniform, &seed };
	struct policy_output o = controls(10, 1, eps, 1);
	struct agg_cell c[1];
	struct agg_table t = table(c, 1, 1, NULL, NULL);
	double sum = 0, sq = 0;

	o.max_cells_per_person = m;
	for (unsigned i = 0; i < tables; i++) {
		c[0].n = 1000;
		if (agg_disclose(&t, &o, &rng, NULL, 0) != 0)
			return -1;
		sum += (double)(c[0].value - 1000);
		sq += (double)(c[0].value - 1000) * (double)(c[0].value - 1000);
	}
	return sq / tables - (sum / tables) * (sum / tables);
}

static void sensitivity_scales_noise(void)
{
	/* 2 e^-eps / (1 - e^-eps)^2: eps 1 -> 1.8413, eps 1/2 -> 7.8354, eps 1/3 -> 17.8343 */
	double v1 = noise_variance(1.0, 1, 20000), v2 = noise_variance(1.0, 2, 20000);
	double v3 = noise_variance(1.0, 3, 20000);

	/*
	 * 20 000 draws: with a kurtosis near 6 the SE of the variance is about
	 * sqrt(5/20000) = 1.6% of it, so +-15% is over 9 SE, while eps, eps/2
	 * and eps/3 differ by factors of 4 and 2.3.
	 */
	CHECK(v1 > 1.841 * 0.85 && v1 < 1.841 * 1.15);
	CHECK(v2 > 7.835 * 0.85 && v2 < 7.835 * 1.15);
	CHECK(v3 > 17.834 * 0.85 && v3 < 17.834 * 1.15);

	/* The first draw at eps 1/3 is U uniform in [0, 3): U = 0, V = 0, +. */
	static const uint32_t vals[] = { 0, 1, 0 };
	struct script s = { vals, 3, 0, { 0 }, 0 };
	struct agg_rng rng = { scripted_uniform, &s };
	struct policy_output o = controls(10, 1, 1.0, 1);
	struct agg_cell c[1] = { { 100, 0, 0 } };
	struct agg_table t = table(c, 1, 1, NULL, NULL);

	o.max_cells_per_person = 3;
	CHECK(agg_disclose(&t, &o, &rng, NULL, 0) == 0);
	CHECK(s.pos == 3 && s.bounds[0] == 3 && s.bounds[1] == 2 && s.bounds[2] == 2);
	CHECK(c[0].value == 100);
	/* ... and the interval is eps/3's: P(|Z| > k) <= 0.05 at eps 1/3 gives 9 (eps 1: 3). */
	CHECK(t.halfwidth == 9);
}

static void margins_add_up(void)
{
	uint64_t seed = 8;
	struct agg_rng rng = { seeded_uniform, &seed };
	const uint64_t n[] = { 40, 60, 55, 43, 37, 90 };
	struct agg_cell c[6], rm[2], cm[3];
	struct policy_output o = controls(10, 1, 0.5, 5);
	struct agg_table t = table(c, 2, 3, rm, cm);
	int64_t total = 0;

	fill(c, n, 6);
	CHECK(agg_disclose(&t, &o, &rng, NULL, 0) == 0);
	for (size_t r = 0; r < 2; r++) {
		int64_t s = 0;

		for (size_t k = 0; k < 3; k++)
			s += c[r * 3 + k].value;
		CHECK(rm[r].flags == AGG_NOISY && rm[r].value == s);
		total += s;
	}
	for (size_t k = 0; k < 3; k++)
		CHECK(cm[k].flags == AGG_NOISY && cm[k].value == c[k].value + c[3 + k].value);
	CHECK(t.total.flags == AGG_NOISY && t.total.value == total);
	for (size_t i = 0; i < 6; i++)
		CHECK(c[i].value % 5 == 0 && c[i].value >= 10);

	/* A suppressed cell (a zero) suppresses its row, its column and the total. */
	const uint64_t z[] = { 40, 0, 55, 43, 37, 90 };

	fill(c, z, 6);
	CHECK(agg_disclose(&t, &o, &rng, NULL, 0) == 0);
	CHECK(c[1].flags == AGG_PRIMARY);
	CHECK(rm[0].flags == AGG_SECONDARY && rm[1].flags == AGG_NOISY);
	CHECK(cm[1].flags == AGG_SECONDARY && cm[0].flags == AGG_NOISY && cm[2].flags == AGG_NOISY);
	CHECK(t.total.flags == AGG_SECONDARY && t.total.value == 0);
}

static void deterministic_with_seed(void)
{
	const uint64_t n[] = { 40, 0, 3, 23, 17, 90, 2, 11, 0 };
	struct agg_cell a[9], b[9];
	uint64_t s1 = 77, s2 = 77;
	struct agg_rng r1 = { seeded_uniform, &s1 }, r2 = { seeded_uniform, &s2 };
	struct policy_output o = controls(10, 1, 1.0, 1);
	struct agg_table ta = table(a, 3, 3, NULL, NULL), tb = table(b, 3, 3, NULL, NULL);

	fill(a, n, 9);
	fill(b, n, 9);
	CHECK(agg_disclose(&ta, &o, &r1, NULL, 0) == 0);
	CHECK(agg_disclose(&tb, &o, &r2, NULL, 0) == 0);
	for (int i = 0; i < 9; i++)
		CHECK(a[i].value == b[i].value && a[i].flags == b[i].flags);
}

/* ---- errors fail closed -------------------------------------------------- */

static int all_suppressed(const struct agg_table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		if (!(t->cells[i].flags & AGG_SUPPRESSED) || t->cells[i].value != 0)
			return 0;
	for (size_t r = 0; t->row_margin && r < t->nrows; r++)
		if (!(t->row_margin[r].flags & AGG_SUPPRESSED))
			return 0;
	for (size_t k = 0; t->col_margin && k < t->ncols; k++)
		if (!(t->col_margin[k].flags & AGG_SUPPRESSED))
			return 0;
	return (t->total.flags & AGG_SUPPRESSED) && t->total.value == 0;
}

static void errors_fail_closed(void)
{
	const uint64_t n[] = { 40, 50, 60, 70 };
	struct agg_cell c[4], rm[2], cm[2];
	struct agg_table t = table(c, 2, 2, rm, cm);
	struct policy_output o = controls(10, 1, 1.0, 1);
	struct agg_rng broken = { broken_uniform, NULL };
	const double bad_eps[] = { 0, -1, 10.5, __builtin_nan(""), 1e-9 };
	char err[128];

	CHECK(agg_disclose(NULL, &o, NULL, err, sizeof(err)) == AGG_EINVAL);
	fill(c, n, 4);
	CHECK(agg_disclose(&t, NULL, NULL, err, sizeof(err)) == AGG_EINVAL);
	CHECK(all_suppressed(&t));
	for (size_t i = 0; i < sizeof(bad_eps) / sizeof(bad_eps[0]); i++) {
		o = controls(10, 1, bad_eps[i], 1);
		fill(c, n, 4);
		CHECK(agg_disclose(&t, &o, NULL, err, sizeof(err)) == AGG_EINVAL);
		CHECK_CONTAINS(err, "epsilon");
		CHECK(all_suppressed(&t));
	}
	/* No exact releases: without noise nothing is released at all. */
	o = controls(10, 0, 1.0, 1);
	fill(c, n, 4);
	CHECK(agg_disclose(&t, &o, NULL, err, sizeof(err)) == AGG_EINVAL);
	CHECK_CONTAINS(err, "no noise");
	CHECK(all_suppressed(&t));
	o = controls(10, 1, 1.0, 0);
	CHECK(agg_disclose(&t, &o, NULL, err, sizeof(err)) == AGG_EINVAL);
	CHECK_CONTAINS(err, "round_to");
	o = controls(10, 1, 1.0, 1);
	o.max_cells_per_person = 0;
	CHECK(agg_disclose(&t, &o, NULL, err, sizeof(err)) == AGG_EINVAL);
	o = controls(10, 1, 1.0, 1);
	fill(c, n, 4);
	c[2].n = AGG_MAX_COUNT + 1;
	CHECK(agg_disclose(&t, &o, NULL, err, sizeof(err)) == AGG_EINVAL);
	CHECK(all_suppressed(&t));
	t.cells = NULL;
	CHECK(agg_disclose(&t, &o, NULL, err, sizeof(err)) == AGG_EINVAL);
	t.cells = c;
	fill(c, n, 4);
	CHECK(agg_disclose(&t, &o, &broken, err, sizeof(err)) == AGG_ERNG);
	CHECK(all_suppressed(&t));
	CHECK_CONTAINS(err, "sampler");
}

/* The pipeline allocates nothing: no scratch, no out-of-memory path. */
static void allocates_nothing(void)
{
	const uint64_t n[] = { 4, 50, 60, 70 };
	struct agg_cell c[4];
	struct agg_table t = table(c, 2, 2, NULL, NULL);
	struct policy_output o = controls(10, 1, 1.0, 1);
	char err[64];

	fill(c, n, 4);
	malloc_fails = 1;
	CHECK(agg_disclose(&t, &o, NULL, err, sizeof(err)) == 0);
	malloc_fails = 0;
}

int main(void)
{
	RUN(min_cell_boundaries);
	RUN(empty_table);
	RUN(zeros_are_noisy);
	RUN(suppression_reads_only_the_noisy_count);
	RUN(halfwidth_exact);
	RUN(halfwidth_matches_the_sampler);
	RUN(rounding_bases);
	RUN(clamp_and_round_after_noise);
	RUN(noise_on_every_cell_in_key_order);
	RUN(sensitivity_scales_noise);
	RUN(margins_add_up);
	RUN(deterministic_with_seed);
	RUN(errors_fail_closed);
	RUN(allocates_nothing);
	return check_total_failed != 0;
}
