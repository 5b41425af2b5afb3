/*
 * The hub's request engine for POST /v1/aggregate (hub/hub.h): one
 * function, gw_hub_aggregate(), that reads like docs/federation.md ("On the
 * hub"): validate, decide, check the budget, fan out, open, join, count,
 * disclose, debit, audit, answer, wipe. Every reason is in that page.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "../aggregate/disclose.h"
#include "../aggregate/ledger.h"
#include "../aggregate/wire.h"
#include "../common/jsonput.h"
#include "../policies/policy.h"
#include "../audit/audit.h"
#include "hub.h"
#include "../gateway/ident.h"
#include "../gateway/members.h"

#define NAME_MAX_LEN 256   /* dataset ids, field names, group-by strings */
#define MSG_LEN 1024
#define PRESENT_IN "present_in."

/* One group-by field: a dimension of the table. */
struct hub_dim {
	const char *text;        /* as asked, borrowed from the question */
	size_t ds;               /* the dataset it belongs to */
	int present_in;          /* present_in.DATASET: categories false, true */
	char field[NAME_MAX_LEN];
	enum policy_gen asked;   /* :GEN, or NONE */
	enum policy_gen gen;     /* what the decision requires */
	size_t pf;               /* index in the dataset's policy fields */
	unsigned wire;           /* index in the dataset's subquery fields */
	const struct policy_catalog_field *cf;
	const char *const *cats; /* categories without null, in release order */
	size_t ncats;
	char **keys;             /* owned: the declared domain's keys, when built */
	size_t nkeys;
	int sorted;              /* |cats| sorted by value_cmp (bsearch) */
	int has_null;            /* null is the last category */
	size_t size;             /* ncats + has_null */
	size_t stride;           /* of this dimension's index in the cell index */
};

struct hub_filter {
	size_t ds;
	char field[NAME_MAX_LEN];
	enum policy_gen asked, gen;
	size_t pf;
	char **values; /* owned, sorted by value_cmp, distinct */
	size_t nvalues;
};

/* One dataset of the question: one subquery, one decision, one answer. */
struct hub_ds {
	const char *id;          /* borrowed from the question */
	int population;
	char owner[NAME_MAX_LEN];
	const struct gw_member *member;
	struct policy_field pf[POLICY_MAX_FIELDS];
	size_t npf;
	unsigned nwire;          /* group-by fields asked of the node */
	size_t wire_dim[GW_HUB_MAX_GROUP_BY]; /* subquery field -> dimension */
	struct policy_decision dec;
	int missing;             /* its node failed and the answer is partial */
	char policy_hash[POLICY_HASH_HEX + 1];
	struct wire_tokens tok;  /* mode tokens */
	uint32_t *map[GW_HUB_MAX_GROUP_BY]; /* tokens: dictionary code -> category */
	cJSON *counts;           /* mode counts: the node's parsed answer */
};

struct hub_query {
	const struct gw_hub *hub;
	const struct gw_member *caller;
	int64_t now;
	const char *purpose;
	struct hub_ds ds[GW_HUB_MAX_DATASETS];
	size_t nds;
	struct hub_dim dim[GW_HUB_MAX_GROUP_BY];
	size_t ndims;
	struct hub_filter filt[GW_HUB_MAX_FILTERS];
	size_t nfilt;
	int linked;
	enum policy_op op;
	int permitted;             /* every decision permitted */
	struct policy_output out;  /* the strictest of every decision */
	unsigned cells_per_person; /* what the hub counts: min(out, GW_HUB_MAX_CELLS_PER_PERSON) */
	int budgeted;              /* a debit is taken: purpose or dataset budgets */
	int purpose_budget;        /* the purpose has a budget of its own */
	uint64_t eps_micro, limit_micro;
	struct ledger_status budget;
	int have_budget;          /* |budget| holds a status worth showing */
	/* The owners' per-dataset budgets of the datasets asked (docs/ledger.md):
	 * charged in the same transaction as the purpose's debit. */
	struct ledger_charge charge[GW_HUB_MAX_DATASETS];
	size_t ncharges;
	size_t charge_failed;     /* 429 on a dataset's budget: its charge; else SIZE_MAX */
	char query_id[2 * 16 + 1];
	struct agg_cell *cells;
	size_t ncells;
	struct agg_table table;
	size_t released;
	int partial;

	/* The outcome, for the audit line and the error body. */
	int status;
	const char *code;
	char message[MSG_LEN];
	const char *fail_node;       /* node errors: the node */
	const char *fail_dataset;    /* 403 and node errors: the dataset */
	const struct policy_decision *fail_dec; /* 403 */
	char node_code[128];         /* node_refused: what the node said */
	char node_message[512];
	int budget_error;            /* 429: show |budget| */
	int intent_written;          /* the budget_intent line is in the audit log */
};

/* |v| is a whole number in [lo, hi] (no libm: the build does not link it). */
static int whole(double v, double lo, double hi)
{
	return v >= lo && v <= hi && v == (double)(int64_t)v;
}

static int fail(struct hub_query *q, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(struct hub_query *q, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	q->status = status;
	q->code = code;
	va_start(ap, fmt);
	vsnprintf(q->message, sizeof(q->message), fmt, ap);
	va_end(ap);
	return -1;
}

static int oom(struct hub_query *q)
{
	return fail(q, 500, "internal", "out of memory");
}

/* Prints |o| (and frees it); NULL when anything failed on the way. */
static char *print_json(int ok, cJSON *o)
{
	char *text = ok && o ? cJSON_PrintUnformatted(o) : NULL;

	cJSON_Delete(o);
	return text;
}

/*
 * Category order for values the catalog does not list (years, quarters, age
 * bands, postcodes): a leading run of digits compares as a number, the rest
 * as bytes, so "5-9" comes before "10-14" and "2023-Q2" before "2023-Q3".
 */
static int value_cmp(const char *a, const char *b)
{
	if (isdigit((unsigned char)a[0]) && isdigit((unsigned char)b[0])) {
		size_t la = strspn(a, "0123456789"), lb = strspn(b, "0123456789");
		int c;

		if (la != lb)
			return la < lb ? -1 : 1;
		if ((c = memcmp(a, b, la)) != 0)
			return c;
		return strcmp(a + la, b + lb);
	}
	return strcmp(a, b);
}

static int value_qcmp(const void *a, const void *b)
{
	return value_cmp(*(const char *const *)a, *(const char *const *)b);
}

/* The category index of |v| in |d|, or -1 when it is not a category. */
static long cat_index(const struct hub_dim *d, const char *v)
{
	if (!v)
		return d->has_null ? (long)d->ncats : -1;
	if (d->sorted) {
		size_t lo = 0, hi = d->ncats;

		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			int c = value_cmp(v, d->cats[mid]);

			if (c == 0)
				return (long)mid;
			if (c < 0)
				hi = mid;
			else
				lo = mid + 1;
		}
		return -1;
	}
	for (size_t i = 0; i < d->ncats; i++)
		if (strcmp(d->cats[i], v) == 0)
			return (long)i;
	return -1;
}

/* ---- 1. The question ------------------------------------------------- */

static long ds_index(const struct hub_query *q, const char *id, size_t len)
{
	for (size_t i = 0; i < q->nds; i++)
		if (strlen(q->ds[i].id) == len && memcmp(q->ds[i].id, id, len) == 0)
			return (long)i;
	return -1;
}

static int add_dataset(struct hub_query *q, const cJSON *v, int population, const char *part)
{
	const struct policy_catalog_field *cf;
	const char *id = cJSON_GetStringValue(v);
	const char *slash;

	if (!id || !*id || strlen(id) >= NAME_MAX_LEN)
		return fail(q, 400, "bad_request", "%s: a dataset id (OWNER/NAME) is required", part);
	if (!gw_ident_ok(id, GW_IDENT_MAX, GW_IDENT_DATASET))
		return fail(q, 400, "bad_request", "%s: a dataset id is OWNER/NAME, 1 to 128 of a-z, 0-9, "
			    "'.', '_', '-' and '/'", part);
	if (q->nds == GW_HUB_MAX_DATASETS)
		return fail(q, 400, "bad_request", "%s: at most %d datasets per question", part,
			    GW_HUB_MAX_DATASETS);
	if (ds_index(q, id, strlen(id)) >= 0)
		return fail(q, 400, "bad_request", "%s: dataset '%s' is named twice", part, id);
	if (policy_catalog_fields(q->hub->catalog, id, &cf) < 0)
		return fail(q, 400, "unknown_dataset", "%s: dataset '%s' is not in the catalog", part, id);
	slash = strchr(id, '/');
	if (!slash || slash == id)
		return fail(q, 400, "bad_request", "%s: dataset '%s' is not OWNER/NAME", part, id);
	q->ds[q->nds].id = id;
	q->ds[q->nds].population = population;
	memcpy(q->ds[q->nds].owner, id, (size_t)(slash - id));
	q->ds[q->nds].owner[slash - id] = '\0';
	q->nds++;
	return 0;
}

/*
 * Parses "DATASET.FIELD" or "DATASET.FIELD:GEN" (|allow_present|: also
 * "present_in.DATASET") against the question's datasets and the catalog.
 */
static int parse_field_ref(struct hub_query *q, const char *s, const char *part, int allow_present,
			   size_t *ds, char field[NAME_MAX_LEN], enum policy_gen *gen, int *present,
			   const struct policy_catalog_field **cfp)
{
	const struct policy_catalog_field *cf;
	const char *colon, *dot;
	size_t baselen;
	long di;
	int n;

	*present = 0;
	*gen = POLICY_GEN_NONE;
	*cfp = NULL;
	if (strlen(s) >= NAME_MAX_LEN)
		return fail(q, 400, "bad_request", "%s: too long", part);
	if (!gw_ident_ok(s, GW_IDENT_REF_MAX, GW_IDENT_REF))
		return fail(q, 400, "bad_request", "%s: a field is DATASET.FIELD[:GEN]%s, of a-z, 0-9, '.', "
			    "'_', '-', '/' and ':'", part, allow_present ? " or present_in.DATASET" : "");
	if (allow_present && strncmp(s, PRESENT_IN, strlen(PRESENT_IN)) == 0) {
		const char *id = s + strlen(PRESENT_IN);

		if ((di = ds_index(q, id, strlen(id))) < 0)
			return fail(q, 400, "bad_request", "%s: '%s' is not a dataset of this question", part, id);
		if (!q->linked)
			return fail(q, 400, "bad_request", "%s: present_in needs a linked question (a link "
				    "or several population datasets); here it would always be true", part);
		*ds = (size_t)di;
		*present = 1;
		field[0] = '\0';
		return 0;
	}
	colon = strrchr(s, ':');
	baselen = colon ? (size_t)(colon - s) : strlen(s);
	if (colon && (policy_gen_parse(colon + 1, gen) < 0 || *gen == POLICY_GEN_NONE))
		return fail(q, 400, "bad_request", "%s: unknown generalisation '%s'", part, colon + 1);
	for (dot = NULL, n = (int)baselen - 1; n >= 0; n--)
		if (s[n] == '.') {
			dot = s + n;
			break;
		}
	if (!dot || dot == s || (size_t)(dot - s) + 1 >= baselen)
		return fail(q, 400, "bad_request", "%s: '%s' is not DATASET.FIELD[:GEN]%s", part, s,
			    allow_present ? " or present_in.DATASET" : "");
	if ((di = ds_index(q, s, (size_t)(dot - s))) < 0)
		return fail(q, 400, "bad_request", "%s: '%.*s' is not a dataset of this question", part,
			    (int)(dot - s), s);
	*ds = (size_t)di;
	memcpy(field, dot + 1, baselen - (size_t)(dot - s) - 1);
	field[baselen - (size_t)(dot - s) - 1] = '\0';
	n = policy_catalog_fields(q->hub->catalog, q->ds[di].id, &cf);
	for (int i = 0; i < n; i++)
		if (strcmp(cf[i].name, field) == 0)
			*cfp = &cf[i];
	if (!*cfp)
		return fail(q, 400, "bad_request", "%s: dataset '%s' has no field '%s'", part, q->ds[di].id, field);
	if ((*cfp)->type == POLICY_T_BSN || (*cfp)->role == POLICY_ROLE_IDENTIFIER)
		return fail(q, 400, "bad_request", "%s: '%s' identifies persons; a table cannot use it", part,
			    field);
	return 0;
}

static int add_policy_field(struct hub_query *q, size_t ds, const char *field, enum policy_gen gen,
			    size_t *pf)
{
	struct hub_ds *d = &q->ds[ds];

	if (d->npf == POLICY_MAX_FIELDS)
		return fail(q, 400, "bad_request", "too many fields of dataset '%s'", d->id);
	d->pf[d->npf] = (struct policy_field){ d->id, field, gen };
	*pf = d->npf++;
	return 0;
}

static int parse_filter(struct hub_query *q, const cJSON *item)
{
	struct hub_filter *f = &q->filt[q->nfilt];
	char part[NAME_MAX_LEN + 16];
	const struct policy_catalog_field *cf;
	const cJSON *v;
	int present, n;

	snprintf(part, sizeof(part), "filters.%s", item->string);
	if (q->nfilt == GW_HUB_MAX_FILTERS)
		return fail(q, 400, "bad_request", "filters: at most %d", GW_HUB_MAX_FILTERS);
	if (parse_field_ref(q, item->string, part, 0, &f->ds, f->field, &f->asked, &present, &cf) < 0)
		return -1;
	q->nfilt++;
	n = cJSON_GetArraySize(item);
	if (!cJSON_IsArray(item) || n < 1 || n > GW_HUB_MAX_FILTER_VALUES)
		return fail(q, 400, "bad_request", "%s: a list of 1 to %d values is required", part,
			    GW_HUB_MAX_FILTER_VALUES);
	if (!(f->values = calloc((size_t)n, sizeof(*f->values))))
		return oom(q);
	cJSON_ArrayForEach(v, item) {
		char buf[32];
		const char *s = buf;

		if (cJSON_IsString(v) && strlen(v->valuestring) < NAME_MAX_LEN)
			s = v->valuestring;
		else if (cJSON_IsBool(v))
			s = cJSON_IsTrue(v) ? "true" : "false";
		else if (cJSON_IsNumber(v) && whole(v->valuedouble, -1e15, 1e15))
			snprintf(buf, sizeof(buf), "%lld", (long long)v->valuedouble);
		else
			return fail(q, 400, "bad_request", "%s: values are strings, integers or booleans", part);
		if (!(f->values[f->nvalues++] = strdup(s)))
			return oom(q);
	}
	qsort(f->values, f->nvalues, sizeof(*f->values), value_qcmp);
	for (size_t i = 1; i < f->nvalues; i++)
		if (value_cmp(f->values[i - 1], f->values[i]) == 0)
			return fail(q, 400, "bad_request", "%s: value '%s' is listed twice", part, f->values[i]);
	return add_policy_field(q, f->ds, f->field, f->asked, &f->pf);
}

static int parse_question(struct hub_query *q, const cJSON *question)
{
	const cJSON *pop, *link, *measure, *group, *filters, *item;
	const cJSON *purpose;
	size_t npop = 0;

	if (!cJSON_IsObject(question))
		return fail(q, 400, "bad_request", "the question must be a JSON object");
	cJSON_ArrayForEach(item, question) {
		static const char *const known[] = { "purpose", "population", "link", "measure",
						     "group_by", "filters" };
		int ok = 0;

		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			ok |= item->string && strcmp(item->string, known[i]) == 0;
		if (!ok)
			return fail(q, 400, "bad_request", "unknown member '%s' (purpose, population, link, "
				    "measure, group_by, filters)", item->string ? item->string : "");
	}
	purpose = cJSON_GetObjectItemCaseSensitive(question, "purpose");
	q->purpose = cJSON_GetStringValue(purpose);
	if (!q->purpose || !*q->purpose || strlen(q->purpose) >= NAME_MAX_LEN)
		return fail(q, 400, "bad_request", "purpose: a purpose id is required");
	if (!gw_ident_ok(q->purpose, GW_IDENT_MAX, GW_IDENT_NAME))
		return fail(q, 400, "bad_request", "purpose: a purpose id is 1 to 128 of a-z, 0-9, '.', "
			    "'_' and '-'");

	pop = cJSON_GetObjectItemCaseSensitive(question, "population");
	if (cJSON_IsString(pop)) {
		if (add_dataset(q, pop, 1, "population") < 0)
			return -1;
	} else if (cJSON_IsArray(pop) && cJSON_GetArraySize(pop) > 0) {
		cJSON_ArrayForEach(item, pop)
			if (add_dataset(q, item, 1, "population") < 0)
				return -1;
	} else {
		return fail(q, 400, "bad_request", "population: a dataset id or a non-empty list of them "
			    "is required");
	}
	npop = q->nds;
	link = cJSON_GetObjectItemCaseSensitive(question, "link");
	if (link) {
		if (!cJSON_IsArray(link))
			return fail(q, 400, "bad_request", "link: a list of dataset ids is required");
		cJSON_ArrayForEach(item, link)
			if (add_dataset(q, item, 0, "link") < 0)
				return -1;
	}
	q->linked = npop > 1 || q->nds > npop;
	q->op = q->linked ? POLICY_OP_LINKED_AGGREGATE : POLICY_OP_AGGREGATE;

	measure = cJSON_GetObjectItemCaseSensitive(question, "measure");
	if (measure) {
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(measure, "count");

		if (!cJSON_IsObject(measure) || cJSON_GetArraySize(measure) != 1 || !cJSON_IsString(c) ||
		    strcmp(c->valuestring, "persons") != 0)
			return fail(q, 400, "bad_request", "measure: only {\"count\": \"persons\"} is supported");
	}

	group = cJSON_GetObjectItemCaseSensitive(question, "group_by");
	if (group) {
		if (!cJSON_IsArray(group) || cJSON_GetArraySize(group) > GW_HUB_MAX_GROUP_BY)
			return fail(q, 400, "bad_request", "group_by: a list of at most %d fields is required",
				    GW_HUB_MAX_GROUP_BY);
		cJSON_ArrayForEach(item, group) {
			struct hub_dim *d = &q->dim[q->ndims];
			char part[32];

			snprintf(part, sizeof(part), "group_by[%zu]", q->ndims);
			if (!cJSON_IsString(item))
				return fail(q, 400, "bad_request", "%s: a string is required", part);
			d->text = item->valuestring;
			if (parse_field_ref(q, d->text, part, 1, &d->ds, d->field, &d->asked,
					    &d->present_in, &d->cf) < 0)
				return -1;
			for (size_t i = 0; i < q->ndims; i++)
				if (q->dim[i].ds == d->ds && q->dim[i].present_in == d->present_in &&
				    strcmp(q->dim[i].field, d->field) == 0)
					return fail(q, 400, "bad_request", "%s: '%s' is grouped by twice", part,
						    d->text);
			q->ndims++;
			if (!d->present_in) {
				struct hub_ds *ds = &q->ds[d->ds];

				if (add_policy_field(q, d->ds, d->field, d->asked, &d->pf) < 0)
					return -1;
				d->wire = ds->nwire;
				ds->wire_dim[ds->nwire++] = q->ndims - 1;
			}
		}
	}

	filters = cJSON_GetObjectItemCaseSensitive(question, "filters");
	if (filters) {
		if (!cJSON_IsObject(filters))
			return fail(q, 400, "bad_request", "filters: an object of DATASET.FIELD: [values] is required");
		cJSON_ArrayForEach(item, filters)
			if (parse_filter(q, item) < 0)
				return -1;
	}
	return 0;
}

/* ---- 2. The decision --------------------------------------------------- */

static int decide(struct hub_query *q)
{
	for (size_t i = 0; i < q->nds; i++) {
		struct hub_ds *d = &q->ds[i];
		struct policy_request req = { 0 };

		req.requester = q->caller->id;
		req.purpose = q->purpose;
		req.operation = q->op;
		req.datasets = &d->id;
		req.ndatasets = 1;
		req.fields = d->pf;
		req.nfields = d->npf;
		req.identifiers = POLICY_IDENT_NEVER;
		req.time = q->now;
		if (policy_decide(q->hub->policies, &req, &d->dec) < 0)
			return fail(q, 500, "internal", "the policy could not be evaluated");
		if (!d->dec.permit) {
			q->fail_dec = &d->dec;
			q->fail_dataset = d->id;
			return fail(q, 403, policy_reason_name(d->dec.reason), "%s: %s", d->id, d->dec.message);
		}
		if (i == 0)
			q->out = d->dec.out;
		else
			policy_output_merge(&q->out, &d->dec.out);
	}
	q->permitted = 1;
	for (size_t i = 0; i < q->ndims; i++) {
		struct hub_dim *d = &q->dim[i];

		if (!d->present_in)
			d->gen = q->ds[d->ds].dec.gen[d->pf] == POLICY_GEN_NONE ? POLICY_GEN_EXACT
										  : q->ds[d->ds].dec.gen[d->pf];
	}
	for (size_t i = 0; i < q->nfilt; i++) {
		struct hub_filter *f = &q->filt[i];

		f->gen = q->ds[f->ds].dec.gen[f->pf] == POLICY_GEN_NONE ? POLICY_GEN_EXACT
									 : q->ds[f->ds].dec.gen[f->pf];
	}
	q->cells_per_person = q->out.max_cells_per_person;
	if (q->cells_per_person == 0 || q->cells_per_person > GW_HUB_MAX_CELLS_PER_PERSON)
		q->cells_per_person = q->cells_per_person ? GW_HUB_MAX_CELLS_PER_PERSON : 1;
	return 0;
}

/* ---- 3. The budget, before any node is asked ------------------------- */

static int budget_fail(struct hub_query *q)
{
	char want[LEDGER_EPS_LEN], left[LEDGER_EPS_LEN], lim[LEDGER_EPS_LEN], when[LEDGER_TIME_LEN];

	q->budget_error = 1;
	q->have_budget = 1;
	if (q->charge_failed < q->ncharges) {
		const struct ledger_charge *c = &q->charge[q->charge_failed];

		/* The dataset is named: the coordinator asked for it, and its
		 * owner's cap is what every requester shares. */
		q->fail_dataset = c->dataset;
		return fail(q, 429, "dataset_budget_exhausted",
			    "privacy budget of dataset %s exhausted: this query needs epsilon %s, %s of %s "
			    "is left this %s for every requester and purpose together; it resets at %s",
			    c->dataset, ledger_format_eps(q->eps_micro, want),
			    ledger_format_eps(c->st.remaining_micro, left),
			    ledger_format_eps(c->limit_micro, lim), policy_period_name(c->per),
			    ledger_format_time(c->st.reset, when));
	}
	return fail(q, 429, "budget_exhausted",
		    "privacy budget exhausted for %s, purpose %s: this query needs epsilon %s, %s of %s is "
		    "left this %s; it resets at %s", q->caller->id, q->purpose,
		    ledger_format_eps(q->eps_micro, want), ledger_format_eps(q->budget.remaining_micro, left),
		    ledger_format_eps(q->limit_micro, lim), policy_period_name(q->out.budget_per),
		    ledger_format_time(q->budget.reset, when));
}

/* The coordinator hears why, not where: the ledger's own message names
 * the hub's files. */
static const char *ledger_reason(int rc)
{
	if (rc == LEDGER_BUSY)
		return "the budget ledger is locked by another process; try again shortly";
	return "the budget ledger cannot be read";
}

/* The owners' per-dataset budgets of the datasets asked, once each. */
static int dataset_charges(struct hub_query *q)
{
	q->ncharges = 0;
	for (size_t i = 0; i < q->nds; i++) {
		struct ledger_charge *c = &q->charge[q->ncharges];
		double eps;
		int dup = 0;

		for (size_t j = 0; j < q->ncharges; j++)
			dup |= strcmp(q->charge[j].dataset, q->ds[i].id) == 0;
		if (dup || policy_dataset_budget(q->hub->policies, q->ds[i].id, &eps, &c->per) < 0)
			continue;
		if (q->ncharges >= LEDGER_MAX_CHARGES || ledger_micro_down(eps, &c->limit_micro) < 0)
			return fail(q, 500, "internal", "a dataset's budget cannot be read");
		c->dataset = q->ds[i].id;
		q->ncharges++;
	}
	return 0;
}

static int budget_check(struct hub_query *q)
{
	char err[512];
	int rc;

	/* A ledger that vanished, was swapped or rolled back would let spent
	 * budget be spent again: nothing is answered (docs/ledger.md). */
	if (q->hub->ledger_problem)
		return fail(q, 503, "budget_unavailable", "the hub's privacy budget ledger is missing, "
			    "replaced or rolled back, so nothing is answered");
	/* A budget without noise has no effect (docs/policy.md): nothing to spend. */
	if (!q->out.noise)
		return 0;
	if (ledger_micro_up(q->out.epsilon, &q->eps_micro) < 0 || q->eps_micro == 0)
		return fail(q, 500, "internal", "the policy's epsilon cannot be charged");
	if ((rc = dataset_charges(q)) < 0)
		return rc;
	if (!q->out.has_budget && !q->ncharges)
		return 0;
	q->budgeted = 1;
	q->purpose_budget = q->out.has_budget;
	/* A purpose without a budget of its own still gets its debit row (the
	 * audit line's budget_debit), against the ledger's ceiling. */
	if (!q->purpose_budget)
		q->limit_micro = (uint64_t)(LEDGER_EPSILON_MAX * LEDGER_MICRO);
	else if (ledger_micro_down(q->out.budget_epsilon, &q->limit_micro) < 0)
		return fail(q, 500, "internal", "the policy's budget cannot be read");
	if (!q->hub->ledger)
		return fail(q, 503, "budget_unavailable", "this question has a privacy budget and the hub "
			    "has no budget ledger, so nothing is answered");
	rc = ledger_status(q->hub->ledger, q->caller->id, q->purpose, q->out.budget_per, q->limit_micro,
			   q->now, &q->budget, err, sizeof(err));
	if (rc == 0 && q->ncharges)
		rc = ledger_dataset_status(q->hub->ledger, q->charge, q->ncharges, q->now, err, sizeof(err));
	if (rc < 0)
		return fail(q, 503, "budget_unavailable", "%s", ledger_reason(rc));
	if (q->purpose_budget && q->budget.remaining_micro < q->eps_micro)
		return budget_fail(q);
	for (size_t i = 0; i < q->ncharges; i++)
		if (q->charge[i].st.remaining_micro < q->eps_micro) {
			q->charge_failed = i;
			return budget_fail(q);
		}
	return 0;
}

/* ---- 4. Planning and the fan-out ---------------------------------------- */

/* The keys of a declared domain (docs/disclosure.md, "Declared domains"),
 * from the catalog alone; 0 or -1 (q->status set). */
static int domain_categories(struct hub_query *q, struct hub_dim *d)
{
	size_t n = policy_domain_size(d->cf, d->gen);
	char buf[POLICY_DOMAIN_KEY_LEN];

	if (n == 0)
		return fail(q, 422, "no_declared_domain", "group_by: %s has no declared domain in the "
			    "catalog at this coarseness, so it cannot be grouped (a table's keys never come "
			    "from data)", d->text);
	if (n > GW_HUB_MAX_CELLS)
		return fail(q, 422, "table_too_large", "the group-by categories give more than %d cells",
			    GW_HUB_MAX_CELLS);
	if (!(d->keys = calloc(n, sizeof(*d->keys))))
		return oom(q);
	d->nkeys = n;
	d->sorted = 1;
	for (size_t i = 0; i < n; i++) {
		const char *k = policy_domain_key(d->cf, d->gen, i, buf);

		if (!k || !(d->keys[i] = strdup(k)))
			return oom(q);
		/* Bins and periods are in order; bsearch when value_cmp agrees. */
		if (i > 0 && value_cmp(d->keys[i - 1], d->keys[i]) >= 0)
			d->sorted = 0;
	}
	d->cats = (const char *const *)d->keys;
	d->ncats = n;
	return 0;
}

/* Every dimension's categories, known before any node answers: present_in,
 * bools and the catalog's declared domains. Checks the table size. */
static int fixed_categories(struct hub_query *q)
{
	static const char *const bools[] = { "false", "true" };
	size_t cells = 1;

	for (size_t i = 0; i < q->ndims; i++) {
		struct hub_dim *d = &q->dim[i];

		d->has_null = !d->present_in;
		if (d->present_in) {
			d->cats = bools;
			d->ncats = 2;
		} else if (d->cf->type == POLICY_T_CATEGORY && d->gen == POLICY_GEN_EXACT) {
			d->cats = d->cf->categories;
			d->ncats = d->cf->ncategories;
		} else if (d->cf->type == POLICY_T_BOOL && d->gen == POLICY_GEN_EXACT) {
			d->cats = bools;
			d->ncats = 2;
		} else if (domain_categories(q, d) < 0) {
			return -1;
		}
		d->size = d->ncats + (size_t)d->has_null;
		if (d->size > GW_HUB_MAX_CELLS || (cells *= d->size) > GW_HUB_MAX_CELLS)
			return fail(q, 422, "table_too_large", "the group-by categories give more than %d cells",
				    GW_HUB_MAX_CELLS);
	}
	return 0;
}

/* The subquery body of docs/federation.md; NULL when out of memory. */
static char *subquery_json(const struct hub_query *q, const struct hub_ds *d)
{
	cJSON *o = cJSON_CreateObject();
	int ok = o != NULL;
	cJSON *fields, *filters;

	json_put_str(&ok, o, "query_id", q->query_id);
	json_put_str(&ok, o, "requester", q->caller->id);
	json_put_str(&ok, o, "purpose", q->purpose);
	json_put_str(&ok, o, "operation", policy_op_name(q->op));
	json_put_str(&ok, o, "dataset", d->id);
	json_put_str(&ok, o, "mode", q->linked ? "tokens" : "counts");
	fields = json_put(&ok, o, "fields", cJSON_CreateArray());
	for (unsigned w = 0; w < d->nwire; w++) {
		const struct hub_dim *dim = &q->dim[d->wire_dim[w]];
		cJSON *f = json_put(&ok, fields, NULL, cJSON_CreateObject());

		json_put_str(&ok, f, "field", dim->field);
		json_put_str(&ok, f, "gen", policy_gen_name(dim->gen));
	}
	filters = json_put(&ok, o, "filters", cJSON_CreateArray());
	for (size_t i = 0; i < q->nfilt; i++) {
		const struct hub_filter *flt = &q->filt[i];
		cJSON *f, *vals;

		if (&q->ds[flt->ds] != d)
			continue;
		f = json_put(&ok, filters, NULL, cJSON_CreateObject());
		json_put_str(&ok, f, "field", flt->field);
		json_put_str(&ok, f, "gen", policy_gen_name(flt->gen));
		vals = json_put(&ok, f, "values", cJSON_CreateArray());
		for (size_t j = 0; j < flt->nvalues; j++)
			json_put_str(&ok, vals, NULL, flt->values[j]);
	}
	json_put_num(&ok, o, "max_cells_per_person", q->cells_per_person);
	return print_json(ok, o);
}

static void wipe_free(char *p, size_t len)
{
	if (p) {
		sodium_memzero(p, len);
		free(p);
	}
}

/* Zeroes every number of a parsed answer (exact counts) before freeing it. */
static void wipe_json(cJSON *j)
{
	for (cJSON *c = j; c; c = c->next) {
		if (cJSON_IsNumber(c)) {
			c->valueint = 0;
			c->valuedouble = 0;
		}
		if (c->child)
			wipe_json(c->child);
	}
}

static void node_failure(struct hub_query *q, struct hub_ds *d, const struct gw_hub_answer *a,
			 const char *why, int *first)
{
	unsigned ms = q->hub->node_timeout_ms ? q->hub->node_timeout_ms : GW_HUB_NODE_TIMEOUT_MS;

	d->missing = 1;
	if (!*first)
		return;
	*first = 0;
	q->fail_node = d->owner;
	q->fail_dataset = d->id;
	if (!a)
		fail(q, 502, "node_garbage", "node %s answered garbage for %s: %s", d->owner, d->id, why);
	else if (a->status == 0 && a->too_big)
		fail(q, 502, "node_garbage", "node %s answered garbage for %s: an answer larger than the hub "
		     "accepts", d->owner, d->id);
	else if (a->status == 0 && a->timed_out)
		fail(q, 504, "node_timeout", "node %s did not answer within %u ms (dataset %s)", d->owner, ms,
		     d->id);
	else if (a->status == 0)
		fail(q, 502, "node_unreachable", "node %s could not be reached (dataset %s)", d->owner, d->id);
	else
		fail(q, 502, "node_refused", "node %s refused dataset %s (HTTP %d): %s%s%s", d->owner, d->id,
		     a->status, q->node_code, q->node_code[0] ? ": " : "", q->node_message);
}

/* What a refusing node said, when it said it in our error format. */
static void node_error_text(struct hub_query *q, const struct gw_hub_answer *a)
{
	cJSON *j = a->body ? cJSON_ParseWithLength(a->body, a->len) : NULL;
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
	const char *code = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "code"));
	const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "message"));

	snprintf(q->node_code, sizeof(q->node_code), "%s", code ? code : "");
	snprintf(q->node_message, sizeof(q->node_message), "%s", msg ? msg : "no error message");
	cJSON_Delete(j);
}

/* Mode tokens: open, decode and check one answer's box (in |a|'s body; its
 * head, |j|, is already checked for dataset and policy hash). The body goes
 * as soon as the box is open, so at most two copies of an answer (the
 * plaintext and the decoded records) exist at once. NULL or an error text. */
static const char *open_tokens(struct hub_query *q, struct hub_ds *d, const cJSON *j, struct gw_hub_answer *a,
			       const unsigned char *box, size_t boxlen, char *err, size_t errlen)
{
	const cJSON *records = cJSON_GetObjectItemCaseSensitive(j, "records");
	unsigned ms = q->hub->node_timeout_ms ? q->hub->node_timeout_ms : GW_HUB_NODE_TIMEOUT_MS;
	struct wire_expect x = { .nfields = (uint32_t)d->nwire };
	struct timespec ts;
	unsigned char *plain = NULL;
	size_t len = 0, run = 0;
	int rc;

	if (!cJSON_IsNumber(records) || !whole(records->valuedouble, 0, UINT32_MAX))
		return "its head lacks \"records\"";
	/* Counts are checked before a value is decoded, and decoding one answer
	 * may take at most what a node is given to answer (issue 10). */
	x.nrecords = (uint32_t)records->valuedouble;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	x.deadline_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + (uint64_t)ms * 1000000u;
	rc = wire_open(box, boxlen, q->hub->box_pk, q->hub->box_sk, &plain, &len, err, errlen);
	wipe_free(a->body, a->len);
	a->body = NULL;
	if (rc == WIRE_ERR_NOMEM)
		return "out of memory";
	if (rc < 0)
		return err;
	rc = wire_decode_expect(plain, len, &x, &d->tok, err, errlen);
	wipe_free((char *)plain, len);
	if (rc < 0)
		return rc == WIRE_ERR_NOMEM ? "out of memory" : err;
	if (d->tok.nfields != d->nwire)
		return "the sealed answer has another number of fields than asked";
	if (d->tok.nrecords != (uint32_t)records->valuedouble)
		return "\"records\" does not match the sealed answer";
	/* Contribution bounding is the node's job; the hub checks it was done. */
	for (uint32_t i = 0; i < d->tok.nrecords; i++) {
		if (i > 0 && wire_token_equal(d->tok.tokens + (size_t)i * WIRE_TOKEN_BYTES,
				       d->tok.tokens + (size_t)(i - 1) * WIRE_TOKEN_BYTES))
			run++;
		else
			run = 1;
		if (run > q->cells_per_person)
			return "a person has more records than max_cells_per_person";
	}
	for (unsigned w = 0; w < d->nwire; w++) {
		struct hub_dim *dim = &q->dim[d->wire_dim[w]];
		const struct wire_field *wf = &d->tok.fields[w];

		if (!(d->map[w] = malloc(((size_t)wf->nvalues + 1) * sizeof(uint32_t))))
			return "out of memory";
		for (uint16_t c = 0; c < wf->nvalues; c++) {
			long k = cat_index(dim, wf->values[c]);

			if (k < 0) {
				/* Not echoed: whatever a node sends stays in the hub. */
				snprintf(err, errlen, "a value of %s is not one of its categories", dim->text);
				return err;
			}
			d->map[w][c] = (uint32_t)k;
		}
		d->map[w][wf->nvalues] = (uint32_t)dim->ncats; /* null, kept last */
	}
	return NULL;
}

/* Mode counts: check the cells' shape and collect their categories. */
static const char *check_counts(struct hub_query *q, struct hub_ds *d, const cJSON *j, char *err,
				size_t errlen)
{
	const cJSON *fields = cJSON_GetObjectItemCaseSensitive(j, "fields");
	const cJSON *cells = cJSON_GetObjectItemCaseSensitive(j, "cells");
	const cJSON *c;
	size_t ncells = (size_t)cJSON_GetArraySize(cells);
	const char **vals;
	unsigned w = 0;

	if (!cJSON_IsArray(fields) || !cJSON_IsArray(cells))
		return "it lacks \"fields\" or \"cells\"";
	cJSON_ArrayForEach(c, fields) {
		if (w >= d->nwire || !cJSON_IsString(c) || strcmp(c->valuestring, q->dim[d->wire_dim[w]].field))
			return "its \"fields\" are not the fields asked";
		w++;
	}
	if (w != d->nwire)
		return "its \"fields\" are not the fields asked";
	cJSON_ArrayForEach(c, cells) {
		const cJSON *key = cJSON_GetObjectItemCaseSensitive(c, "key");
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(c, "persons");
		const cJSON *v;

		if (!cJSON_IsArray(key) || cJSON_GetArraySize(key) != (int)d->nwire || !cJSON_IsNumber(n) ||
		    !whole(n->valuedouble, 0, (double)AGG_MAX_COUNT))
			return "a cell is not {\"key\": [...], \"persons\": n}";
		cJSON_ArrayForEach(v, key)
			if (!cJSON_IsString(v) && !cJSON_IsNull(v))
				return "a cell key holds something other than strings and null";
	}
	if (!(vals = malloc((ncells ? ncells : 1) * sizeof(*vals))))
		return "out of memory";
	for (w = 0; w < d->nwire; w++) {
		struct hub_dim *dim = &q->dim[d->wire_dim[w]];
		size_t k = 0;

		cJSON_ArrayForEach(c, cells)
			vals[k++] = cJSON_GetStringValue(cJSON_GetArrayItem(
				cJSON_GetObjectItemCaseSensitive(c, "key"), (int)w));
		for (size_t i = 0; i < k; i++)
			if (cat_index(dim, vals[i]) < 0) {
				snprintf(err, errlen, "a value of %s is not one of its categories", dim->text);
				free(vals);
				return err;
			}
	}
	free(vals);
	return NULL;
}

/* Forgets what a failed answer brought: its tokens and their maps (the
 * categories are the catalog's and stay). */
static void drop_answer(struct hub_ds *d)
{
	wire_tokens_free(&d->tok);
	for (unsigned w = 0; w < d->nwire; w++) {
		free(d->map[w]);
		d->map[w] = NULL;
	}
}

/* Checks one answer; 0, or -1 (the node counts as failed; q->status set when
 * it is the first, or out of memory). */
static int take_answer(struct hub_query *q, struct hub_ds *d, struct gw_hub_answer *a, int *first)
{
	char err[512];
	const char *why = NULL, *hash, *head = NULL;
	const unsigned char *box = NULL;
	size_t boxlen = 0, headlen = 0;
	cJSON *j;

	if (a->status != 200) {
		if (a->status != 0 && *first)
			node_error_text(q, a);
		node_failure(q, d, a, NULL, first);
		return -1;
	}
	/* A linked answer is binary (wire.h): the box, then a small JSON head;
	 * a counts answer is JSON. */
	if (q->linked) {
		if (wire_unwrap((const unsigned char *)a->body, a->len, &box, &boxlen, &head, &headlen, err,
				sizeof(err)) < 0) {
			wipe_free(a->body, a->len);
			a->body = NULL;
			node_failure(q, d, NULL, err, first);
			return -1;
		}
		j = cJSON_ParseWithLength(head, headlen);
	} else {
		j = a->body ? cJSON_ParseWithLength(a->body, a->len) : NULL;
		/* Memory: the parsed copy is all we need from here on. */
		wipe_free(a->body, a->len);
		a->body = NULL;
	}
	hash = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "policy_hash"));
	if (!cJSON_IsObject(j))
		why = q->linked ? "its head is not a JSON object" : "not a JSON object";
	else if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "dataset")) ||
		 strcmp(cJSON_GetObjectItemCaseSensitive(j, "dataset")->valuestring, d->id) != 0)
		why = "it is for another dataset";
	else if (!hash || !*hash || strlen(hash) > POLICY_HASH_HEX)
		why = "it has no policy_hash";
	else if (q->linked)
		why = open_tokens(q, d, j, a, box, boxlen, err, sizeof(err));
	else
		why = check_counts(q, d, j, err, sizeof(err));
	if (q->linked) {
		/* Memory: the box goes as soon as it is opened. */
		wipe_free(a->body, a->len);
		a->body = NULL;
	}
	if (!why)
		snprintf(d->policy_hash, sizeof(d->policy_hash), "%s", hash);
	if (why || q->linked) {
		wipe_json(j);
		cJSON_Delete(j);
	} else {
		d->counts = j;
	}
	if (why)
		drop_answer(d);
	if (why && strcmp(why, "out of memory") == 0)
		return oom(q);
	if (why) {
		node_failure(q, d, NULL, why, first);
		return -1;
	}
	return 0;
}

static int fan_out(struct hub_query *q)
{
	struct gw_hub_subquery sq[GW_HUB_MAX_DATASETS] = { 0 };
	struct gw_hub_answer ans[GW_HUB_MAX_DATASETS] = { 0 };
	unsigned char id[16];
	unsigned ms = q->hub->node_timeout_ms ? q->hub->node_timeout_ms : GW_HUB_NODE_TIMEOUT_MS;
	int first = 1, rc = 0, pop_left = 0;

	for (size_t i = 0; i < q->nds; i++) {
		struct hub_ds *d = &q->ds[i];

		d->member = gw_members_by_id(q->hub->members, d->owner);
		if (!d->member || !d->member->endpoint || !*d->member->endpoint) {
			q->fail_node = d->owner;
			q->fail_dataset = d->id;
			return fail(q, 502, "no_node_endpoint", "member '%s' has no node endpoint in the members "
				    "file, so dataset %s cannot be asked", d->owner, d->id);
		}
	}
	randombytes_buf(id, sizeof(id));
	sodium_bin2hex(q->query_id, sizeof(q->query_id), id, sizeof(id));
	for (size_t i = 0; i < q->nds; i++) {
		sq[i].node = q->ds[i].owner;
		sq[i].endpoint = q->ds[i].member->endpoint;
		sq[i].body = subquery_json(q, &q->ds[i]);
		sq[i].len = sq[i].body ? strlen(sq[i].body) : 0;
		ans[i].node = q->ds[i].owner;
		if (!sq[i].body)
			rc = oom(q);
	}
	if (rc == 0 && q->hub->fanout(q->hub->fanout_arg, sq, q->nds, ans, ms) < 0)
		rc = fail(q, 503, "fanout_failed", "the hub could not send its subqueries");
	for (size_t i = 0; i < q->nds; i++)
		free(sq[i].body);
	for (size_t i = 0; rc == 0 && i < q->nds; i++)
		if (take_answer(q, &q->ds[i], &ans[i], &first) < 0 && q->status == 500)
			rc = -1;
	/* Answers hold sealed tokens or exact counts: wiped, whatever happened. */
	for (size_t i = 0; i < q->nds; i++)
		wipe_free(ans[i].body, ans[i].len);
	if (rc < 0)
		return -1;
	if (first)
		return 0;
	/* Some node failed. Partial only where every policy allows it, the
	 * question is linked, and some population is left to count. */
	for (size_t i = 0; i < q->nds; i++)
		pop_left |= q->ds[i].population && !q->ds[i].missing;
	if (!q->out.partial_ok || !q->linked || !pop_left)
		return -1;
	q->partial = 1;
	q->status = 0;
	q->code = NULL;
	q->fail_node = q->fail_dataset = NULL;
	/* Missing datasets: no persons, and null (absent) for everyone. */
	for (size_t i = 0; i < q->ndims; i++)
		if (!q->dim[i].cats)
			q->dim[i].size = (size_t)q->dim[i].has_null;
	return 0;
}

/* ---- 5. Count --------------------------------------------------------- */

static int make_table(struct hub_query *q)
{
	size_t cells = 1;

	for (size_t i = q->ndims; i-- > 0;) {
		struct hub_dim *d = &q->dim[i];

		if (!d->cats)
			d->size = (size_t)d->has_null;
		d->stride = cells;
		if (d->size == 0 || d->size > GW_HUB_MAX_CELLS || (cells *= d->size) > GW_HUB_MAX_CELLS)
			return fail(q, 422, "table_too_large", "the group-by categories give more than %d cells",
				    GW_HUB_MAX_CELLS);
	}
	q->ncells = cells;
	if (!(q->cells = calloc(cells, sizeof(*q->cells))))
		return oom(q);
	q->table.cells = q->cells;
	if (q->ndims == 2) {
		q->table.nrows = q->dim[0].size;
		q->table.ncols = q->dim[1].size;
	} else {
		q->table.nrows = 1;
		q->table.ncols = cells;
	}
	return 0;
}

static int count_cells(struct hub_query *q)
{
	const struct hub_ds *d = &q->ds[0];
	unsigned char *seen = calloc(q->ncells, 1);
	const cJSON *c;

	if (!seen)
		return oom(q);
	cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(d->counts, "cells")) {
		const cJSON *key = cJSON_GetObjectItemCaseSensitive(c, "key");
		size_t idx = 0;

		for (unsigned w = 0; w < d->nwire; w++) {
			const struct hub_dim *dim = &q->dim[d->wire_dim[w]];

			idx += (size_t)cat_index(dim, cJSON_GetStringValue(cJSON_GetArrayItem(key, (int)w))) *
			       dim->stride;
		}
		if (seen[idx]++) {
			free(seen);
			q->fail_node = d->owner;
			q->fail_dataset = d->id;
			return fail(q, 502, "node_garbage", "node %s answered garbage for %s: a cell is listed "
				    "twice", d->owner, d->id);
		}
		q->cells[idx].n = (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "persons"));
	}
	free(seen);
	return 0;
}

/*
 * One person, present (hi > lo) in some of the datasets: the cells it counts
 * in. Its combinations are the cross product of its records per dataset
 * that has group-by fields (one null record where it is absent), in wire
 * order; the first |cells_per_person| distinct cells count, once each.
 */
static void count_person(struct hub_query *q, const uint32_t *lo, const uint32_t *hi)
{
	size_t cells[GW_HUB_MAX_CELLS_PER_PERSON];
	size_t ncells = 0;
	size_t dss[GW_HUB_MAX_GROUP_BY], nd = 0;
	uint32_t pick[GW_HUB_MAX_GROUP_BY] = { 0 };

	for (size_t i = 0; i < q->nds; i++)
		if (q->ds[i].nwire > 0)
			dss[nd++] = i;
	for (;;) {
		size_t idx = 0;
		int dup = 0;
		size_t j;

		for (size_t k = 0; k < q->ndims; k++) {
			const struct hub_dim *dim = &q->dim[k];
			size_t c;

			if (dim->present_in) {
				c = hi[dim->ds] > lo[dim->ds];
			} else if (hi[dim->ds] > lo[dim->ds]) {
				const struct hub_ds *d = &q->ds[dim->ds];
				size_t p;
				uint16_t code;

				for (p = 0; dss[p] != dim->ds; p++)
					;
				code = d->tok.codes[(size_t)(lo[dim->ds] + pick[p]) * d->tok.nfields + dim->wire];
				c = code == WIRE_NULL ? dim->ncats : d->map[dim->wire][code];
			} else {
				c = dim->ncats; /* absent: null */
			}
			idx += c * dim->stride;
		}
		for (size_t k = 0; k < ncells; k++)
			dup |= cells[k] == idx;
		if (!dup) {
			cells[ncells++] = idx;
			q->cells[idx].n++;
			if (ncells == q->cells_per_person)
				return;
		}
		/* Next combination (the last dataset's record fastest). */
		for (j = nd; j-- > 0;) {
			uint32_t span = hi[dss[j]] - lo[dss[j]];

			if (++pick[j] < (span ? span : 1))
				break;
			pick[j] = 0;
		}
		if (j == (size_t)-1)
			return;
	}
}

/*
 * The join: every answer is sorted by token, so a k-way merge walks them
 * once, side by side, with no hash table and no copy: memory stays the
 * decoded answers (16 bytes plus 2 per field per record) and the table.
 */
static void join(struct hub_query *q)
{
	uint32_t pos[GW_HUB_MAX_DATASETS] = { 0 }, lo[GW_HUB_MAX_DATASETS], hi[GW_HUB_MAX_DATASETS];

	for (;;) {
		const unsigned char *min = NULL;
		int in_population = 0;

		for (size_t i = 0; i < q->nds; i++) {
			const struct hub_ds *d = &q->ds[i];
			const unsigned char *t;

			/* A missing or empty answer has no tokens (NULL): no
			 * pointer into it is formed, not even at offset 0. */
			if (pos[i] >= d->tok.nrecords)
				continue;
			t = d->tok.tokens + (size_t)pos[i] * WIRE_TOKEN_BYTES;
			if (!min || wire_token_less(t, min))
				min = t;
		}
		if (!min)
			return;
		for (size_t i = 0; i < q->nds; i++) {
			const struct hub_ds *d = &q->ds[i];

			lo[i] = pos[i];
			while (pos[i] < d->tok.nrecords &&
			       wire_token_equal(d->tok.tokens + (size_t)pos[i] * WIRE_TOKEN_BYTES, min))
				pos[i]++;
			hi[i] = pos[i];
			in_population |= d->population && hi[i] > lo[i];
		}
		/* Persons only in linked datasets are not in the population. */
		if (in_population)
			count_person(q, lo, hi);
	}
}

static int count(struct hub_query *q)
{
	if (make_table(q) < 0)
		return -1;
	if (!q->linked)
		return count_cells(q);
	join(q);
	return 0;
}

/* ---- 6. Disclosure control and the debit ------------------------------- */

static int disclose(struct hub_query *q)
{
	struct policy_output o = q->out;
	char err[256];

	if (o.max_cells_per_person == 0)
		o.max_cells_per_person = 1;
	if (o.round_to == 0)
		o.round_to = 1;
	if (agg_disclose(&q->table, &o, q->hub->rng, err, sizeof(err)) < 0)
		return fail(q, 500, "internal", "disclosure control failed: %s", err);
	for (size_t i = 0; i < q->ncells; i++)
		q->released += !(q->cells[i].flags & AGG_SUPPRESSED);
	return 0;
}

/*
 * The debit's intent, recorded before the debit (docs/ledger.md, "Where it
 * sits in a query"): who is about to spend what under which question. A
 * question whose intent cannot be written is refused with nothing spent; a
 * debit whose answer line later fails is still named by this line (same
 * query_id), so no budget is ever spent without a record of it.
 */
/* The datasets a debit charges (each the question's ε): for the intent and
 * the answer's audit lines. */
static cJSON *dataset_debits_json(const struct hub_query *q, int *ok)
{
	cJSON *a = cJSON_CreateArray();

	for (size_t i = 0; i < q->ncharges; i++)
		json_put_str(ok, a, NULL, q->charge[i].dataset);
	return a;
}

static int audit_intent(struct hub_query *q)
{
	cJSON *o;
	char mark[GW_IDENT_MARK_SIZE];
	int ok, rc = -1;

	if (!q->hub->audit)
		return fail(q, 503, "audit_unavailable", "the hub has no audit log, so nothing is answered "
			    "and no budget was spent");
	if ((o = cJSON_CreateObject())) {
		ok = 1;
		json_put_str(&ok, o, "operation", "budget_intent");
		json_put_str(&ok, o, "requester", q->caller->id);
		json_put_str(&ok, o, "purpose",
			     gw_ident_audit(q->purpose, GW_IDENT_MAX, GW_IDENT_NAME,
					    gw_ident_purpose_declared(q->hub->policies, q->purpose), mark));
		json_put_str(&ok, o, "query_id", q->query_id);
		json_put_num(&ok, o, "epsilon", q->out.epsilon);
		if (q->ncharges)
			json_put(&ok, o, "dataset_debits", dataset_debits_json(q, &ok));
		json_put_str(&ok, o, "decision", "permit");
		rc = ok ? audit_append(q->hub->audit, o, NULL) : -1;
		cJSON_Delete(o);
	}
	if (rc < 0)
		return fail(q, 503, "audit_unavailable", "the question could not be recorded before its "
			    "privacy budget was spent, so nothing is answered and no budget was spent");
	q->intent_written = 1;
	return 0;
}

static int debit(struct hub_query *q)
{
	char err[512];
	int rc;

	if (!q->budgeted)
		return 0;
	if (audit_intent(q) < 0)
		return -1;
	rc = ledger_debit_datasets(q->hub->ledger, q->caller->id, q->purpose, q->out.budget_per,
				   q->limit_micro, q->eps_micro, q->charge, q->ncharges, q->now,
				   &q->budget, &q->charge_failed, err, sizeof(err));
	if (rc == LEDGER_EXHAUSTED)
		return budget_fail(q);
	if (rc < 0)
		return fail(q, 503, "budget_unavailable", "%s; nothing is released", ledger_reason(rc));
	q->have_budget = 1;
	return 0;
}

/* ---- 7. Audit and answer --------------------------------------------- */

/* Where each dataset budget the question touched stands: after the debit
 * in an answer, before it in a 429. */
static cJSON *dataset_budgets_json(const struct hub_query *q, int *ok)
{
	char b[LEDGER_EPS_LEN], t[LEDGER_TIME_LEN];
	cJSON *a = cJSON_CreateArray();

	for (size_t i = 0; i < q->ncharges; i++) {
		const struct ledger_charge *c = &q->charge[i];
		cJSON *o = json_put(ok, a, NULL, cJSON_CreateObject());

		json_put_str(ok, o, "dataset", c->dataset);
		json_put(ok, o, "spent", cJSON_CreateRaw(ledger_format_eps(c->st.spent_micro, b)));
		json_put(ok, o, "remaining", cJSON_CreateRaw(ledger_format_eps(c->st.remaining_micro, b)));
		json_put(ok, o, "limit", cJSON_CreateRaw(ledger_format_eps(c->limit_micro, b)));
		json_put_str(ok, o, "per", policy_period_name(c->per));
		json_put_str(ok, o, "resets", ledger_format_time(c->st.reset, t));
	}
	return a;
}

static cJSON *budget_json(const struct hub_query *q, int with_need, int *ok)
{
	char b[LEDGER_EPS_LEN], t[LEDGER_TIME_LEN];
	cJSON *o = cJSON_CreateObject();

	/* Exact decimals ("0.05"), not a double's rendering of micro-ε. */
	if (with_need)
		json_put(ok, o, "needs", cJSON_CreateRaw(ledger_format_eps(q->eps_micro, b)));
	json_put(ok, o, "spent", cJSON_CreateRaw(ledger_format_eps(q->budget.spent_micro, b)));
	json_put(ok, o, "remaining", cJSON_CreateRaw(ledger_format_eps(q->budget.remaining_micro, b)));
	json_put(ok, o, "limit", cJSON_CreateRaw(ledger_format_eps(q->limit_micro, b)));
	json_put_str(ok, o, "per", policy_period_name(q->out.budget_per));
	json_put_str(ok, o, "resets", ledger_format_time(q->budget.reset, t));
	return o;
}

static cJSON *missing_json(const struct hub_query *q, int *ok)
{
	cJSON *a = cJSON_CreateArray();

	for (size_t i = 0; i < q->nds; i++) {
		int dup = 0;

		for (size_t j = 0; j < i; j++)
			dup |= q->ds[j].missing && strcmp(q->ds[j].owner, q->ds[i].owner) == 0;
		if (q->ds[i].missing && !dup)
			json_put_str(ok, a, NULL, q->ds[i].owner);
	}
	return a;
}

/* One line per question, whatever its outcome; 0, or -1 (answer 503). */
static int audit(struct hub_query *q, int64_t debit_id, char audit_id[33])
{
	cJSON *o = cJSON_CreateObject();
	int ok = o != NULL && q->hub->audit != NULL;
	cJSON *ds, *rules;
	int rc;

	char mark[GW_IDENT_MARK_SIZE];

	json_put_str(&ok, o, "operation", "aggregate");
	json_put_str(&ok, o, "requester", q->caller->id);
	/* The purpose as sent only when the policies declare it; anything else
	 * as a marker (gateway/ident.h). Datasets are here only once the
	 * catalog knew them. */
	if (q->purpose)
		json_put_str(&ok, o, "purpose",
			     gw_ident_audit(q->purpose, GW_IDENT_MAX, GW_IDENT_NAME,
					    gw_ident_purpose_declared(q->hub->policies, q->purpose), mark));
	json_put(&ok, o, "linked", cJSON_CreateBool(q->linked));
	ds = json_put(&ok, o, "datasets", cJSON_CreateArray());
	rules = json_put(&ok, o, "rules", cJSON_CreateArray());
	for (size_t i = 0; i < q->nds; i++) {
		json_put_str(&ok, ds, NULL, q->ds[i].id);
		if (q->ds[i].dec.rule[0])
			json_put_str(&ok, rules, NULL, q->ds[i].dec.rule);
	}
	if (q->query_id[0])
		json_put_str(&ok, o, "query_id", q->query_id);
	json_put_str(&ok, o, "decision", q->permitted ? "permit" : "deny");
	if (q->fail_dec) {
		json_put_str(&ok, o, "reason", policy_reason_name(q->fail_dec->reason));
		if (q->fail_dec->nearest[0])
			json_put_str(&ok, o, "nearest_rule", q->fail_dec->nearest);
	}
	json_put_str(&ok, o, "policy_hash", policy_set_hash(q->hub->policies));
	if (q->permitted && q->out.noise)
		json_put_num(&ok, o, "epsilon", q->out.epsilon);
	if (q->status == 200) {
		json_put_num(&ok, o, "cells", (double)q->released);
		if (q->partial)
			json_put(&ok, o, "missing_nodes", missing_json(q, &ok));
	}
	if (debit_id)
		json_put_num(&ok, o, "budget_debit", (double)debit_id);
	if (debit_id && q->ncharges)
		json_put(&ok, o, "dataset_debits", dataset_debits_json(q, &ok));
	if (q->fail_node)
		json_put_str(&ok, o, "node", q->fail_node);
	json_put_str(&ok, o, "outcome", q->status == 200 ? "answered" : q->code);
	json_put_num(&ok, o, "status", q->status);
	rc = ok ? audit_append(q->hub->audit, o, audit_id) : -1;
	cJSON_Delete(o);
	return rc < 0 ? -1 : 0;
}

static char *error_json(const struct hub_query *q)
{
	cJSON *o = cJSON_CreateObject();
	int ok = o != NULL;
	cJSON *e = json_put(&ok, o, "error", cJSON_CreateObject());

	json_put_str(&ok, e, "code", q->code);
	json_put_str(&ok, e, "message", q->message);
	if (q->fail_dataset)
		json_put_str(&ok, e, "dataset", q->fail_dataset);
	if (q->fail_dec) {
		json_put_str(&ok, e, "rule", q->fail_dec->rule);
		if (q->fail_dec->nearest[0])
			json_put_str(&ok, e, "nearest_rule", q->fail_dec->nearest);
		if (q->fail_dec->missing[0])
			json_put_str(&ok, e, "missing", q->fail_dec->missing);
	}
	if (q->fail_node)
		json_put_str(&ok, e, "node", q->fail_node);
	/* Past the budget check a refusal says whether budget was spent, so a
	 * coordinator knows whether asking again is charged again. */
	if (q->budgeted)
		json_put(&ok, e, "budget_spent", cJSON_CreateBool(q->budget.debit_id != 0));
	if (q->node_code[0] || q->node_message[0]) {
		cJSON *n = json_put(&ok, e, "node_error", cJSON_CreateObject());

		json_put_str(&ok, n, "code", q->node_code);
		json_put_str(&ok, n, "message", q->node_message);
	}
	if (q->budget_error) {
		json_put(&ok, o, "budget", q->purpose_budget ? budget_json(q, 1, &ok) : cJSON_CreateNull());
		if (q->ncharges)
			json_put(&ok, o, "dataset_budgets", dataset_budgets_json(q, &ok));
	}
	return print_json(ok, o);
}

static cJSON *cell_key(const struct hub_query *q, size_t idx, int *ok)
{
	cJSON *key = cJSON_CreateArray();

	for (size_t k = 0; k < q->ndims; k++) {
		const struct hub_dim *d = &q->dim[k];
		size_t c = idx / d->stride % d->size;

		json_put(ok, key, NULL, c < d->ncats ? cJSON_CreateString(d->cats[c]) : cJSON_CreateNull());
	}
	return key;
}

/* |margin|: the 95% half-width of a cell's noise, or -1 (the total: a sum
 * of noisy cells, whose interval is wider and not given). */
static void put_count(int *ok, cJSON *o, const struct agg_cell *c, double margin)
{
	if (c->flags & AGG_SUPPRESSED) {
		json_put(ok, o, "suppressed", cJSON_CreateTrue());
		return;
	}
	json_put_num(ok, o, "persons", (double)c->value);
	json_put(ok, o, "noisy", cJSON_CreateBool((c->flags & AGG_NOISY) != 0));
	if (margin >= 0)
		json_put_num(ok, o, "margin_95", margin);
}

/* The answer of docs/federation.md, built whole before the audit line is
 * written: |AUDIT_ID_SLOT| stands where the audit id goes, so nothing can
 * fail between recording the answer and releasing it. */
#define AUDIT_ID_SLOT "________________________________"

static char *answer_json(const struct hub_query *q)
{
	cJSON *o = cJSON_CreateObject();
	int ok = o != NULL;
	cJSON *group, *cells, *disc, *hashes;

	json_put_str(&ok, o, "purpose", q->purpose);
	group = json_put(&ok, o, "group_by", cJSON_CreateArray());
	for (size_t k = 0; k < q->ndims; k++)
		json_put_str(&ok, group, NULL, q->dim[k].text);
	cells = json_put(&ok, o, "cells", cJSON_CreateArray());
	for (size_t i = 0; i < q->ncells && ok; i++) {
		cJSON *c = json_put(&ok, cells, NULL, cJSON_CreateObject());

		json_put(&ok, c, "key", cell_key(q, i, &ok));
		put_count(&ok, c, &q->cells[i], (double)q->table.halfwidth);
	}
	put_count(&ok, json_put(&ok, o, "total", cJSON_CreateObject()), &q->table.total, -1);
	disc = json_put(&ok, o, "disclosure", cJSON_CreateObject());
	json_put_num(&ok, disc, "min_cell", q->out.min_cell);
	json_put_str(&ok, disc, "noise", q->out.noise ? "discrete_laplace" : "none");
	json_put(&ok, disc, "epsilon", q->out.noise ? cJSON_CreateNumber(q->out.epsilon) : cJSON_CreateNull());
	json_put_num(&ok, disc, "round_to", q->out.round_to ? q->out.round_to : 1);
	json_put_num(&ok, disc, "max_cells_per_person", q->cells_per_person);
	json_put_num(&ok, disc, "margin_95", (double)q->table.halfwidth);
	json_put(&ok, o, "budget", q->purpose_budget ? budget_json(q, 0, &ok) : cJSON_CreateNull());
	if (q->ncharges)
		json_put(&ok, o, "dataset_budgets", dataset_budgets_json(q, &ok));
	json_put(&ok, o, "partial", cJSON_CreateBool(q->partial));
	json_put(&ok, o, "missing_nodes", missing_json(q, &ok));
	hashes = json_put(&ok, o, "policy_hashes", cJSON_CreateObject());
	json_put_str(&ok, hashes, "hub", policy_set_hash(q->hub->policies));
	for (size_t i = 0; i < q->nds; i++)
		if (q->ds[i].policy_hash[0] && !cJSON_GetObjectItemCaseSensitive(hashes, q->ds[i].owner))
			json_put_str(&ok, hashes, q->ds[i].owner, q->ds[i].policy_hash);
	json_put_str(&ok, o, "audit_id", AUDIT_ID_SLOT);
	return print_json(ok, o);
}

static void set_body(struct gw_response *resp, int status, char *text)
{
	free(resp->body);
	resp->status = status;
	resp->body = text;
	resp->len = strlen(text);
	resp->content_type = "application/json";
}

/* ---- The engine -------------------------------------------------------- */

static void query_free(struct hub_query *q)
{
	if (!q)
		return;
	for (size_t i = 0; i < q->nds; i++) {
		struct hub_ds *d = &q->ds[i];

		wire_tokens_free(&d->tok);
		for (unsigned w = 0; w < GW_HUB_MAX_GROUP_BY; w++)
			free(d->map[w]);
		wipe_json(d->counts);
		cJSON_Delete(d->counts);
	}
	for (size_t i = 0; i < q->ndims; i++) {
		for (size_t k = 0; k < q->dim[i].nkeys; k++)
			free(q->dim[i].keys[k]);
		free(q->dim[i].keys);
	}
	for (size_t i = 0; i < q->nfilt; i++) {
		for (size_t j = 0; j < q->filt[i].nvalues; j++)
			free(q->filt[i].values[j]);
		free(q->filt[i].values);
	}
	if (q->cells) {
		sodium_memzero(q->cells, q->ncells * sizeof(*q->cells));
		free(q->cells);
	}
	sodium_memzero(&q->table, sizeof(q->table));
	free(q);
}

/* A refusal counts against the requester's refusals (audit_refusal_admit).
 * 1 when it may be recorded; 0 when |resp| holds the answer (429 past the
 * limit), -1 when the summary line could not be written (|resp|: 503). */
/* A refusal's error body; |budgeted| adds "budget_spent": false (a question
 * with a budget says whether it was charged; nothing was, here). The
 * messages are fixed text, so no escaping is needed. */
static void refusal_error(struct gw_response *resp, int status, const char *code, const char *message,
			  int budgeted)
{
	char *text = NULL;

	if (!budgeted || asprintf(&text, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\","
					 "\"budget_spent\":false}}", code, message) < 0)
		gw_error(resp, status, code, message);
	else
		set_body(resp, status, text);
}

static int refusal_admitted(struct audit_log *log, const struct gw_member *caller, int budgeted,
			    struct gw_response *resp)
{
	int rc = audit_refusal_admit(log, caller ? caller->id : "");

	if (rc == 0)
		return 1;
	if (rc < 0) {
		refusal_error(resp, 503, "audit_unavailable",
			      "the decision could not be recorded, so nothing is answered", budgeted);
		return -1;
	}
	refusal_error(resp, 429, "too_many_refusals",
		      "too many refused requests from this member; they are no longer recorded one by one. "
		      "Retry later", budgeted);
	if (resp->status == 429)
		resp->retry_after = (unsigned)rc;
	return 0;
}

/* A member without the coordinator role asked: refused, and recorded like
 * every other decision (the node does the same for not_a_hub). What cannot
 * be recorded is still refused, as 503. */
static int refuse_non_coordinator(const struct gw_hub *hub, const struct gw_member *caller,
				  const cJSON *question, struct gw_response *resp)
{
	const char *purpose = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(question, "purpose"));
	cJSON *o;
	char audit_id[33], mark[GW_IDENT_MARK_SIZE];
	int ok, rc = -1;

	if (hub && hub->audit && (rc = refusal_admitted(hub->audit, caller, 0, resp)) <= 0)
		return 0;
	rc = -1;
	if (hub && hub->audit && (o = cJSON_CreateObject())) {
		ok = 1;
		json_put_str(&ok, o, "operation", "aggregate");
		json_put_str(&ok, o, "requester", caller ? caller->id : "");
		/* what the caller said it wanted, when it is a declared purpose */
		if (purpose)
			json_put_str(&ok, o, "purpose",
				     gw_ident_audit(purpose, GW_IDENT_MAX, GW_IDENT_NAME,
						    gw_ident_purpose_declared(hub->policies, purpose), mark));
		json_put_str(&ok, o, "decision", "deny");
		json_put_str(&ok, o, "outcome", "not_a_coordinator");
		json_put_num(&ok, o, "status", 403);
		rc = ok ? audit_append(hub->audit, o, audit_id) : -1;
		cJSON_Delete(o);
	}
	if (rc < 0 && hub && hub->policies)
		return gw_error(resp, 503, "audit_unavailable",
				"the decision could not be recorded, so nothing is answered");
	return gw_error(resp, 403, "not_a_coordinator", "only members with the coordinator role "
			"may ask aggregate questions");
}

int gw_hub_aggregate(const struct gw_hub *hub, const struct gw_member *caller, const cJSON *question,
		     struct gw_response *resp)
{
	struct hub_query *q;
	char audit_id[33] = "";
	char *text;
	int rc;

	if (!caller || !(caller->roles & GW_ROLE_COORDINATOR))
		return refuse_non_coordinator(hub, caller, question, resp);
	if (!hub || !hub->policies || !hub->catalog || !hub->members || !hub->fanout || !hub->box_pk ||
	    !hub->box_sk)
		return gw_error(resp, 501, "not_implemented", "this gateway has no hub role");
	if (sodium_init() < 0 || !(q = calloc(1, sizeof(*q))))
		return gw_error(resp, 500, "internal", "out of memory");
	q->hub = hub;
	q->caller = caller;
	q->charge_failed = SIZE_MAX;
	q->now = hub->now ? hub->now() : (int64_t)time(NULL);

	rc = parse_question(q, question);
	if (rc == 0)
		rc = decide(q);
	if (rc == 0)
		rc = budget_check(q);
	if (rc == 0)
		rc = fixed_categories(q);
	if (rc == 0)
		rc = fan_out(q);
	if (rc == 0)
		rc = count(q);
	if (rc == 0)
		rc = disclose(q);
	if (rc == 0)
		rc = debit(q);
	if (rc == 0)
		q->status = 200;

	/* The body first, then the audit line, then nothing that can fail:
	 * what cannot be recorded is not answered. */
	text = rc == 0 ? answer_json(q) : error_json(q);
	if (!text) {
		rc = oom(q);
		text = error_json(q);
	}
	/* A refusal (4xx but 404, nothing debited) counts against the
	 * requester's refusals; past the limit it is answered 429 without a
	 * line of its own. */
	if (q->status >= 400 && q->status <= 499 && q->status != 404 && !q->budget.debit_id &&
	    hub->audit && refusal_admitted(hub->audit, caller, q->budgeted, resp) <= 0) {
		free(text);
		query_free(q);
		return 0;
	}
	/* A debit that paid for nothing released is still recorded with its id. */
	if (audit(q, q->budget.debit_id, audit_id) < 0) {
		free(text);
		/* Withheld. A debit taken is named by its intent line; the
		 * refusal says it was spent, so the coordinator does not ask
		 * again blindly (and pay again). */
		if (q->budget.debit_id) {
			char b[LEDGER_EPS_LEN];

			fail(q, 503, "audit_unavailable", "the answer could not be recorded, so it is withheld; "
			     "its privacy budget (epsilon %s) WAS spent: asking again is charged again",
			     ledger_format_eps(q->eps_micro, b));
		} else {
			fail(q, 503, "audit_unavailable", "the decision could not be recorded, so nothing is "
			     "answered%s", q->budgeted ? " and no budget was spent" : "");
		}
		q->budget_error = 0;
		q->fail_dec = NULL;
		q->fail_node = NULL;
		q->fail_dataset = NULL;
		q->node_code[0] = q->node_message[0] = '\0';
		text = error_json(q);
		if (text) {
			set_body(resp, 503, text);
			rc = 0;
		} else {
			rc = gw_error(resp, 503, "audit_unavailable",
				      "the decision could not be recorded, so nothing is answered");
		}
	} else if (!text) {
		rc = gw_error(resp, 500, "internal", "out of memory");
	} else {
		/* The slot is the last member's value: {..."audit_id":"<32>"} */
		if (q->status == 200)
			memcpy(text + strlen(text) - 2 - 32, audit_id, 32);
		set_body(resp, q->status, text);
		if (q->status == 429) {
			int64_t reset = q->charge_failed < q->ncharges ? q->charge[q->charge_failed].st.reset
								      : q->budget.reset;

			if (reset > q->now)
				resp->retry_after = reset - q->now > UINT_MAX ? UINT_MAX
									 : (unsigned)(reset - q->now);
		}
		rc = 0;
	}
	query_free(q);
	return rc;
}
