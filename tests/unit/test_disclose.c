/*
 * Unit tests for the disclosure pipeline (aggregate/disclose.c): min_cell on
 * both sides, zeros, secondary suppression checked by solving the margin
 * equations, rounding, clamping, noise on every released cell, margins from
 * released values only, and failing closed.
 */
#define CHECK_FILE "test_disclose"
#include "check.h"
#include "../../aggregate/noise.c"

/* Out of memory on demand: disclose.c's malloc goes through here. */
static int malloc_fails;
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

/*
 * Rank of the |rows| x |cols| matrix |m| (destroyed). Entries are small
 * integers (0/1 margin equations), so partial pivoting in doubles is exact
 * enough for tables this size.
 */
static size_t rank(double *m, size_t rows, size_t cols)
{
	size_t rk = 0;

	for (size_t c = 0; c < cols && rk < rows; c++) {
		size_t p = rk;

		for (size_t r = rk; r < rows; r++)
			if (__builtin_fabs(m[r * cols + c]) > __builtin_fabs(m[p * cols + c]))
				p = r;
		if (__builtin_fabs(m[p * cols + c]) < 1e-9)
			continue;
		for (size_t k = 0; k < cols; k++) {
			double tmp = m[rk * cols + k];

			m[rk * cols + k] = m[p * cols + k];
			m[p * cols + k] = tmp;
		}
		for (size_t r = 0; r < rows; r++) {
			double f;

			if (r == rk || m[r * cols + c] == 0)
				continue;
			f = m[r * cols + c] / m[rk * cols + c];
			for (size_t k = 0; k < cols; k++)
				m[r * cols + k] -= f * m[rk * cols + k];
		}
		rk++;
	}
	return rk;
}

/*
 * The attacker knows every released cell and every exact row and column
 * total (and the grand total), e.g. from queries with fewer group-by fields
 * and noise off. Suppressed cell number |which| (in key order) can be solved
 * for iff its unit vector lies in the row space of the margin equations
 * over the suppressed cells: rank([A; e]) == rank(A). Lines of one cell are
 * not known (their own query suppresses them).
 */
static int determined(const struct agg_table *t, size_t which)
{
	size_t ncells = t->nrows * t->ncols, k = 0, eq = 0, col = 0, r1, r2;
	size_t neq = (t->ncols >= 2 ? t->nrows : 0) + (t->nrows >= 2 ? t->ncols : 0) + 1;
	double *a, *b;

	for (size_t i = 0; i < ncells; i++)
		k += (t->cells[i].flags & AGG_SUPPRESSED) != 0;
	a = calloc((neq + 1) * k + 1, sizeof(double));
	b = calloc((neq + 1) * k + 1, sizeof(double));
	for (size_t i = 0; i < ncells; i++) {
		size_t r = i / t->ncols, c = i % t->ncols;

		if (!(t->cells[i].flags & AGG_SUPPRESSED))
			continue;
		eq = 0;
		if (t->ncols >= 2)
			a[(eq + r) * k + col] = 1;
		eq += t->ncols >= 2 ? t->nrows : 0;
		if (t->nrows >= 2)
			a[(eq + c) * k + col] = 1;
		eq += t->nrows >= 2 ? t->ncols : 0;
		a[eq * k + col] = 1; /* the grand total */
		col++;
	}
	memcpy(b, a, neq * k * sizeof(double));
	b[neq * k + which] = 1;
	r1 = rank(a, neq, k);
	r2 = rank(b, neq + 1, k);
	free(a);
	free(b);
	return r1 == r2;
}

/* No suppressed cell of |t| can be solved for from exact margins. */
static int nothing_determined(const struct agg_table *t)
{
	size_t k = 0;

	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		k += (t->cells[i].flags & AGG_SUPPRESSED) != 0;
	for (size_t j = 0; j < k; j++)
		if (determined(t, j))
			return 0;
	return 1;
}

/* ---- primary suppression and zeros ---------------------------------------- */

static void min_cell_boundaries(void)
{
	/* Two cells below min_cell, so no complement is needed in this test. */
	const uint64_t n[] = { 9, 9, 10, 0, 11, 1 };
	struct agg_cell c[6];
	struct policy_output o = controls(10, 0, 0, 1);
	struct agg_table t = table(c, 1, 6, NULL, NULL);
	char err[128];

	fill(c, n, 6);
	CHECK(agg_disclose(&t, &o, NULL, err, sizeof(err)) == 0);
	CHECK_STR(err, "");
	CHECK(c[0].flags == AGG_PRIMARY && c[0].value == 0); /* min_cell - 1 */
	CHECK(c[1].flags == AGG_PRIMARY && c[1].value == 0);
	CHECK(c[2].flags == 0 && c[2].value == 10);          /* min_cell */
	CHECK(c[3].flags == 0 && c[3].value == 0);           /* zero: released */
	CHECK(c[4].flags == 0 && c[4].value == 11);
	CHECK(c[5].flags == AGG_PRIMARY && c[5].value == 0); /* 1 */
	CHECK(t.total.flags == AGG_SECONDARY && t.total.value == 0);

	/* min_cell 1: nothing is small enough to suppress; the total is whole. */
	o = controls(1, 0, 0, 1);
	fill(c, n, 6);
	CHECK(agg_disclose(&t, &o, NULL, NULL, 0) == 0);
	for (int i = 0; i < 6; i++)
		CHECK(c[i].flags == 0 && c[i].value == (int64_t)n[i]);
	CHECK(t.total.flags == 0 && t.total.value == 40);
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

/* Zeros get noise like every released cell: after clamping some are > 0. */
static void zeros_are_noisy(void)
{
	struct agg_cell c[50];
	uint64_t n[50] = { 0 };
	uint64_t seed = 3;
	struct agg_rng rng = { seeded_uniform, &seed };
	struct policy_output o = controls(10, 1, 0.5, 1);
	struct agg_table t = table(c, 5, 10, NULL, NULL);
	int positive = 0, zero = 0;

	fill(c, n, 50);
	CHECK(agg_disclose(&t, &o, &rng, NULL, 0) == 0);
	for (int i = 0; i < 50; i++) {
		CHECK(c[i].flags == AGG_NOISY);
		CHECK(c[i].value >= 0);
		positive += c[i].value > 0;
		zero += c[i].value == 0;
	}
	/* P(Z > 0) at eps 0.5 is about 0.31: 50 cells all 0 or all > 0 would be a bug. */
	CHECK(positive > 0 && zero > 0);
}

/* ---- secondary suppression ------------------------------------------------ */

static void one_dimension_complement(void)
{
	/* One cell below min_cell: the smallest non-zero released cell joins it. */
	const uint64_t n[] = { 3, 0, 12, 10, 40 };
	struct agg_cell c[5];
	struct policy_output o = controls(10, 0, 0, 1);
	struct agg_table t = table(c, 1, 5, NULL, NULL);

	fill(c, n, 5);
	CHECK(agg_disclose(&t, &o, NULL, NULL, 0) == 0);
	CHECK(c[0].flags == AGG_PRIMARY);
	CHECK(c[1].flags == 0 && c[1].value == 0);  /* a zero complement would add nothing */
	CHECK(c[2].flags == 0 && c[2].value == 12);
	CHECK(c[3].flags == AGG_SECONDARY && c[3].value == 0);
	CHECK(c[4].flags == 0 && c[4].value == 40);
	CHECK(t.total.flags & AGG_SUPPRESSED);
	/* Knowing the exact total 65, the attacker learns 3 + 10 = 13, not 3. */
	CHECK(nothing_determined(&t));

	/* Only zeros left: a zero is the complement (the pattern still holds). */
	const uint64_t z[] = { 3, 0, 0 };

	fill(c, z, 3);
	t.ncols = 3;
	CHECK(agg_disclose(&t, &o, NULL, NULL, 0) == 0);
	CHECK(c[0].flags == AGG_PRIMARY && c[1].flags == AGG_SECONDARY && c[2].flags == 0);
	CHECK(nothing_determined(&t));

	/* A column table (nrows x 1) is 1-D along its column. */
	const uint64_t v[] = { 20, 5, 15 };

	fill(c, v, 3);
	t = table(c, 3, 1, NULL, NULL);
	CHECK(agg_disclose(&t, &o, NULL, NULL, 0) == 0);
	CHECK(c[0].flags == 0 && c[1].flags == AGG_PRIMARY && c[2].flags == AGG_SECONDARY);
}

static void two_dimension_complement(void)
{
	/*
	 *   12  4 30    4 is alone in row 0 and in column 1. Row 0: 12 and 30
	 *   25 14 11    both open a new lone column, so the smaller, 12. Column
	 *   40 13 20    0: 25 < 40. Row 1: 14 fixes column 1, the smaller 11
	 * would open column 2 and cost two more cells, so 14. Four cells, a
	 * rectangle, and nothing solvable.
	 */
	const uint64_t n[] = { 12, 4, 30, 25, 14, 11, 40, 13, 20 };
	struct agg_cell c[9], rm[3], cm[3];
	struct policy_output o = controls(10, 0, 0, 1);
	struct agg_table t = table(c, 3, 3, rm, cm);
	size_t suppressed = 0;

	fill(c, n, 9);
	CHECK(agg_disclose(&t, &o, NULL, NULL, 0) == 0);
	CHECK(c[1].flags == AGG_PRIMARY);
	for (size_t r = 0; r < 3; r++)
		CHECK(row_suppressed(&t, r) != 1 && col_suppressed(&t, r) != 1);
	for (size_t i = 0; i < 9; i++)
		suppressed += (c[i].flags & AGG_SUPPRESSED) != 0;
	/* The least a 2-D table needs: a 2x2 rectangle. */
	CHECK(suppressed == 4);
	/* (0,0) = 12, (1,0) = 25, (1,1) = 14. */
	CHECK(c[0].flags == AGG_SECONDARY && c[4].flags == AGG_SECONDARY && c[3].flags == AGG_SECONDARY);
	CHECK(nothing_determined(&t));
	/* Margins: released only where the line is whole. */
	CHECK(rm[0].flags & AGG_SUPPRESSED);
	CHECK(rm[1].flags & AGG_SUPPRESSED);
	CHECK(rm[2].flags == 0 && rm[2].value == 73);
	CHECK((cm[0].flags & AGG_SUPPRESSED) && (cm[1].flags & AGG_SUPPRESSED));
	CHECK(cm[2].flags == 0 && cm[2].value == 61);
	CHECK(t.total.flags & AGG_SUPPRESSED);
}

/* The solver itself must see a lone cell: otherwise the checks above prove nothing. */
static void solver_sees_a_lone_cell(void)
{
	struct agg_cell c[4] = { { 3, 0, AGG_PRIMARY }, { 20, 20, 0 }, { 30, 30, 0 }, { 40, 40, 0 } };
	struct agg_table t = table(c, 2, 2, NULL, NULL);

	CHECK(determined(&t, 0));
	c[1].flags = AGG_SECONDARY;
	CHECK(determined(&t, 0)); /* column 0 still gives it back */
	c[2].flags = AGG_SECONDARY;
	c[3].flags = AGG_SECONDARY;
	CHECK(!determined(&t, 0) && nothing_determined(&t));
}

/*
 * Two suppressed 2x2 blocks joined by one more cell: every line holds two or
 * more suppressed cells, yet the joining cell is (rows 0-1 total) - (columns
 * 0-1 total) - ... : solvable. The bridge rule must add a complement.
 */
static void bridge_gets_a_complement(void)
{
	const uint64_t n[] = {
		3, 4, 50, 60,
		5, 6, 7, 70,
		80, 90, 2, 8,
		85, 95, 9, 1,
	};
	struct agg_cell c[16];
	struct policy_output o = controls(10, 0, 0, 1);
	struct agg_table t = table(c, 4, 4, NULL, NULL);

	/* Primary only, as fix_lone_cell() leaves it: cell (1,2) is a bridge. */
	fill(c, n, 16);
	for (size_t i = 0; i < 16; i++)
		c[i].flags = n[i] < 10 ? AGG_PRIMARY : 0;
	CHECK(!fix_lone_cell(&t));
	CHECK(determined(&t, 4)); /* (1,2) is the 5th suppressed cell */

	fill(c, n, 16);
	CHECK(agg_disclose(&t, &o, NULL, NULL, 0) == 0);
	CHECK(nothing_determined(&t));
	for (size_t r = 0; r < 4; r++)
		CHECK(row_suppressed(&t, r) != 1 && col_suppressed(&t, r) != 1);
	/* The cheapest joining cell: 50 at (0,2) or 70 at (1,3) or ...: 50. */
	CHECK(c[2].flags == AGG_SECONDARY);
}

/* Random tables: the rules hold and nothing can be solved for, every time. */
static void random_tables_hold(void)
{
	uint64_t seed = 99;
	struct agg_cell c[64];
	uint64_t n[64];
	struct policy_output o = controls(10, 0, 0, 1);
	int bad = 0;

	for (int round = 0; round < 400 && !bad; round++) {
		size_t nr = round < 100 ? 1 : 1 + seeded_uniform(&seed, 7);
		size_t nc = 1 + seeded_uniform(&seed, 8);
		struct agg_table t = table(c, nr, nc, NULL, NULL);

		for (size_t i = 0; i < nr * nc; i++) {
			uint32_t kind = seeded_uniform(&seed, 10);

			n[i] = kind < 3 ? 1 + seeded_uniform(&seed, 9) : kind < 5 ? 0 : 10 + seeded_uniform(&seed, 50);
		}
		fill(c, n, nr * nc);
		if (agg_disclose(&t, &o, NULL, NULL, 0) != 0) {
			bad = 1;
			break;
		}
		for (size_t i = 0; i < nr * nc; i++) {
			int small = n[i] > 0 && n[i] < 10;

			if (small != ((c[i].flags & AGG_PRIMARY) != 0))
				bad = 2;
			if (!(c[i].flags & AGG_SUPPRESSED) && c[i].value != (int64_t)n[i])
				bad = 3;
		}
		for (size_t r = 0; nc >= 2 && r < nr; r++)
			if (row_suppressed(&t, r) == 1)
				bad = 4;
		for (size_t col = 0; nr >= 2 && col < nc; col++)
			if (col_suppressed(&t, col) == 1)
				bad = 5;
		if (nr * nc >= 2 && !nothing_determined(&t))
			bad = 6;
		if (bad)
			printf("#   round %d (%zux%zu): rule %d broken\n", round, nr, nc, bad);
	}
	CHECK(!bad);
}

/* ---- rounding, clamping, noise ------------------------------------------- */

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
		struct policy_output o = controls(10, 0, 0, cases[k].base);
		struct agg_table t = table(c, 1, 14, NULL, NULL);
		int64_t sum = 0;

		fill(c, n, 14);
		CHECK(agg_disclose(&t, &o, NULL, NULL, 0) == 0);
		for (size_t i = 0; i < 14; i++) {
			if (c[i].value != cases[k].want[i] || c[i].flags != 0) {
				printf("#   base %u: %llu -> %lld, expected %lld\n", cases[k].base,
				       (unsigned long long)n[i], (long long)c[i].value, (long long)cases[k].want[i]);
				check_failures++;
			}
			sum += cases[k].want[i];
		}
		/* The total adds up the rounded cells: a multiple of the base too. */
		CHECK(t.total.flags == 0 && t.total.value == sum);
	}
}

/* Noise first, then clamp, then round: traced with a scripted RNG at eps 1. */
static void clamp_and_round_after_noise(void)
{
	static const uint32_t vals[] = { MINUS_TWO, MINUS_TWO, PLUS_TWO, ZERO, PLUS_TWO };
	struct script s = { vals, sizeof(vals) / sizeof(vals[0]), 0, { 0 }, 0 };
	struct agg_rng rng = { scripted_uniform, &s };
	const uint64_t n[] = { 0, 1, 12, 12, 13 };
	struct agg_cell c[5];
	struct policy_output o = controls(1, 1, 1.0, 5);
	struct agg_table t = table(c, 1, 5, NULL, NULL);

	fill(c, n, 5);
	CHECK(agg_disclose(&t, &o, &rng, NULL, 0) == 0);
	CHECK(s.pos == s.n);
	CHECK(c[0].value == 0 && c[0].flags == AGG_NOISY);  /* 0 - 2 -> clamped to 0 */
	CHECK(c[1].value == 0 && c[1].flags == AGG_NOISY);  /* 1 - 2 -> clamped to 0 */
	CHECK(c[2].value == 15 && c[2].flags == AGG_NOISY); /* 12 + 2 = 14 -> 15 */
	CHECK(c[3].value == 10 && c[3].flags == AGG_NOISY); /* 12 + 0 -> 10 */
	CHECK(c[4].value == 15 && c[4].flags == AGG_NOISY); /* 13 + 2 = 15 -> 15 */
	CHECK(t.total.value == 40 && t.total.flags == AGG_NOISY);

	/* Base 1, where rounding cannot hide a missing clamp. */
	static const uint32_t neg[] = { MINUS_TWO, MINUS_TWO, MINUS_TWO };
	struct script s2 = { neg, sizeof(neg) / sizeof(neg[0]), 0, { 0 }, 0 };

	rng.arg = &s2;
	o = controls(1, 1, 1.0, 1);
	fill(c, n, 3);
	t.ncols = 3;
	CHECK(agg_disclose(&t, &o, &rng, NULL, 0) == 0);
	CHECK(s2.pos == s2.n);
	CHECK(c[0].value == 0 && c[1].value == 0 && c[2].value == 10);
	CHECK(t.total.value == 10);
}

/* Suppressed cells draw no noise; released ones each draw once, in key order. */
static void noise_only_on_released(void)
{
	static const uint32_t vals[] = { PLUS_TWO, MINUS_TWO };
	struct script s = { vals, 12, 0, { 0 }, 0 };
	struct agg_rng rng = { scripted_uniform, &s };
	const uint64_t n[] = { 5, 30, 6, 20 };
	struct agg_cell c[4], rm[1];
	struct policy_output o = controls(10, 1, 1.0, 1);
	struct agg_table t = table(c, 1, 4, rm, NULL);

	fill(c, n, 4);
	CHECK(agg_disclose(&t, &o, &rng, NULL, 0) == 0);
	CHECK(s.pos == 12);
	CHECK(c[0].flags == AGG_PRIMARY && c[0].value == 0);
	CHECK(c[1].flags == AGG_NOISY && c[1].value == 32);
	CHECK(c[2].flags == AGG_PRIMARY && c[2].value == 0);
	CHECK(c[3].flags == AGG_NOISY && c[3].value == 18);
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
}

static void margins_add_up(void)
{
	uint64_t seed = 8;
	struct agg_rng rng = { seeded_uniform, &seed };
	const uint64_t n[] = { 40, 0, 55, 23, 17, 90 };
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
		CHECK(c[i].value % 5 == 0 && c[i].value >= 0);
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
	struct policy_output o = controls(10, 0, 0, 1);
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
	/* Without noise epsilon is not read. */
	o = controls(10, 0, __builtin_nan(""), 1);
	fill(c, n, 4);
	CHECK(agg_disclose(&t, &o, NULL, err, sizeof(err)) == 0);
	o = controls(10, 0, 0, 0);
	CHECK(agg_disclose(&t, &o, NULL, err, sizeof(err)) == AGG_EINVAL);
	CHECK_CONTAINS(err, "round_to");
	o = controls(10, 0, 0, 1);
	o.max_cells_per_person = 0;
	CHECK(agg_disclose(&t, &o, NULL, err, sizeof(err)) == AGG_EINVAL);
	o = controls(10, 0, 0, 1);
	fill(c, n, 4);
	c[2].n = AGG_MAX_COUNT + 1;
	CHECK(agg_disclose(&t, &o, NULL, err, sizeof(err)) == AGG_EINVAL);
	CHECK(all_suppressed(&t));
	t.cells = NULL;
	CHECK(agg_disclose(&t, &o, NULL, err, sizeof(err)) == AGG_EINVAL);
	t.cells = c;
	o = controls(10, 1, 1.0, 1);
	fill(c, n, 4);
	CHECK(agg_disclose(&t, &o, &broken, err, sizeof(err)) == AGG_ERNG);
	CHECK(all_suppressed(&t));
	CHECK_CONTAINS(err, "sampler");
}

static void out_of_memory(void)
{
	const uint64_t n[] = { 4, 50, 60, 70 };
	struct agg_cell c[4];
	struct agg_table t = table(c, 2, 2, NULL, NULL);
	struct policy_output o = controls(10, 0, 0, 1);
	char err[64];

	fill(c, n, 4);
	malloc_fails = 1;
	CHECK(agg_disclose(&t, &o, NULL, err, sizeof(err)) == AGG_ENOMEM);
	malloc_fails = 0;
	CHECK(all_suppressed(&t));
	CHECK_STR(err, "out of memory");
	/* 1-D tables allocate nothing. */
	t = table(c, 1, 4, NULL, NULL);
	malloc_fails = 1;
	CHECK(agg_disclose(&t, &o, NULL, err, sizeof(err)) == 0);
	malloc_fails = 0;
}

int main(void)
{
	RUN(min_cell_boundaries);
	RUN(empty_table);
	RUN(zeros_are_noisy);
	RUN(one_dimension_complement);
	RUN(two_dimension_complement);
	RUN(solver_sees_a_lone_cell);
	RUN(bridge_gets_a_complement);
	RUN(random_tables_hold);
	RUN(rounding_bases);
	RUN(clamp_and_round_after_noise);
	RUN(noise_only_on_released);
	RUN(sensitivity_scales_noise);
	RUN(margins_add_up);
	RUN(deterministic_with_seed);
	RUN(errors_fail_closed);
	RUN(out_of_memory);
	return check_total_failed != 0;
}
