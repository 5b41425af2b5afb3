/*
 * Reads policy files into an immutable struct policy_set: every problem is
 * reported with file:line:col, and a set with any error is not returned.
 * Evaluation (decide.c) only reads what this builds.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../common/yamldoc.h"

#define DAY 86400
#define EXPIRY_WARN_DAYS 30

/* ---- arena ---- */

struct pol_block {
	struct pol_block *next;
	size_t used, cap;
	max_align_t data[];
};

void *pol_alloc(struct pol_block **a, size_t n)
{
	struct pol_block *b = *a;
	size_t al = sizeof(max_align_t);

	n = (n + al - 1) / al * al;
	if (n == 0)
		n = al;
	if (!b || b->cap - b->used < n) {
		size_t cap = n > 16384 ? n : 16384;

		b = calloc(1, sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->cap = cap;
		b->next = *a;
		*a = b;
	}
	b->used += n;
	return (char *)b->data + b->used - n;
}

char *pol_strdup(struct pol_block **a, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = pol_alloc(a, n);

	if (p)
		memcpy(p, s, n);
	return p;
}

void pol_arena_free(struct pol_block *a)
{
	while (a) {
		struct pol_block *next = a->next;

		free(a);
		a = next;
	}
}

/* ---- names ---- */

static const struct {
	const char *name;
	int kind; /* 0 any, 1 date, 2 postcode */
	int rank;
} gens[POLICY_GEN_COUNT] = {
	[POLICY_GEN_NONE] = { "none", 0, -1 },
	[POLICY_GEN_EXACT] = { "exact", 0, 0 },
	[POLICY_GEN_MONTH] = { "month", 1, 1 },
	[POLICY_GEN_QUARTER] = { "quarter", 1, 2 },
	[POLICY_GEN_YEAR] = { "year", 1, 3 },
	[POLICY_GEN_BIRTH_YEAR] = { "birth_year", 1, 3 },
	[POLICY_GEN_AGE_BAND_5] = { "age_band_5", 1, 4 },
	[POLICY_GEN_AGE_BAND_10] = { "age_band_10", 1, 5 },
	[POLICY_GEN_AGE_BAND_20] = { "age_band_20", 1, 6 },
	[POLICY_GEN_POSTCODE4] = { "postcode4", 2, 1 },
	[POLICY_GEN_GEMEENTE] = { "gemeente", 2, 2 },
	[POLICY_GEN_ARBEIDSMARKTREGIO] = { "arbeidsmarktregio", 2, 3 },
	[POLICY_GEN_PROVINCIE] = { "provincie", 2, 4 },
};

const char *policy_gen_name(enum policy_gen g)
{
	return (unsigned)g < POLICY_GEN_COUNT ? gens[g].name : "?";
}

int policy_gen_parse(const char *name, enum policy_gen *out)
{
	for (int i = 0; i < POLICY_GEN_COUNT; i++) {
		if (strcmp(name, gens[i].name) == 0) {
			*out = (enum policy_gen)i;
			return 0;
		}
	}
	return -1;
}

int pol_gen_kind(enum policy_gen g)
{
	return (unsigned)g < POLICY_GEN_COUNT ? gens[g].kind : -1;
}

int pol_gen_rank(enum policy_gen g)
{
	return (unsigned)g < POLICY_GEN_COUNT ? gens[g].rank : -1;
}

int pol_gen_allows(enum policy_gen granted, enum policy_gen wanted)
{
	if (wanted == POLICY_GEN_NONE || granted == POLICY_GEN_EXACT)
		return 1;
	return pol_gen_kind(wanted) == pol_gen_kind(granted) &&
	       pol_gen_rank(wanted) >= pol_gen_rank(granted);
}

static const char *const op_names[] = { "lookup", "aggregate", "linked_aggregate" };

const char *policy_op_name(enum policy_op op)
{
	for (unsigned i = 0; i < 3; i++)
		if (op == 1u << i)
			return op_names[i];
	return "?";
}

int policy_op_parse(const char *name, enum policy_op *out)
{
	for (unsigned i = 0; i < 3; i++) {
		if (strcmp(name, op_names[i]) == 0) {
			*out = (enum policy_op)(1u << i);
			return 0;
		}
	}
	return -1;
}

static const char *const ident_names[] = { "never", "pseudonym", "bsn" };

const char *policy_ident_name(enum policy_ident i)
{
	return (unsigned)i < 3 ? ident_names[i] : "?";
}

int policy_ident_parse(const char *name, enum policy_ident *out)
{
	for (unsigned i = 0; i < 3; i++) {
		if (strcmp(name, ident_names[i]) == 0) {
			*out = (enum policy_ident)i;
			return 0;
		}
	}
	return -1;
}

const char *policy_period_name(enum policy_period p)
{
	switch (p) {
	case POLICY_PER_MONTH: return "month";
	case POLICY_PER_QUARTER: return "quarter";
	case POLICY_PER_YEAR: return "year";
	}
	return "?";
}

/* ---- dates (proleptic Gregorian, UTC; Howard Hinnant's algorithm) ---- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + (int64_t)doe - 719468;
}

int pol_civil_day(const char *s, int64_t *day, unsigned *year)
{
	static const unsigned mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	unsigned y = 0, m, d;

	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return -1;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return -1;
	for (int i = 0; i < 4; i++)
		y = y * 10 + (unsigned)(s[i] - '0');
	m = (unsigned)(s[5] - '0') * 10 + (unsigned)(s[6] - '0');
	d = (unsigned)(s[8] - '0') * 10 + (unsigned)(s[9] - '0');
	if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return -1;
	if (m == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return -1;
	*day = days_from_civil(y, m, d);
	*year = y;
	return 0;
}

int policy_parse_date(const char *s, int64_t *out)
{
	int64_t day;
	unsigned y;

	if (pol_civil_day(s, &day, &y) < 0 || y < 1970)
		return -1;
	*out = day * DAY;
	return 0;
}

void pol_civil_from_days(int64_t day, int64_t *year, unsigned *month, unsigned *mday)
{
	int64_t z = day + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	unsigned m = mp < 10 ? mp + 3 : mp - 9;

	*year = (int64_t)yoe + era * 400 + (m <= 2);
	*month = m;
	*mday = doy - (153 * mp + 2) / 5 + 1;
}

void pol_date_str(int64_t t, char out[11])
{
	int64_t y;
	unsigned m, d;

	pol_civil_from_days((t >= 0 ? t : t - DAY + 1) / DAY, &y, &m, &d);
	snprintf(out, 11, "%04u-%02u-%02u", (unsigned)(y % 10000), m % 100, d % 100);
}

/* ---- duplicates ---- */

struct dup_ent {
	const char *s;
	size_t i;
};

static int dup_cmp(const void *a, const void *b)
{
	const struct dup_ent *x = a, *y = b;
	int r = strcmp(x->s, y->s);

	return r ? r : (x->i > y->i) - (x->i < y->i);
}

/*
 * Sets first[i] to the index of the first string equal to v[i] (i itself
 * when v[i] is the first of its kind). Sorting makes this O(n log n): a
 * list at the YAML node cap would take seconds compared pair by pair, and
 * the gateway loads policies on its main thread. 0, or -1 when out of memory.
 */
static int find_dups(const char *const *v, size_t n, size_t *first)
{
	struct dup_ent *e = calloc(n + 1, sizeof(*e));

	if (!e)
		return -1;
	for (size_t i = 0; i < n; i++) {
		e[i].s = v[i];
		e[i].i = i;
	}
	qsort(e, n, sizeof(*e), dup_cmp);
	for (size_t i = 0; i < n; i++)
		first[e[i].i] = i && strcmp(e[i - 1].s, e[i].s) == 0 ? first[e[i - 1].i] : e[i].i;
	free(e);
	return 0;
}

/* ---- parsing ---- */

struct pctx {
	struct ydoc *y;
	struct policy_set *s;
	const struct policy_refs *refs;
	const char *file; /* arena copy */
	const char *base; /* file name without folders, for top-level forbid ids */
	unsigned ops;     /* the operations of the grant being read */
	int bad;
	const struct policy_file_info *fi; /* this file's serial and validity */
};

static struct pol_pos pos_of(const struct pctx *c, const yaml_node_t *n)
{
	struct pol_pos p = { c->file, 0, 0 };

	if (n) {
		p.line = (unsigned)n->start_mark.line + 1;
		p.col = (unsigned)n->start_mark.column + 1;
	}
	return p;
}

static void oom(struct pctx *c, const yaml_node_t *n)
{
	ydoc_error(c->y, n, "out of memory");
	c->bad = 1;
}

static int valid_word(const char *s, size_t max, const char *extra)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' ||
		      strchr(extra, *s)))
			return 0;
	return 1;
}

/* A dataset id is OWNER/NAME, both lower-case words; OWNER is a member id. */
static int valid_dataset_id(const char *s)
{
	const char *slash = strchr(s, '/');

	if (!slash || slash == s || strchr(slash + 1, '/') || !valid_word(slash + 1, 64, "_"))
		return 0;
	for (const char *p = s; p < slash; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return 0;
	return slash - s <= 64;
}

static int known_member(const struct pctx *c, const char *id, size_t len)
{
	if (!c->refs || c->refs->nmembers == 0)
		return 1;
	for (size_t i = 0; i < c->refs->nmembers; i++)
		if (strlen(c->refs->members[i]) == len && memcmp(c->refs->members[i], id, len) == 0)
			return 1;
	return 0;
}

/* A non-empty scalar copied into the arena, or NULL after an error. */
static const char *text(struct pctx *c, yaml_node_t *n, const char *what)
{
	const char *s = ydoc_str(c->y, n, what);
	const char *copy;

	if (!s) {
		c->bad = 1;
		return NULL;
	}
	if (!*s) {
		ydoc_error(c->y, n, "%s: empty", what);
		c->bad = 1;
		return NULL;
	}
	if (!(copy = pol_strdup(&c->s->arena, s)))
		oom(c, n);
	return copy;
}

static size_t seq_len(const yaml_node_t *n)
{
	return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static size_t map_len(const yaml_node_t *n)
{
	return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

/* A list of scalars (a single scalar counts as a list of one). */
static const char **words(struct pctx *c, yaml_node_t *n, const char *what, size_t *count)
{
	const char **v;
	yaml_node_t **at = NULL;
	size_t cnt, *first = NULL;

	*count = 0;
	if (n && n->type == YAML_SCALAR_NODE) {
		const char *s = text(c, n, what);

		if (!s || !(v = pol_alloc(&c->s->arena, sizeof(*v)))) {
			if (s)
				oom(c, n);
			return NULL;
		}
		v[0] = s;
		*count = 1;
		return v;
	}
	if (!n || n->type != YAML_SEQUENCE_NODE) {
		ydoc_error(c->y, n, "%s: expected a list such as [a, b]", what);
		c->bad = 1;
		return NULL;
	}
	cnt = seq_len(n);
	if (cnt == 0) {
		ydoc_error(c->y, n, "%s: the list is empty", what);
		c->bad = 1;
		return NULL;
	}
	if (!(v = pol_alloc(&c->s->arena, cnt * sizeof(*v)))) {
		oom(c, n);
		return NULL;
	}
	if (!(at = calloc(cnt, sizeof(*at))) || !(first = calloc(cnt, sizeof(*first)))) {
		free(at);
		oom(c, n);
		return NULL;
	}
	for (size_t i = 0; i < cnt; i++) {
		yaml_node_t *it = ydoc_item(c->y, n->data.sequence.items.start[i]);
		const char *s = text(c, it, what);

		if (!s)
			continue;
		at[*count] = it;
		v[(*count)++] = s;
	}
	if (find_dups(v, *count, first) < 0) {
		oom(c, n);
	} else {
		for (size_t i = 0; i < *count; i++) {
			if (first[i] != i) {
				ydoc_error(c->y, at[i], "%s: '%s' is listed twice", what, v[i]);
				c->bad = 1;
			}
		}
	}
	free(at);
	free(first);
	return v;
}

/*
 * The requesters of a grant (|grant|) or a forbid. A name that is not in the
 * members file is a warning, not an error: a member can be removed (its key
 * stolen, its contract ended) while policies, owned by other privacy
 * officers, still name it, and the removal must take effect at the next
 * reload. Such a name is dropped from a grant, so nobody can ever be granted
 * under it (not even a hub that sends it as the requester of a subquery); a
 * forbid keeps it (it only ever refuses).
 */
static const char **requesters(struct pctx *c, yaml_node_t *n, const char *what, int grant,
			       size_t *count)
{
	const char **v = words(c, n, what, count);
	size_t kept = 0;

	for (size_t i = 0; v && i < *count; i++) {
		yaml_node_t *at = n->type == YAML_SEQUENCE_NODE
					  ? ydoc_item(c->y, n->data.sequence.items.start[i]) : n;

		if (!valid_word(v[i], 64, "")) {
			ydoc_error(c->y, at, "%s: '%s' is not a member id (lower-case letters, digits, '-')",
				   what, v[i]);
			c->bad = 1;
		} else if (!known_member(c, v[i], strlen(v[i]))) {
			if (c->refs->unknown_member_is_error) {
				ydoc_error(c->y, at, "%s: '%s' is not a member of the federation", what, v[i]);
				c->bad = 1;
			} else {
				ydoc_warn(c->y, at, "%s: '%s' is not a member of the federation: %s", what,
					  v[i], grant ? "this grant never applies to it"
						      : "this forbid has no effect on it");
				if (grant)
					continue;
			}
		}
		v[kept++] = v[i];
	}
	if (v)
		*count = kept;
	return v;
}

static unsigned operations(struct pctx *c, yaml_node_t *n, const char *what)
{
	size_t cnt;
	const char **v = words(c, n, what, &cnt);
	unsigned ops = 0;

	for (size_t i = 0; v && i < cnt; i++) {
		enum policy_op op;

		if (policy_op_parse(v[i], &op) < 0) {
			ydoc_error(c->y, n, "%s: unknown operation '%s' (lookup, aggregate or linked_aggregate)",
				   what, v[i]);
			c->bad = 1;
		} else {
			ops |= op;
		}
	}
	return ops;
}

/* Strict decimal: digits with an optional fraction, nothing else. */
static int parse_decimal(const char *s, double *out)
{
	const char *p = s;
	int digits = 0;

	if (*p == '-')
		p++;
	for (; *p >= '0' && *p <= '9'; p++)
		digits++;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			digits++;
	if (*p || !digits || strlen(s) > 32)
		return -1;
	*out = strtod(s, NULL);
	return 0;
}

enum { ACK_MIN_CELL = 1, ACK_EPSILON = 2 };

static unsigned acknowledgements(struct pctx *c, yaml_node_t *n, const char *what)
{
	unsigned acks = 0;

	if (!n)
		return 0;
	if (n->type != YAML_SEQUENCE_NODE) {
		ydoc_error(c->y, n, "%s.acknowledge: expected a list of {risk: ..., reason: ...}", what);
		c->bad = 1;
		return 0;
	}
	for (size_t i = 0; i < seq_len(n); i++) {
		yaml_node_t *it = ydoc_item(c->y, n->data.sequence.items.start[i]);
		struct ykey k[] = { { "risk", 1, NULL }, { "reason", 1, NULL } };
		char w[768];
		const char *risk;

		snprintf(w, sizeof(w), "%s.acknowledge[%zu]", what, i);
		if (ydoc_map(c->y, it, w, k, 2) < 0) {
			c->bad = 1;
			continue;
		}
		risk = text(c, k[0].value, "risk");
		if (!text(c, k[1].value, "reason") || !risk)
			continue;
		if (strcmp(risk, "min_cell_below_5") == 0) {
			acks |= ACK_MIN_CELL;
		} else if (strcmp(risk, "epsilon_above_10") == 0) {
			acks |= ACK_EPSILON;
		} else {
			ydoc_error(c->y, k[0].value, "%s.risk: unknown risk '%s' (min_cell_below_5 or epsilon_above_10)",
				   w, risk);
			c->bad = 1;
		}
	}
	return acks;
}

/* An epsilon in (0, 10], or above 10 when acknowledged. */
static double epsilon(struct pctx *c, yaml_node_t *n, const char *what, unsigned acks)
{
	const char *s = ydoc_str(c->y, n, what);
	double e;

	if (!s) {
		c->bad = 1;
		return 0;
	}
	if (parse_decimal(s, &e) < 0) {
		ydoc_error(c->y, n, "%s: '%s' is not a number like 0.5", what, s);
		c->bad = 1;
		return 0;
	}
	if (!(e > 0)) {
		ydoc_error(c->y, n, "%s: must be greater than 0 (%s would mean infinite noise: no answer at all)",
			   what, s);
		c->bad = 1;
	} else if (e > 10 && !(acks & ACK_EPSILON)) {
		ydoc_error(c->y, n, "%s: %s is above 10, where noise protects very little; if that is "
			   "intended, add 'acknowledge: [{risk: epsilon_above_10, reason: ...}]'", what, s);
		c->bad = 1;
	}
	return e;
}

static void output(struct pctx *c, struct ykey *k, size_t nk, const char *what, unsigned ops,
		   struct policy_output *o)
{
	yaml_node_t *n;
	unsigned acks = acknowledgements(c, ydoc_get(k, nk, "acknowledge"), what);
	uint64_t v;
	char w[768];

	/* Defaults that matter for privacy: see docs/policy.md, "Output controls". */
	o->min_cell = 10;
	o->round_to = 1;
	o->max_cells_per_person = 1;
	o->identifiers = POLICY_IDENT_NEVER;
	snprintf(w, sizeof(w), "%s.min_cell", what);
	if ((n = ydoc_get(k, nk, "min_cell"))) {
		if (ydoc_uint(c->y, n, w, 1, 1000000, &v) < 0) {
			c->bad = 1;
		} else {
			o->min_cell = (unsigned)v;
			if (v < 5 && !(acks & ACK_MIN_CELL)) {
				ydoc_error(c->y, n, "%s: %llu is below 5, so small groups can be recognised; if "
					   "that is intended, add 'acknowledge: [{risk: min_cell_below_5, reason: ...}]'",
					   w, (unsigned long long)v);
				c->bad = 1;
			}
		}
	}
	if ((acks & ACK_MIN_CELL) && o->min_cell >= 5)
		ydoc_warn(c->y, ydoc_get(k, nk, "acknowledge"),
			  "%s: acknowledges min_cell_below_5, but min_cell is %u", what, o->min_cell);
	snprintf(w, sizeof(w), "%s.noise", what);
	if ((n = ydoc_get(k, nk, "noise"))) {
		if (n->type == YAML_SCALAR_NODE) {
			const char *s = ydoc_str(c->y, n, w);

			if (s && strcmp(s, "none") != 0) {
				ydoc_error(c->y, n, "%s: expected 'none' or {mechanism: discrete_laplace, epsilon: ...}", w);
				c->bad = 1;
			}
		} else {
			struct ykey nk2[] = { { "mechanism", 1, NULL }, { "epsilon", 1, NULL } };

			if (ydoc_map(c->y, n, w, nk2, 2) < 0) {
				c->bad = 1;
			} else {
				const char *m = ydoc_str(c->y, nk2[0].value, "mechanism");

				if (!m || strcmp(m, "discrete_laplace") != 0) {
					ydoc_error(c->y, nk2[0].value, "%s.mechanism: only discrete_laplace is supported", w);
					c->bad = 1;
				}
				snprintf(w, sizeof(w), "%s.noise.epsilon", what);
				o->noise = 1;
				o->epsilon = epsilon(c, nk2[1].value, w, acks);
			}
		}
	}
	/* No exact releases (issue 11): an exact table lets a coordinator learn
	 * about one person (thresholds, suppression patterns, differences). */
	if (!o->noise && (ops & (POLICY_OP_AGGREGATE | POLICY_OP_LINKED_AGGREGATE))) {
		ydoc_error(c->y, n ? n : ydoc_get(k, nk, "operations"),
			   "%s: an aggregate grant needs 'noise: {mechanism: discrete_laplace, epsilon: ...}'; "
			   "exact counts (no noise) are never released to a coordinator, because an exact "
			   "table, its thresholds and its suppressed cells tell about single persons "
			   "(docs/disclosure.md, \"No exact releases\")", w);
		c->bad = 1;
	}
	snprintf(w, sizeof(w), "%s.round_to", what);
	if ((n = ydoc_get(k, nk, "round_to"))) {
		if (ydoc_uint(c->y, n, w, 1, 1000000, &v) < 0)
			c->bad = 1;
		else
			o->round_to = (unsigned)v;
	}
	snprintf(w, sizeof(w), "%s.max_cells_per_person", what);
	if ((n = ydoc_get(k, nk, "max_cells_per_person"))) {
		if (ydoc_uint(c->y, n, w, 1, 1000, &v) < 0)
			c->bad = 1;
		else
			o->max_cells_per_person = (unsigned)v;
	}
	snprintf(w, sizeof(w), "%s.budget", what);
	if ((n = ydoc_get(k, nk, "budget"))) {
		struct ykey bk[] = { { "epsilon", 1, NULL }, { "per", 1, NULL } };

		if (ydoc_map(c->y, n, w, bk, 2) < 0) {
			c->bad = 1;
		} else {
			const char *per = ydoc_str(c->y, bk[1].value, "per");

			o->has_budget = 1;
			o->budget_per = POLICY_PER_YEAR;
			if (per && strcmp(per, "month") == 0) {
				o->budget_per = POLICY_PER_MONTH;
			} else if (per && strcmp(per, "quarter") == 0) {
				o->budget_per = POLICY_PER_QUARTER;
			} else if (!per || strcmp(per, "year") != 0) {
				ydoc_error(c->y, bk[1].value, "%s.per: expected month, quarter or year", w);
				c->bad = 1;
			}
			snprintf(w, sizeof(w), "%s.budget.epsilon", what);
			o->budget_epsilon = epsilon(c, bk[0].value, w, acks);
			if (!o->noise)
				ydoc_warn(c->y, n, "%s.budget: has no effect without noise", what);
			else if (o->budget_epsilon < o->epsilon)
				ydoc_warn(c->y, n, "%s.budget: epsilon %g per %s is less than one query's "
					  "epsilon %g, so the grant can never answer", what, o->budget_epsilon,
					  policy_period_name(o->budget_per), o->epsilon);
		}
	}
	if ((acks & ACK_EPSILON) && !(o->noise && o->epsilon > 10) &&
	    !(o->has_budget && o->budget_epsilon > 10))
		ydoc_warn(c->y, ydoc_get(k, nk, "acknowledge"),
			  "%s: acknowledges epsilon_above_10, but no epsilon is above 10", what);
	snprintf(w, sizeof(w), "%s.identifiers", what);
	if ((n = ydoc_get(k, nk, "identifiers"))) {
		const char *s = ydoc_str(c->y, n, w);

		if (!s || policy_ident_parse(s, &o->identifiers) < 0) {
			if (s)
				ydoc_error(c->y, n, "%s: expected never, pseudonym or bsn, found '%s'", w, s);
			c->bad = 1;
		} else if (o->identifiers != POLICY_IDENT_NEVER && !(ops & POLICY_OP_LOOKUP)) {
			ydoc_warn(c->y, n, "%s: aggregates never return identifiers; this only matters for lookup", w);
		}
	}
	snprintf(w, sizeof(w), "%s.on_node_failure", what);
	if ((n = ydoc_get(k, nk, "on_node_failure"))) {
		const char *s = ydoc_str(c->y, n, w);

		if (s && strcmp(s, "partial") == 0) {
			o->partial_ok = 1;
		} else if (!s || strcmp(s, "fail") != 0) {
			if (s)
				ydoc_error(c->y, n, "%s: expected fail or partial, found '%s'", w, s);
			c->bad = 1;
		}
	}
}

/* Catalog checks for one granted or forbidden field. */
static void check_field(struct pctx *c, yaml_node_t *at, const char *what, const char *ds,
			const char *field, enum policy_gen gen, int forbid)
{
	const struct pol_cat_field *f;
	int kind = pol_gen_kind(gen);

	if (!c->refs || !c->refs->catalog || !pol_catalog_has_dataset(c->refs->catalog, ds))
		return;
	if (!(f = pol_catalog_field(c->refs->catalog, ds, field))) {
		ydoc_error(c->y, at, "%s: dataset '%s' has no field '%s' in the catalog", what, ds, field);
		c->bad = 1;
		return;
	}
	if (forbid)
		return;
	if (f->identifier) {
		ydoc_error(c->y, at, "%s: '%s' is an identifier; whether identifiers may leave is set "
			   "with 'identifiers:', not as a field", what, field);
		c->bad = 1;
	} else if ((kind == 1 && !pol_cat_type_is_date(f->type)) ||
		   (kind == 2 && !pol_cat_type_is_string(f->type))) {
		ydoc_error(c->y, at, "%s: '%s' cannot be generalised as %s (that is for %s)", what,
			   field, policy_gen_name(gen), kind == 1 ? "dates" : "postcodes");
		c->bad = 1;
	} else if (c->ops & (POLICY_OP_AGGREGATE | POLICY_OP_LINKED_AGGREGATE)) {
		struct policy_catalog_field pf;

		/* A table's keys come from the catalog, never from data
		 * (docs/disclosure.md, "Declared domains"). */
		pol_cat_public(f, &pf);
		if (!policy_domain_declared(&pf, gen)) {
			ydoc_error(c->y, at, "%s: '%s' cannot be granted for aggregates: %s (docs/disclosure.md, "
				   "\"Declared domains\")", what, field,
				   f->type == POLICY_T_STRING ? "a string field has no declared domain and can never be grouped"
				   : f->type == POLICY_T_INT ? "the catalog declares no bins for it (bins: [0, 1000, 2500])"
				   : gen >= POLICY_GEN_AGE_BAND_5 && gen <= POLICY_GEN_AGE_BAND_20
				   ? "the catalog declares no ages for it (ages: [20, 80])"
				   : "the catalog declares no range for it (range: [2015-01-01, 2026-12-31])");
			c->bad = 1;
		}
	}
}

/* Checks a dataset id; returns 1 when its owner is not a member (a warning,
 * as for requesters: the grant on it is inert). */
static int check_dataset(struct pctx *c, yaml_node_t *at, const char *what, const char *ds,
			 int forbid)
{
	if (!valid_dataset_id(ds)) {
		ydoc_error(c->y, at, "%s: '%s' is not a dataset id like 'uwv/ww-uitkeringen'", what, ds);
		c->bad = 1;
	} else if (!known_member(c, ds, (size_t)(strchr(ds, '/') - ds))) {
		if (c->refs->unknown_member_is_error) {
			ydoc_error(c->y, at, "%s: dataset '%s' belongs to '%.*s', which is not a member",
				   what, ds, (int)(strchr(ds, '/') - ds), ds);
			c->bad = 1;
			return 0;
		}
		ydoc_warn(c->y, at, "%s: dataset '%s' belongs to '%.*s', which is not a member: %s", what,
			  ds, (int)(strchr(ds, '/') - ds), ds,
			  forbid ? "this forbid has no effect on it" : "it is never granted");
		return 1;
	} else if (c->refs && c->refs->catalog && !pol_catalog_has_dataset(c->refs->catalog, ds)) {
		ydoc_error(c->y, at, "%s: dataset '%s' is not in the catalog", what, ds);
		c->bad = 1;
	}
	return 0;
}

/*
 * datasets: { DATASET: { FIELD: GENERALISATION, ... } } for grants, and
 * { DATASET: all | [FIELD, ...] } for forbids.
 */
static struct pol_dataset *datasets(struct pctx *c, yaml_node_t *n, const char *what,
				    int forbid, size_t *count)
{
	struct pol_dataset *v;
	char w[1024];

	*count = 0;
	if (!n || n->type != YAML_MAPPING_NODE || map_len(n) == 0) {
		ydoc_error(c->y, n, "%s: expected a mapping of dataset ids to %s", what,
			   forbid ? "'all' or a list of fields" : "their fields");
		c->bad = 1;
		return NULL;
	}
	if (!(v = pol_alloc(&c->s->arena, map_len(n) * sizeof(*v)))) {
		oom(c, n);
		return NULL;
	}
	for (size_t i = 0; i < map_len(n); i++) {
		yaml_node_pair_t *pr = &n->data.mapping.pairs.start[i];
		yaml_node_t *k = ydoc_item(c->y, pr->key), *val = ydoc_item(c->y, pr->value);
		struct pol_dataset *d = &v[*count];

		if (!(d->id = text(c, k, what)))
			continue;
		d->pos = pos_of(c, k);
		snprintf(w, sizeof(w), "%s.%s", what, d->id);
		d->inert = check_dataset(c, k, what, d->id, forbid) && !forbid;
		for (size_t j = 0; j < *count; j++) {
			if (strcmp(v[j].id, d->id) == 0) {
				ydoc_error(c->y, k, "%s: dataset '%s' is listed twice", what, d->id);
				c->bad = 1;
			}
		}
		(*count)++;
		if (forbid && val && val->type == YAML_SCALAR_NODE) {
			const char *s = ydoc_str(c->y, val, w);

			if (!s || strcmp(s, "all") != 0) {
				ydoc_error(c->y, val, "%s: expected 'all' or a list of fields", w);
				c->bad = 1;
			}
			continue;
		}
		if (forbid) {
			const char **f = words(c, val, w, &d->nfields);

			if (f && !(d->fields = pol_alloc(&c->s->arena, d->nfields * sizeof(*d->fields)))) {
				oom(c, val);
				d->nfields = 0;
			}
			for (size_t j = 0; f && d->fields && j < d->nfields; j++) {
				yaml_node_t *at = val->type == YAML_SEQUENCE_NODE
					? ydoc_item(c->y, val->data.sequence.items.start[j]) : val;

				d->fields[j].name = f[j];
				d->fields[j].gen = POLICY_GEN_EXACT;
				d->fields[j].pos = pos_of(c, at);
				check_field(c, at, w, d->id, f[j], POLICY_GEN_EXACT, 1);
			}
			continue;
		}
		if (!val || val->type != YAML_MAPPING_NODE || map_len(val) == 0) {
			ydoc_error(c->y, val, "%s: expected the fields, each with how coarse it may be used "
				   "(like 'birth_date: age_band_10' or 'sector: exact')", w);
			c->bad = 1;
			continue;
		}
		if (!(d->fields = pol_alloc(&c->s->arena, map_len(val) * sizeof(*d->fields)))) {
			oom(c, val);
			continue;
		}
		for (size_t j = 0; j < map_len(val); j++) {
			yaml_node_pair_t *fp = &val->data.mapping.pairs.start[j];
			yaml_node_t *fk = ydoc_item(c->y, fp->key), *fv = ydoc_item(c->y, fp->value);
			struct pol_field *f = &d->fields[d->nfields];
			const char *g;

			if (!(f->name = text(c, fk, w)))
				continue;
			f->pos = pos_of(c, fk);
			if (!valid_word(f->name, 64, "_")) {
				ydoc_error(c->y, fk, "%s: '%s' is not a field name (lower-case letters, digits, '_')",
					   w, f->name);
				c->bad = 1;
			}
			for (size_t m = 0; m < d->nfields; m++) {
				if (strcmp(d->fields[m].name, f->name) == 0) {
					ydoc_error(c->y, fk, "%s: field '%s' is listed twice", w, f->name);
					c->bad = 1;
				}
			}
			d->nfields++;
			if (!(g = ydoc_str(c->y, fv, f->name))) {
				c->bad = 1;
				continue;
			}
			if (policy_gen_parse(g, &f->gen) < 0 || f->gen == POLICY_GEN_NONE) {
				ydoc_error(c->y, fv, "%s.%s: unknown generalisation '%s' (exact, month, quarter, "
					   "year, birth_year, age_band_5, age_band_10, age_band_20, postcode4, "
					   "gemeente, arbeidsmarktregio, provincie)", w, f->name, g);
				c->bad = 1;
				continue;
			}
			check_field(c, fk, w, d->id, f->name, f->gen, 0);
		}
	}
	return v;
}

static int valid_rule_id(const char *s)
{
	return valid_word(s, 100, "_./[]");
}

static void grant(struct pctx *c, yaml_node_t *n, struct pol_purpose *p, size_t idx,
		  struct pol_grant *g)
{
	struct ykey k[] = {
		{ "id", 0, NULL }, { "requesters", 1, NULL }, { "operations", 1, NULL },
		{ "datasets", 1, NULL }, { "min_cell", 0, NULL }, { "noise", 0, NULL },
		{ "round_to", 0, NULL }, { "max_cells_per_person", 0, NULL },
		{ "budget", 0, NULL }, { "identifiers", 0, NULL }, { "on_node_failure", 0, NULL },
		{ "acknowledge", 0, NULL },
	};
	size_t nk = sizeof(k) / sizeof(k[0]);
	char what[256], w[512];
	char gen_id[POLICY_RULE_MAX];

	snprintf(gen_id, sizeof(gen_id), "%s/grant[%zu]", p->id, idx);
	g->purpose = p;
	g->pos = pos_of(c, n);
	if (ydoc_map(c->y, n, gen_id, k, nk) < 0)
		c->bad = 1;
	if (k[0].value && (g->id = text(c, k[0].value, "id")) && !valid_rule_id(g->id)) {
		ydoc_error(c->y, k[0].value, "%s.id: '%s' may hold lower-case letters, digits and - _ . / [ ]",
			   gen_id, g->id);
		c->bad = 1;
	}
	if (!g->id && !(g->id = pol_strdup(&c->s->arena, gen_id)))
		oom(c, n);
	snprintf(what, sizeof(what), "grant '%s'", g->id ? g->id : gen_id);
	if (k[1].value) {
		snprintf(w, sizeof(w), "%s.requesters", what);
		g->requesters = requesters(c, k[1].value, w, 1, &g->nrequesters);
	}
	if (k[2].value) {
		snprintf(w, sizeof(w), "%s.operations", what);
		g->ops = operations(c, k[2].value, w);
	}
	if (k[3].value) {
		snprintf(w, sizeof(w), "%s.datasets", what);
		c->ops = g->ops;
		g->datasets = datasets(c, k[3].value, w, 0, &g->ndatasets);
		c->ops = 0;
	}
	output(c, k, nk, what, g->ops, &g->out);
}

static void forbid(struct pctx *c, yaml_node_t *n, const char *scope, int top, size_t idx,
		   struct pol_forbid *f)
{
	struct ykey k[] = {
		{ "id", 0, NULL }, { "reason", 1, NULL }, { "requesters", 0, NULL },
		{ "operations", 0, NULL }, { "datasets", 0, NULL }, { "purposes", 0, NULL },
	};
	size_t nk = top ? 6 : 5;
	char gen_id[POLICY_RULE_MAX], what[256], w[512];

	snprintf(gen_id, sizeof(gen_id), "%s/forbid[%zu]", scope, idx);
	f->pos = pos_of(c, n);
	if (ydoc_map(c->y, n, gen_id, k, nk) < 0)
		c->bad = 1;
	if (k[0].value && (f->id = text(c, k[0].value, "id")) && !valid_rule_id(f->id)) {
		ydoc_error(c->y, k[0].value, "%s.id: '%s' may hold lower-case letters, digits and - _ . / [ ]",
			   gen_id, f->id);
		c->bad = 1;
	}
	if (!f->id && !(f->id = pol_strdup(&c->s->arena, gen_id)))
		oom(c, n);
	snprintf(what, sizeof(what), "forbid '%s'", f->id ? f->id : gen_id);
	if (k[1].value) {
		snprintf(w, sizeof(w), "%s.reason", what);
		f->reason = text(c, k[1].value, w);
	}
	if (k[2].value) {
		snprintf(w, sizeof(w), "%s.requesters", what);
		f->requesters = requesters(c, k[2].value, w, 0, &f->nrequesters);
	}
	if (k[3].value) {
		snprintf(w, sizeof(w), "%s.operations", what);
		f->ops = operations(c, k[3].value, w);
	}
	if (k[4].value) {
		snprintf(w, sizeof(w), "%s.datasets", what);
		f->datasets = datasets(c, k[4].value, w, 1, &f->ndatasets);
	}
	if (top && k[5].value) {
		snprintf(w, sizeof(w), "%s.purposes", what);
		f->purposes = words(c, k[5].value, w, &f->npurposes);
	}
	if (!k[2].value && !k[3].value && !k[4].value && !(top && k[5].value))
		ydoc_warn(c->y, n, "%s forbids everything%s", what, top ? " for every purpose" : " in this purpose");
}

static void forbids(struct pctx *c, yaml_node_t *n, const char *scope, int top,
		    struct pol_forbid **v, size_t *count)
{
	*count = 0;
	if (!n)
		return;
	if (n->type != YAML_SEQUENCE_NODE) {
		ydoc_error(c->y, n, "%s: forbid: expected a list of rules", scope);
		c->bad = 1;
		return;
	}
	if (seq_len(n) == 0)
		return;
	if (!(*v = pol_alloc(&c->s->arena, seq_len(n) * sizeof(**v)))) {
		oom(c, n);
		return;
	}
	for (size_t i = 0; i < seq_len(n); i++)
		forbid(c, ydoc_item(c->y, n->data.sequence.items.start[i]), scope, top, i, &(*v)[(*count)++]);
}

static void date_key(struct pctx *c, yaml_node_t *n, const char *what, char str[11], int64_t *t)
{
	const char *s = ydoc_str(c->y, n, what);

	if (!s || policy_parse_date(s, t) < 0) {
		if (s)
			ydoc_error(c->y, n, "%s: '%s' is not a date like 2025-01-31", what, s);
		c->bad = 1;
		*t = 0;
		return;
	}
	memcpy(str, s, 11);
}

static void purpose(struct pctx *c, yaml_node_t *n, size_t idx, struct pol_purpose *p)
{
	struct ykey k[] = {
		{ "id", 1, NULL }, { "description", 1, NULL }, { "legal_basis", 1, NULL },
		{ "valid", 1, NULL }, { "grants", 1, NULL }, { "forbid", 0, NULL },
	};
	char what[256], w[512];
	yaml_node_t *v;

	snprintf(what, sizeof(what), "purposes[%zu]", idx);
	p->pos = pos_of(c, n);
	if (ydoc_map(c->y, n, what, k, 6) < 0)
		c->bad = 1;
	if (k[0].value && (p->id = text(c, k[0].value, "id"))) {
		if (!valid_word(p->id, 64, "")) {
			ydoc_error(c->y, k[0].value, "%s.id: '%s' must be lower-case letters, digits and '-'",
				   what, p->id);
			c->bad = 1;
		}
		snprintf(what, sizeof(what), "purpose '%s'", p->id);
	}
	if (!p->id && !(p->id = pol_strdup(&c->s->arena, what)))
		oom(c, n);
	snprintf(w, sizeof(w), "%s.description", what);
	if (k[1].value)
		p->description = text(c, k[1].value, w);
	if ((v = k[2].value)) {
		snprintf(w, sizeof(w), "%s.legal_basis", what);
		if (v->type == YAML_MAPPING_NODE) {
			struct ykey lk[] = { { "text", 1, NULL }, { "register", 0, NULL } };

			if (ydoc_map(c->y, v, w, lk, 2) < 0)
				c->bad = 1;
			if (lk[0].value)
				p->legal_basis = text(c, lk[0].value, w);
			if (lk[1].value)
				p->register_ref = text(c, lk[1].value, w);
		} else {
			p->legal_basis = text(c, v, w);
		}
	}
	if ((v = k[3].value)) {
		struct ykey vk[] = { { "from", 1, NULL }, { "until", 1, NULL } };

		snprintf(w, sizeof(w), "%s.valid", what);
		if (ydoc_map(c->y, v, w, vk, 2) < 0) {
			c->bad = 1;
		} else {
			snprintf(w, sizeof(w), "%s.valid.from", what);
			date_key(c, vk[0].value, w, p->from_s, &p->from);
			snprintf(w, sizeof(w), "%s.valid.until", what);
			date_key(c, vk[1].value, w, p->until_s, &p->until_end);
			p->until_end += DAY; /* until is inclusive: through 23:59:59 UTC */
			if (p->from_s[0] && p->until_s[0] && p->until_end <= p->from) {
				ydoc_error(c->y, vk[1].value, "%s.valid: until %s is before from %s", what,
					   p->until_s, p->from_s);
				c->bad = 1;
			} else if (p->until_s[0] && c->refs && c->refs->now) {
				if (p->until_end <= c->refs->now)
					ydoc_warn(c->y, vk[1].value, "%s expired on %s: its grants can never apply",
						  what, p->until_s);
				else if (p->until_end - c->refs->now <= (int64_t)EXPIRY_WARN_DAYS * DAY)
					ydoc_warn(c->y, vk[1].value, "%s expires on %s, within %d days",
						  what, p->until_s, EXPIRY_WARN_DAYS);
			}
			/* No grant outlives the file's own valid_until: the purpose
			 * ends there, for decisions, the catalog view and explain. */
			if (c->fi && c->fi->valid_end && p->until_s[0] && p->until_end > c->fi->valid_end) {
				if (p->from_s[0] && c->fi->valid_end <= p->from)
					ydoc_warn(c->y, vk[1].value, "%s starts on %s, after the file's "
						  "valid_until %s: its grants can never apply", what,
						  p->from_s, c->fi->valid_until);
				p->until_end = c->fi->valid_end;
				memcpy(p->until_s, c->fi->valid_until, sizeof(p->until_s));
			}
		}
	}
	if ((v = k[4].value)) {
		if (v->type != YAML_SEQUENCE_NODE) {
			ydoc_error(c->y, v, "%s.grants: expected a list of grants", what);
			c->bad = 1;
		} else if (seq_len(v) == 0) {
			ydoc_warn(c->y, v, "%s grants nothing: every request is denied", what);
		} else if (!(p->grants = pol_alloc(&c->s->arena, seq_len(v) * sizeof(*p->grants)))) {
			oom(c, v);
		} else {
			for (size_t i = 0; i < seq_len(v); i++)
				grant(c, ydoc_item(c->y, v->data.sequence.items.start[i]), p, i,
				      &p->grants[p->ngrants++]);
		}
	}
	forbids(c, k[5].value, p->id, 0, &p->forbids, &p->nforbids);
}

/* ---- checks across the whole set ---- */

static int in_list(const char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return 1;
	return 0;
}

/* 1 if |f| forbids field |field| of |ds| to everyone the grant names, for all its operations. */
static int forbid_kills(const struct pol_forbid *f, const struct pol_purpose *p,
			const struct pol_grant *g, const char *ds, const char *field)
{
	int hit = f->ndatasets == 0;

	if (f->npurposes && !in_list(f->purposes, f->npurposes, p->id))
		return 0;
	if (f->ops && (g->ops & ~f->ops))
		return 0;
	for (size_t i = 0; f->nrequesters && i < g->nrequesters; i++)
		if (!in_list(f->requesters, f->nrequesters, g->requesters[i]))
			return 0;
	for (size_t i = 0; i < f->ndatasets && !hit; i++) {
		if (strcmp(f->datasets[i].id, ds) != 0)
			continue;
		hit = f->datasets[i].nfields == 0;
		for (size_t j = 0; j < f->datasets[i].nfields && !hit; j++)
			hit = strcmp(f->datasets[i].fields[j].name, field) == 0;
	}
	return hit;
}

static void check_set(struct policy_set *s, struct diag *d)
{
	for (size_t i = 0; i < s->npurposes; i++) {
		const struct pol_purpose *p = &s->purposes[i];

		for (size_t j = 0; j < i; j++)
			if (strcmp(s->purposes[j].id, p->id) == 0)
				diag_error(d, p->pos.file, p->pos.line, p->pos.col,
					   "purpose '%s' is declared twice (also at %s:%u)", p->id,
					   s->purposes[j].pos.file, s->purposes[j].pos.line);
		for (size_t g = 0; g < p->ngrants; g++) {
			const struct pol_grant *gr = &p->grants[g];

			for (size_t ds = 0; ds < gr->ndatasets; ds++) {
				const struct pol_dataset *dd = &gr->datasets[ds];

				for (size_t fi = 0; fi < dd->nfields; fi++) {
					const struct pol_forbid *kill = NULL;

					for (size_t x = 0; x < p->nforbids && !kill; x++)
						if (forbid_kills(&p->forbids[x], p, gr, dd->id, dd->fields[fi].name))
							kill = &p->forbids[x];
					for (size_t x = 0; x < s->nforbids && !kill; x++)
						if (forbid_kills(&s->forbids[x], p, gr, dd->id, dd->fields[fi].name))
							kill = &s->forbids[x];
					if (kill)
						diag_warn(d, dd->fields[fi].pos.file, dd->fields[fi].pos.line,
							  dd->fields[fi].pos.col, "grant '%s' lists field '%s' of '%s', but forbid '%s' "
							  "forbids it to all its requesters: it can never be used",
							  gr->id, dd->fields[fi].name, dd->id, kill->id);
				}
			}
		}
	}
	for (size_t i = 0; i < s->nforbids; i++) {
		const struct pol_forbid *f = &s->forbids[i];

		for (size_t j = 0; j < f->npurposes; j++) {
			size_t k;

			for (k = 0; k < s->npurposes; k++)
				if (strcmp(s->purposes[k].id, f->purposes[j]) == 0)
					break;
			if (k == s->npurposes)
				diag_warn(d, f->pos.file, f->pos.line, f->pos.col,
					  "forbid '%s' names purpose '%s', which no loaded file declares",
					  f->id, f->purposes[j]);
		}
	}
}

/* Every rule id (grant or forbid) names one rule: audit records carry it. */
static void check_rule_ids(struct policy_set *s, struct diag *d)
{
	size_t n = s->nforbids, k = 0, *first = NULL;
	const char **ids;
	struct pol_pos *pos;

	for (size_t i = 0; i < s->npurposes; i++)
		n += s->purposes[i].ngrants + s->purposes[i].nforbids;
	ids = calloc(n + 1, sizeof(*ids));
	pos = calloc(n + 1, sizeof(*pos));
	if (!ids || !pos) {
		diag_error(d, NULL, 0, 0, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < s->npurposes; i++) {
		const struct pol_purpose *p = &s->purposes[i];

		for (size_t j = 0; j < p->ngrants; j++) {
			pos[k] = p->grants[j].pos;
			ids[k++] = p->grants[j].id;
		}
		for (size_t j = 0; j < p->nforbids; j++) {
			pos[k] = p->forbids[j].pos;
			ids[k++] = p->forbids[j].id;
		}
	}
	for (size_t j = 0; j < s->nforbids; j++) {
		pos[k] = s->forbids[j].pos;
		ids[k++] = s->forbids[j].id;
	}
	for (size_t i = 0; i < k; i++)
		if (!ids[i])
			ids[i] = ""; /* only after an out-of-memory, which already failed the set */
	if (!(first = calloc(k + 1, sizeof(*first))) || find_dups(ids, k, first) < 0) {
		diag_error(d, NULL, 0, 0, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < k; i++) {
		size_t j = first[i];

		if (j != i)
			diag_error(d, pos[i].file, pos[i].line, pos[i].col,
				   "rule id '%s' is used twice (also at %s:%u)", ids[i],
				   pos[j].file, pos[j].line);
	}
out:
	free(first);
	free(ids);
	free(pos);
}

/* ---- loading ---- */

struct src {
	const char *name;
	const unsigned char *buf;
	unsigned char *owned; /* what read_file() allocated */
	size_t len;
	struct ydoc y;
	yaml_node_t *purposes, *forbid, *owner, *budgets;
};

/*
 * owner: MEMBER and dataset_budgets: { DATASET: {epsilon: E, per: P} }
 * (docs/policy.md, "Per-dataset budgets"). Only the owner's own datasets:
 * a file that names another member's dataset is refused, so one partner
 * cannot spend (or starve) another's dataset budget. No acknowledgement
 * above 10: the cap only ever refuses answers, and without it there would
 * be no cap at all.
 */
static void dataset_budgets(struct pctx *c, yaml_node_t *owner_n, yaml_node_t *n)
{
	const char *owner = NULL;
	char w[1024];

	if (!owner_n) {
		ydoc_error(c->y, n, "dataset_budgets: needs 'owner: MEMBER' at the top of the file, "
			   "naming the member whose datasets these are; only a dataset's owner sets its "
			   "budget");
		c->bad = 1;
		return;
	}
	if (!(owner = text(c, owner_n, "owner")))
		return;
	if (!valid_word(owner, 64, "")) {
		ydoc_error(c->y, owner_n, "owner: '%s' is not a member id", owner);
		c->bad = 1;
		return;
	}
	if (!known_member(c, owner, strlen(owner))) {
		if (c->refs->unknown_member_is_error) {
			ydoc_error(c->y, owner_n, "owner: '%s' is not a member", owner);
			c->bad = 1;
			return;
		}
		/* A cap only ever refuses: it stays in force (the gateway). */
		ydoc_warn(c->y, owner_n, "owner: '%s' is not a member; its dataset budgets still apply",
			  owner);
	}
	if (!n)
		return;
	if (n->type != YAML_MAPPING_NODE || map_len(n) == 0) {
		ydoc_error(c->y, n, "dataset_budgets: expected a mapping of dataset ids to "
			   "{epsilon: E, per: month|quarter|year}");
		c->bad = 1;
		return;
	}
	for (size_t i = 0; i < map_len(n); i++) {
		yaml_node_pair_t *pr = &n->data.mapping.pairs.start[i];
		yaml_node_t *k = ydoc_item(c->y, pr->key), *val = ydoc_item(c->y, pr->value);
		struct pol_ds_budget *b = &c->s->ds_budgets[c->s->nds_budgets];
		struct ykey bk[] = { { "epsilon", 1, NULL }, { "per", 1, NULL } };
		const char *ds, *per, *e;
		size_t olen = strlen(owner);

		if (!(ds = text(c, k, "dataset_budgets")))
			continue;
		snprintf(w, sizeof(w), "dataset_budgets.%s", ds);
		if (!valid_dataset_id(ds)) {
			ydoc_error(c->y, k, "dataset_budgets: '%s' is not a dataset id like "
				   "'uwv/ww-uitkeringen'", ds);
			c->bad = 1;
			continue;
		}
		if (strncmp(ds, owner, olen) != 0 || ds[olen] != '/') {
			ydoc_error(c->y, k, "dataset_budgets: '%s' belongs to '%.*s', not to this file's "
				   "owner '%s'; only a dataset's owner sets its budget", ds,
				   (int)(strchr(ds, '/') - ds), ds, owner);
			c->bad = 1;
			continue;
		}
		if (c->refs && c->refs->catalog && !pol_catalog_has_dataset(c->refs->catalog, ds)) {
			ydoc_error(c->y, k, "dataset_budgets: dataset '%s' is not in the catalog", ds);
			c->bad = 1;
		}
		for (size_t j = 0; j < c->s->nds_budgets; j++)
			if (c->s->ds_budgets[j].pos.file == c->file &&
			    strcmp(c->s->ds_budgets[j].dataset, ds) == 0) {
				ydoc_error(c->y, k, "dataset_budgets: dataset '%s' is listed twice", ds);
				c->bad = 1;
			}
		if (ydoc_map(c->y, val, w, bk, 2) < 0) {
			c->bad = 1;
			continue;
		}
		b->dataset = ds;
		b->pos = pos_of(c, k);
		per = ydoc_str(c->y, bk[1].value, "per");
		if (per && strcmp(per, "month") == 0) {
			b->per = POLICY_PER_MONTH;
		} else if (per && strcmp(per, "quarter") == 0) {
			b->per = POLICY_PER_QUARTER;
		} else if (per && strcmp(per, "year") == 0) {
			b->per = POLICY_PER_YEAR;
		} else {
			ydoc_error(c->y, bk[1].value, "%s.per: expected month, quarter or year", w);
			c->bad = 1;
		}
		e = ydoc_str(c->y, bk[0].value, "epsilon");
		if (!e || parse_decimal(e, &b->epsilon) < 0 || !(b->epsilon > 0) || b->epsilon > 1e9) {
			ydoc_error(c->y, bk[0].value, "%s.epsilon: expected a number above 0 and at most "
				   "1000000000, like 5", w);
			c->bad = 1;
		}
		c->s->nds_budgets++;
	}
}

/*
 * The file's own serial and validity (top-level keys, so inside the signed
 * bytes). Both are required when refs->require_serial is set: a gateway
 * that requires signed policies must be able to refuse an older file put
 * back (docs/policy.md, "Serial and validity").
 */
static void file_info(struct ydoc *y, yaml_node_t *serial, yaml_node_t *until,
		      const struct policy_refs *refs, struct policy_file_info *fi)
{
	const char *u;
	int64_t t;

	if (serial) {
		fi->serial_line = (unsigned)serial->start_mark.line + 1;
		if (ydoc_uint(y, serial, "serial", 1, POLICY_SERIAL_MAX, &fi->serial) < 0)
			fi->serial = 0;
	} else if (refs && refs->require_serial) {
		ydoc_error(y, ydoc_root(y), "policy file: 'serial:' is required (a whole number, "
			   "raised at every change) so an older signed version cannot be put back");
	}
	if (until) {
		fi->valid_line = (unsigned)until->start_mark.line + 1;
		u = ydoc_str(y, until, "valid_until");
		if (u && policy_parse_date(u, &t) == 0) {
			memcpy(fi->valid_until, u, sizeof(fi->valid_until));
			fi->valid_end = t + DAY; /* inclusive: through 23:59:59 UTC */
		} else if (u) {
			ydoc_error(y, until, "valid_until: '%s' is not a date like 2025-01-31", u);
		}
		if (fi->valid_end && refs && refs->now) {
			if (fi->valid_end <= refs->now)
				ydoc_warn(y, until, "valid_until %s has passed: a gateway refuses this file",
					  fi->valid_until);
			else if (fi->valid_end - refs->now <= (int64_t)EXPIRY_WARN_DAYS * DAY)
				ydoc_warn(y, until, "valid_until %s is within %d days: sign a new serial "
					  "before then", fi->valid_until, EXPIRY_WARN_DAYS);
		}
	} else if (refs && refs->require_serial) {
		ydoc_error(y, ydoc_root(y), "policy file: 'valid_until:' is required (a date like "
			   "2026-12-31) so an old signed version stops being accepted");
	}
}

static int load_set(struct src *src, size_t n, const struct policy_refs *refs,
		struct policy_set **out, struct diag *d)
{
	struct policy_set *s = calloc(1, sizeof(*s));
	crypto_hash_sha256_state h;
	unsigned char digest[crypto_hash_sha256_BYTES];
	size_t np = 0, nf = 0, nb = 0;
	int errors = d->errors;

	*out = NULL;
	if (!s || sodium_init() < 0) {
		diag_error(d, NULL, 0, 0, "out of memory");
		free(s);
		return -1;
	}
	crypto_hash_sha256_init(&h);
	if (n && !(s->files = pol_alloc(&s->arena, n * sizeof(*s->files)))) {
		diag_error(d, NULL, 0, 0, "out of memory");
		goto fail;
	}
	s->nfiles = n;
	for (size_t i = 0; i < n; i++) {
		struct ykey k[] = { { "purposes", 1, NULL }, { "forbid", 0, NULL },
				    { "serial", 0, NULL }, { "valid_until", 0, NULL },
				    { "owner", 0, NULL }, { "dataset_budgets", 0, NULL } };

		crypto_hash_sha256_update(&h, src[i].buf, src[i].len);
		crypto_hash_sha256(digest, src[i].buf, src[i].len);
		sodium_bin2hex(s->files[i].sha256, sizeof(s->files[i].sha256), digest, sizeof(digest));
		if (!(s->files[i].name = pol_strdup(&s->arena, src[i].name))) {
			diag_error(d, src[i].name, 0, 0, "out of memory");
			continue;
		}
		if (refs && refs->signing_key) {
			char sig[4096], err[512];

			snprintf(sig, sizeof(sig), "%s.sig", src[i].name);
			if (policy_verify_mem(src[i].buf, src[i].len, sig, refs->signing_key, err,
					      sizeof(err)) < 0) {
				diag_error(d, src[i].name, 0, 0, "%s", err);
				continue;
			}
		}
		if (ydoc_load_mem(&src[i].y, src[i].name, src[i].buf, src[i].len, d) < 0)
			continue;
		if (!(src[i].y.file = pol_strdup(&s->arena, src[i].name))) {
			diag_error(d, src[i].name, 0, 0, "out of memory");
			continue;
		}
		if (ydoc_map(&src[i].y, ydoc_root(&src[i].y), "policy file", k, 6) < 0 &&
		    (!ydoc_root(&src[i].y) || ydoc_root(&src[i].y)->type != YAML_MAPPING_NODE))
			continue;
		file_info(&src[i].y, k[2].value, k[3].value, refs, &s->files[i]);
		if (k[0].value && k[0].value->type != YAML_SEQUENCE_NODE) {
			ydoc_error(&src[i].y, k[0].value, "purposes: expected a list of purposes");
		} else if (k[0].value) {
			src[i].purposes = k[0].value;
			np += seq_len(k[0].value);
		}
		if (k[1].value && k[1].value->type != YAML_SEQUENCE_NODE) {
			ydoc_error(&src[i].y, k[1].value, "forbid: expected a list of rules");
		} else if (k[1].value) {
			src[i].forbid = k[1].value;
			nf += seq_len(k[1].value);
		}
		src[i].owner = k[4].value;
		src[i].budgets = k[5].value;
		if (k[5].value && k[5].value->type == YAML_MAPPING_NODE)
			nb += map_len(k[5].value);
	}
	crypto_hash_sha256_final(&h, digest);
	sodium_bin2hex(s->hash, sizeof(s->hash), digest, sizeof(digest));
	if ((np && !(s->purposes = pol_alloc(&s->arena, np * sizeof(*s->purposes)))) ||
	    (nf && !(s->forbids = pol_alloc(&s->arena, nf * sizeof(*s->forbids)))) ||
	    (nb && !(s->ds_budgets = pol_alloc(&s->arena, nb * sizeof(*s->ds_budgets))))) {
		diag_error(d, NULL, 0, 0, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		struct pctx c = { &src[i].y, s, refs, src[i].y.file, NULL, 0, 0, &s->files[i] };
		const char *slash = strrchr(src[i].y.file ? src[i].y.file : "", '/');
		size_t cnt;

		if (!src[i].y.loaded)
			continue;
		c.base = slash ? slash + 1 : src[i].y.file;
		for (size_t j = 0; src[i].purposes && j < seq_len(src[i].purposes); j++)
			purpose(&c, ydoc_item(c.y, src[i].purposes->data.sequence.items.start[j]), j,
				&s->purposes[s->npurposes++]);
		if (src[i].forbid && seq_len(src[i].forbid)) {
			for (size_t j = 0; j < seq_len(src[i].forbid); j++)
				forbid(&c, ydoc_item(c.y, src[i].forbid->data.sequence.items.start[j]),
				       c.base, 1, j, &s->forbids[s->nforbids + j]);
			cnt = seq_len(src[i].forbid);
			s->nforbids += cnt;
		}
		if (src[i].owner || src[i].budgets)
			dataset_budgets(&c, src[i].owner, src[i].budgets);
	}
	if (d->errors == errors) {
		check_rule_ids(s, d);
		check_set(s, d);
	}
	if (d->errors != errors)
		goto fail;
	*out = s;
	return 0;
fail:
	policy_set_free(s);
	return -1;
}

int policy_set_load(const char *const *files, size_t nfiles, const struct policy_refs *refs,
		    struct policy_set **out, struct diag *d)
{
	struct src *src = calloc(nfiles + 1, sizeof(*src));
	int rc = -1, bad = 0;

	*out = NULL;
	if (!src) {
		diag_error(d, NULL, 0, 0, "out of memory");
		return -1;
	}
	if (nfiles == 0) {
		diag_error(d, NULL, 0, 0, "no policy files given");
		bad = 1;
	}
	for (size_t i = 0; i < nfiles; i++) {
		src[i].name = files[i];
		if (ydoc_read_file(files[i], &src[i].owned, &src[i].len, d) < 0)
			bad = 1;
		src[i].buf = src[i].owned;
	}
	if (!bad)
		rc = load_set(src, nfiles, refs, out, d);
	for (size_t i = 0; i < nfiles; i++) {
		ydoc_fini(&src[i].y);
		free(src[i].owned);
	}
	free(src);
	return rc;
}

int policy_set_load_mem(const char *name, const unsigned char *buf, size_t len,
			const struct policy_refs *refs, struct policy_set **out, struct diag *d)
{
	struct src src = { 0 };
	int rc;

	src.name = name;
	src.buf = buf;
	src.len = len;
	rc = load_set(&src, 1, refs, out, d);
	ydoc_fini(&src.y);
	return rc;
}

void policy_set_free(struct policy_set *s)
{
	if (!s)
		return;
	pol_arena_free(s->arena);
	free(s);
}

const char *policy_set_hash(const struct policy_set *s)
{
	return s->hash;
}

size_t policy_set_nfiles(const struct policy_set *s)
{
	return s ? s->nfiles : 0;
}

const struct policy_file_info *policy_set_file(const struct policy_set *s, size_t i)
{
	return s && i < s->nfiles ? &s->files[i] : NULL;
}

int policy_dataset_budget(const struct policy_set *s, const char *dataset, double *epsilon,
			  enum policy_period *per)
{
	int found = 0;

	if (!s || !dataset || !epsilon || !per)
		return -1;
	/* Several files (or the same owner in several) set one dataset's
	 * budget: the strictest wins, as for grants (policy_output_merge): the
	 * smallest epsilon over the longest period. */
	for (size_t i = 0; i < s->nds_budgets; i++) {
		const struct pol_ds_budget *b = &s->ds_budgets[i];

		if (strcmp(b->dataset, dataset) != 0)
			continue;
		if (!found || b->epsilon < *epsilon)
			*epsilon = b->epsilon;
		if (!found || b->per > *per)
			*per = b->per;
		found = 1;
	}
	return found ? 0 : -1;
}
