/*
 * The policy decision: a pure function of a loaded set and one request.
 * Default deny; a matching forbid overrides every grant; of several grants
 * that each cover the whole request, the strictest output controls win.
 */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const reason_names[POLICY_REASON_COUNT] = {
	[POLICY_OK] = "ok",
	[POLICY_BAD_REQUEST] = "bad_request",
	[POLICY_UNKNOWN_PURPOSE] = "unknown_purpose",
	[POLICY_PURPOSE_NOT_YET_VALID] = "purpose_not_yet_valid",
	[POLICY_PURPOSE_EXPIRED] = "purpose_expired",
	[POLICY_NOTHING_GRANTED] = "nothing_granted",
	[POLICY_REQUESTER_NOT_LISTED] = "requester_not_listed",
	[POLICY_OPERATION_NOT_GRANTED] = "operation_not_granted",
	[POLICY_DATASET_NOT_GRANTED] = "dataset_not_granted",
	[POLICY_FIELD_NOT_GRANTED] = "field_not_granted",
	[POLICY_GENERALISATION_TOO_FINE] = "generalisation_too_fine",
	[POLICY_IDENTIFIERS_NOT_GRANTED] = "identifiers_not_granted",
	[POLICY_FORBIDDEN] = "forbidden",
};

const char *policy_reason_name(enum policy_reason r)
{
	return (unsigned)r < POLICY_REASON_COUNT ? reason_names[r] : "?";
}

int policy_reason_parse(const char *name, enum policy_reason *out)
{
	for (int i = 0; i < POLICY_REASON_COUNT; i++) {
		if (strcmp(name, reason_names[i]) == 0) {
			*out = (enum policy_reason)i;
			return 0;
		}
	}
	return -1;
}

static void say(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

static int listed(const char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return 1;
	return 0;
}

static const struct pol_dataset *grant_dataset(const struct pol_grant *g, const char *id)
{
	for (size_t i = 0; i < g->ndatasets; i++)
		if (!g->datasets[i].inert && strcmp(g->datasets[i].id, id) == 0)
			return &g->datasets[i];
	return NULL;
}

static const struct pol_field *dataset_field(const struct pol_dataset *d, const char *name)
{
	for (size_t i = 0; d && i < d->nfields; i++)
		if (strcmp(d->fields[i].name, name) == 0)
			return &d->fields[i];
	return NULL;
}

/*
 * How well grant |g| covers |r|. With |e->text| set, also says in words
 * what is missing: the first gap in |e->first|, all of them in |e->all|.
 * Being listed as a requester weighs most, then the operation, then each
 * dataset and field: "nearest" means nearest to what this requester has.
 */
struct eval {
	unsigned score;
	unsigned gaps;
	enum policy_reason reason;
	int text;
	char *first, *all;
	size_t firstlen, alllen, used;
};

static void gap(struct eval *e, enum policy_reason why, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void gap(struct eval *e, enum policy_reason why, const char *fmt, ...)
{
	char line[POLICY_TEXT_MAX];
	va_list ap;

	if (e->gaps++ == 0)
		e->reason = why;
	if (!e->text)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (e->gaps == 1)
		say(e->first, e->firstlen, "%s", line);
	if (e->used < e->alllen) {
		int w = snprintf(e->all + e->used, e->alllen - e->used, "%s%s", e->gaps > 1 ? "; " : "", line);

		if (w > 0)
			e->used += (size_t)w;
	}
}

static void eval_grant(const struct pol_grant *g, const struct policy_request *r, struct eval *e)
{
	const char *who = r->requester, *pid = g->purpose->id;

	if (listed(g->requesters, g->nrequesters, who))
		e->score += 10000;
	else
		gap(e, POLICY_REQUESTER_NOT_LISTED, "%s is not listed as a requester for purpose '%s'", who, pid);
	if (g->ops & r->operation)
		e->score += 100;
	else
		gap(e, POLICY_OPERATION_NOT_GRANTED, "operation '%s' is not granted to %s for purpose '%s'",
		    policy_op_name(r->operation), who, pid);
	for (size_t i = 0; i < r->ndatasets; i++) {
		if (grant_dataset(g, r->datasets[i]))
			e->score++;
		else
			gap(e, POLICY_DATASET_NOT_GRANTED, "dataset '%s' is not granted to %s for purpose '%s'",
			    r->datasets[i], who, pid);
	}
	for (size_t i = 0; i < r->nfields; i++) {
		const struct policy_field *f = &r->fields[i];
		const struct pol_dataset *d = grant_dataset(g, f->dataset);
		const struct pol_field *gf = dataset_field(d, f->field);

		if (!d)
			continue; /* already counted as a missing dataset */
		if (!gf) {
			gap(e, POLICY_FIELD_NOT_GRANTED, "field '%s' of dataset '%s' is not granted to %s for purpose '%s'",
			    f->field, f->dataset, who, pid);
			continue;
		}
		e->score++;
		if (pol_gen_allows(gf->gen, f->gen))
			e->score++;
		else
			gap(e, POLICY_GENERALISATION_TOO_FINE, "field '%s' of dataset '%s' may be used by %s for "
			    "purpose '%s' only as %s or coarser, not as %s", f->field, f->dataset, who, pid,
			    policy_gen_name(gf->gen), policy_gen_name(f->gen));
	}
	if (r->identifiers <= g->out.identifiers)
		e->score++;
	else
		gap(e, POLICY_IDENTIFIERS_NOT_GRANTED, "identifiers (%s) may not be returned to %s for "
		    "purpose '%s'; allowed: %s", policy_ident_name(r->identifiers), who, pid,
		    policy_ident_name(g->out.identifiers));
}

void policy_output_merge(struct policy_output *o, const struct policy_output *g)
{
	if (g->min_cell > o->min_cell)
		o->min_cell = g->min_cell;
	if (g->noise && (!o->noise || g->epsilon < o->epsilon)) {
		o->noise = 1;
		o->epsilon = g->epsilon;
	}
	if (g->round_to > o->round_to)
		o->round_to = g->round_to;
	if (g->max_cells_per_person < o->max_cells_per_person)
		o->max_cells_per_person = g->max_cells_per_person;
	if (g->has_budget) {
		if (!o->has_budget || g->budget_epsilon < o->budget_epsilon)
			o->budget_epsilon = g->budget_epsilon;
		if (!o->has_budget || g->budget_per > o->budget_per)
			o->budget_per = g->budget_per;
		o->has_budget = 1;
	}
	if (g->identifiers < o->identifiers)
		o->identifiers = g->identifiers;
	if (!g->partial_ok)
		o->partial_ok = 0;
}

static int forbid_matches(const struct pol_forbid *f, const struct policy_request *r)
{
	if (f->npurposes && !listed(f->purposes, f->npurposes, r->purpose))
		return 0;
	if (f->nrequesters && !listed(f->requesters, f->nrequesters, r->requester))
		return 0;
	if (f->ops && !(f->ops & r->operation))
		return 0;
	if (f->ndatasets == 0)
		return 1;
	for (size_t i = 0; i < f->ndatasets; i++) {
		const struct pol_dataset *d = &f->datasets[i];

		if (d->nfields == 0 && listed(r->datasets, r->ndatasets, d->id))
			return 1;
		for (size_t j = 0; j < r->nfields; j++)
			if (strcmp(r->fields[j].dataset, d->id) == 0 && dataset_field(d, r->fields[j].field))
				return 1;
	}
	return 0;
}

static int deny(struct policy_decision *out, enum policy_reason why, const char *rule)
{
	out->permit = 0;
	out->reason = why;
	say(out->rule, sizeof(out->rule), "%s", rule ? rule : "");
	return 0;
}

static int bad_request(const struct policy_request *r, struct policy_decision *out)
{
	if (!r->requester || !r->purpose || !*r->requester || !*r->purpose) {
		say(out->message, sizeof(out->message), "the request names no requester or no purpose");
		return 1;
	}
	if (r->operation != POLICY_OP_LOOKUP && r->operation != POLICY_OP_AGGREGATE &&
	    r->operation != POLICY_OP_LINKED_AGGREGATE) {
		say(out->message, sizeof(out->message), "the request names no valid operation");
		return 1;
	}
	if (r->nfields > POLICY_MAX_FIELDS || (r->nfields && !r->fields) ||
	    (r->ndatasets && !r->datasets) || (unsigned)r->identifiers > POLICY_IDENT_BSN) {
		say(out->message, sizeof(out->message), "the request is malformed or names more than %d fields",
		    POLICY_MAX_FIELDS);
		return 1;
	}
	for (size_t i = 0; i < r->ndatasets; i++) {
		if (!r->datasets[i]) {
			say(out->message, sizeof(out->message), "the request lists an empty dataset");
			return 1;
		}
	}
	for (size_t i = 0; i < r->nfields; i++) {
		const struct policy_field *f = &r->fields[i];

		if (!f->dataset || !f->field || (unsigned)f->gen >= POLICY_GEN_COUNT) {
			say(out->message, sizeof(out->message), "the request lists a malformed field");
			return 1;
		}
		if (!listed(r->datasets, r->ndatasets, f->dataset)) {
			say(out->message, sizeof(out->message), "field '%s' is of dataset '%s', which the request "
			    "does not list in its datasets", f->field, f->dataset);
			return 1;
		}
	}
	return 0;
}

static void nearest(const struct pol_purpose *p, const struct policy_request *r,
		    struct policy_decision *out)
{
	const struct pol_grant *best = NULL;
	unsigned best_score = 0;

	for (size_t i = 0; i < p->ngrants; i++) {
		struct eval e = { 0 };

		eval_grant(&p->grants[i], r, &e);
		if (!best || e.score > best_score) {
			best = &p->grants[i];
			best_score = e.score;
		}
	}
	if (!best) {
		deny(out, POLICY_NOTHING_GRANTED, NULL);
		say(out->message, sizeof(out->message), "purpose '%s' grants nothing", p->id);
		return;
	}
	struct eval e = { .text = 1, .first = out->message, .firstlen = sizeof(out->message),
			  .all = out->missing, .alllen = sizeof(out->missing) };

	eval_grant(best, r, &e);
	deny(out, e.reason, NULL);
	say(out->nearest, sizeof(out->nearest), "%s", best->id);
}

int policy_decide(const struct policy_set *s, const struct policy_request *r,
		  struct policy_decision *out)
{
	const struct pol_purpose *p = NULL;

	if (!s || !r || !out)
		return -1;
	memset(out, 0, sizeof(*out));
	memcpy(out->policy_hash, s->hash, sizeof(out->policy_hash));
	if (bad_request(r, out))
		return deny(out, POLICY_BAD_REQUEST, NULL);
	for (size_t i = 0; i < s->npurposes && !p; i++)
		if (strcmp(s->purposes[i].id, r->purpose) == 0)
			p = &s->purposes[i];
	if (!p) {
		say(out->message, sizeof(out->message), "purpose '%s' is not declared in any policy", r->purpose);
		return deny(out, POLICY_UNKNOWN_PURPOSE, NULL);
	}
	if (r->time < p->from) {
		say(out->message, sizeof(out->message), "purpose '%s' is valid only from %s", p->id, p->from_s);
		return deny(out, POLICY_PURPOSE_NOT_YET_VALID, NULL);
	}
	if (r->time >= p->until_end) {
		say(out->message, sizeof(out->message), "purpose '%s' expired: it was valid until %s", p->id,
		    p->until_s);
		return deny(out, POLICY_PURPOSE_EXPIRED, NULL);
	}
	for (size_t i = 0; i < p->nforbids + s->nforbids; i++) {
		const struct pol_forbid *f = i < p->nforbids ? &p->forbids[i] : &s->forbids[i - p->nforbids];

		if (forbid_matches(f, r)) {
			say(out->message, sizeof(out->message), "forbidden by '%s': %s", f->id, f->reason);
			return deny(out, POLICY_FORBIDDEN, f->id);
		}
	}
	for (size_t i = 0; i < p->ngrants; i++) {
		const struct pol_grant *g = &p->grants[i];
		struct eval e = { 0 };

		eval_grant(g, r, &e);
		if (e.gaps)
			continue;
		if (out->napplied++ == 0) {
			out->out = g->out;
			say(out->rule, sizeof(out->rule), "%s", g->id);
		} else {
			policy_output_merge(&out->out, &g->out);
		}
		for (size_t j = 0; j < r->nfields; j++) {
			const struct policy_field *f = &r->fields[j];
			enum policy_gen gg = dataset_field(grant_dataset(g, f->dataset), f->field)->gen;

			if (f->gen != POLICY_GEN_NONE)
				out->gen[j] = f->gen;
			else if (pol_gen_rank(gg) > pol_gen_rank(out->gen[j]))
				out->gen[j] = gg;
		}
	}
	if (out->napplied) {
		out->permit = 1;
		out->reason = POLICY_OK;
		if (out->napplied == 1)
			say(out->message, sizeof(out->message), "permitted by grant '%s'", out->rule);
		else
			say(out->message, sizeof(out->message), "permitted by grant '%s' and %u more; the "
			    "strictest output controls of all of them apply", out->rule, out->napplied - 1);
		return 0;
	}
	nearest(p, r, out);
	return 0;
}
