/*
 * The hub's disclosure pipeline over one table of exact counts: discrete
 * Laplace noise on every cell, then suppression of noisy counts below
 * min_cell and rounding, then margins from what was released.
 * Everything after the noise is post-processing, so the whole answer is
 * ε-DP. The order and every rule's reason are in docs/disclosure.md.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "disclose.h"

static int fail(struct agg_table *t, int code, char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Marks everything suppressed (fail closed) and says why in |err|. */
static int fail(struct agg_table *t, int code, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	if (!t)
		return code;
	if (t->cells)
		for (size_t i = 0; i < t->nrows * t->ncols; i++) {
			t->cells[i].value = 0;
			t->cells[i].flags = AGG_SECONDARY;
		}
	if (t->row_margin)
		for (size_t r = 0; r < t->nrows; r++) {
			t->row_margin[r].value = 0;
			t->row_margin[r].flags = AGG_SECONDARY;
		}
	if (t->col_margin)
		for (size_t c = 0; c < t->ncols; c++) {
			t->col_margin[c].value = 0;
			t->col_margin[c].flags = AGG_SECONDARY;
		}
	t->total.value = 0;
	t->total.flags = AGG_SECONDARY;
	t->halfwidth = 0;
	return code;
}

/* ---- the 95% interval of the noise ---------------------------------------- */

/*
 * exp(-x) for 0 <= x <= 2^32 without libm (the build does not link it):
 * halve x until it is below 2^-10, sum the Taylor series there (the terms
 * beyond the 12th are below 1e-40), and square back. The relative error is
 * a few times 1e-13, which agg_noise_halfwidth() absorbs with a margin (1e-6 relative, far above it).
 */
static double exp_neg(double x)
{
	unsigned halvings = 0;
	double term = 1, sum = 1;

	while (x > 1.0 / 1024) {
		x /= 2;
		halvings++;
	}
	for (unsigned k = 1; k <= 12; k++) {
		term *= -x / k;
		sum += term;
	}
	while (halvings--)
		sum *= sum;
	return sum;
}

/* p^e for 0 < p < 1 by squaring. */
static double pow_u(double p, uint64_t e)
{
	double r = 1;

	while (e) {
		if (e & 1)
			r *= p;
		p *= p;
		e >>= 1;
	}
	return r;
}

int agg_noise_halfwidth(uint32_t num, uint32_t den, uint64_t *out)
{
	double p, bound;
	uint64_t lo = 0, hi = (uint64_t)1 << 40;

	if (!out || num == 0 || den == 0)
		return AGG_EINVAL;
	/*
	 * P(|Z| > k) = 2 p^(k+1) / (1 + p), p = exp(-num/den): the smallest k
	 * with 2 p^(k+1) <= 0.05 (1 + p). The right side is shrunk by 1e-6 so
	 * that floating-point error can only make k larger (conservative).
	 */
	p = exp_neg((double)num / (double)den);
	bound = 0.05 * (1 + p) * (1 - 1e-6) / 2;
	if (!(p < 1) || pow_u(p, hi + 1) > bound)
		return AGG_ERANGE; /* epsilon so small that the interval is useless */
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (pow_u(p, mid + 1) <= bound)
			hi = mid;
		else
			lo = mid + 1;
	}
	*out = lo;
	return 0;
}

/* ---- the pipeline -------------------------------------------------------- */

/* Rounds v >= 0 to the nearest multiple of b, ties to the even multiple. */
static int round_to(int64_t v, unsigned b, int64_t *out)
{
	int64_t q = v / b, rem = v % b;

	if (2 * rem > (int64_t)b || (2 * rem == (int64_t)b && (q & 1)))
		q++;
	if (q > INT64_MAX / (int64_t)b)
		return AGG_ERANGE;
	*out = q * (int64_t)b;
	return 0;
}

/* Adds a released cell to margin |m|; a suppressed cell suppresses |m|. */
static int add_to(struct agg_cell *m, const struct agg_cell *cell)
{
	if (cell->flags & AGG_SUPPRESSED) {
		m->flags = AGG_SECONDARY;
		m->value = 0;
		return 0;
	}
	if (m->flags & AGG_SUPPRESSED)
		return 0;
	if (__builtin_add_overflow(m->value, cell->value, &m->value))
		return AGG_ERANGE;
	m->flags |= cell->flags & AGG_NOISY;
	return 0;
}

int agg_disclose(struct agg_table *t, const struct policy_output *out, const struct agg_rng *rng,
		 char *err, size_t errlen)
{
	size_t ncells;
	uint32_t num = 0, den = 0, g;
	int r;

	if (err && errlen)
		err[0] = '\0';
	if (!t || !out)
		return fail(t, AGG_EINVAL, err, errlen, "no table or no output controls");
	if (t->ncols && t->nrows > SIZE_MAX / sizeof(struct agg_cell) / t->ncols)
		return fail(NULL, AGG_EINVAL, err, errlen, "the table is too large");
	ncells = t->nrows * t->ncols;
	if (ncells && !t->cells)
		return fail(t, AGG_EINVAL, err, errlen, "the table has no cells");
	if (out->round_to == 0)
		return fail(t, AGG_EINVAL, err, errlen, "round_to is 0 (1 means not rounded)");
	if (out->max_cells_per_person == 0)
		return fail(t, AGG_EINVAL, err, errlen, "max_cells_per_person is 0");
	for (size_t i = 0; i < ncells; i++)
		if (t->cells[i].n > AGG_MAX_COUNT)
			return fail(t, AGG_EINVAL, err, errlen, "cell %zu counts more than 2^40 persons", i);
	/* No exact releases (issue 11): the policy loader refuses such a grant;
	 * this refuses it again, so no caller can release exact counts. */
	if (!out->noise)
		return fail(t, AGG_EINVAL, err, errlen, "no noise: exact counts are never released");
	if (agg_epsilon_rational(out->epsilon, &num, &den) < 0)
		return fail(t, AGG_EINVAL, err, errlen,
			    "epsilon %g is not in (0, 10] (or is below 1/%u)", out->epsilon, AGG_EPS_DEN);
	/*
	 * A person in up to m cells moves the table by m in L1 norm: each
	 * cell gets noise at epsilon/m so the table is epsilon-DP.
	 */
	g = agg_gcd(num, out->max_cells_per_person);
	num /= g;
	if (den > UINT32_MAX / (out->max_cells_per_person / g))
		return fail(t, AGG_ERANGE, err, errlen, "epsilon / max_cells_per_person is too fine");
	den *= out->max_cells_per_person / g;
	if ((r = agg_noise_halfwidth(num, den, &t->halfwidth)) < 0)
		return fail(t, r, err, errlen, "epsilon / max_cells_per_person is too small to answer");

	/*
	 * (a) Noise on every cell of the full table, zeros included, in key
	 * order; (b) suppress a cell whose NOISY count is below min_cell;
	 * (c) round. The exact count decides nothing but the noisy
	 * value: (b) and (c) are post-processing, so which cells are
	 * suppressed is as private as the values.
	 */
	for (size_t i = 0; i < ncells; i++) {
		struct agg_cell *cell = &t->cells[i];
		int64_t v = (int64_t)cell->n, z;

		cell->value = 0;
		cell->flags = 0;
		if ((r = agg_discrete_laplace_rng(rng, num, den, &z)) < 0)
			return fail(t, r, err, errlen, "the noise sampler failed (%d)", r);
		if (z > INT64_MAX - v)
			return fail(t, AGG_ERANGE, err, errlen, "a noisy count does not fit");
		v += z;
		if (v < (int64_t)out->min_cell) {
			cell->flags = AGG_PRIMARY;
			continue;
		}
		/* v >= min_cell >= 0: nothing to clamp. */
		cell->flags = AGG_NOISY;
		if ((r = round_to(v, out->round_to, &v)) < 0)
			return fail(t, r, err, errlen, "a rounded count does not fit");
		cell->value = v;
	}

	/* (d) Margins from released values only; suppressed if their line is not whole. */
	if (t->row_margin)
		for (size_t row = 0; row < t->nrows; row++) {
			t->row_margin[row].value = 0;
			t->row_margin[row].flags = 0;
			for (size_t c = 0; c < t->ncols; c++)
				if (add_to(&t->row_margin[row], &t->cells[row * t->ncols + c]) < 0)
					return fail(t, AGG_ERANGE, err, errlen, "a margin does not fit");
		}
	if (t->col_margin)
		for (size_t c = 0; c < t->ncols; c++) {
			t->col_margin[c].value = 0;
			t->col_margin[c].flags = 0;
			for (size_t row = 0; row < t->nrows; row++)
				if (add_to(&t->col_margin[c], &t->cells[row * t->ncols + c]) < 0)
					return fail(t, AGG_ERANGE, err, errlen, "a margin does not fit");
		}
	t->total.value = 0;
	t->total.flags = 0;
	for (size_t i = 0; i < ncells; i++)
		if (add_to(&t->total, &t->cells[i]) < 0)
			return fail(t, AGG_ERANGE, err, errlen, "the total does not fit");
	return 0;
}
