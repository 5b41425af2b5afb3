/*
 * The node: datasets, master key, and the purpose-bound lookup. The lookup
 * reads like the rule it enforces: rate limit, validate, decide, fetch,
 * audit, answer. Nothing is answered that was not decided and recorded.
 */
#include "node.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../adapters/adapter.h"
#include "../crypto/pseudo.h"
#include "../policies/policy.h"
#include "audit.h"
#include "config.h"
#include "members.h"
#include "routes.h"

#define MAX_LOOKUP_FIELDS 32
#define MAX_LOOKUP_RECORDS 100 /* rows about one person in one dataset */
#define MAX_BUCKETS 64

struct node_dataset {
	const char *id;                     /* borrowed from the config */
	struct adapter_source src;
	struct adapter_field *fields;
	size_t nfields;
	int bsn_field;                      /* index of the identifier field */
};

struct gw_node {
	const struct gw_config *cfg;
	/* The node's own copy: its schemas point into it, and the state's
	 * catalog may be replaced by a reload at any time. */
	struct policy_catalog *catalog;
	const char **ids; /* dataset ids, for the catalog */
	struct pseudo_master *master;
	struct pseudo_key *audit_key;
	struct node_dataset *ds;
	size_t nds;
	double rate_per_ms; /* tokens per millisecond */
	double burst;
	struct limiter *limiter; /* written by every worker: the one mutable part */
};

struct bucket {
	char oin[GW_OIN_LEN + 1];
	double tokens;
	uint64_t last_ms;
};

/* One limiter for the whole node, so a requester gets its rate and burst
 * whichever worker its connections land on. Lookups are few and already
 * serialised on the audit log; the lock is held for a few instructions. */
struct limiter {
	pthread_mutex_t lock;
	struct bucket b[MAX_BUCKETS];
	size_t n;
};

struct gw_node_worker {
	const struct gw_node *node;
	struct adapter **adapters; /* parallel to node->ds */
};

/* ---- opening ---- */

static enum adapter_type adapter_type_of(enum policy_field_type t)
{
	switch (t) {
	case POLICY_T_BSN: return ADAPTER_BSN;
	case POLICY_T_CATEGORY: return ADAPTER_CATEGORY;
	case POLICY_T_INT: return ADAPTER_INT;
	case POLICY_T_DATE: return ADAPTER_DATE;
	case POLICY_T_BOOL: return ADAPTER_BOOL;
	default: return ADAPTER_STRING;
	}
}

static int dataset_open(const struct gw_dataset_cfg *c, const struct policy_catalog *cat,
			struct node_dataset *d, char *err, size_t errlen)
{
	const struct policy_catalog_field *f;
	int n = policy_catalog_fields(cat, c->id, &f);

	if (n <= 0) {
		snprintf(err, errlen, "node.datasets: '%s' is not in the catalog", c->id);
		return -1;
	}
	d->id = c->id;
	d->src.kind = c->sqlite ? ADAPTER_SQLITE : ADAPTER_CSV;
	d->src.path = c->path;
	d->src.on_bad_row = c->skip_bad_rows ? ADAPTER_BAD_ROW_SKIP : ADAPTER_BAD_ROW_FAIL;
	d->src.headerless = c->sqlite ? 0 : c->headerless;
	d->src.delimiter = c->sqlite ? 0 : c->delimiter;
	d->src.table = c->table;
	d->src.query = c->query;
	d->fields = calloc((size_t)n, sizeof(*d->fields));
	if (!d->fields) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	d->nfields = (size_t)n;
	d->bsn_field = -1;
	for (int i = 0; i < n; i++) {
		d->fields[i].name = f[i].name;
		d->fields[i].type = adapter_type_of(f[i].type);
		/* Only the identifier must be there: an empty end date is a
		 * benefit still running, not a bad row. */
		d->fields[i].nullable = f[i].role != POLICY_ROLE_IDENTIFIER;
		d->fields[i].categories = f[i].categories;
		d->fields[i].ncategories = f[i].ncategories;
		if (f[i].type == POLICY_T_BSN && d->bsn_field < 0)
			d->bsn_field = i;
	}
	if (d->bsn_field < 0) {
		snprintf(err, errlen, "node.datasets: '%s' has no bsn field to look persons up by", c->id);
		return -1;
	}
	return 0;
}

static int ignore_row(void *arg, const struct adapter_value *v, size_t n)
{
	(void)arg, (void)v, (void)n;
	return 0;
}

/*
 * Reads every row of |d| once at start, as the load: with on_bad_row: fail
 * a bad row refuses the start, with skip each is reported and counted. A
 * SQLite source without an index on bsn is worth a warning: every lookup
 * would read the whole table.
 */
static int dataset_check(const struct node_dataset *d, struct diag *diag)
{
	struct adapter_schema schema = { d->fields, d->nfields };
	struct adapter_stats st = { 0 };
	struct adapter *a;
	char err[400];
	int indexed = 1, rc;

	if (adapter_open(&d->src, &schema, &a, err, sizeof(err)) < 0) {
		diag_error(diag, d->src.path, 0, 0, "dataset %s: %s", d->id, err);
		return -1;
	}
	rc = adapter_scan(a, NULL, 0, NULL, 0, ignore_row, NULL, &st, diag);
	if (rc == 0 && st.rows_bad_skipped)
		diag_warn(diag, d->src.path, 0, 0, "dataset %s: %llu of %llu rows skipped as bad "
			  "(on_bad_row: skip); lookups of those persons answer 404", d->id,
			  (unsigned long long)st.rows_bad_skipped, (unsigned long long)st.rows_read);
	if (rc == 0 && d->src.kind == ADAPTER_SQLITE &&
	    adapter_field_indexed(a, (unsigned)d->bsn_field, &indexed, err, sizeof(err)) == 0 && !indexed)
		diag_warn(diag, d->src.path, 0, 0, "dataset %s: no index on '%s': every lookup "
			  "reads the whole table (CREATE INDEX ... ON ...(%s))", d->id,
			  d->fields[d->bsn_field].name, d->fields[d->bsn_field].name);
	adapter_close(a);
	if (rc < 0 && !diag->errors)
		diag_error(diag, d->src.path, 0, 0, "dataset %s cannot be read", d->id);
	return rc < 0 ? -1 : 0;
}

int gw_node_open(const struct gw_config *cfg, struct gw_node **out, struct diag *d)
{
	struct gw_node *n = calloc(1, sizeof(*n));
	char err[512];

	*out = NULL;
	if (!n || !(n->limiter = calloc(1, sizeof(*n->limiter)))) {
		free(n);
		diag_error(d, cfg->path, 0, 0, "out of memory");
		return -1;
	}
	pthread_mutex_init(&n->limiter->lock, NULL);
	n->cfg = cfg;
	if (!cfg->catalog_file) {
		diag_error(d, cfg->path, 0, 0, "a node needs a catalog");
		goto fail;
	}
	if (policy_catalog_load(cfg->catalog_file, &n->catalog, d) < 0)
		goto fail;
	if (pseudo_master_load(cfg->node.master_key, &n->master, err, sizeof(err)) < 0) {
		diag_error(d, cfg->node.master_key, 0, 0, "node.master_key: %s", err);
		goto fail;
	}
	if (pseudo_key_audit(n->master, &n->audit_key) < 0) {
		diag_error(d, cfg->node.master_key, 0, 0, "cannot derive the audit key");
		goto fail;
	}
	n->ds = calloc((size_t)cfg->node.ndatasets + 1, sizeof(*n->ds));
	n->ids = calloc((size_t)cfg->node.ndatasets + 1, sizeof(*n->ids));
	if (!n->ds || !n->ids) {
		diag_error(d, cfg->path, 0, 0, "out of memory");
		goto fail;
	}
	for (int i = 0; i < cfg->node.ndatasets; i++) {
		n->nds = (size_t)i + 1; /* so gw_node_free() frees what this one allocates */
		if (dataset_open(&cfg->node.datasets[i], n->catalog, &n->ds[i], err, sizeof(err)) < 0) {
			diag_error(d, cfg->path, 0, 0, "%s", err);
			goto fail;
		}
		n->ids[i] = n->ds[i].id;
		if (dataset_check(&n->ds[i], d) < 0)
			goto fail;
	}
	n->rate_per_ms = (double)cfg->node.lookups_per_minute / 60000.0;
	n->burst = cfg->node.lookup_burst;
	*out = n;
	return 0;
fail:
	gw_node_free(n);
	return -1;
}

void gw_node_free(struct gw_node *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->nds; i++)
		free(n->ds[i].fields);
	free(n->ds);
	free(n->ids);
	pseudo_key_free(n->audit_key);
	pseudo_master_free(n->master);
	policy_catalog_free(n->catalog);
	if (n->limiter)
		pthread_mutex_destroy(&n->limiter->lock);
	free(n->limiter);
	free(n);
}

int gw_node_worker_open(const struct gw_node *n, struct gw_node_worker **out,
			char *err, size_t errlen)
{
	struct gw_node_worker *w = calloc(1, sizeof(*w));

	*out = NULL;
	if (!w || !(w->adapters = calloc(n->nds + 1, sizeof(*w->adapters)))) {
		free(w);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	w->node = n;
	for (size_t i = 0; i < n->nds; i++) {
		struct adapter_schema schema = { n->ds[i].fields, n->ds[i].nfields };
		char why[400];

		if (adapter_open(&n->ds[i].src, &schema, &w->adapters[i], why, sizeof(why)) < 0) {
			snprintf(err, errlen, "dataset %s: %s", n->ds[i].id, why);
			gw_node_worker_free(w);
			return -1;
		}
	}
	*out = w;
	return 0;
}

void gw_node_worker_free(struct gw_node_worker *w)
{
	if (!w)
		return;
	for (size_t i = 0; w->adapters && i < w->node->nds; i++)
		adapter_close(w->adapters[i]);
	free(w->adapters);
	free(w);
}

size_t gw_node_datasets(const struct gw_node_worker *w, const char *const **ids)
{
	*ids = w->node->ids;
	return w->node->nds;
}

/* ---- the lookup ---- */

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Token bucket per requester; returns 0, or the seconds to wait. */
static unsigned rate_limit(const struct gw_node *n, const char *oin)
{
	struct limiter *lim = n->limiter;
	uint64_t now = wall_ms();
	struct bucket *b = NULL;
	unsigned wait = 0;

	if (n->cfg->node.lookups_per_minute == 0)
		return 0;
	pthread_mutex_lock(&lim->lock);
	for (size_t i = 0; i < lim->n && !b; i++)
		if (strcmp(lim->b[i].oin, oin) == 0)
			b = &lim->b[i];
	if (!b) {
		/* Members are a few dozen; past the table, the longest idle
		 * bucket (which has refilled the most) is reused. */
		size_t i = lim->n < MAX_BUCKETS ? lim->n++ : 0;
		for (size_t j = 1; lim->n == MAX_BUCKETS && j < MAX_BUCKETS; j++)
			if (lim->b[j].last_ms < lim->b[i].last_ms)
				i = j;
		b = &lim->b[i];
		snprintf(b->oin, sizeof(b->oin), "%s", oin);
		b->tokens = n->burst;
		b->last_ms = now;
	}
	b->tokens += (double)(now - b->last_ms) * n->rate_per_ms;
	if (b->tokens > n->burst)
		b->tokens = n->burst;
	b->last_ms = now;
	if (b->tokens >= 1)
		b->tokens -= 1;
	else
		wait = (unsigned)((1 - b->tokens) / n->rate_per_ms / 1000.0) + 1;
	pthread_mutex_unlock(&lim->lock);
	return wait;
}

struct lookup {
	const char *purpose;
	const char *dataset;
	const cJSON *bsn_json;
	uint32_t bsn;
	int bsn_error;
	int bsn_valid; /* parsed and passed the elfproef */
	const char *fields[MAX_LOOKUP_FIELDS];
	size_t nfields;
	enum policy_ident identifiers;
};

/* Reads the body; NULL, or what is wrong with it (for a 400). */
static const char *parse_body(const cJSON *body, struct lookup *l)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "purpose");
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(body, "dataset");
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(body, "subject");
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(body, "fields");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(body, "identifiers");
	const cJSON *it;

	if (!cJSON_IsString(p) || !*p->valuestring)
		return "'purpose' must be a purpose id";
	if (!cJSON_IsString(d) || !*d->valuestring)
		return "'dataset' must be a dataset id";
	if (!cJSON_IsObject(s) || !cJSON_IsString(l->bsn_json = cJSON_GetObjectItemCaseSensitive(s, "bsn")))
		return "'subject' must be {\"bsn\": \"...\"}";
	if (!cJSON_IsArray(f) || cJSON_GetArraySize(f) == 0)
		return "'fields' must be a non-empty list of field names";
	cJSON_ArrayForEach(it, f) {
		if (!cJSON_IsString(it) || !*it->valuestring)
			return "'fields' must hold field names";
		if (l->nfields == MAX_LOOKUP_FIELDS)
			return "'fields' names more than 32 fields";
		for (size_t i = 0; i < l->nfields; i++)
			if (strcmp(l->fields[i], it->valuestring) == 0)
				return "'fields' names a field twice";
		l->fields[l->nfields++] = it->valuestring;
	}
	l->identifiers = POLICY_IDENT_PSEUDONYM;
	if (id && (!cJSON_IsString(id) ||
		   (strcmp(id->valuestring, "none") != 0 &&
		    policy_ident_parse(id->valuestring, &l->identifiers) < 0)))
		return "'identifiers' must be none, pseudonym or bsn";
	if (id && strcmp(id->valuestring, "none") == 0)
		l->identifiers = POLICY_IDENT_NEVER;
	l->purpose = p->valuestring;
	l->dataset = d->valuestring;
	l->bsn_error = bsn_parse(l->bsn_json->valuestring, strlen(l->bsn_json->valuestring), &l->bsn);
	l->bsn_valid = l->bsn_error == BSN_OK;
	return NULL;
}

/* Formats |v| as JSON under the generalisation |g|; NULL when |g| does not
 * apply to the value's type (the caller answers 501). */
static cJSON *generalise(const struct adapter_field *f, const struct adapter_value *v,
			 enum policy_gen g, int32_t today)
{
	char buf[32];
	int y, m, d;

	if (v->null)
		return cJSON_CreateNull();
	switch (f->type) {
	case ADAPTER_CATEGORY:
		return g <= POLICY_GEN_EXACT ? cJSON_CreateString(f->categories[v->category]) : NULL;
	case ADAPTER_INT:
		return g <= POLICY_GEN_EXACT ? cJSON_CreateNumber((double)v->i) : NULL;
	case ADAPTER_BOOL:
		return g <= POLICY_GEN_EXACT ? cJSON_CreateBool(v->b) : NULL;
	case ADAPTER_STRING:
		if (g <= POLICY_GEN_EXACT) {
			cJSON *s;
			char *copy = strndup(v->str.ptr, v->str.len);
			if (!copy)
				return NULL;
			s = cJSON_CreateString(copy);
			free(copy);
			return s;
		}
		if (g == POLICY_GEN_POSTCODE4 && v->str.len >= 4) {
			snprintf(buf, sizeof(buf), "%.4s", v->str.ptr);
			return cJSON_CreateString(buf);
		}
		return NULL;
	case ADAPTER_DATE:
		adapter_date_format(v->date, buf);
		if (sscanf(buf, "%d-%d-%d", &y, &m, &d) != 3)
			return NULL;
		switch (g) {
		case POLICY_GEN_NONE:
		case POLICY_GEN_EXACT:
			return cJSON_CreateString(buf);
		case POLICY_GEN_MONTH:
			buf[7] = '\0';
			return cJSON_CreateString(buf);
		case POLICY_GEN_QUARTER:
			snprintf(buf, sizeof(buf), "%04d-Q%d", y, (m - 1) / 3 + 1);
			return cJSON_CreateString(buf);
		case POLICY_GEN_YEAR:
		case POLICY_GEN_BIRTH_YEAR:
			return cJSON_CreateNumber(y);
		case POLICY_GEN_AGE_BAND_5:
		case POLICY_GEN_AGE_BAND_10:
		case POLICY_GEN_AGE_BAND_20: {
			char t[11];
			int ty, tm, td, age, band;

			adapter_date_format(today, t);
			if (sscanf(t, "%d-%d-%d", &ty, &tm, &td) != 3)
				return NULL;
			age = ty - y - (tm < m || (tm == m && td < d));
			band = g == POLICY_GEN_AGE_BAND_5 ? 5 : g == POLICY_GEN_AGE_BAND_10 ? 10 : 20;
			if (age < 0)
				age = 0;
			snprintf(buf, sizeof(buf), "%d-%d", age / band * band, age / band * band + band - 1);
			return cJSON_CreateString(buf);
		}
		default:
			return NULL;
		}
	default:
		return NULL;
	}
}

struct fetch {
	const struct node_dataset *ds;
	const unsigned *proj;
	const enum policy_gen *gens;
	const char *const *names;
	size_t nproj;
	int32_t today;
	cJSON *records;
	size_t nrecords;
	int unsupported; /* a generalisation this node cannot apply */
	int oom;
};

static int on_row(void *arg, const struct adapter_value *values, size_t n)
{
	struct fetch *f = arg;
	cJSON *rec;

	if (f->nrecords == MAX_LOOKUP_RECORDS)
		return 1;
	rec = cJSON_CreateObject();
	if (!rec || !cJSON_AddItemToArray(f->records, rec)) {
		cJSON_Delete(rec);
		f->oom = 1;
		return -1;
	}
	for (size_t i = 0; i < n && i < f->nproj; i++) {
		cJSON *v = generalise(&f->ds->fields[f->proj[i]], &values[i], f->gens[i], f->today);
		if (!v) {
			f->unsupported = 1;
			return -1;
		}
		cJSON_AddItemToObject(rec, f->names[i], v);
	}
	f->nrecords++;
	return 0;
}

static int32_t today_days(void)
{
	return (int32_t)(time(NULL) / 86400);
}

/* Writes the audit line for this lookup; 0, or -1 (the caller answers 503). */
static int audit(const struct gw_env *env, const struct gw_member *caller, const struct lookup *l,
		 const struct policy_decision *dec, const char *outcome, int status,
		 size_t records, char audit_id[33])
{
	const struct gw_node *n = env->node_worker->node;
	unsigned char tok[PSEUDO_TOKEN_BYTES];
	char subject[2 * PSEUDO_TOKEN_BYTES + 1];
	cJSON *o = cJSON_CreateObject();
	cJSON *fields = cJSON_CreateArray();
	int rc = -1;

	if (!o || !fields) {
		cJSON_Delete(o);
		cJSON_Delete(fields);
		return -1;
	}
	cJSON_AddStringToObject(o, "operation", "lookup");
	cJSON_AddStringToObject(o, "requester", caller->id);
	if (l->purpose)
		cJSON_AddStringToObject(o, "purpose", l->purpose);
	if (l->dataset)
		cJSON_AddItemToObject(o, "datasets", cJSON_CreateStringArray(&l->dataset, 1));
	for (size_t i = 0; i < l->nfields; i++)
		cJSON_AddItemToArray(fields, cJSON_CreateString(l->fields[i]));
	cJSON_AddItemToObject(o, "fields", fields);
	/* The person only as the keyed audit pseudonym, so "who looked at
	 * my data?" can be answered without the log holding a BSN. */
	if (l->bsn_valid) {
		pseudo_token(n->audit_key, l->bsn, tok);
		pseudo_hex(tok, sizeof(tok), subject);
		cJSON_AddStringToObject(o, "subject", subject);
	}
	cJSON_AddStringToObject(o, "decision", dec && dec->permit ? "permit" : "deny");
	if (dec) {
		cJSON_AddStringToObject(o, "rule", dec->rule);
		cJSON_AddStringToObject(o, "reason", policy_reason_name(dec->reason));
		if (!dec->permit && dec->nearest[0])
			cJSON_AddStringToObject(o, "nearest_rule", dec->nearest);
		cJSON_AddStringToObject(o, "policy_hash", dec->policy_hash);
	}
	cJSON_AddStringToObject(o, "outcome", outcome);
	cJSON_AddNumberToObject(o, "status", status);
	cJSON_AddNumberToObject(o, "records", (double)records);
	if (env->audit)
		rc = audit_append(env->audit, o, audit_id);
	cJSON_Delete(o);
	sodium_memzero(tok, sizeof(tok));
	return rc;
}

static int respond_json(struct gw_response *resp, int status, cJSON *o)
{
	char *text = cJSON_PrintUnformatted(o);

	cJSON_Delete(o);
	if (!text)
		return gw_error(resp, 500, "internal", "out of memory");
	free(resp->body);
	resp->status = status;
	resp->body = text;
	resp->len = strlen(text);
	resp->content_type = "application/json";
	return 0;
}

/* Audits the refusal, then answers it; 503 if it cannot be recorded. */
static int refuse(const struct gw_env *env, const struct gw_member *caller, const struct lookup *l,
		  const struct policy_decision *dec, int status, const char *code,
		  const char *message, struct gw_response *resp)
{
	char id[33];

	if (audit(env, caller, l, dec, code, status, 0, id) < 0)
		return gw_error(resp, 503, "audit_unavailable",
				"the decision could not be recorded, so nothing is answered");
	return gw_error(resp, status, code, message);
}

int gw_node_lookup(const struct gw_env *env, const struct gw_member *caller,
		   const cJSON *body, struct gw_response *resp)
{
	struct gw_node_worker *w = env->node_worker;
	struct lookup l = { 0 };
	struct policy_field pf[MAX_LOOKUP_FIELDS];
	struct policy_request req = { 0 };
	struct policy_decision dec;
	const struct node_dataset *ds = NULL;
	struct adapter *a = NULL;
	unsigned proj[MAX_LOOKUP_FIELDS];
	struct fetch f = { 0 };
	struct adapter_value key;
	struct adapter_filter filter;
	struct adapter_stats stats = { 0 };
	struct diag d = { 0 };
	char audit_id[33];
	const char *bad;
	unsigned wait;
	int rc;

	if (!w || !env->policies)
		return gw_error(resp, 501, "not_implemented", "this gateway has no node role");

	/* 1. Rate limit: before any work, per requester. Refusals are
	 * recorded too: every lookup request leaves a line. */
	if ((wait = rate_limit(w->node, caller->oin)) > 0) {
		rc = refuse(env, caller, &l, NULL, 429, "rate_limited", "too many lookups; retry later", resp);
		if (resp->status == 429)
			resp->retry_after = wait;
		return rc;
	}

	/* 2. Validate: a malformed body or a bad BSN is refused, and recorded. */
	if ((bad = parse_body(body, &l)) != NULL)
		return refuse(env, caller, &l, NULL, 400, "bad_request", bad, resp);
	if (!l.bsn_valid)
		return refuse(env, caller, &l, NULL, 400, "invalid_bsn", bsn_error_name(l.bsn_error), resp);

	/* 3. Decide: the caller's grants for this purpose, dataset and fields. */
	for (size_t i = 0; i < l.nfields; i++)
		pf[i] = (struct policy_field){ l.dataset, l.fields[i], POLICY_GEN_NONE };
	req.requester = caller->id;
	req.purpose = l.purpose;
	req.operation = POLICY_OP_LOOKUP;
	req.datasets = &l.dataset;
	req.ndatasets = 1;
	req.fields = pf;
	req.nfields = l.nfields;
	req.identifiers = l.identifiers;
	req.time = time(NULL);
	if (policy_decide(env->policies, &req, &dec) < 0)
		return gw_error(resp, 500, "internal", "the policy could not be evaluated");
	if (!dec.permit)
		return refuse(env, caller, &l, &dec, 403, policy_reason_name(dec.reason), dec.message, resp);

	/* 4. Fetch: only the granted fields of this one person. */
	for (size_t i = 0; i < w->node->nds; i++)
		if (strcmp(w->node->ds[i].id, l.dataset) == 0) {
			ds = &w->node->ds[i];
			a = w->adapters[i];
		}
	if (!ds)
		return refuse(env, caller, &l, &dec, 404, "not_found",
			      "this node does not hold that dataset", resp);
	for (size_t i = 0; i < l.nfields; i++) {
		int idx = adapter_field_index(a, l.fields[i], strlen(l.fields[i]));
		if (idx < 0 || idx == ds->bsn_field)
			return refuse(env, caller, &l, &dec, 400, "bad_request",
				      "a field is not in the dataset, or is the identifier "
				      "(ask for identifiers: bsn instead)", resp);
		proj[i] = (unsigned)idx;
	}
	key.type = ADAPTER_BSN;
	key.null = 0;
	key.bsn = l.bsn;
	filter.field = (unsigned)ds->bsn_field;
	filter.values = &key;
	filter.nvalues = 1;
	f.ds = ds;
	f.proj = proj;
	f.gens = dec.gen;
	f.names = l.fields;
	f.nproj = l.nfields;
	f.today = today_days();
	f.records = cJSON_CreateArray();
	if (!f.records)
		return gw_error(resp, 500, "internal", "out of memory");
	rc = adapter_scan(a, &filter, 1, proj, l.nfields, on_row, &f, &stats, &d);
	diag_clear(&d);
	if (f.unsupported) {
		cJSON_Delete(f.records);
		return refuse(env, caller, &l, &dec, 501, "generalisation_unavailable",
			      "the policy asks for a generalisation this node cannot apply", resp);
	}
	if (rc < 0 || f.oom) {
		cJSON_Delete(f.records);
		return refuse(env, caller, &l, &dec, 503, "source_unavailable",
			      "the dataset could not be read", resp);
	}
	if (f.nrecords == 0) {
		/* The same answer whether or not the person is known anywhere
		 * else: a 404 here says nothing about other datasets. */
		cJSON_Delete(f.records);
		return refuse(env, caller, &l, &dec, 404, "not_found",
			      "no record for this subject in this dataset", resp);
	}

	/* 5. Audit before anything leaves; fail closed. */
	if (audit(env, caller, &l, &dec, "answered", 200, f.nrecords, audit_id) < 0) {
		cJSON_Delete(f.records);
		return gw_error(resp, 503, "audit_unavailable",
				"the decision could not be recorded, so nothing is answered");
	}

	/* 6. Answer: the subject as a pseudonym for this requester and purpose. */
	{
		cJSON *o = cJSON_CreateObject();
		cJSON *subj = cJSON_AddObjectToObject(o, "subject");
		cJSON *pol = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "purpose", l.purpose);
		cJSON_AddStringToObject(o, "dataset", l.dataset);
		if (l.identifiers >= POLICY_IDENT_PSEUDONYM) {
			struct pseudo_key *k;
			unsigned char tok[PSEUDO_TOKEN_BYTES];
			char hex[2 * PSEUDO_TOKEN_BYTES + 1];

			if (pseudo_key_recipient(w->node->master, l.purpose, caller->id, &k) < 0) {
				cJSON_Delete(o);
				cJSON_Delete(pol);
				cJSON_Delete(f.records);
				return gw_error(resp, 500, "internal", "cannot derive the pseudonym key");
			}
			pseudo_token(k, l.bsn, tok);
			pseudo_key_free(k);
			pseudo_hex(tok, sizeof(tok), hex);
			cJSON_AddStringToObject(subj, "pseudonym", hex);
		}
		if (l.identifiers == POLICY_IDENT_BSN) {
			char bsn[10];
			bsn_format(l.bsn, bsn);
			cJSON_AddStringToObject(subj, "bsn", bsn);
		}
		cJSON_AddItemToObject(o, "records", f.records);
		cJSON_AddStringToObject(pol, "rule", dec.rule);
		cJSON_AddStringToObject(pol, "sha256", dec.policy_hash);
		cJSON_AddItemToObject(o, "policy", pol);
		cJSON_AddStringToObject(o, "audit_id", audit_id);
		return respond_json(resp, 200, o);
	}
}
