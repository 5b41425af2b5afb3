/*
 * What changes between two versions of a policy, in a privacy officer's
 * words: who may now use what, how coarse, under which output controls, and
 * which forbids came or went. Compares meaning, not text.
 */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pol_text_add(struct pol_text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->oom)
		return;
	for (;;) {
		size_t room = t->cap - t->len;

		va_start(ap, fmt);
		n = vsnprintf(t->buf ? t->buf + t->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->oom = 1;
			return;
		}
		if ((size_t)n + 2 <= room)
			break;
		size_t cap = t->cap ? t->cap * 2 : 1024;
		while (cap < t->len + (size_t)n + 2)
			cap *= 2;
		char *nb = realloc(t->buf, cap);

		if (!nb) {
			t->oom = 1;
			return;
		}
		t->buf = nb;
		t->cap = cap;
	}
	t->len += (size_t)n;
	t->buf[t->len++] = '\n';
	t->buf[t->len] = '\0';
}

void pol_text_free(struct pol_text *t)
{
	free(t->buf);
	memset(t, 0, sizeof(*t));
}

/* ---- access: who may use which field, for which operation, how fine ---- */

struct acc {
	const char *req, *ds, *field;
	enum policy_gen gen[3]; /* per operation (bit index); NONE = not granted */
};

struct accs {
	struct acc *v;
	size_t n, cap;
	int oom;
};

static int opi(unsigned bit)
{
	return bit == POLICY_OP_LOOKUP ? 0 : bit == POLICY_OP_AGGREGATE ? 1 : 2;
}

static struct acc *acc_find(const struct accs *a, const char *req, const char *ds, const char *field)
{
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i].req, req) == 0 && strcmp(a->v[i].ds, ds) == 0 &&
		    strcmp(a->v[i].field, field) == 0)
			return &a->v[i];
	return NULL;
}

static void acc_build(struct accs *a, const struct pol_purpose *p)
{
	for (size_t g = 0; p && g < p->ngrants; g++) {
		const struct pol_grant *gr = &p->grants[g];

		for (size_t r = 0; r < gr->nrequesters; r++)
			for (size_t d = 0; d < gr->ndatasets; d++)
				for (size_t f = 0; f < gr->datasets[d].nfields; f++) {
					const struct pol_field *fl = &gr->datasets[d].fields[f];
					struct acc *x = acc_find(a, gr->requesters[r], gr->datasets[d].id, fl->name);

					if (!x) {
						if (a->n == a->cap) {
							size_t cap = a->cap ? a->cap * 2 : 32;
							struct acc *nv = realloc(a->v, cap * sizeof(*nv));

							if (!nv) {
								a->oom = 1;
								return;
							}
							a->v = nv;
							a->cap = cap;
						}
						x = &a->v[a->n++];
						memset(x, 0, sizeof(*x));
						x->req = gr->requesters[r];
						x->ds = gr->datasets[d].id;
						x->field = fl->name;
					}
					for (unsigned b = 1; b <= POLICY_OP_LINKED_AGGREGATE; b <<= 1) {
						enum policy_gen *cur = &x->gen[opi(b)];

						if ((gr->ops & b) && (*cur == POLICY_GEN_NONE ||
								      pol_gen_rank(fl->gen) < pol_gen_rank(*cur)))
							*cur = fl->gen;
					}
				}
	}
}

static int has_requester(const struct accs *a, const char *req)
{
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i].req, req) == 0)
			return 1;
	return 0;
}

/* "lookup, aggregate" for the operations whose bit is in |mask|. */
static const char *ops_words(unsigned mask, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (unsigned b = 1; b <= POLICY_OP_LINKED_AGGREGATE; b <<= 1)
		if ((mask & b) && used < len)
			used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? ", " : "", policy_op_name(b));
	return buf;
}

static const char *as_words(enum policy_gen g)
{
	return g == POLICY_GEN_EXACT ? "as stored" : policy_gen_name(g);
}

/* Lines "f (as stored)\ng (month)\n" become one "..: f (as stored), g (month)". */
static void flush_group(struct pol_text *loose, const char *pid, const char *req, const char *ds,
			unsigned mask, struct pol_text *group)
{
	char ops[64], fields[2048];
	size_t used = 0;

	for (const char *l = group->buf; l && *l && used < sizeof(fields);) {
		const char *nl = strchr(l, '\n');
		int n = (int)(nl - l);

		used += (size_t)snprintf(fields + used, sizeof(fields) - used, "%s%.*s", used ? ", " : "", n, l);
		l = nl + 1;
	}
	pol_text_add(loose, "purpose '%s': %s may now use from '%s' for %s: %s", pid, req, ds,
		     ops_words(mask, ops, sizeof(ops)), used ? fields : "");
	group->len = 0;
	group->buf[0] = '\0';
}

static void diff_access(const char *pid, const struct pol_purpose *op, const struct pol_purpose *np,
			struct pol_text *loose, struct pol_text *tight, int *changed)
{
	struct accs a = { 0 }, b = { 0 };
	struct pol_text group = { 0 };
	const char *greq = NULL, *gds = NULL;
	unsigned gmask = 0;
	char ops[64];

	acc_build(&a, op);
	acc_build(&b, np);
	if (a.oom || b.oom) {
		loose->oom = 1;
		goto out;
	}
	for (size_t i = 0; i < b.n; i++) {
		const struct acc *n = &b.v[i], *o = acc_find(&a, n->req, n->ds, n->field);
		unsigned added = 0, finer = 0, coarser = 0;
		enum policy_gen gnew = POLICY_GEN_NONE, gold = POLICY_GEN_NONE;

		if (!has_requester(&a, n->req)) {
			int first = 1;

			for (size_t j = 0; j < i && first; j++)
				first = strcmp(b.v[j].req, n->req) != 0;
			if (first)
				pol_text_add(loose, "purpose '%s': %s is a new requester", pid, n->req);
		}
		for (unsigned bit = 1; bit <= POLICY_OP_LINKED_AGGREGATE; bit <<= 1) {
			enum policy_gen gn = n->gen[opi(bit)], go = o ? o->gen[opi(bit)] : POLICY_GEN_NONE;

			if (gn == POLICY_GEN_NONE)
				continue;
			if (go == POLICY_GEN_NONE) {
				added |= bit;
				gnew = gn;
			} else if (pol_gen_rank(gn) < pol_gen_rank(go)) {
				finer |= bit;
				gnew = gn;
				gold = go;
			} else if (pol_gen_rank(gn) > pol_gen_rank(go)) {
				coarser |= bit;
				gnew = gn;
				gold = go;
			}
		}
		if (added) {
			/* one line per requester, dataset and operations: "f (as stored), g (month)" */
			if (group.len && (strcmp(greq, n->req) != 0 || strcmp(gds, n->ds) != 0 || gmask != added))
				flush_group(loose, pid, greq, gds, gmask, &group);
			greq = n->req;
			gds = n->ds;
			gmask = added;
			pol_text_add(&group, "%s (%s)", n->field, as_words(n->gen[opi(added & -added)]));
		}
		if (finer)
			pol_text_add(loose, "purpose '%s': %s may now see field '%s' of '%s' finer: %s instead "
				     "of %s (%s)", pid, n->req, n->field, n->ds, as_words(gnew), as_words(gold),
				     ops_words(finer, ops, sizeof(ops)));
		if (coarser)
			pol_text_add(tight, "purpose '%s': %s now sees field '%s' of '%s' coarser: %s instead "
				     "of %s (%s)", pid, n->req, n->field, n->ds, as_words(gnew), as_words(gold),
				     ops_words(coarser, ops, sizeof(ops)));
		if (added || finer || coarser)
			*changed = 1;
	}
	if (group.len)
		flush_group(loose, pid, greq, gds, gmask, &group);
	for (size_t i = 0; i < a.n; i++) {
		const struct acc *o = &a.v[i], *n = acc_find(&b, o->req, o->ds, o->field);
		unsigned gone = 0;

		for (unsigned bit = 1; bit <= POLICY_OP_LINKED_AGGREGATE; bit <<= 1)
			if (o->gen[opi(bit)] != POLICY_GEN_NONE && (!n || n->gen[opi(bit)] == POLICY_GEN_NONE))
				gone |= bit;
		if (gone) {
			pol_text_add(tight, "purpose '%s': %s may no longer use field '%s' of '%s' for %s", pid,
				     o->req, o->field, o->ds, ops_words(gone, ops, sizeof(ops)));
			*changed = 1;
		}
	}
out:
	if (group.oom)
		loose->oom = 1;
	pol_text_free(&group);
	free(a.v);
	free(b.v);
}

/* ---- output controls of a grant present in both versions ---- */

static void diff_controls(const char *gid, const struct policy_output *o, const struct policy_output *n,
			  struct pol_text *loose, struct pol_text *tight, struct pol_text *other, int *changed)
{
	size_t lens = loose->len + tight->len + other->len;

	if (n->min_cell != o->min_cell)
		pol_text_add(n->min_cell < o->min_cell ? loose : tight,
			     "grant '%s': min_cell %s from %u to %u (%s)", gid,
			     n->min_cell < o->min_cell ? "lowered" : "raised", o->min_cell, n->min_cell,
			     n->min_cell < o->min_cell ? "smaller groups are shown" : "small groups are suppressed more");
	if (o->noise && !n->noise)
		pol_text_add(loose, "grant '%s': noise removed (was epsilon %g)", gid, o->epsilon);
	else if (!o->noise && n->noise)
		pol_text_add(tight, "grant '%s': noise added (epsilon %g)", gid, n->epsilon);
	else if (o->noise && n->epsilon != o->epsilon)
		pol_text_add(n->epsilon > o->epsilon ? loose : tight, "grant '%s': epsilon %s from %g to %g (%s)",
			     gid, n->epsilon > o->epsilon ? "raised" : "lowered", o->epsilon, n->epsilon,
			     n->epsilon > o->epsilon ? "less noise, weaker protection" : "more noise");
	if (n->round_to != o->round_to)
		pol_text_add(n->round_to < o->round_to ? loose : tight, "grant '%s': round_to %s from %u to %u",
			     gid, n->round_to < o->round_to ? "lowered" : "raised", o->round_to, n->round_to);
	if (n->max_cells_per_person != o->max_cells_per_person)
		pol_text_add(n->max_cells_per_person > o->max_cells_per_person ? loose : tight,
			     "grant '%s': max_cells_per_person %s from %u to %u", gid,
			     n->max_cells_per_person > o->max_cells_per_person ? "raised" : "lowered",
			     o->max_cells_per_person, n->max_cells_per_person);
	if (o->has_budget && !n->has_budget) {
		pol_text_add(loose, "grant '%s': privacy budget removed (was epsilon %g per %s)", gid,
			     o->budget_epsilon, policy_period_name(o->budget_per));
	} else if (!o->has_budget && n->has_budget) {
		pol_text_add(tight, "grant '%s': privacy budget added (epsilon %g per %s)", gid,
			     n->budget_epsilon, policy_period_name(n->budget_per));
	} else if (o->has_budget && (n->budget_epsilon != o->budget_epsilon || n->budget_per != o->budget_per)) {
		/* A larger epsilon or a shorter period (refilled more often) is looser. */
		int looser = n->budget_epsilon > o->budget_epsilon ||
			     (n->budget_epsilon == o->budget_epsilon && n->budget_per < o->budget_per);
		int mixed = (n->budget_epsilon > o->budget_epsilon && n->budget_per > o->budget_per) ||
			    (n->budget_epsilon < o->budget_epsilon && n->budget_per < o->budget_per);

		pol_text_add(mixed ? other : looser ? loose : tight,
			     "grant '%s': privacy budget %s from epsilon %g per %s to epsilon %g per %s", gid,
			     mixed ? "changed" : looser ? "raised" : "lowered", o->budget_epsilon,
			     policy_period_name(o->budget_per), n->budget_epsilon, policy_period_name(n->budget_per));
	}
	if (n->identifiers != o->identifiers)
		pol_text_add(n->identifiers > o->identifiers ? loose : tight,
			     "grant '%s': identifiers %s from %s to %s", gid,
			     n->identifiers > o->identifiers ? "loosened" : "tightened",
			     policy_ident_name(o->identifiers), policy_ident_name(n->identifiers));
	if (n->partial_ok != o->partial_ok)
		pol_text_add(other, "grant '%s': when a node fails, the answer is now %s", gid,
			     n->partial_ok ? "partial (from the nodes that answered)" : "an error");
	if (loose->len + tight->len + other->len != lens)
		*changed = 1;
}

/* ---- forbids ---- */

/* Each thing a forbid covers, as words: "gemeente-emmen: uwv/ww-uitkeringen.end_reason (lookup)". */
static void forbid_items(const struct pol_forbid *f, struct pol_text *t)
{
	char ops[64];
	size_t nr = f->nrequesters ? f->nrequesters : 1;

	if (f->ops)
		ops_words(f->ops, ops, sizeof(ops));
	for (size_t r = 0; r < nr; r++) {
		const char *who = f->nrequesters ? f->requesters[r] : "everyone";

		if (f->ndatasets == 0)
			pol_text_add(t, "all data for %s%s%s%s", who, f->ops ? " (" : "", f->ops ? ops : "",
				     f->ops ? ")" : "");
		for (size_t d = 0; d < f->ndatasets; d++) {
			const struct pol_dataset *ds = &f->datasets[d];

			if (ds->nfields == 0)
				pol_text_add(t, "all of '%s' for %s%s%s%s", ds->id, who, f->ops ? " (" : "",
					     f->ops ? ops : "", f->ops ? ")" : "");
			for (size_t x = 0; x < ds->nfields; x++)
				pol_text_add(t, "field '%s' of '%s' for %s%s%s%s", ds->fields[x].name, ds->id, who,
					     f->ops ? " (" : "", f->ops ? ops : "", f->ops ? ")" : "");
		}
	}
	for (size_t p = 0; p < f->npurposes; p++)
		pol_text_add(t, "under purpose '%s'", f->purposes[p]);
}

/* Lines of |a| that are not lines of |b|, each passed to |t| with |head|. */
static void lines_not_in(const char *a, const char *b, const char *head, struct pol_text *t, int *changed)
{
	while (a && *a) {
		const char *nl = strchr(a, '\n');
		size_t n = nl ? (size_t)(nl - a) : strlen(a);
		const char *s = b;
		int found = 0;

		while (s && *s && !found) {
			const char *snl = strchr(s, '\n');
			size_t sn = snl ? (size_t)(snl - s) : strlen(s);

			found = sn == n && memcmp(s, a, n) == 0;
			s = snl ? snl + 1 : NULL;
		}
		if (!found) {
			pol_text_add(t, "%s%.*s", head, (int)n, a);
			*changed = 1;
		}
		a = nl ? nl + 1 : NULL;
	}
}

static void diff_forbids(const struct pol_forbid *o, size_t no, const struct pol_forbid *n, size_t nn,
			 struct pol_text *loose, struct pol_text *tight, int *changed)
{
	char head[POLICY_RULE_MAX + 64];

	for (size_t i = 0; i < no; i++) {
		const struct pol_forbid *x = NULL;

		for (size_t j = 0; j < nn && !x; j++)
			if (strcmp(o[i].id, n[j].id) == 0)
				x = &n[j];
		if (!x) {
			pol_text_add(loose, "forbid '%s' removed (it said: %s)", o[i].id, o[i].reason);
			*changed = 1;
			continue;
		}
		struct pol_text a = { 0 }, b = { 0 };

		forbid_items(&o[i], &a);
		forbid_items(x, &b);
		snprintf(head, sizeof(head), "forbid '%s' no longer covers ", o[i].id);
		lines_not_in(a.buf, b.buf, head, loose, changed);
		snprintf(head, sizeof(head), "forbid '%s' now also covers ", o[i].id);
		lines_not_in(b.buf, a.buf, head, tight, changed);
		if (a.oom || b.oom)
			loose->oom = 1;
		pol_text_free(&a);
		pol_text_free(&b);
	}
	for (size_t j = 0; j < nn; j++) {
		size_t i;

		for (i = 0; i < no && strcmp(o[i].id, n[j].id) != 0; i++)
			;
		if (i == no) {
			pol_text_add(tight, "new forbid '%s': %s", n[j].id, n[j].reason);
			*changed = 1;
		}
	}
}

/* ---- purposes ---- */

static const struct pol_purpose *purpose_by_id(const struct policy_set *s, const char *id)
{
	for (size_t i = 0; i < s->npurposes; i++)
		if (strcmp(s->purposes[i].id, id) == 0)
			return &s->purposes[i];
	return NULL;
}

static const struct pol_grant *grant_by_id(const struct pol_purpose *p, const char *id)
{
	for (size_t i = 0; p && i < p->ngrants; i++)
		if (strcmp(p->grants[i].id, id) == 0)
			return &p->grants[i];
	return NULL;
}

static int same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void diff_purpose(const struct pol_purpose *o, const struct pol_purpose *n, struct pol_text *loose,
			 struct pol_text *tight, struct pol_text *other, int *changed)
{
	const char *pid = n ? n->id : o->id;

	if (!o) {
		pol_text_add(loose, "new purpose '%s' (%s), valid from %s until %s", pid, n->description,
			     n->from_s, n->until_s);
		*changed = 1;
	} else if (!n) {
		pol_text_add(tight, "purpose '%s' removed: nothing is granted for it any more", pid);
		*changed = 1;
	} else {
		if (n->from < o->from)
			pol_text_add(loose, "purpose '%s' now starts earlier: from %s (was %s)", pid, n->from_s, o->from_s);
		else if (n->from > o->from)
			pol_text_add(tight, "purpose '%s' now starts later: from %s (was %s)", pid, n->from_s, o->from_s);
		if (n->until_end > o->until_end)
			pol_text_add(loose, "purpose '%s' now runs longer: until %s (was %s)", pid, n->until_s, o->until_s);
		else if (n->until_end < o->until_end)
			pol_text_add(tight, "purpose '%s' now ends sooner: until %s (was %s)", pid, n->until_s, o->until_s);
		if (n->from != o->from || n->until_end != o->until_end)
			*changed = 1;
		if (!same(n->description, o->description)) {
			pol_text_add(other, "purpose '%s': description changed", pid);
			*changed = 1;
		}
		if (!same(n->legal_basis, o->legal_basis) || !same(n->register_ref, o->register_ref)) {
			pol_text_add(other, "purpose '%s': legal basis changed to: %s%s%s%s", pid, n->legal_basis,
				     n->register_ref ? " (register: " : "", n->register_ref ? n->register_ref : "",
				     n->register_ref ? ")" : "");
			*changed = 1;
		}
	}
	diff_access(pid, o, n, loose, tight, changed);
	for (size_t i = 0; n && i < n->ngrants; i++) {
		const struct pol_grant *og = grant_by_id(o, n->grants[i].id);

		if (og)
			diff_controls(og->id, &og->out, &n->grants[i].out, loose, tight, other, changed);
		else if (o)
			pol_text_add(other, "grant '%s' added", n->grants[i].id);
	}
	for (size_t i = 0; o && n && i < o->ngrants; i++)
		if (!grant_by_id(n, o->grants[i].id))
			pol_text_add(other, "grant '%s' removed", o->grants[i].id);
	if (n) /* a removed purpose's forbids went with it: that is no loosening */
		diff_forbids(o ? o->forbids : NULL, o ? o->nforbids : 0, n->forbids, n->nforbids,
			     loose, tight, changed);
}

int pol_diff(const struct policy_set *old, const struct policy_set *cur,
	     struct pol_text *loose, struct pol_text *tight, struct pol_text *other)
{
	int changed = 0;

	for (size_t i = 0; i < cur->npurposes; i++)
		diff_purpose(purpose_by_id(old, cur->purposes[i].id), &cur->purposes[i], loose, tight, other,
			     &changed);
	for (size_t i = 0; i < old->npurposes; i++)
		if (!purpose_by_id(cur, old->purposes[i].id))
			diff_purpose(&old->purposes[i], NULL, loose, tight, other, &changed);
	diff_forbids(old->forbids, old->nforbids, cur->forbids, cur->nforbids, loose, tight, &changed);
	if (other->len)
		changed = 1;
	if (loose->oom || tight->oom || other->oom)
		return -1;
	return changed;
}
