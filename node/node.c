/*
 * The node: datasets, master key, the purpose-bound lookup and the hub's
 * subquery. Both read like the rule they enforce: validate, decide, fetch,
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
#include "../aggregate/wire.h"
#include "../common/jsonput.h"
#include "../crypto/boxkey.h"
#include "../crypto/pseudo.h"
#include "../policies/policy.h"
#include "../audit/audit.h"
#include "../gateway/config.h"
#include "../gateway/ident.h"
#include "../gateway/log.h"
#include "../gateway/members.h"
#include "../gateway/response.h"

#define MAX_LOOKUP_FIELDS 32
#define MAX_LOOKUP_RECORDS 100 /* rows about one person in one dataset */
#define MAX_BUCKETS 64

struct node_dataset {
	const char *id;                     /* borrowed from the config */
	struct adapter_source src;
	struct adapter_field *fields;
	size_t nfields;
	/* Parallel to |fields|: the catalog's, for the declared domains a
	 * group-by value is mapped to (docs/disclosure.md). */
	const struct policy_catalog_field *cat;
	int bsn_field;                      /* index of the identifier field */
	/* The CSV adapter that read the whole dataset at start (dataset_check),
	 * handed to the first worker: it knows the file it typed in full was
	 * clean, so that worker's scans skip re-typing unused fields until the
	 * file changes (adapters/csv.c). NULL once taken. */
	struct adapter *checked;
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
	/* The hub's X25519 key linked answers are sealed to; without it a
	 * node answers only counts. A public key: no secrecy to check. */
	unsigned char hub_pk[32];
	int has_hub_pk;
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

/* The index of dataset |id| in the worker's node, or -1 when it holds none
 * by that name. */
/* The node's per-worker state, which the gateway carries for it untyped. */
static struct gw_node_worker *node_worker(const struct gw_env *env)
{
	return env->worker;
}

static int worker_dataset(const struct gw_node_worker *w, const char *id)
{
	for (size_t i = 0; i < w->node->nds; i++)
		if (strcmp(w->node->ds[i].id, id) == 0)
			return (int)i;
	return -1;
}

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
	d->src.disk_only = c->sqlite ? 0 : c->disk_only;
	d->src.table = c->table;
	d->src.query = c->query;
	d->fields = calloc((size_t)n, sizeof(*d->fields));
	if (!d->fields) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	d->nfields = (size_t)n;
	d->cat = f;
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
static int dataset_check(struct node_dataset *d, struct diag *diag)
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
	if (rc == 0 && d->src.kind == ADAPTER_CSV)
		d->checked = a;
	else
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
	if (cfg->node.hub_public_key) {
		if (pseudo_box_read_pub(cfg->node.hub_public_key, n->hub_pk, err, sizeof(err)) < 0) {
			diag_error(d, cfg->node.hub_public_key, 0, 0, "node.hub_public_key: %s", err);
			goto fail;
		}
		n->has_hub_pk = 1;
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
	for (size_t i = 0; i < n->nds; i++) {
		adapter_close(n->ds[i].checked);
		free(n->ds[i].fields);
	}
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

		/* workers may open concurrently: one of them gets it */
		w->adapters[i] = __atomic_exchange_n(&n->ds[i].checked, NULL, __ATOMIC_ACQ_REL);
		if (w->adapters[i])
			continue;
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

/*
 * Why a scan failed, in the node's log, so the operator sees which file and
 * what is wrong with it where the partner only gets 503 source_unavailable
 * ("path: no such file: removed, or not yet renamed into place", "path:1:
 * header: no column for schema field 'x'"). A bad row is named by its place
 * only: the adapter's text may quote the value, and values are personal
 * data. Nothing is logged when the adapter said nothing (the callback
 * stopped the scan).
 */
static void log_scan_failure(const struct node_dataset *ds, int rc, const struct diag *d)
{
	char first[600], msg[800];

	if (!diag_text(d)[0])
		return;
	diag_first(d, first, sizeof(first));
	if (rc == ADAPTER_ERR_BAD_ROW) {
		char *sev = strstr(first, ": error:");

		if (sev)
			*sev = '\0';
		snprintf(msg, sizeof(msg), "dataset %s: %s: a row that does not type ends the scan "
			 "(on_bad_row: fail; the value is not logged)", ds->id, first);
	} else {
		snprintf(msg, sizeof(msg), "dataset %s: %s", ds->id, first);
	}
	gw_log_message("error", "dataset_unavailable", msg);
}

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

/* The members a lookup body may have; anything else is refused, as the
 * hub refuses unknown members of a question: a member the node ignored
 * would be one a proxy in front of it might read. */
static const char *const lookup_members[] = { "purpose", "dataset", "subject", "fields", "identifiers" };
#define LOOKUP_MEMBERS "purpose, dataset, subject, fields, identifiers"

/* |where||name| quoted for a message when |name| is short and plain, else
 * a description (a name is the requester's bytes: no megabyte, no control
 * characters, no half a UTF-8 sequence into the answer). */
static const char *quoted_name(const char *where, const char *name, char *buf, size_t len)
{
	if (gw_ident_ok(name, 64, ".:/"))
		snprintf(buf, len, "'%s%s'", where, name);
	else
		snprintf(buf, len, "in %s(a name that is not an identifier)", *where ? where : "the body ");
	return buf;
}

/* An object member that is not in |known|: 1 and the message in |msg|. */
static int unknown_member(const cJSON *o, const char *const *known, size_t nknown, const char *where,
			  const char *list, char *msg, size_t msglen)
{
	const cJSON *it;
	char q[96];

	cJSON_ArrayForEach(it, o) {
		int ok = 0;

		for (size_t i = 0; i < nknown; i++)
			ok |= it->string && strcmp(it->string, known[i]) == 0;
		if (!ok) {
			snprintf(msg, msglen, "unknown member %s (%s)",
				 quoted_name(where, it->string ? it->string : "", q, sizeof(q)), list);
			return 1;
		}
	}
	return 0;
}

/* What a bad BSN is, as a sentence that keeps its code. */
static void bsn_message(int err, char *msg, size_t len)
{
	const char *what;

	switch (err) {
	case BSN_EMPTY: what = "is empty"; break;
	case BSN_NOT_DIGITS: what = "must be 8 or 9 digits and holds something else"; break;
	case BSN_LENGTH: what = "must be 8 or 9 digits long"; break;
	case BSN_ZERO: what = "is all zeros"; break;
	case BSN_CHECKSUM: what = "fails the elfproef (its check digit does not match)"; break;
	default: what = "is not valid"; break;
	}
	snprintf(msg, len, "'subject.bsn' is not a valid BSN: it %s (%s)", what, bsn_error_name(err));
}

/* Reads the body into |l| (strings as sent, for the audit line to mark if
 * they are not identifiers); 0, or -1 with what is wrong in |msg| (a 400). */
static int parse_body(const cJSON *body, struct lookup *l, char *msg, size_t msglen)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "purpose");
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(body, "dataset");
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(body, "subject");
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(body, "fields");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(body, "identifiers");
	static const char *const subject_members[] = { "bsn" };
	const char *bad = NULL;
	const cJSON *it;

#define BAD(text) do { bad = (text); goto fail; } while (0)
	if (!cJSON_IsObject(body))
		BAD("the body must be a JSON object");
	if (unknown_member(body, lookup_members, 5, "", LOOKUP_MEMBERS, msg, msglen))
		return -1;
	/* Kept as sent, whatever they are: the audit line marks what is not an
	 * identifier (gateway/ident.h). */
	if (cJSON_IsString(p))
		l->purpose = p->valuestring;
	if (cJSON_IsString(d))
		l->dataset = d->valuestring;
	for (it = cJSON_IsArray(f) ? f->child : NULL; it; it = it->next) {
		if (!cJSON_IsString(it) || l->nfields == MAX_LOOKUP_FIELDS)
			break;
		l->fields[l->nfields++] = it->valuestring;
	}
	if (!cJSON_IsString(p) || !*p->valuestring)
		BAD("'purpose' must be a purpose id");
	if (!gw_ident_ok(p->valuestring, GW_IDENT_MAX, GW_IDENT_NAME))
		BAD("'purpose' must be a purpose id: 1 to 128 of a-z, 0-9, '.', '_' and '-'");
	if (!cJSON_IsString(d) || !*d->valuestring)
		BAD("'dataset' must be a dataset id");
	if (!gw_ident_ok(d->valuestring, GW_IDENT_MAX, GW_IDENT_DATASET))
		BAD("'dataset' must be a dataset id (OWNER/NAME): 1 to 128 of a-z, 0-9, '.', '_', '-' and '/'");
	if (!cJSON_IsObject(s) || !cJSON_IsString(l->bsn_json = cJSON_GetObjectItemCaseSensitive(s, "bsn")))
		BAD("'subject' must be {\"bsn\": \"...\"}");
	if (unknown_member(s, subject_members, 1, "subject.", "bsn", msg, msglen))
		return -1;
	if (!cJSON_IsArray(f) || cJSON_GetArraySize(f) == 0)
		BAD("'fields' must be a non-empty list of field names");
	if (cJSON_GetArraySize(f) > MAX_LOOKUP_FIELDS)
		BAD("'fields' names more than 32 fields");
	cJSON_ArrayForEach(it, f)
		if (!cJSON_IsString(it) || !*it->valuestring)
			BAD("'fields' must hold field names");
	for (size_t i = 0; i < l->nfields; i++) {
		if (!gw_ident_ok(l->fields[i], GW_IDENT_MAX, GW_IDENT_NAME))
			BAD("'fields' must hold field names: 1 to 128 of a-z, 0-9, '.', '_' and '-'");
		for (size_t j = 0; j < i; j++)
			if (strcmp(l->fields[j], l->fields[i]) == 0)
				BAD("'fields' names a field twice");
	}
	l->identifiers = POLICY_IDENT_PSEUDONYM;
	if (id && (!cJSON_IsString(id) ||
		   (strcmp(id->valuestring, "none") != 0 &&
		    policy_ident_parse(id->valuestring, &l->identifiers) < 0)))
		BAD("'identifiers' must be none, pseudonym or bsn");
	if (id && strcmp(id->valuestring, "none") == 0)
		l->identifiers = POLICY_IDENT_NEVER;
	l->bsn_error = bsn_parse(l->bsn_json->valuestring, strlen(l->bsn_json->valuestring), &l->bsn);
	l->bsn_valid = l->bsn_error == BSN_OK;
	return 0;
#undef BAD
fail:
	snprintf(msg, msglen, "%s", bad);
	return -1;
}

/* Days since 1970-01-01 to the proleptic Gregorian calendar (H. Hinnant's
 * civil_from_days): the same dates as adapter_date_format, without the
 * format-and-sscanf round trip on every row of a scan. */
static void civil_date(int32_t days, int *y, int *m, int *d)
{
	int64_t z = (int64_t)days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	unsigned mm = mp < 10 ? mp + 3 : mp - 9;

	*y = (int)((int64_t)yoe + era * 400 + (mm <= 2));
	*m = (int)mm;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
}

#define GEN_BUF 32

/*
 * |v| under the generalisation |g| as the text that leaves the node (the
 * wire's values, docs/federation.md): categories as their name, bools
 * true/false, dates as YYYY-MM-DD, YYYY-MM, YYYY-Qn or YYYY, ages as
 * "30-39", postcodes as their first four characters. Points |*out| at the
 * category name, into the value, or at |buf|; |*len| is its length (a
 * string value is not NUL-terminated at |*len|). Returns 0, 1 for null, or
 * -1 when |g| does not apply to the value's type (the caller answers 501).
 */
static int generalise_text(const struct adapter_field *f, const struct adapter_value *v,
			   enum policy_gen g, int32_t today, char buf[GEN_BUF], const char **out,
			   size_t *len)
{
	int y, m, d, n = -1;

	if (v->null)
		return 1;
	switch (f->type) {
	case ADAPTER_CATEGORY:
		if (g > POLICY_GEN_EXACT)
			return -1;
		*out = f->categories[v->category];
		*len = strlen(*out);
		return 0;
	case ADAPTER_INT:
		if (g > POLICY_GEN_EXACT)
			return -1;
		n = snprintf(buf, GEN_BUF, "%lld", (long long)v->i);
		break;
	case ADAPTER_BOOL:
		if (g > POLICY_GEN_EXACT)
			return -1;
		*out = v->b ? "true" : "false";
		*len = v->b ? 4 : 5;
		return 0;
	case ADAPTER_STRING:
		if (g <= POLICY_GEN_EXACT) {
			*out = v->str.ptr;
			*len = v->str.len;
			return 0;
		}
		if (g == POLICY_GEN_POSTCODE4 && v->str.len >= 4) {
			*out = v->str.ptr;
			*len = 4;
			return 0;
		}
		return -1;
	case ADAPTER_DATE:
		civil_date(v->date, &y, &m, &d);
		switch (g) {
		case POLICY_GEN_NONE:
		case POLICY_GEN_EXACT:
			n = snprintf(buf, GEN_BUF, "%04d-%02d-%02d", y, m, d);
			break;
		case POLICY_GEN_MONTH:
			n = snprintf(buf, GEN_BUF, "%04d-%02d", y, m);
			break;
		case POLICY_GEN_QUARTER:
			n = snprintf(buf, GEN_BUF, "%04d-Q%d", y, (m - 1) / 3 + 1);
			break;
		case POLICY_GEN_YEAR:
		case POLICY_GEN_BIRTH_YEAR:
			n = snprintf(buf, GEN_BUF, "%d", y);
			break;
		case POLICY_GEN_AGE_BAND_5:
		case POLICY_GEN_AGE_BAND_10:
		case POLICY_GEN_AGE_BAND_20: {
			int ty, tm, td, age, band;

			civil_date(today, &ty, &tm, &td);
			age = ty - y - (tm < m || (tm == m && td < d));
			band = g == POLICY_GEN_AGE_BAND_5 ? 5 : g == POLICY_GEN_AGE_BAND_10 ? 10 : 20;
			if (age < 0)
				age = 0;
			n = snprintf(buf, GEN_BUF, "%d-%d", age / band * band, age / band * band + band - 1);
			break;
		}
		default:
			return -1;
		}
		break;
	default:
		return -1; /* an identifier is never a value */
	}
	if (n < 0 || n >= GEN_BUF)
		return -1;
	*out = buf;
	*len = (size_t)n;
	return 0;
}

/* An answer is built whole before its audit line is written, with
 * |AUDIT_ID_SLOT| where the audit id goes (the last member's value), so
 * nothing can fail between recording the answer and releasing it (as in
 * hub.c). */
#define AUDIT_ID_SLOT "________________________________"

/* Puts |audit_id| in the slot at the end of |text| (|len| bytes, ending
 * "audit_id":"<slot>"}). */
static void fill_audit_id(char *text, size_t len, const char *audit_id)
{
	memcpy(text + len - 2 - (sizeof(AUDIT_ID_SLOT) - 1), audit_id, sizeof(AUDIT_ID_SLOT) - 1);
}

/* Formats |v| as JSON under the generalisation |g| into |*out| (the
 * lookup's records: numbers stay numbers, a year is a number). Returns 0,
 * -1 when |g| does not apply to the value's type (the caller answers 501),
 * or -2 out of memory. */
static int generalise(const struct adapter_field *f, const struct adapter_value *v,
		      enum policy_gen g, int32_t today, cJSON **out)
{
	char buf[GEN_BUF];
	const char *s;
	size_t n;
	char *copy;
	cJSON *j = NULL;
	int rc = generalise_text(f, v, g, today, buf, &s, &n);

	*out = NULL;
	if (rc < 0)
		return -1;
	if (rc > 0) {
		j = cJSON_CreateNull();
	} else if (f->type == ADAPTER_INT) {
		j = cJSON_CreateNumber((double)v->i);
	} else if (f->type == ADAPTER_BOOL) {
		j = cJSON_CreateBool(v->b);
	} else if (f->type == ADAPTER_DATE && (g == POLICY_GEN_YEAR || g == POLICY_GEN_BIRTH_YEAR)) {
		j = cJSON_CreateNumber(strtod(s, NULL));
	} else if ((copy = strndup(s, n)) != NULL) {
		j = cJSON_CreateString(copy);
		free(copy);
	}
	*out = j;
	return j ? 0 : -2;
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
	int ok = 1;

	if (f->nrecords == MAX_LOOKUP_RECORDS)
		return 1;
	rec = json_put(&ok, f->records, NULL, cJSON_CreateObject());
	for (size_t i = 0; i < n && i < f->nproj && ok; i++) {
		cJSON *v;
		int rc = generalise(&f->ds->fields[f->proj[i]], &values[i], f->gens[i], f->today, &v);

		if (rc == -1) {
			f->unsupported = 1;
			return -1;
		}
		json_put(&ok, rec, f->names[i], v);
	}
	if (!ok) {
		f->oom = 1;
		return -1;
	}
	f->nrecords++;
	return 0;
}

static int32_t today_days(void)
{
	return (int32_t)(time(NULL) / 86400);
}

/* Writes the audit line for this lookup, whole or not at all; 0, or -1
 * (the caller answers 503). */
static int audit(const struct gw_env *env, const struct gw_member *caller, const struct lookup *l,
		 const struct policy_decision *dec, const char *outcome, int status,
		 size_t records, char audit_id[33])
{
	const struct gw_node *n = node_worker(env)->node;
	unsigned char tok[PSEUDO_TOKEN_BYTES];
	char subject[2 * PSEUDO_TOKEN_BYTES + 1];
	cJSON *o = cJSON_CreateObject(), *fields;
	int ok = o != NULL, rc = -1;

	const struct adapter *a = NULL;
	char mark[GW_IDENT_MARK_SIZE];
	const char *ds;

	json_put_str(&ok, o, "operation", "lookup");
	json_put_str(&ok, o, "requester", caller->id);
	/* The requester's strings as sent only when they name what this node
	 * declares (a purpose of its policies, a dataset it holds, a field of
	 * it); anything else as a marker (gateway/ident.h). */
	if (l->purpose)
		json_put_str(&ok, o, "purpose",
			     gw_ident_audit(l->purpose, GW_IDENT_MAX, GW_IDENT_NAME,
					    gw_ident_purpose_declared(env->policies, l->purpose), mark));
	if (l->dataset) {
		int i = worker_dataset(node_worker(env), l->dataset);

		a = i < 0 ? NULL : node_worker(env)->adapters[i];
		ds = gw_ident_audit(l->dataset, GW_IDENT_MAX, GW_IDENT_DATASET, a != NULL, mark);
		json_put(&ok, o, "datasets", cJSON_CreateStringArray(&ds, 1));
	}
	fields = json_put(&ok, o, "fields", cJSON_CreateArray());
	for (size_t i = 0; i < l->nfields; i++)
		json_put_str(&ok, fields, NULL,
			     gw_ident_audit(l->fields[i], GW_IDENT_MAX, GW_IDENT_NAME,
					    a && adapter_field_index(a, l->fields[i], strlen(l->fields[i])) >= 0,
					    mark));
	/* The person only as the keyed audit pseudonym, so "who looked at
	 * my data?" can be answered without the log holding a BSN. */
	if (l->bsn_valid) {
		pseudo_token(n->audit_key, l->bsn, tok);
		pseudo_hex(tok, sizeof(tok), subject);
		json_put_str(&ok, o, "subject", subject);
	}
	json_put_str(&ok, o, "decision", dec && dec->permit ? "permit" : "deny");
	if (dec) {
		json_put_str(&ok, o, "rule", dec->rule);
		json_put_str(&ok, o, "reason", policy_reason_name(dec->reason));
		if (!dec->permit && dec->nearest[0])
			json_put_str(&ok, o, "nearest_rule", dec->nearest);
		json_put_str(&ok, o, "policy_hash", dec->policy_hash);
	}
	json_put_str(&ok, o, "outcome", outcome);
	json_put_num(&ok, o, "status", status);
	json_put_num(&ok, o, "records", (double)records);
	if (ok && env->audit)
		rc = audit_append(env->audit, o, audit_id);
	cJSON_Delete(o);
	sodium_memzero(tok, sizeof(tok));
	return rc;
}

/* The lookup's answer, printed whole: {"subject": the pseudonym for this
 * requester and purpose and/or the BSN, as granted, "purpose", "dataset",
 * "records", "policy", "audit_id": the slot}. Takes |records| over. NULL
 * with the reason in |*why| when out of memory or the pseudonym key cannot
 * be derived. */
static char *lookup_answer(const struct gw_node *n, const struct gw_member *caller, const struct lookup *l,
			   const struct policy_decision *dec, cJSON *records, const char **why)
{
	cJSON *o = cJSON_CreateObject(), *subj, *pol;
	int ok = o != NULL;
	char *text;

	*why = "out of memory";
	subj = json_put(&ok, o, "subject", cJSON_CreateObject());
	json_put_str(&ok, o, "purpose", l->purpose);
	json_put_str(&ok, o, "dataset", l->dataset);
	if (ok && l->identifiers >= POLICY_IDENT_PSEUDONYM) {
		struct pseudo_key *k;
		unsigned char tok[PSEUDO_TOKEN_BYTES];
		char hex[2 * PSEUDO_TOKEN_BYTES + 1];

		if (pseudo_key_recipient(n->master, l->purpose, caller->id, &k) < 0) {
			*why = "cannot derive the pseudonym key";
			ok = 0;
		} else {
			pseudo_token(k, l->bsn, tok);
			pseudo_key_free(k);
			pseudo_hex(tok, sizeof(tok), hex);
			json_put_str(&ok, subj, "pseudonym", hex);
		}
	}
	if (l->identifiers == POLICY_IDENT_BSN) {
		char bsn[10];

		bsn_format(l->bsn, bsn);
		json_put_str(&ok, subj, "bsn", bsn);
	}
	json_put(&ok, o, "records", records);
	pol = json_put(&ok, o, "policy", cJSON_CreateObject());
	json_put_str(&ok, pol, "rule", dec->rule);
	json_put_str(&ok, pol, "sha256", dec->policy_hash);
	json_put_str(&ok, o, "audit_id", AUDIT_ID_SLOT);
	text = ok ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	return text;
}

/* A refused request counts against the requester's refusals
 * (audit_refusal_admit): every 4xx but 404, which is what a lookup of a
 * person the dataset does not hold is answered. 1 when it may be recorded;
 * 0 when |resp| holds the answer (429 past the limit, 503 if the summary
 * line could not be written). */
static int refusal_admitted(const struct gw_env *env, const struct gw_member *caller, int status,
			    struct gw_response *resp)
{
	int rc;

	if (status < 400 || status > 499 || status == 404 || !env->audit)
		return 1;
	rc = audit_refusal_admit(env->audit, caller->id);
	if (rc == 0)
		return 1;
	if (rc < 0) {
		gw_error(resp, 503, "audit_unavailable",
			 "the decision could not be recorded, so nothing is answered");
		return 0;
	}
	gw_error(resp, 429, "too_many_refusals",
		 "too many refused requests from this member; they are no longer recorded one by one. "
		 "Retry later");
	if (resp->status == 429)
		resp->retry_after = (unsigned)rc;
	return 0;
}

/* Audits the refusal, then answers it; 503 if it cannot be recorded. */
static int refuse(const struct gw_env *env, const struct gw_member *caller, const struct lookup *l,
		  const struct policy_decision *dec, int status, const char *code,
		  const char *message, struct gw_response *resp)
{
	char id[33];

	if (!refusal_admitted(env, caller, status, resp))
		return 0;
	if (audit(env, caller, l, dec, code, status, 0, id) < 0)
		return gw_error(resp, 503, "audit_unavailable",
				"the decision could not be recorded, so nothing is answered");
	return gw_error(resp, status, code, message);
}

int gw_node_lookup(const struct gw_env *env, const struct gw_member *caller,
		   const cJSON *body, struct gw_response *resp)
{
	struct gw_node_worker *w = node_worker(env);
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
	char audit_id[33], *answer, msg[256];
	const char *why;
	unsigned wait;
	size_t len;
	int rc;

	if (!w || !env->policies)
		return gw_error(resp, 501, "not_implemented", "this gateway has no node role");

	/* 1. Rate limit: before any work, per requester. Refusals are
	 * recorded too: every lookup request leaves a line. */
	if ((wait = rate_limit(w->node, caller->oin)) > 0) {
		rc = refuse(env, caller, &l, NULL, 429, "rate_limited", "too many lookups; retry later", resp);
		if (resp->status == 429 && !resp->retry_after)
			resp->retry_after = wait;
		return rc;
	}

	/* 2. Validate: a malformed body or a bad BSN is refused, and recorded;
	 * what is not an identifier is recorded as a marker, never as sent. */
	if (parse_body(body, &l, msg, sizeof(msg)) < 0)
		return refuse(env, caller, &l, NULL, 400, "bad_request", msg, resp);
	if (!l.bsn_valid) {
		bsn_message(l.bsn_error, msg, sizeof(msg));
		return refuse(env, caller, &l, NULL, 400, "invalid_bsn", msg, resp);
	}

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
	{
		int i = worker_dataset(w, l.dataset);

		ds = i < 0 ? NULL : &w->node->ds[i];
		a = i < 0 ? NULL : w->adapters[i];
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
	if (rc < 0)
		log_scan_failure(ds, rc, &d);
	diag_clear(&d);
	if (f.unsupported) {
		cJSON_Delete(f.records);
		return refuse(env, caller, &l, &dec, 501, "generalisation_unavailable",
			      "the policy asks for a generalisation this node cannot apply", resp);
	}
	/* Out of memory is the node's fault, not the dataset's nor the
	 * policy's: 500, as the subquery answers it. */
	if (f.oom || rc == ADAPTER_ERR_NOMEM) {
		cJSON_Delete(f.records);
		return gw_error(resp, 500, "internal", "out of memory");
	}
	if (rc < 0) {
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

	/* 5. Build the answer, whole: nothing of it leaves before the audit
	 * line, and nothing can fail after it. */
	if (!(answer = lookup_answer(w->node, caller, &l, &dec, f.records, &why)))
		return gw_error(resp, 500, "internal", why);

	/* 6. Audit before anything leaves; fail closed. */
	len = strlen(answer);
	if (audit(env, caller, &l, &dec, "answered", 200, f.nrecords, audit_id) < 0) {
		sodium_memzero(answer, len);
		free(answer);
		return gw_error(resp, 503, "audit_unavailable",
				"the decision could not be recorded, so nothing is answered");
	}

	/* 7. Answer: the audit id into its slot, nothing else. */
	fill_audit_id(answer, len, audit_id);
	free(resp->body);
	resp->status = 200;
	resp->body = answer;
	resp->len = len;
	resp->content_type = "application/json";
	return 0;
}

/* ---- the subquery (docs/federation.md, "The subquery") ---- */

#define SQ_MAX_FILTERS 16   /* as the hub allows (docs/federation.md) */
#define SQ_MAX_VALUES 256   /* values in one filter, likewise */
#define SQ_CACHE 4096       /* raw value -> code, per field (direct-mapped) */
#define SQ_TOKEN_CHUNK 4096 /* tokens per pseudo_tokens call: 128 KiB of tokens at a time */

struct sq_filter {
	const char *field;
	enum policy_gen gen;     /* as asked; the decision's applies */
	unsigned idx;            /* schema field */
	const char *values[SQ_MAX_VALUES];
	size_t lens[SQ_MAX_VALUES];
	char num[SQ_MAX_VALUES][24]; /* numbers in the request, as text */
	size_t nvalues;
	/* An exact filter goes to the adapter (SQLite: WHERE ... IN) */
	int pushed;
	struct adapter_value typed[SQ_MAX_VALUES];
	size_t ntyped;
};

struct subquery {
	char query_hex[33];
	unsigned char query_id[PSEUDO_QUERY_ID_BYTES];
	const char *requester;
	const char *purpose;
	const char *dataset;
	enum policy_op op;
	int tokens;              /* mode tokens; else counts */
	const char *fields[WIRE_MAX_FIELDS];
	enum policy_gen fgen[WIRE_MAX_FIELDS];
	size_t nfields;
	struct sq_filter filters[SQ_MAX_FILTERS];
	size_t nfilters;
	unsigned max_cells;      /* from the body; 0: not given */
	int parsed;              /* the whole body was valid */
	char bad[192];           /* an unknown member's message */
};

/* A request's "gen": absent is NONE (the policy's); NULL or what is wrong. */
static const char *parse_gen(const cJSON *g, enum policy_gen *out)
{
	*out = POLICY_GEN_NONE;
	if (!g)
		return NULL;
	if (!cJSON_IsString(g) || policy_gen_parse(g->valuestring, out) < 0)
		return "a 'gen' is not a generalisation (exact, month, quarter, year, age_band_10, postcode4, ...)";
	return NULL;
}

/* The members a subquery body and its fields and filters may have; anything
 * else is refused, as a lookup's and the hub's question's are: a member the
 * node ignored would be one a proxy in front of it might read. */
static const char *const sq_members[] = { "query_id", "requester", "purpose", "operation", "dataset",
					  "mode", "fields", "filters", "max_cells_per_person" };
#define SQ_MEMBERS "query_id, requester, purpose, operation, dataset, mode, fields, filters, " \
	"max_cells_per_person"
static const char *const sq_field_members[] = { "field", "gen" };
static const char *const sq_filter_members[] = { "field", "gen", "values" };

/* Reads the body; NULL, or what is wrong with it (for a 400). */
static const char *sq_parse(const cJSON *body, struct subquery *q)
{
	const cJSON *qid = cJSON_GetObjectItemCaseSensitive(body, "query_id");
	const cJSON *req = cJSON_GetObjectItemCaseSensitive(body, "requester");
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "purpose");
	const cJSON *op = cJSON_GetObjectItemCaseSensitive(body, "operation");
	const cJSON *ds = cJSON_GetObjectItemCaseSensitive(body, "dataset");
	const cJSON *mode = cJSON_GetObjectItemCaseSensitive(body, "mode");
	const cJSON *fields = cJSON_GetObjectItemCaseSensitive(body, "fields");
	const cJSON *filters = cJSON_GetObjectItemCaseSensitive(body, "filters");
	const cJSON *mc = cJSON_GetObjectItemCaseSensitive(body, "max_cells_per_person");
	const cJSON *it;
	const char *bad;
	size_t binlen = 0;
	const char *end = NULL;

	if (!cJSON_IsObject(body))
		return "the body must be a JSON object";
	/* Kept as sent, whatever they are: the audit line marks what is not an
	 * identifier (gateway/ident.h). */
	if (cJSON_IsString(req))
		q->requester = req->valuestring;
	if (cJSON_IsString(p))
		q->purpose = p->valuestring;
	if (cJSON_IsString(ds))
		q->dataset = ds->valuestring;
	if (unknown_member(body, sq_members, sizeof(sq_members) / sizeof(sq_members[0]), "", SQ_MEMBERS,
			   q->bad, sizeof(q->bad)))
		return q->bad;
	for (it = cJSON_IsArray(fields) ? fields->child : NULL; it; it = it->next)
		if (cJSON_IsObject(it) && unknown_member(it, sq_field_members, 2, "fields[].", "field, gen",
							  q->bad, sizeof(q->bad)))
			return q->bad;
	for (it = cJSON_IsArray(filters) ? filters->child : NULL; it; it = it->next)
		if (cJSON_IsObject(it) && unknown_member(it, sq_filter_members, 3, "filters[].",
							  "field, gen, values", q->bad, sizeof(q->bad)))
			return q->bad;
	if (!cJSON_IsString(req) || !gw_ident_ok(req->valuestring, GW_IDENT_MAX, GW_IDENT_NAME))
		return "'requester' must be the member id of the coordinator who asked";
	if (!cJSON_IsString(p) || !gw_ident_ok(p->valuestring, GW_IDENT_MAX, GW_IDENT_NAME))
		return "'purpose' must be a purpose id: 1 to 128 of a-z, 0-9, '.', '_' and '-'";
	if (!cJSON_IsString(ds) || !gw_ident_ok(ds->valuestring, GW_IDENT_MAX, GW_IDENT_DATASET))
		return "'dataset' must be a dataset id (OWNER/NAME): 1 to 128 of a-z, 0-9, '.', '_', '-' and '/'";
	if (!cJSON_IsString(qid) || strlen(qid->valuestring) != 2 * PSEUDO_QUERY_ID_BYTES ||
	    sodium_hex2bin(q->query_id, sizeof(q->query_id), qid->valuestring, 2 * PSEUDO_QUERY_ID_BYTES,
			   NULL, &binlen, &end) != 0 ||
	    binlen != PSEUDO_QUERY_ID_BYTES)
		return "'query_id' must be 32 hex digits (16 random bytes)";
	memcpy(q->query_hex, qid->valuestring, sizeof(q->query_hex));
	if (!cJSON_IsString(op) || policy_op_parse(op->valuestring, &q->op) < 0 ||
	    (q->op != POLICY_OP_AGGREGATE && q->op != POLICY_OP_LINKED_AGGREGATE))
		return "'operation' must be aggregate or linked_aggregate";
	if (!cJSON_IsString(mode) ||
	    (strcmp(mode->valuestring, "counts") != 0 && strcmp(mode->valuestring, "tokens") != 0))
		return "'mode' must be counts or tokens";
	q->tokens = strcmp(mode->valuestring, "tokens") == 0;
	/* Tokens are what links persons across datasets: only under a
	 * linked_aggregate grant. */
	if (q->tokens && q->op != POLICY_OP_LINKED_AGGREGATE)
		return "'mode' tokens needs 'operation' linked_aggregate";
	if (fields && !cJSON_IsArray(fields))
		return "'fields' must be a list of {\"field\", \"gen\"}";
	cJSON_ArrayForEach(it, fields) {
		const cJSON *f = cJSON_IsString(it) ? it : cJSON_GetObjectItemCaseSensitive(it, "field");

		if (!cJSON_IsString(f) || !*f->valuestring)
			return "'fields' must hold {\"field\": NAME, \"gen\": GEN}";
		if (q->nfields < WIRE_MAX_FIELDS)
			q->fields[q->nfields] = f->valuestring; /* for the audit line, as sent */
		if (!gw_ident_ok(f->valuestring, GW_IDENT_MAX, GW_IDENT_NAME)) {
			q->nfields += q->nfields < WIRE_MAX_FIELDS;
			return "'fields' must hold field names: 1 to 128 of a-z, 0-9, '.', '_' and '-'";
		}
		if (q->nfields == WIRE_MAX_FIELDS)
			return "'fields' names more than 8 fields";
		for (size_t i = 0; i < q->nfields; i++)
			if (strcmp(q->fields[i], f->valuestring) == 0)
				return "'fields' names a field twice";
		if (cJSON_IsObject(it) && (bad = parse_gen(cJSON_GetObjectItemCaseSensitive(it, "gen"),
							   &q->fgen[q->nfields])) != NULL)
			return bad;
		q->fields[q->nfields++] = f->valuestring;
	}
	if (filters && !cJSON_IsArray(filters))
		return "'filters' must be a list of {\"field\", \"gen\", \"values\"}";
	cJSON_ArrayForEach(it, filters) {
		const cJSON *f = cJSON_GetObjectItemCaseSensitive(it, "field");
		const cJSON *vals = cJSON_GetObjectItemCaseSensitive(it, "values");
		const cJSON *v;
		struct sq_filter *fl;

		if (!cJSON_IsObject(it) || !cJSON_IsString(f) || !*f->valuestring)
			return "'filters' must hold {\"field\": NAME, \"gen\": GEN, \"values\": [...]}";
		if (q->nfilters == SQ_MAX_FILTERS)
			return "'filters' names more than 16 fields";
		if (!gw_ident_ok(f->valuestring, GW_IDENT_MAX, GW_IDENT_NAME)) {
			q->filters[q->nfilters++].field = f->valuestring; /* for the audit line, as sent */
			return "a filter's 'field' must be a field name: 1 to 128 of a-z, 0-9, '.', '_' and '-'";
		}
		for (size_t i = 0; i < q->nfilters; i++)
			if (strcmp(q->filters[i].field, f->valuestring) == 0)
				return "'filters' names a field twice";
		fl = &q->filters[q->nfilters];
		fl->field = f->valuestring;
		if ((bad = parse_gen(cJSON_GetObjectItemCaseSensitive(it, "gen"), &fl->gen)) != NULL)
			return bad;
		if (!cJSON_IsArray(vals) || cJSON_GetArraySize(vals) == 0)
			return "a filter's 'values' must be a non-empty list";
		cJSON_ArrayForEach(v, vals) {
			if (fl->nvalues == SQ_MAX_VALUES)
				return "a filter has more than 256 values";
			if (cJSON_IsString(v)) {
				fl->values[fl->nvalues] = v->valuestring;
			} else if (cJSON_IsNumber(v) && v->valuedouble > -9007199254740992.0 &&
				   v->valuedouble < 9007199254740992.0 &&
				   v->valuedouble == (double)(long long)v->valuedouble) {
				/* the range first: converting a double outside long long's
				 * range (1e400 is infinity) is undefined behaviour */
				snprintf(fl->num[fl->nvalues], sizeof(fl->num[0]), "%lld", (long long)v->valuedouble);
				fl->values[fl->nvalues] = fl->num[fl->nvalues];
			} else {
				return "a filter's values must be strings or whole numbers";
			}
			fl->lens[fl->nvalues] = strlen(fl->values[fl->nvalues]);
			fl->nvalues++;
		}
		q->nfilters++;
	}
	if (mc) {
		if (!cJSON_IsNumber(mc) || mc->valuedouble < 1 || mc->valuedouble > 1000 ||
		    mc->valuedouble != (double)(int)mc->valuedouble)
			return "'max_cells_per_person' must be a whole number from 1 to 1000";
		q->max_cells = (unsigned)mc->valuedouble;
	}
	q->parsed = 1;
	return NULL;
}

/* One field's value dictionary while scanning: text -> code, with a cache
 * from the raw value (category index, int, day, bool) so most rows neither
 * format nor hash. */
struct sq_dict {
	char **values;
	size_t *lens;
	uint32_t n, cap;
	uint32_t *slots; /* code + 1; 0 empty */
	uint32_t mask;
	int64_t ckey[SQ_CACHE];
	uint32_t ccode[SQ_CACHE]; /* code + 1; 0 empty */
};

struct sq_scan {
	const struct node_dataset *ds;
	const struct subquery *q;
	const enum policy_gen *gen; /* the decision's: fields, then filters */
	int32_t today;
	unsigned max_cells;
	size_t nf;
	const struct adapter_field *field[WIRE_MAX_FIELDS];
	struct sq_dict *dict;       /* nf of them */
	const struct sq_filter *live[SQ_MAX_FILTERS]; /* filters evaluated here */
	const struct adapter_field *live_field[SQ_MAX_FILTERS];
	enum policy_gen live_gen[SQ_MAX_FILTERS];
	size_t nlive;
	/* the rows that pass the filters, in source order; after
	 * sq_bound() one (person, combination) each */
	uint32_t *bsn;
	uint16_t *codes;
	size_t n, cap;
	int unsupported, oom, too_many;
};

static uint64_t sq_hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
	return h ^ (h >> 29);
}

/* A raw key for the cache, or -1 when the value is not cacheable (strings). */
static int raw_key(const struct adapter_value *v, int64_t *key)
{
	switch (v->type) {
	case ADAPTER_CATEGORY: *key = v->category; return 0;
	case ADAPTER_INT: *key = v->i; return 0;
	case ADAPTER_DATE: *key = v->date; return 0;
	case ADAPTER_BOOL: *key = v->b; return 0;
	default: return -1;
	}
}

static uint32_t cache_slot(int64_t key)
{
	return (uint32_t)(((uint64_t)key * 0x9E3779B97F4A7C15ULL) >> 52) & (SQ_CACHE - 1);
}

/* The code of |s| (|len| bytes) in |d|; -1 out of memory, -2 too many. */
static int dict_intern(struct sq_dict *d, const char *s, size_t len, uint16_t *code)
{
	uint32_t i;

	if ((d->n + 1) * 2 > d->mask) {
		uint32_t cap = d->mask ? (d->mask + 1) * 2 : 64;
		uint32_t *slots = calloc(cap, sizeof(*slots));

		if (!slots)
			return -1;
		for (uint32_t c = 0; c < d->n; c++) {
			for (i = (uint32_t)sq_hash(d->values[c], d->lens[c]) & (cap - 1); slots[i]; i = (i + 1) & (cap - 1))
				;
			slots[i] = c + 1;
		}
		free(d->slots);
		d->slots = slots;
		d->mask = cap - 1;
	}
	for (i = (uint32_t)sq_hash(s, len) & d->mask; d->slots[i]; i = (i + 1) & d->mask) {
		uint32_t c = d->slots[i] - 1;

		if (d->lens[c] == len && memcmp(d->values[c], s, len) == 0) {
			*code = (uint16_t)c;
			return 0;
		}
	}
	if (d->n >= WIRE_NULL)
		return -2;
	if (d->n == d->cap) {
		uint32_t cap = d->cap ? d->cap * 2 : 16;
		char **v = realloc(d->values, cap * sizeof(*v));
		size_t *l;

		if (!v)
			return -1;
		d->values = v;
		if (!(l = realloc(d->lens, cap * sizeof(*l))))
			return -1;
		d->lens = l;
		d->cap = cap;
	}
	if (!(d->values[d->n] = strndup(s, len)))
		return -1;
	d->lens[d->n] = len;
	d->slots[i] = d->n + 1;
	*code = (uint16_t)d->n++;
	return 0;
}

/* |v|'s code under |g| in |d|: WIRE_NULL for null; -1 unsupported (or no
 * declared domain), -2 out of memory, -3 too many values. What is interned
 * is the key of the field's declared domain (|cf|), never the value: a bin,
 * a period in the range, an age band, or "other" (docs/disclosure.md,
 * "Declared domains"), so not even the hub sees which values exist. */
static int code_of(struct sq_dict *d, const struct adapter_field *f, const struct policy_catalog_field *cf,
		   const struct adapter_value *v, enum policy_gen g, int32_t today, uint16_t *code)
{
	char buf[GEN_BUF], kbuf[POLICY_DOMAIN_KEY_LEN];
	long k;
	const char *s;
	size_t len;
	int64_t key = 0;
	uint32_t slot = 0;
	int cacheable = !v->null && raw_key(v, &key) == 0, rc;

	if (v->null) {
		*code = WIRE_NULL;
		return 0;
	}
	if (cacheable) {
		slot = cache_slot(key);
		if (d->ccode[slot] && d->ckey[slot] == key) {
			*code = (uint16_t)(d->ccode[slot] - 1);
			return 0;
		}
	}
	if ((rc = generalise_text(f, v, g, today, buf, &s, &len)) < 0)
		return -1;
	if (rc > 0) {
		*code = WIRE_NULL;
		return 0;
	}
	if ((k = policy_domain_index(cf, g, s, len)) < 0 ||
	    !(s = policy_domain_key(cf, g, (size_t)k, kbuf)))
		return -1;
	len = strlen(s);
	if ((rc = dict_intern(d, s, len, code)) < 0)
		return rc == -1 ? -2 : -3;
	if (cacheable) {
		d->ckey[slot] = key;
		d->ccode[slot] = (uint32_t)*code + 1;
	}
	return 0;
}

/* Whether |v| under |g| is one of |fl|'s values: 1, 0, or -1 unsupported. */
static int filter_match(const struct sq_filter *fl, const struct adapter_field *f,
			const struct adapter_value *v, enum policy_gen g, int32_t today)
{
	char buf[GEN_BUF];
	const char *s;
	size_t len;
	int rc = generalise_text(f, v, g, today, buf, &s, &len);

	if (rc != 0)
		return rc < 0 ? -1 : 0; /* null never matches */
	for (size_t i = 0; i < fl->nvalues; i++)
		if (fl->lens[i] == len && memcmp(fl->values[i], s, len) == 0)
			return 1;
	return 0;
}

static int rows_grow(struct sq_scan *sc)
{
	size_t cap = sc->cap ? sc->cap * 2 : 4096;
	uint32_t *b = malloc(cap * sizeof(*b));
	uint16_t *c;

	if (!b)
		return -1;
	/* the BSNs move by hand so the old copy can be wiped */
	if (sc->bsn) {
		memcpy(b, sc->bsn, sc->n * sizeof(*b));
		sodium_memzero(sc->bsn, sc->n * sizeof(*b));
		free(sc->bsn);
	}
	sc->bsn = b;
	if (sc->nf) {
		if (!(c = realloc(sc->codes, cap * sc->nf * sizeof(*c))))
			return -1;
		sc->codes = c;
	}
	sc->cap = cap;
	return 0;
}

/* One row: the filters, then the generalised codes; kept in flat arrays.
 * Projection: fields, the bsn, the live filter fields. */
static int sq_row(void *arg, const struct adapter_value *v, size_t nv)
{
	struct sq_scan *sc = arg;
	uint16_t codes[WIRE_MAX_FIELDS];

	(void)nv;
	for (size_t i = 0; i < sc->nlive; i++) {
		int m = filter_match(sc->live[i], sc->live_field[i], &v[sc->nf + 1 + i], sc->live_gen[i], sc->today);

		if (m < 0) {
			sc->unsupported = 1;
			return -1;
		}
		if (!m)
			return 0;
	}
	for (size_t i = 0; i < sc->nf; i++) {
		int rc = code_of(&sc->dict[i], sc->field[i], &sc->ds->cat[sc->field[i] - sc->ds->fields], &v[i],
				 sc->gen[i], sc->today, &codes[i]);

		if (rc < 0) {
			sc->unsupported |= rc == -1;
			sc->oom |= rc == -2;
			sc->too_many |= rc == -3;
			return -1;
		}
	}
	if (sc->n == sc->cap && rows_grow(sc) < 0) {
		sc->oom = 1;
		return -1;
	}
	if (sc->n >= UINT32_MAX) {
		sc->too_many = 1;
		return -1;
	}
	sc->bsn[sc->n] = v[sc->nf].bsn;
	if (sc->nf)
		memcpy(sc->codes + sc->n * sc->nf, codes, sc->nf * sizeof(*codes));
	sc->n++;
	return 0;
}

/*
 * Contribution bounding (docs/federation.md): a person with more rows than
 * |max_cells| keeps the first |max_cells| distinct combinations of its rows
 * taken in a uniformly random order, drawn afresh for every question; the
 * rest are dropped. Not source order: keeping the first rows in file order
 * biased every count toward what a file lists first (issue 11: with one
 * cell per person, programme counts came out ~9% low). A person with at
 * most |max_cells| rows keeps them all, and draws nothing.
 * The rows are put in (bsn, source order) by a stable radix sort on the 30
 * bits of a BSN (a hash table of a million persons spends its time in cache
 * misses), each person's rows are shuffled (Fisher-Yates, randombytes) when
 * there are more than |max_cells| and walked, and the kept rows are
 * compacted in place. 0, or -1 out of memory.
 */
/*
 * sq_bound()'s draws come from one ChaCha20 stream per question, keyed by
 * 32 bytes of randombytes_buf(): libsodium's randombytes_uniform() makes a
 * getrandom(2) system call for every draw, which was half of a node's time
 * per question at a million persons with several rows each. The stream is
 * as unpredictable as its key, which is fresh per question and wiped after.
 */
struct sq_rand {
	unsigned char key[crypto_stream_chacha20_KEYBYTES];
	uint64_t block;   /* nonce of the next refill */
	uint32_t buf[256];
	size_t pos;       /* next unread word of |buf| */
};

static void sq_rand_init(struct sq_rand *rs)
{
	randombytes_buf(rs->key, sizeof(rs->key));
	rs->block = 0;
	rs->pos = sizeof(rs->buf) / sizeof(rs->buf[0]);
}

static uint32_t sq_rand_word(struct sq_rand *rs)
{
	if (rs->pos == sizeof(rs->buf) / sizeof(rs->buf[0])) {
		unsigned char nonce[crypto_stream_chacha20_NONCEBYTES] = { 0 };

		memcpy(nonce, &rs->block, sizeof(rs->block) < sizeof(nonce) ? sizeof(rs->block) : sizeof(nonce));
		rs->block++;
		crypto_stream_chacha20((unsigned char *)rs->buf, sizeof(rs->buf), nonce, rs->key);
		rs->pos = 0;
	}
	return rs->buf[rs->pos++];
}

/* Uniform in [0, upper) for upper >= 1, without modulo bias: words below
 * 2^32 mod upper are drawn again (as randombytes_uniform() does). */
static uint32_t sq_rand_uniform(struct sq_rand *rs, uint32_t upper)
{
	uint32_t min = (1U + ~upper) % upper, r;

	do
		r = sq_rand_word(rs);
	while (r < min);
	return r % upper;
}

/* A test hook: the out-of-memory tests, which compare an answer with a run
 * without failures, make the draw repeatable (tests/unit/test_subquery.c).
 * NULL: the per-question stream above. */
static uint32_t (*sq_uniform)(const uint32_t upper_bound);

static int sq_bound(struct sq_scan *sc)
{
	size_t n = sc->n, w = 0;
	uint64_t *a, *t;
	size_t *count;
	unsigned char *keep;
	struct sq_rand rs;

	if (n == 0)
		return 0;
	a = malloc(n * sizeof(*a));
	t = malloc(n * sizeof(*t));
	count = malloc(1024 * sizeof(*count));
	keep = calloc(n, 1);
	if (!a || !t || !count || !keep) {
		free(a);
		free(t);
		free(count);
		free(keep);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		a[i] = (uint64_t)sc->bsn[i] << 32 | (uint32_t)i;
	for (int shift = 32; shift < 62; shift += 10) {
		size_t sum = 0;

		memset(count, 0, 1024 * sizeof(*count));
		for (size_t i = 0; i < n; i++)
			count[(a[i] >> shift) & 1023]++;
		for (size_t dg = 0; dg < 1024; dg++) {
			size_t c = count[dg];
			count[dg] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++)
			t[count[(a[i] >> shift) & 1023]++] = a[i];
		{
			uint64_t *x = a;
			a = t;
			t = x;
		}
	}
	sq_rand_init(&rs);
	for (size_t i = 0, j, end; i < n; i = end) {
		size_t kept = 0;

		for (end = i + 1; end < n && a[end] >> 32 == a[i] >> 32; end++)
			;
		/* which rows count: uniformly at random, per question */
		if (end - i > sc->max_cells)
			for (size_t k = end - i - 1; k > 0; k--) {
				size_t r = sq_uniform ? (size_t)sq_uniform((uint32_t)(k + 1))
						      : (size_t)sq_rand_uniform(&rs, (uint32_t)(k + 1));
				uint64_t x = a[i + k];

				a[i + k] = a[i + r];
				a[i + r] = x;
			}
		/* a person's rows are a[i..end); its kept rows are a[i..i+kept)
		 * once moved there, so each row is compared with at most
		 * max_cells others however many rows the person has */
		for (j = i; j < end; j++) {
			size_t r = (uint32_t)a[j];
			int seen = 0;

			if (kept >= sc->max_cells)
				continue;
			for (size_t k = i; k < i + kept && !seen; k++)
				seen = memcmp(sc->codes + (uint32_t)a[k] * sc->nf, sc->codes + r * sc->nf,
					      sc->nf * sizeof(*sc->codes)) == 0;
			if (!seen) {
				keep[r] = 1;
				a[i + kept++] = a[j];
			}
		}
	}
	for (size_t r = 0; r < n; r++) {
		if (!keep[r])
			continue;
		sc->bsn[w] = sc->bsn[r];
		if (sc->nf && w != r)
			memmove(sc->codes + w * sc->nf, sc->codes + r * sc->nf, sc->nf * sizeof(*sc->codes));
		w++;
	}
	/* the dropped rows' BSNs past the end, and the sort's copies */
	sodium_memzero(sc->bsn + w, (n - w) * sizeof(*sc->bsn));
	sodium_memzero(a, n * sizeof(*a));
	sodium_memzero(t, n * sizeof(*t));
	sodium_memzero(&rs, sizeof(rs));
	free(a);
	free(t);
	free(count);
	free(keep);
	sc->n = w;
	return 0;
}

static void sq_scan_free(struct sq_scan *sc)
{
	for (size_t i = 0; sc->dict && i < sc->nf; i++) {
		for (uint32_t c = 0; c < sc->dict[i].n; c++)
			free(sc->dict[i].values[c]);
		free(sc->dict[i].values);
		free(sc->dict[i].lens);
		free(sc->dict[i].slots);
	}
	free(sc->dict);
	/* personal data */
	if (sc->bsn)
		sodium_memzero(sc->bsn, sc->n * sizeof(*sc->bsn));
	free(sc->bsn);
	free(sc->codes);
	memset(sc, 0, sizeof(*sc));
}

/* Writes the audit line for this subquery, whole or not at all; 0, or -1
 * (the caller answers 503). */
static int sq_audit(const struct gw_env *env, const struct gw_member *caller, const struct subquery *q,
		    const struct policy_decision *dec, unsigned max_cells, const char *outcome, int status,
		    size_t records, long cells, char audit_id[33])
{
	cJSON *o = cJSON_CreateObject(), *fields, *filters;
	int ok = o != NULL, rc = -1;

	const struct adapter *a = NULL;
	char mark[GW_IDENT_MARK_SIZE];
	const char *ds;

	json_put_str(&ok, o, "operation", "subquery");
	json_put_str(&ok, o, "hub", caller->id);
	/* The hub's strings as sent only when they name what this node knows
	 * (a member, a purpose of its policies, a dataset it holds, a field of
	 * it); anything else as a marker (gateway/ident.h). */
	if (q->requester)
		json_put_str(&ok, o, "requester",
			     gw_ident_audit(q->requester, GW_IDENT_MAX, GW_IDENT_NAME,
					    env->members && gw_members_by_id(env->members, q->requester), mark));
	if (q->purpose)
		json_put_str(&ok, o, "purpose",
			     gw_ident_audit(q->purpose, GW_IDENT_MAX, GW_IDENT_NAME,
					    gw_ident_purpose_declared(env->policies, q->purpose), mark));
	if (q->dataset) {
		/* The worker only now: a refusal before the body was read (a
		 * caller without the hub role) has no dataset to look up. */
		int i = worker_dataset(node_worker(env), q->dataset);

		a = i < 0 ? NULL : node_worker(env)->adapters[i];
		ds = gw_ident_audit(q->dataset, GW_IDENT_MAX, GW_IDENT_DATASET, a != NULL, mark);
		json_put(&ok, o, "datasets", cJSON_CreateStringArray(&ds, 1));
	}
	if (q->query_hex[0])
		json_put_str(&ok, o, "query_id", q->query_hex);
	if (q->parsed) {
		json_put_str(&ok, o, "mode", q->tokens ? "tokens" : "counts");
		json_put_str(&ok, o, "policy_operation", policy_op_name(q->op));
	}
	fields = json_put(&ok, o, "fields", cJSON_CreateArray());
	for (size_t i = 0; i < q->nfields; i++)
		json_put_str(&ok, fields, NULL,
			     gw_ident_audit(q->fields[i], GW_IDENT_MAX, GW_IDENT_NAME,
					    a && adapter_field_index(a, q->fields[i], strlen(q->fields[i])) >= 0,
					    mark));
	filters = json_put(&ok, o, "filters", cJSON_CreateArray());
	for (size_t i = 0; i < q->nfilters; i++)
		json_put_str(&ok, filters, NULL,
			     gw_ident_audit(q->filters[i].field, GW_IDENT_MAX, GW_IDENT_NAME,
					    a && adapter_field_index(a, q->filters[i].field,
								     strlen(q->filters[i].field)) >= 0,
					    mark));
	json_put_str(&ok, o, "decision", dec && dec->permit ? "permit" : "deny");
	if (dec) {
		json_put_str(&ok, o, "rule", dec->rule);
		json_put_str(&ok, o, "reason", policy_reason_name(dec->reason));
		if (!dec->permit && dec->nearest[0])
			json_put_str(&ok, o, "nearest_rule", dec->nearest);
		json_put_str(&ok, o, "policy_hash", dec->policy_hash);
	}
	if (max_cells)
		json_put_num(&ok, o, "max_cells_per_person", max_cells);
	json_put_str(&ok, o, "outcome", outcome);
	json_put_num(&ok, o, "status", status);
	json_put_num(&ok, o, "records", (double)records);
	if (cells >= 0)
		json_put_num(&ok, o, "cells", (double)cells);
	if (ok && env->audit)
		rc = audit_append(env->audit, o, audit_id);
	cJSON_Delete(o);
	return rc;
}

/* Audits the refusal, then answers it; 503 if it cannot be recorded. */
static int sq_refuse(const struct gw_env *env, const struct gw_member *caller, const struct subquery *q,
		     const struct policy_decision *dec, int status, const char *code, const char *message,
		     struct gw_response *resp)
{
	char id[33];

	if (!refusal_admitted(env, caller, status, resp))
		return 0;
	if (sq_audit(env, caller, q, dec, 0, code, status, 0, -1, id) < 0)
		return gw_error(resp, 503, "audit_unavailable",
				"the decision could not be recorded, so nothing is answered");
	return gw_error(resp, status, code, message);
}

/*
 * Exact filters go to the adapter as typed values (SQLite filters in SQL;
 * the CSV reader skips typing the rest of a row that does not match). A
 * value is kept only when it is the canonical text of its typed value
 * ("1" is not "true"), so pushing down matches exactly what comparing the
 * text would. Returns 0, or 1 when a filter can match nothing.
 */
static int sq_push_filters(struct subquery *q, const struct node_dataset *ds, const enum policy_gen *gen)
{
	int empty = 0;

	for (size_t j = 0; j < q->nfilters; j++) {
		struct sq_filter *fl = &q->filters[j];
		const struct adapter_field *f = &ds->fields[fl->idx];

		if (gen[j] > POLICY_GEN_EXACT)
			continue;
		fl->pushed = 1;
		for (size_t i = 0; i < fl->nvalues; i++) {
			struct adapter_value tv;
			char why[128], buf[GEN_BUF];
			const char *s;
			size_t len;

			if (fl->lens[i] == 0 ||
			    adapter_value_parse(f, fl->values[i], fl->lens[i], &tv, why, sizeof(why)) < 0 ||
			    tv.null || generalise_text(f, &tv, POLICY_GEN_EXACT, 0, buf, &s, &len) != 0 ||
			    len != fl->lens[i] || memcmp(s, fl->values[i], len) != 0)
				continue;
			fl->typed[fl->ntyped++] = tv;
		}
		empty |= fl->ntyped == 0;
	}
	return empty;
}

/* Mode counts: distinct persons per combination that occurs. After the
 * bound, every kept row is one (person, combination), so a cell's rows are
 * its persons. Returns the "cells" array, or NULL out of memory. */
static cJSON *sq_cells(const struct sq_scan *sc, long *ncells)
{
	cJSON *cells = cJSON_CreateArray();
	uint32_t *slots = NULL, *first = NULL, *count = NULL, mask = 1023, n = 0;
	int ok = 1;

	*ncells = 0;
	while (mask + 1 < 2 * sc->n + 2)
		mask = mask * 2 + 1;
	if (!cells || !(slots = calloc((size_t)mask + 1, sizeof(*slots))) ||
	    !(first = malloc((sc->n + 1) * sizeof(*first))) || !(count = malloc((sc->n + 1) * sizeof(*count))))
		goto oom;
	for (size_t r = 0; r < sc->n; r++) {
		const uint16_t *k = sc->codes + r * sc->nf;
		uint32_t i = (uint32_t)sq_hash((const char *)k, sc->nf * sizeof(*k)) & mask;

		for (; slots[i]; i = (i + 1) & mask)
			if (memcmp(sc->codes + (size_t)first[slots[i] - 1] * sc->nf, k, sc->nf * sizeof(*k)) == 0)
				break;
		if (!slots[i]) {
			first[n] = (uint32_t)r;
			count[n] = 0;
			slots[i] = ++n;
		}
		count[slots[i] - 1]++;
	}
	for (uint32_t c = 0; c < n && ok; c++) {
		cJSON *cell = json_put(&ok, cells, NULL, cJSON_CreateObject());
		cJSON *key = json_put(&ok, cell, "key", cJSON_CreateArray());

		for (size_t f = 0; f < sc->nf; f++) {
			uint16_t code = sc->codes[(size_t)first[c] * sc->nf + f];

			json_put(&ok, key, NULL, code == WIRE_NULL ? cJSON_CreateNull()
							       : cJSON_CreateString(sc->dict[f].values[code]));
		}
		json_put_num(&ok, cell, "persons", count[c]);
	}
	if (!ok)
		goto oom;
	free(slots);
	free(first);
	free(count);
	*ncells = n;
	return cells;
oom:
	free(slots);
	free(first);
	free(count);
	cJSON_Delete(cells);
	return NULL;
}

/* Room left after the sealed box for the answer's head (dataset id, policy
 * hash, records, audit id: well under this; a longer head reallocates). */
#define SQ_HEAD_ROOM 512

/* Mode tokens: per-query tokens (pseudo_key_query under the purpose key,
 * truncated to 16 bytes), the wire plaintext, sealed to the hub (wire.h:
 * magic, box length, box; the head follows later). Returns 0 with |*body|
 * (the caller frees it), or a wire/pseudo error. */
static int sq_seal(const struct gw_node *n, const struct subquery *q, const struct sq_scan *sc,
		   unsigned char **body, size_t *bodylen, uint32_t *nrecords)
{
	struct pseudo_key *pk = NULL, *qk = NULL;
	struct wire_builder *b = NULL;
	unsigned char (*tok)[PSEUDO_TOKEN_BYTES] = NULL;
	unsigned char *plain = NULL;
	size_t plen = 0;
	int rc = WIRE_ERR_NOMEM;

	*body = NULL;
	if (pseudo_key_purpose(n->master, q->purpose, &pk) < 0 || pseudo_key_query(pk, q->query_id, &qk) < 0)
		goto done;
	if ((rc = wire_builder_new((uint32_t)sc->nf, &b)) < 0 || (rc = wire_builder_reserve(b, sc->n)) < 0)
		goto done;
	/* The scan already coded every value: its dictionaries become the
	 * wire's, and records go in by code, no string looked up again. */
	for (size_t f = 0; f < sc->nf; f++)
		if ((rc = wire_builder_set_dict(b, (uint32_t)f, (const char *const *)sc->dict[f].values,
						sc->dict[f].n)) < 0)
			goto done;
	if (!(tok = malloc(SQ_TOKEN_CHUNK * sizeof(*tok)))) {
		rc = WIRE_ERR_NOMEM;
		goto done;
	}
	/* One batch call per chunk: the AVX2 path works four at a time, so
	 * chunks cost nothing and keep the tokens in 128 KiB. */
	for (size_t i = 0; i < sc->n; i += SQ_TOKEN_CHUNK) {
		size_t m = sc->n - i < SQ_TOKEN_CHUNK ? sc->n - i : SQ_TOKEN_CHUNK;

		pseudo_tokens(qk, sc->bsn + i, m, tok);
		for (size_t j = 0; j < m; j++)
			if ((rc = wire_builder_add_coded(b, tok[j], sc->codes + (i + j) * sc->nf)) < 0)
				goto done;
	}
	if ((rc = wire_builder_finish(b, &plain, &plen, nrecords)) < 0)
		goto done;
	rc = wire_seal(plain, plen, n->hub_pk, SQ_HEAD_ROOM, body, bodylen);
done:
	if (plain) {
		sodium_memzero(plain, plen);
		free(plain);
	}
	if (tok) {
		sodium_memzero(tok, SQ_TOKEN_CHUNK * sizeof(*tok));
		free(tok);
	}
	wire_builder_free(b);
	pseudo_key_free(qk);
	pseudo_key_free(pk);
	return rc;
}

/* Appends the sealed body's head: {"dataset", "policy_hash", "records",
 * "audit_id": the slot}. 0, or -1 out of memory (|*sealed| is still the
 * caller's either way). */
static int sq_append_head(const struct subquery *q, const struct policy_decision *dec, uint32_t nrecords,
			  unsigned char **sealed, size_t *sealedlen)
{
	cJSON *o = cJSON_CreateObject();
	int ok = o != NULL;
	char *head;
	size_t hlen;

	json_put_str(&ok, o, "dataset", q->dataset);
	json_put_str(&ok, o, "policy_hash", dec->policy_hash);
	json_put_num(&ok, o, "records", nrecords);
	json_put_str(&ok, o, "audit_id", AUDIT_ID_SLOT);
	head = ok ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	if (!head)
		return -1;
	hlen = strlen(head);
	if (hlen > SQ_HEAD_ROOM) {
		unsigned char *grown = realloc(*sealed, *sealedlen + hlen);

		if (!grown) {
			free(head);
			return -1;
		}
		*sealed = grown;
	}
	memcpy(*sealed + *sealedlen, head, hlen);
	*sealedlen += hlen;
	free(head);
	return 0;
}

/* The counts answer, printed whole: {"dataset", "policy_hash", "fields",
 * "cells", "audit_id": the slot}. Takes |cells| over; NULL out of memory. */
static char *sq_counts_answer(const struct subquery *q, const struct policy_decision *dec, cJSON *cells)
{
	cJSON *o = cJSON_CreateObject(), *names;
	int ok = o != NULL;
	char *text;

	json_put_str(&ok, o, "dataset", q->dataset);
	json_put_str(&ok, o, "policy_hash", dec->policy_hash);
	names = json_put(&ok, o, "fields", cJSON_CreateArray());
	for (size_t i = 0; i < q->nfields; i++)
		json_put_str(&ok, names, NULL, q->fields[i]);
	json_put(&ok, o, "cells", cells);
	json_put_str(&ok, o, "audit_id", AUDIT_ID_SLOT);
	text = ok ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	return text;
}

int gw_node_subquery(const struct gw_env *env, const struct gw_member *caller,
		     const cJSON *body, struct gw_response *resp)
{
	struct gw_node_worker *w = node_worker(env);
	struct subquery *q;
	struct policy_field pf[WIRE_MAX_FIELDS + SQ_MAX_FILTERS];
	struct policy_request req = { 0 };
	struct policy_decision dec;
	const struct node_dataset *ds = NULL;
	struct adapter *a = NULL;
	unsigned proj[1 + WIRE_MAX_FIELDS + SQ_MAX_FILTERS];
	struct adapter_filter pushed[SQ_MAX_FILTERS];
	size_t npushed = 0, nproj;
	struct sq_scan sc = { 0 };
	struct diag d = { 0 };
	char *answer = NULL; /* mode counts */
	unsigned char *sealed = NULL;
	char audit_id[33];
	size_t sealedlen = 0;
	uint32_t nrecords = 0;
	long ncells = -1;
	const char *bad;
	unsigned max_cells;
	int rc, empty;

	if (!w || !env->policies)
		return gw_error(resp, 501, "not_implemented", "this gateway has no node role");
	if (!(q = calloc(1, sizeof(*q))))
		return gw_error(resp, 500, "internal", "out of memory");

	/* 1. Only the hub asks: a coordinator gets tables from the hub, never
	 * per-node counts or tokens. */
	if (!(caller->roles & GW_ROLE_HUB)) {
		rc = sq_refuse(env, caller, q, NULL, 403, "not_a_hub",
			       "subqueries are answered only to members with the hub role", resp);
		goto done;
	}

	/* 2. Validate against the request's shape and this node's schema. */
	if ((bad = sq_parse(body, q)) != NULL) {
		rc = sq_refuse(env, caller, q, NULL, 400, "bad_request", bad, resp);
		goto done;
	}
	{
		int i = worker_dataset(w, q->dataset);

		ds = i < 0 ? NULL : &w->node->ds[i];
		a = i < 0 ? NULL : w->adapters[i];
	}
	if (!ds) {
		rc = sq_refuse(env, caller, q, NULL, 404, "not_found", "this node does not hold that dataset", resp);
		goto done;
	}
	for (size_t i = 0; i < q->nfields + q->nfilters; i++) {
		const char *name = i < q->nfields ? q->fields[i] : q->filters[i - q->nfields].field;
		int idx = adapter_field_index(a, name, strlen(name));

		if (idx < 0 || idx == ds->bsn_field) {
			rc = sq_refuse(env, caller, q, NULL, 400, "bad_request",
				       i < q->nfields ? "a field in 'fields' is not in the dataset, or is the identifier"
						      : "a field in 'filters' is not in the dataset, or is the identifier",
				       resp);
			goto done;
		}
		proj[i] = (unsigned)idx;
		if (i >= q->nfields)
			q->filters[i - q->nfields].idx = (unsigned)idx;
	}
	if (q->tokens && !w->node->has_hub_pk) {
		rc = sq_refuse(env, caller, q, NULL, 501, "no_hub_key",
			       "this node has no node.hub_public_key to seal linked answers to", resp);
		goto done;
	}

	/* 3. Decide with this node's own policy, as the coordinator who asked:
	 * fields and filter fields, at the generalisation the hub asks (NONE:
	 * the policy's). A permit at a requested generalisation means it is
	 * at least as coarse as granted, so dec.gen is the coarser of the two. */
	for (size_t i = 0; i < q->nfields; i++)
		pf[i] = (struct policy_field){ q->dataset, q->fields[i], q->fgen[i] };
	for (size_t j = 0; j < q->nfilters; j++)
		pf[q->nfields + j] = (struct policy_field){ q->dataset, q->filters[j].field, q->filters[j].gen };
	req.requester = q->requester;
	req.purpose = q->purpose;
	req.operation = q->op;
	req.datasets = &q->dataset;
	req.ndatasets = 1;
	req.fields = pf;
	req.nfields = q->nfields + q->nfilters;
	req.identifiers = POLICY_IDENT_NEVER;
	req.time = time(NULL);
	if (policy_decide(env->policies, &req, &dec) < 0) {
		rc = gw_error(resp, 500, "internal", "the policy could not be evaluated");
		goto done;
	}
	if (!dec.permit) {
		rc = sq_refuse(env, caller, q, &dec, 403, policy_reason_name(dec.reason), dec.message, resp);
		goto done;
	}
	/* The stricter of the node's bound (default 1) and the hub's. */
	max_cells = dec.out.max_cells_per_person ? dec.out.max_cells_per_person : 1;
	if (q->max_cells && q->max_cells < max_cells)
		max_cells = q->max_cells;

	/* 4. Read: stream the rows, keep BSNs and codes in flat arrays, then
	 * bound each person's contribution. */
	/* A group-by field without a declared domain is never grouped: its
	 * keys would come from the data (docs/disclosure.md). */
	for (size_t i = 0; i < q->nfields; i++)
		if (policy_domain_size(&ds->cat[proj[i]], dec.gen[i]) == 0) {
			rc = sq_refuse(env, caller, q, &dec, 422, "no_declared_domain",
				       "a field in 'fields' has no declared domain in the catalog at this "
				       "coarseness, so it cannot be grouped", resp);
			goto done;
		}
	empty = sq_push_filters(q, ds, dec.gen + q->nfields);
	sc.ds = ds;
	sc.q = q;
	sc.gen = dec.gen;
	sc.today = today_days();
	sc.max_cells = max_cells;
	sc.nf = q->nfields;
	for (size_t i = 0; i < q->nfields; i++)
		sc.field[i] = &ds->fields[proj[i]];
	nproj = q->nfields;
	proj[nproj++] = (unsigned)ds->bsn_field;
	for (size_t j = 0; j < q->nfilters; j++) {
		struct sq_filter *fl = &q->filters[j];

		if (fl->pushed) {
			pushed[npushed++] = (struct adapter_filter){ fl->idx, fl->typed, fl->ntyped };
			continue;
		}
		sc.live[sc.nlive] = fl;
		sc.live_field[sc.nlive] = &ds->fields[fl->idx];
		sc.live_gen[sc.nlive++] = dec.gen[q->nfields + j];
		proj[nproj++] = fl->idx;
	}
	if (sc.nf && !(sc.dict = calloc(sc.nf, sizeof(*sc.dict)))) {
		rc = gw_error(resp, 500, "internal", "out of memory");
		goto done;
	}
	rc = empty ? 0 : adapter_scan(a, pushed, npushed, proj, nproj, sq_row, &sc, NULL, &d);
	if (rc < 0)
		log_scan_failure(ds, rc, &d);
	diag_clear(&d);
	if (sc.unsupported) {
		rc = sq_refuse(env, caller, q, &dec, 501, "generalisation_unavailable",
			       "the policy asks for a generalisation this node cannot apply", resp);
		goto done;
	}
	if (sc.too_many) {
		rc = sq_refuse(env, caller, q, &dec, 400, "bad_request",
			       "a field has more than 65535 distinct values; ask for it generalised", resp);
		goto done;
	}
	if (sc.oom || rc == ADAPTER_ERR_NOMEM) {
		rc = gw_error(resp, 500, "internal", "out of memory");
		goto done;
	}
	if (rc < 0) {
		rc = sq_refuse(env, caller, q, &dec, 503, "source_unavailable", "the dataset could not be read", resp);
		goto done;
	}
	if (sq_bound(&sc) < 0) {
		rc = gw_error(resp, 500, "internal", "out of memory");
		goto done;
	}

	/* 5. Build the answer, whole: nothing of it leaves before the audit
	 * line, and nothing can fail after it. */
	if (!q->tokens) {
		cJSON *cells = sq_cells(&sc, &ncells);

		if (!cells || !(answer = sq_counts_answer(q, &dec, cells))) {
			rc = gw_error(resp, 500, "internal", "out of memory");
			goto done;
		}
	} else if ((rc = sq_seal(w->node, q, &sc, &sealed, &sealedlen, &nrecords)) < 0) {
		if (rc == WIRE_ERR_LIMIT)
			rc = sq_refuse(env, caller, q, &dec, 400, "bad_request",
				       "a value is too long for the wire (65535 bytes)", resp);
		else
			rc = gw_error(resp, 500, "internal", "the sealed answer could not be built");
		goto done;
	} else if (sq_append_head(q, &dec, nrecords, &sealed, &sealedlen) < 0) {
		rc = gw_error(resp, 500, "internal", "out of memory");
		goto done;
	}

	/* 6. Audit before anything leaves; fail closed. */
	if (sq_audit(env, caller, q, &dec, max_cells, "answered", 200, q->tokens ? nrecords : sc.n, ncells,
		     audit_id) < 0) {
		rc = gw_error(resp, 503, "audit_unavailable",
			      "the decision could not be recorded, so nothing is answered");
		goto done;
	}

	/* 7. Answer: the audit id into its slot, nothing else. */
	{
		char *text = q->tokens ? (char *)sealed : answer;
		size_t len = q->tokens ? sealedlen : strlen(answer);

		fill_audit_id(text, len, audit_id);
		free(resp->body);
		resp->status = 200;
		resp->body = text;
		resp->len = len;
		resp->content_type = q->tokens ? WIRE_SEALED_CONTENT_TYPE : "application/json";
		sealed = NULL;
		answer = NULL;
		rc = 0;
	}
done:
	free(answer);
	free(sealed);
	sq_scan_free(&sc);
	free(q);
	return rc;
}
