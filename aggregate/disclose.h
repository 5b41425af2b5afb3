/*
 * Disclosure control for the hub's tables: small-cell suppression, exact
 * discrete Laplace noise, clamping and rounding, in issue 5's order. Pure: no
 * I/O, no clock, no shared state. docs/disclosure.md gives every reason.
 */
#ifndef NOORDPOORT_DISCLOSE_H
#define NOORDPOORT_DISCLOSE_H

#include <stddef.h>
#include <stdint.h>

#include "../policies/policy.h"

/* Errors: every function returns 0 or one of these. */
#define AGG_EINVAL (-1) /* an argument is NULL, zero or outside its range */
#define AGG_ERANGE (-2) /* a count, a sum or a noise draw does not fit in int64_t */
#define AGG_ERNG   (-3) /* the injected RNG returned a value outside [0, bound) */
#define AGG_ENOMEM (-4) /* out of memory */

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

/* Cell flags. */
#define AGG_PRIMARY    0x1u /* suppressed: 0 < n < min_cell */
#define AGG_SECONDARY  0x2u /* suppressed so margins cannot give a primary back;
			     * on a margin: it would contain a suppressed cell */
#define AGG_SUPPRESSED (AGG_PRIMARY | AGG_SECONDARY)
#define AGG_NOISY      0x4u /* |value| carries discrete Laplace noise */

/* Largest exact count a cell may hold: sums of a whole table stay far from
 * INT64_MAX even with noise. */
#define AGG_MAX_COUNT ((uint64_t)1 << 40)

/*
 * One cell. |n| is the exact count of distinct persons: it never leaves the
 * hub, and the caller wipes it when the query ends. |value| and |flags| are
 * filled by agg_disclose(): the released value (0 when suppressed) and what
 * was done to it.
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
};

/*
 * Applies |out|'s controls to |t| in this order: (a) primary suppression of
 * 0 < n < min_cell; (b) secondary suppression until no row or column (for a
 * 1-D table: the total) holds exactly one suppressed cell and, in 2-D, no
 * suppressed cell can be solved for from exact row and column totals
 * (every suppressed cell lies on a cycle of suppressed cells); (c) discrete
 * Laplace noise at epsilon / max_cells_per_person on every released cell,
 * zeros included, when out->noise; (d) negative values clamped to 0, then
 * rounding to a multiple of round_to (half to even); (e) margins and total
 * as sums of released values, suppressed when their line holds a suppressed
 * cell. |rng| NULL means libsodium's randombytes_uniform().
 * Returns 0; or AGG_EINVAL (bad argument: NULL, a count above AGG_MAX_COUNT,
 * round_to or max_cells_per_person 0, an epsilon agg_epsilon_rational()
 * refuses), AGG_ERANGE, AGG_ERNG or AGG_ENOMEM with one sentence in |err|.
 * Allocates (and frees) one scratch block for 2-D tables only. On error
 * every cell and margin is marked suppressed with value 0 (fail closed), so
 * nothing computed half-way can be released by mistake.
 */
int agg_disclose(struct agg_table *t, const struct policy_output *out, const struct agg_rng *rng,
		 char *err, size_t errlen);

#endif
