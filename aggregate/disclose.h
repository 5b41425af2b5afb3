/*
 * Disclosure control for the hub's tables: exact discrete Laplace noise on
 * every cell, then suppression of noisy counts below min_cell and
 * rounding (issue 11's order: the whole answer is ε-DP). Pure: no I/O, no
 * clock, no shared state. docs/disclosure.md gives every reason.
 */
#ifndef NOORDPOORT_DISCLOSE_H
#define NOORDPOORT_DISCLOSE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"
#include "../policies/policy.h"

/* Errors: every function returns 0 or one of these. */
#define AGG_EINVAL NP_ERR_ARG   /* an argument is NULL, zero or outside its range */
#define AGG_ERANGE (-660)      /* a count, a sum or a noise draw does not fit in int64_t */
#define AGG_ERNG   (-661)      /* the injected RNG returned a value outside [0, bound) */
#define AGG_ENOMEM NP_ERR_NOMEM /* out of memory */

/*
 * Epsilon as the sampler takes it: num/den, kept exact (no floating point
 * ever reaches the sampler). agg_epsilon_rational() uses this denominator
 * before reducing the fraction.
 */
#define AGG_EPS_DEN 1000000u

/*
 * A uniform RNG: uniform(arg, b) returns an integer uniform in [0, b) for
 * 1 <= b <= UINT32_MAX, as randombytes_uniform(b) does. Passed explicitly
 * (NULL: libsodium's randombytes_uniform) so tests can make the sampler
 * reproducible without a global hook that other threads would see.
 */
struct agg_rng {
	uint32_t (*uniform)(void *arg, uint32_t upper_bound);
	void *arg;
};

/*
 * Converts the policy's epsilon to num/den with den dividing AGG_EPS_DEN,
 * rounding DOWN: num/den is the largest multiple of 1/AGG_EPS_DEN that is
 * <= |eps| exactly (not merely after floating-point rounding), then reduced.
 * A smaller epsilon means more noise, so privacy is never weaker than the
 * policy says. 0.5 -> 1/2, 0.1 -> 1/10 (the double 0.1 lies above 1/10),
 * 0.29 -> 289999/1000000 (the double 0.29 lies below 29/100).
 * Returns 0, or AGG_EINVAL when a pointer is NULL or |eps| is not in
 * (0, 10] (NaN, infinities and values below 1/AGG_EPS_DEN included).
 */
int agg_epsilon_rational(double eps, uint32_t *num, uint32_t *den);

/* The greatest common divisor of |a| and |b| (gcd(a, 0) = a), for
 * reducing epsilon fractions. */
uint32_t agg_gcd(uint32_t a, uint32_t b);

/*
 * Draws Z with P(Z = z) proportional to exp(-eps * |z|), eps = eps_num /
 * eps_den (the noise for a count of sensitivity 1), exactly: integer
 * arithmetic and randombytes_uniform() only (Canonne, Kamath and Steinke
 * 2020, Algorithms 1 and 2). Returns 0 with |*out| set, AGG_EINVAL when
 * |out| is NULL or either part of eps is 0, or AGG_ERANGE in the (less than
 * 2^-1000000 likely) event that a draw would not fit in int64_t.
 */
int agg_discrete_laplace(uint32_t eps_num, uint32_t eps_den, int64_t *out);
/* The same with the RNG |rng| (NULL: libsodium); also returns AGG_ERNG. */
int agg_discrete_laplace_rng(const struct agg_rng *rng, uint32_t eps_num, uint32_t eps_den,
			     int64_t *out);

/*
 * The 95% half-width of the noise at eps = num/den: the smallest k with
 * P(|Z| > k) <= 0.05, where P(|Z| > k) = 2 e^(-eps (k+1)) / (1 + e^(-eps)).
 * Computed in doubles with a margin that can only make k larger
 * (conservative); it describes the noise and never touches a draw.
 * Returns 0 with |*out| set, AGG_EINVAL (NULL, a zero part), or AGG_ERANGE
 * when k would pass 2^40 (eps below about 3e-12).
 */
int agg_noise_halfwidth(uint32_t num, uint32_t den, uint64_t *out);

/* Cell flags. */
#define AGG_PRIMARY    0x1u /* suppressed: the NOISY count is below min_cell */
#define AGG_SECONDARY  0x2u /* on a margin: its line holds a suppressed cell;
			     * on anything: failed closed */
#define AGG_SUPPRESSED (AGG_PRIMARY | AGG_SECONDARY)
#define AGG_NOISY      0x4u /* |value| carries discrete Laplace noise */

/* Largest exact count a cell may hold: sums of a whole table stay far from
 * INT64_MAX even with noise. */
#define AGG_MAX_COUNT ((uint64_t)1 << 40)

/*
 * One cell. |n| is the exact count of distinct persons: it never leaves the
 * hub, and the caller wipes it when the query ends. |value| and |flags| are
 * filled by agg_disclose(): the released value (0 when suppressed) and what
 * was done to it. Neither |value| nor |flags| depends on |n| except through
 * the noisy count.
 */
struct agg_cell {
	uint64_t n;
	int64_t value;
	unsigned flags;
};

/*
 * A table of every combination of the group-by categories, zeros included:
 * cell (r, c) is cells[r * ncols + c], so a cell's key index is its
 * position. A 1-D table has nrows = 1. Margins are outputs only: they are
 * sums of released cells, never of exact counts (docs/disclosure.md).
 * The caller owns every array.
 */
struct agg_table {
	size_t nrows, ncols;
	struct agg_cell *cells;      /* nrows * ncols */
	struct agg_cell *row_margin; /* out: nrows sums over each row, or NULL */
	struct agg_cell *col_margin; /* out: ncols sums over each column, or NULL */
	struct agg_cell total;       /* out: the sum of every cell */
	uint64_t halfwidth;          /* out: 95% half-width of each cell's noise,
				      * before rounding (agg_noise_halfwidth) */
};

/*
 * Applies |out|'s controls to |t| in this order: (a) discrete Laplace noise
 * at epsilon / max_cells_per_person on EVERY cell, zeros included, in key
 * order; (b) a cell whose noisy count is below min_cell is suppressed
 * (AGG_PRIMARY, value 0); (c) released cells (AGG_NOISY, so >= min_cell
 * >= 0: nothing to clamp) rounded to a multiple of round_to (half to even); (d) margins and total as sums of released
 * values, suppressed (AGG_SECONDARY) when their line holds a suppressed
 * cell; t->halfwidth is the 95% half-width of each cell's noise. Steps (b)
 * to (d) read only noisy values, so the whole output, which cells are
 * suppressed included, is epsilon-DP. out->noise must be set: exact counts
 * are never released. |rng| NULL means libsodium's randombytes_uniform().
 * Returns 0; or AGG_EINVAL (bad argument: NULL, a count above
 * AGG_MAX_COUNT, round_to or max_cells_per_person 0, no noise, an epsilon
 * agg_epsilon_rational() refuses), AGG_ERANGE, AGG_ERNG with one sentence
 * in |err|. Allocates nothing. On error every cell and margin is marked
 * suppressed with value 0 (fail closed), so nothing computed half-way can
 * be released by mistake.
 */
int agg_disclose(struct agg_table *t, const struct policy_output *out, const struct agg_rng *rng,
		 char *err, size_t errlen);

#endif
