/*
 * The hub's disclosure pipeline over one table of exact counts: primary and
 * secondary suppression, discrete Laplace noise, clamping and rounding, then
 * margins from what was released. The order and every rule's reason are in
 * docs/disclosure.md; agg_disclose() reads in that order.
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
	return code;
}

#define SUPP(t, r, c) ((t)->cells[(r) * (t)->ncols + (c)].flags & AGG_SUPPRESSED)

static size_t row_suppressed(const struct agg_table *t, size_t r)
{
	size_t k = 0;

	for (size_t c = 0; c < t->ncols; c++)
		k += SUPP(t, r, c) != 0;
	return k;
}

static size_t col_suppressed(const struct agg_table *t, size_t c)
{
	size_t k = 0;

	for (size_t r = 0; r < t->nrows; r++)
		k += SUPP(t, r, c) != 0;
	return k;
}

/*
 * How good a complement cell is; lower is better. First, in a 2-D table,
 * what suppressing it does to its other line: fixes a line that holds one
 * suppressed cell (0), leaves a line with two or more (1), or makes a new
 * lone one that needs its own complement (2). Then a cell with n > 0
 * before a zero: a zero complement adds nothing to the sum an attacker
 * learns. Then the smallest n (least information lost), then the lowest
 * key index, so the pattern is a deterministic function of the counts.
 */
struct rank {
	unsigned line, zero;
	uint64_t n;
	size_t index;
};

static int rank_less(const struct rank *a, const struct rank *b)
{
	if (a->line != b->line)
		return a->line < b->line;
	if (a->zero != b->zero)
		return a->zero < b->zero;
	if (a->n != b->n)
		return a->n < b->n;
	return a->index < b->index;
}

static struct rank rank_of(const struct agg_table *t, size_t r, size_t c, size_t other_line_suppressed,
			   int other_line_counts)
{
	struct rank k;
	size_t i = r * t->ncols + c;

	k.line = !other_line_counts ? 1 : other_line_suppressed == 1 ? 0 : other_line_suppressed ? 1 : 2;
	k.zero = t->cells[i].n == 0;
	k.n = t->cells[i].n;
	k.index = i;
	return k;
}

/*
 * One pass of the lone-cell rule: the first row (then column) holding
 * exactly one suppressed cell gets a complement. Returns 1 when it
 * suppressed a cell, 0 when no line holds a lone suppressed cell. A line of
 * one cell is not checked: its margin is that cell, whose own query would
 * suppress it just the same.
 */
static int fix_lone_cell(struct agg_table *t)
{
	int rows = t->ncols >= 2, cols = t->nrows >= 2;

	for (size_t r = 0; rows && r < t->nrows; r++) {
		struct rank best = { 0, 0, 0, 0 };
		int found = 0;

		if (row_suppressed(t, r) != 1)
			continue;
		for (size_t c = 0; c < t->ncols; c++) {
			struct rank k;

			if (SUPP(t, r, c))
				continue;
			k = rank_of(t, r, c, cols ? col_suppressed(t, c) : 0, cols);
			if (!found || rank_less(&k, &best)) {
				best = k;
				found = 1;
			}
		}
		/* ncols >= 2 and one suppressed: some cell is released */
		t->cells[best.index].flags |= AGG_SECONDARY;
		return 1;
	}
	for (size_t c = 0; cols && c < t->ncols; c++) {
		struct rank best = { 0, 0, 0, 0 };
		int found = 0;

		if (col_suppressed(t, c) != 1)
			continue;
		for (size_t r = 0; r < t->nrows; r++) {
			struct rank k;

			if (SUPP(t, r, c))
				continue;
			k = rank_of(t, r, c, rows ? row_suppressed(t, r) : 0, rows);
			if (!found || rank_less(&k, &best)) {
				best = k;
				found = 1;
			}
		}
		t->cells[best.index].flags |= AGG_SECONDARY;
		return 1;
	}
	return 0;
}

/*
 * Marks in |seen| (nrows + ncols nodes: rows first) everything reachable
 * from |start| over suppressed cells, without using cell |skip|. Rows and
 * columns are the nodes of a bipartite graph whose edges are the suppressed
 * cells. |queue| holds nrows + ncols entries.
 */
static void reach(const struct agg_table *t, size_t start, size_t skip, unsigned char *seen, size_t *queue)
{
	size_t head = 0, tail = 0;

	for (size_t i = 0; i < t->nrows + t->ncols; i++)
		seen[i] = 0;
	seen[start] = 1;
	queue[tail++] = start;
	while (head < tail) {
		size_t v = queue[head++];

		if (v < t->nrows) {
			for (size_t c = 0; c < t->ncols; c++) {
				size_t w = t->nrows + c;

				if (v * t->ncols + c != skip && SUPP(t, v, c) && !seen[w]) {
					seen[w] = 1;
					queue[tail++] = w;
				}
			}
		} else {
			for (size_t r = 0; r < t->nrows; r++) {
				size_t c = v - t->nrows;

				if (r * t->ncols + c != skip && SUPP(t, r, c) && !seen[r]) {
					seen[r] = 1;
					queue[tail++] = r;
				}
			}
		}
	}
}

/* Scratch for fix_bridge(): two node sets and a queue, one allocation. */
struct scratch {
	unsigned char *rside, *cside;
	size_t *queue;
};

/*
 * With every row and column total known, a suppressed cell can be solved
 * for exactly when it lies on no cycle of suppressed cells, i.e. when it is
 * a bridge of the graph above (the cycle space is the null space of the
 * margin equations). No lone cell in a line is necessary but not
 * sufficient: two blocks of suppressed cells joined by one cell give that
 * cell back. This pass finds the first such bridge and suppresses the best
 * released cell joining its two sides, which puts it on a cycle. Returns 1
 * when it suppressed a cell, 0 when there is no bridge.
 */
static int fix_bridge(struct agg_table *t, const struct scratch *s)
{
	unsigned char *rside = s->rside, *cside = s->cside;
	size_t *queue = s->queue;
	int ret = 0;

	for (size_t i = 0; i < t->nrows * t->ncols && !ret; i++) {
		size_t r = i / t->ncols, c = i % t->ncols;
		struct rank best = { 0, 0, 0, 0 };
		int found = 0;

		if (!(t->cells[i].flags & AGG_SUPPRESSED))
			continue;
		reach(t, r, i, rside, queue);
		if (rside[t->nrows + c])
			continue; /* on a cycle: not determined */
		reach(t, t->nrows + c, i, cside, queue);
		for (size_t j = 0; j < t->nrows * t->ncols; j++) {
			size_t r2 = j / t->ncols, c2 = j % t->ncols;
			struct rank k;

			if (t->cells[j].flags & AGG_SUPPRESSED)
				continue;
			if (!((rside[r2] && cside[t->nrows + c2]) || (cside[r2] && rside[t->nrows + c2])))
				continue;
			k = rank_of(t, r2, c2, 0, 0);
			if (!found || rank_less(&k, &best)) {
				best = k;
				found = 1;
			}
		}
		/*
		 * After fix_lone_cell() every row and column on a side has two
		 * suppressed cells, so each side holds a row and a column, and
		 * the cell joining them cannot be suppressed (else no bridge).
		 */
		if (found) {
			t->cells[best.index].flags |= AGG_SECONDARY;
			ret = 1;
		}
	}
	return ret;
}

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
	struct scratch s = { NULL, NULL, NULL };
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
	if (out->noise) {
		if (agg_epsilon_rational(out->epsilon, &num, &den) < 0)
			return fail(t, AGG_EINVAL, err, errlen,
				    "epsilon %g is not in (0, 10] (or is below 1/%u)", out->epsilon, AGG_EPS_DEN);
		/*
		 * A person in up to m cells moves the table by m in L1 norm:
		 * each cell gets noise at epsilon/m so the table is epsilon-DP.
		 */
		g = agg_gcd(num, out->max_cells_per_person);
		num /= g;
		if (den > UINT32_MAX / (out->max_cells_per_person / g))
			return fail(t, AGG_ERANGE, err, errlen, "epsilon / max_cells_per_person is too fine");
		den *= out->max_cells_per_person / g;
	}

	for (size_t i = 0; i < ncells; i++) {
		t->cells[i].value = 0;
		t->cells[i].flags = 0;
	}

	/* (a) Primary: 0 < n < min_cell. Zeros are released: every combination is. */
	for (size_t i = 0; i < ncells; i++)
		if (t->cells[i].n > 0 && t->cells[i].n < out->min_cell)
			t->cells[i].flags = AGG_PRIMARY;

	/*
	 * (b) Secondary, to a fixpoint: each pass suppresses one more cell,
	 * so there are at most ncells passes. Bridges exist only in 2-D.
	 */
	if (t->nrows >= 2 && t->ncols >= 2) {
		size_t nodes = t->nrows + t->ncols;

		/* nodes * (2 + sizeof(size_t)) cannot overflow: ncells fit in memory. */
		s.queue = malloc(nodes * (sizeof(size_t) + 2));
		if (!s.queue)
			return fail(t, AGG_ENOMEM, err, errlen, "out of memory");
		s.rside = (unsigned char *)(s.queue + nodes);
		s.cside = s.rside + nodes;
	}
	for (;;) {
		if (fix_lone_cell(t))
			continue;
		if (!s.queue || !fix_bridge(t, &s))
			break;
	}
	free(s.queue);

	/* (c) Noise on every released cell, zeros included; (d) clamp, round. */
	for (size_t i = 0; i < ncells; i++) {
		struct agg_cell *cell = &t->cells[i];
		int64_t v = (int64_t)cell->n, z;

		if (cell->flags & AGG_SUPPRESSED)
			continue;
		if (out->noise) {
			if ((r = agg_discrete_laplace_rng(rng, num, den, &z)) < 0)
				return fail(t, r, err, errlen, "the noise sampler failed (%d)", r);
			if (z > INT64_MAX - v)
				return fail(t, AGG_ERANGE, err, errlen, "a noisy count does not fit");
			v += z;
			cell->flags |= AGG_NOISY;
		}
		if (v < 0)
			v = 0;
		if ((r = round_to(v, out->round_to, &v)) < 0)
			return fail(t, r, err, errlen, "a rounded count does not fit");
		cell->value = v;
	}

	/* (e) Margins from released values only; suppressed if their line is not whole. */
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
