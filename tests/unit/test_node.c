/*
 * Unit tests for the node (gateway/node.c): gw_node_lookup() called
 * directly over a hand-built gw_env (catalog, policies from a string, a tiny
 * CSV, an audit log in a temporary folder), fail-closed auditing, the rate
 * limit at its boundary, and generalise() for every generalisation.
 */
#define CHECK_FILE "test_node"
#include "check.h"

/*
 * Out of memory: node.c's own allocations fail one at a time through the
 * macros below (cJSON's through its hooks, failalloc.h). Every header node.c
 * uses comes first, so the macros rewrite node.c's code only.
 */
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <sodium.h>
#include <cjson/cJSON.h>
#include "../../adapters/adapter.h"
#include "../../aggregate/wire.h"
#include "../../crypto/pseudo.h"
#include "../../policies/policy.h"
#include "../../gateway/audit.h"
#include "../../gateway/config.h"
#include "../../gateway/log.h"
#include "../../gateway/members.h"
#include "../../gateway/node.h"
#include "../../gateway/routes.h"
#include "failalloc.h"
#undef strdup
#undef strndup
#define malloc(n) fa_malloc(n)
#define calloc(a, b) fa_calloc(a, b)
#define realloc(p, n) fa_realloc(p, n)
#define strdup(s) fa_strdup(s)
#define strndup(s, n) fa_strndup(s, n)
int scan_hook(struct adapter *a, const struct adapter_filter *filters, size_t nfilters,
	      const unsigned *projection, size_t nproj, adapter_row_fn fn, void *arg,
	      struct adapter_stats *stats, struct diag *d);
#define adapter_scan scan_hook /* a scan can be made to fail as the adapter would */
#include "../../gateway/node.c"
#undef adapter_scan
#undef malloc
#undef calloc
#undef realloc
#undef strdup
#undef strndup

#include <sys/stat.h>

#include "../../common/diag.h"

static char dir[] = "/tmp/np-node-XXXXXX";

/* 0: scans run; an adapter error code: every scan returns it at once. */
static int scan_fails_with;

int scan_hook(struct adapter *a, const struct adapter_filter *filters, size_t nfilters,
	      const unsigned *projection, size_t nproj, adapter_row_fn fn, void *arg,
	      struct adapter_stats *stats, struct diag *d)
{
	if (scan_fails_with)
		return scan_fails_with;
	return adapter_scan(a, filters, nfilters, projection, nproj, fn, arg, stats, d);
}
static char *catalog_path, *csv_path, *key_path, *audit_path, *policy_path;
static struct gw_config cfg;
static struct policy_set *policies;
static struct audit_log *alog;

#define DS "fonds/inschrijvingen"
/* Three persons; 111222333 has two rows, 123456782 one. */
#define BSN_A "123456782"
#define BSN_B "111222333"
#define BSN_NONE "100000009" /* valid, not in the data */

static const char catalog_text[] =
	"datasets:\n"
	"  fonds/inschrijvingen:\n"
	"    description: test\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      programme: {type: category, role: attribute, categories: [nld-1, nld-2, kv]}\n"
	"      start_year: {type: int, role: attribute}\n"
	"      completed: {type: bool, role: attribute}\n"
	"      birth_date: {type: date, role: quasi_identifier}\n"
	"      postcode: {type: string, role: quasi_identifier}\n"
	"      end_date: {type: date, role: attribute}\n";

static const char csv_text[] =
	"bsn,programme,start_year,completed,birth_date,postcode,end_date\n"
	"123456782,kv,2023,true,1980-05-17,9712 AB,2024-03-31\n"
	"111222333,nld-1,2021,false,1975-12-01,8911,\n"
	"111222333,nld-2,2022,true,1975-12-01,8911,2023-01-15\n";

static const char policy_text[] =
	"purposes:\n"
	"  - id: check\n"
	"    description: test\n"
	"    legal_basis: {text: test}\n"
	"    valid: {from: 2020-01-01, until: 2099-12-31}\n"
	"    grants:\n"
	"      - id: check-grant\n"
	"        requesters: [gemeente-groningen]\n"
	"        operations: [lookup]\n"
	"        datasets:\n"
	"          fonds/inschrijvingen:\n"
	"            programme: exact\n"
	"            start_year: exact\n"
	"            completed: exact\n"
	"            birth_date: age_band_10\n"
	"            postcode: postcode4\n"
	"            end_date: quarter\n"
	"        identifiers: pseudonym\n"
	"  - id: coarse\n"
	"    description: test, a generalisation this node cannot apply\n"
	"    legal_basis: {text: test}\n"
	"    valid: {from: 2020-01-01, until: 2099-12-31}\n"
	"    grants:\n"
	"      - id: coarse-grant\n"
	"        requesters: [gemeente-groningen]\n"
	"        operations: [lookup]\n"
	"        datasets:\n"
	"          fonds/inschrijvingen:\n"
	"            postcode: gemeente\n"
	"        identifiers: pseudonym\n";

static struct gw_member groningen = { .id = "gemeente-groningen", .name = "Gemeente Groningen",
				      .oin = "00000001001589609000", .roles = 1 };
static struct gw_member leeuwarden = { .id = "gemeente-leeuwarden", .name = "Gemeente Leeuwarden",
				       .oin = "00000001001740063000", .roles = 1 };

/* One node + worker for a test, with its own rate settings. */
struct fixture {
	struct gw_node *node;
	struct gw_node_worker *w;
	struct gw_env env;
};

static int fixture_open(struct fixture *fx, uint32_t per_minute, uint32_t burst)
{
	char err[512];
	struct diag nd = { 0 };
	int nrc;

	memset(fx, 0, sizeof(*fx));
	cfg.node.lookups_per_minute = per_minute;
	cfg.node.lookup_burst = burst;
	nrc = gw_node_open(&cfg, &fx->node, &nd);
	if (nd.errors || nd.warnings)
		printf("#   gw_node_open: %s", diag_text(&nd));
	diag_clear(&nd);
	if (nrc < 0)
		return -1;
	if (gw_node_worker_open(fx->node, &fx->w, err, sizeof(err)) < 0) {
		printf("#   gw_node_worker_open: %s\n", err);
		gw_node_free(fx->node);
		return -1;
	}
	fx->env.policies = policies;
	fx->env.node_worker = fx->w;
	fx->env.audit = alog;
	return 0;
}

static void fixture_close(struct fixture *fx)
{
	gw_node_worker_free(fx->w);
	gw_node_free(fx->node);
}

/* Runs one lookup with |json| as the body; the caller frees r->body. */
static int ask(struct fixture *fx, const struct gw_member *m, const char *json, struct gw_response *r)
{
	cJSON *body = cJSON_Parse(json);
	int rc;

	memset(r, 0, sizeof(*r));
	if (!body) {
		printf("#   bad test JSON: %s\n", json);
		return -1;
	}
	rc = gw_node_lookup(&fx->env, m, body, r);
	cJSON_Delete(body);
	return rc;
}

static unsigned long audit_lines(void)
{
	struct audit_report rep;

	memset(&rep, 0, sizeof(rep));
	if (audit_verify(audit_path, NULL, &rep) != 0) {
		printf("#   audit log not intact: line %lu: %s\n", rep.first_bad_line, rep.problem);
		return (unsigned long)-1;
	}
	return rep.records;
}

#define LOOKUP_A "{\"purpose\":\"check\",\"dataset\":\"" DS "\",\"subject\":{\"bsn\":\"" BSN_A "\"}," \
		 "\"fields\":[\"programme\",\"start_year\",\"completed\",\"birth_date\",\"postcode\",\"end_date\"]}"

/* ---- lookups ---- */

/* The adapter out of memory: 500 internal, no audit line; an unreadable
 * source: 503 source_unavailable, audited. */
static void adapter_failures(void)
{
	struct fixture fx;
	struct gw_response r;
	unsigned long before = audit_lines();

	if (fixture_open(&fx, 0, 30) < 0) {
		CHECK(0);
		return;
	}
	scan_fails_with = ADAPTER_ERR_NOMEM;
	CHECK(ask(&fx, &groningen, LOOKUP_A, &r) == 0);
	CHECK(r.status == 500);
	CHECK_CONTAINS(r.body, "\"internal\"");
	free(r.body);
	CHECK(audit_lines() == before);
	scan_fails_with = ADAPTER_ERR_IO;
	CHECK(ask(&fx, &groningen, LOOKUP_A, &r) == 0);
	CHECK(r.status == 503);
	CHECK_CONTAINS(r.body, "source_unavailable");
	free(r.body);
	CHECK(audit_lines() == before + 1);
	scan_fails_with = 0;
	CHECK(ask(&fx, &groningen, LOOKUP_A, &r) == 0);
	CHECK(r.status == 200);
	free(r.body);
	fixture_close(&fx);
}

static void permit_200(void)
{
	struct fixture fx;
	struct gw_response r;
	unsigned long before = audit_lines();
	cJSON *o, *rec;

	if (fixture_open(&fx, 0, 30) < 0) {
		CHECK(0);
		return;
	}
	CHECK(ask(&fx, &groningen, LOOKUP_A, &r) == 0);
	CHECK(r.status == 200);
	o = cJSON_Parse(r.body);
	CHECK(o != NULL);
	rec = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "records"), 0);
	CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(o, "records")) == 1);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(rec, "programme")), "kv");
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(rec, "start_year")) == 2023);
	CHECK(cJSON_IsTrue(cJSON_GetObjectItem(rec, "completed")));
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(rec, "postcode")), "9712");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(rec, "end_date")), "2024-Q1");
	{
		const char *p = cJSON_GetStringValue(
			cJSON_GetObjectItem(cJSON_GetObjectItem(o, "subject"), "pseudonym"));
		CHECK(p && strlen(p) == 64);
	}
	CHECK(!strstr(r.body, BSN_A));
	CHECK(!strstr(r.body, "1980-05-17"));
	cJSON_Delete(o);
	free(r.body);
	CHECK(audit_lines() == before + 1);

	/* two rows of one person: both, in file order; an empty date is null */
	CHECK(ask(&fx, &groningen,
		  "{\"purpose\":\"check\",\"dataset\":\"" DS "\",\"subject\":{\"bsn\":\"" BSN_B "\"},"
		  "\"fields\":[\"programme\",\"end_date\"]}", &r) == 0);
	CHECK(r.status == 200);
	CHECK_CONTAINS(r.body, "\"records\":[{\"programme\":\"nld-1\",\"end_date\":null},"
			       "{\"programme\":\"nld-2\",\"end_date\":\"2023-Q1\"}]");
	free(r.body);

	/* not found: audited, no data */
	CHECK(ask(&fx, &groningen,
		  "{\"purpose\":\"check\",\"dataset\":\"" DS "\",\"subject\":{\"bsn\":\"" BSN_NONE "\"},"
		  "\"fields\":[\"programme\"]}", &r) == 0);
	CHECK(r.status == 404);
	CHECK_CONTAINS(r.body, "\"code\":\"not_found\"");
	free(r.body);
	CHECK(audit_lines() == before + 3);
	fixture_close(&fx);
}

static void generalisation_unavailable_501(void)
{
	struct fixture fx;
	struct gw_response r;

	if (fixture_open(&fx, 0, 30) < 0) {
		CHECK(0);
		return;
	}
	/* the policy grants postcode as 'gemeente'; the node has no table for it */
	CHECK(ask(&fx, &groningen,
		  "{\"purpose\":\"coarse\",\"dataset\":\"" DS "\",\"subject\":{\"bsn\":\"" BSN_A "\"},"
		  "\"fields\":[\"postcode\"]}", &r) == 0);
	CHECK(r.status == 501);
	CHECK_CONTAINS(r.body, "generalisation_unavailable");
	CHECK(!strstr(r.body, "9712"));
	free(r.body);
	fixture_close(&fx);
}

/* ---- fail closed ---- */

static void audit_failure_permit_503_no_data(void)
{
	struct fixture fx;
	struct gw_response r;
	unsigned long before = audit_lines();

	if (fixture_open(&fx, 0, 30) < 0) {
		CHECK(0);
		return;
	}
	audit_fail_next_writes(alog, 1);
	CHECK(ask(&fx, &groningen, LOOKUP_A, &r) == 0);
	CHECK(r.status == 503);
	CHECK_CONTAINS(r.body, "\"code\":\"audit_unavailable\"");
	CHECK(!strstr(r.body, "records"));
	CHECK(!strstr(r.body, "pseudonym"));
	CHECK(!strstr(r.body, "kv"));
	CHECK(!strstr(r.body, "9712"));
	CHECK(!strstr(r.body, BSN_A));
	free(r.body);
	/* the half-written line was rolled back: the chain verifies, nothing added */
	CHECK(audit_lines() == before);
	/* and the next lookup is answered and recorded */
	CHECK(ask(&fx, &groningen, LOOKUP_A, &r) == 0);
	CHECK(r.status == 200);
	free(r.body);
	CHECK(audit_lines() == before + 1);
	fixture_close(&fx);
}

static void audit_failure_deny_503(void)
{
	struct fixture fx;
	struct gw_response r;
	unsigned long before = audit_lines();

	if (fixture_open(&fx, 0, 30) < 0) {
		CHECK(0);
		return;
	}
	/* a policy deny that cannot be recorded is not answered as a deny */
	audit_fail_next_writes(alog, 1);
	CHECK(ask(&fx, &leeuwarden, LOOKUP_A, &r) == 0);
	CHECK(r.status == 503);
	CHECK_CONTAINS(r.body, "\"code\":\"audit_unavailable\"");
	free(r.body);
	/* nor an invalid BSN */
	audit_fail_next_writes(alog, 1);
	CHECK(ask(&fx, &groningen,
		  "{\"purpose\":\"check\",\"dataset\":\"" DS "\",\"subject\":{\"bsn\":\"123456789\"},"
		  "\"fields\":[\"programme\"]}", &r) == 0);
	CHECK(r.status == 503);
	free(r.body);
	/* nor a not-found */
	audit_fail_next_writes(alog, 1);
	CHECK(ask(&fx, &groningen,
		  "{\"purpose\":\"check\",\"dataset\":\"" DS "\",\"subject\":{\"bsn\":\"" BSN_NONE "\"},"
		  "\"fields\":[\"programme\"]}", &r) == 0);
	CHECK(r.status == 503);
	free(r.body);
	CHECK(audit_lines() == before);
	/* without an audit log at all: nothing is answered either */
	fx.env.audit = NULL;
	CHECK(ask(&fx, &groningen, LOOKUP_A, &r) == 0);
	CHECK(r.status == 503);
	CHECK(!strstr(r.body, "records"));
	free(r.body);
	fixture_close(&fx);
}

/* ---- out of memory ---- */

/* The answer in |r| as text to compare: the status and the JSON body
 * without its audit id (which goes to |id|, "" if none). The caller frees
 * it. */
static char *answer_text(const struct gw_response *r, char id[33])
{
	cJSON *o = r->body ? cJSON_ParseWithLength(r->body, r->len) : NULL;
	const char *a = cJSON_GetStringValue(cJSON_GetObjectItem(o, "audit_id"));
	char *t, *out;
	size_t n;

	snprintf(id, 33, "%s", a ? a : "");
	cJSON_DeleteItemFromObject(o, "audit_id");
	t = o ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	n = (t ? strlen(t) : 0) + 64;
	out = malloc(n);
	snprintf(out, n, "%d %s %s", r->status, r->content_type ? r->content_type : "-", t ? t : "(no JSON)");
	free(t);
	return out;
}

/* The last audit line without what differs on every line (seq, time,
 * audit_id, prev); its audit id goes to |id|. The caller frees it. */
static char *last_audit_text(char id[33])
{
	FILE *f = fopen(audit_path, "r");
	char *line = NULL, *last = NULL, *t;
	size_t cap = 0;
	cJSON *a;

	while (f && getline(&line, &cap, f) > 0) {
		free(last);
		last = strdup(line);
	}
	if (f)
		fclose(f);
	free(line);
	a = last ? cJSON_Parse(last) : NULL;
	free(last);
	snprintf(id, 33, "%s", a ? cJSON_GetStringValue(cJSON_GetObjectItem(a, "audit_id")) : "");
	cJSON_DeleteItemFromObject(a, "seq");
	cJSON_DeleteItemFromObject(a, "time");
	cJSON_DeleteItemFromObject(a, "audit_id");
	cJSON_DeleteItemFromObject(a, "prev");
	t = a ? cJSON_PrintUnformatted(a) : strdup("(no audit line)");
	cJSON_Delete(a);
	return t;
}

struct oom_count {
	long runs;     /* runs that failed an allocation */
	long in_node;  /* ... one of node.c's own */
	long in_cjson; /* ... one of cJSON's (node.c's JSON, the audit line's printing) */
};

/*
 * Makes each allocation of one lookup fail in turn (node.c's own, and with
 * |with_cjson| cJSON's too), k = 0, 1, 2, ..., until a run needs no more
 * than k. A run whose failure the node cannot get around
 * answers 500 internal or 503 audit_unavailable, releases nothing and leaves
 * no audit line (the line would record an answer or a refusal that was not
 * given); one that gets around it answers exactly as a run without failures
 * and records exactly its line. After the loop the worker answers as before.
 */
static void lookup_oom(const char *json, int want_status, int with_cjson, struct oom_count *c)
{
	struct fixture fx;
	struct gw_response r;
	cJSON *body = cJSON_Parse(json);
	char id[33], line_id[33], *want, *want_line, *again;
	unsigned long lines;
	int printed = 0;

	memset(c, 0, sizeof(*c));
	if (!body || fixture_open(&fx, 0, 30) < 0) {
		CHECK(0);
		cJSON_Delete(body);
		return;
	}
	lines = audit_lines();
	memset(&r, 0, sizeof(r));
	CHECK(gw_node_lookup(&fx.env, &groningen, body, &r) == 0);
	CHECK(r.status == want_status);
	want = answer_text(&r, id);
	free(r.body);
	CHECK(audit_lines() == ++lines);
	want_line = last_audit_text(line_id);
	CHECK(want_status != 200 || strcmp(id, line_id) == 0);

	if (with_cjson)
		fa_cjson_on();
	for (long k = 0; k < 100000; k++) {
		char *got, *line = NULL;
		unsigned long now;
		int rc, ok;

		memset(&r, 0, sizeof(r));
		fa_arm(k);
		rc = gw_node_lookup(&fx.env, &groningen, body, &r);
		fa_disarm();
		got = answer_text(&r, id);
		now = audit_lines();
		if (now != lines)
			line = last_audit_text(line_id);
		if (fa_failed == FA_NONE || strcmp(got, want) == 0)
			ok = rc == 0 && strcmp(got, want) == 0 && now == lines + 1 && strcmp(line, want_line) == 0 &&
			     (want_status != 200 || strcmp(id, line_id) == 0);
		else
			ok = rc == 0 && r.body && r.content_type && strcmp(r.content_type, "application/json") == 0 &&
			     ((r.status == 500 && strstr(r.body, "\"code\":\"internal\"")) ||
			      (r.status == 503 && strstr(r.body, "\"code\":\"audit_unavailable\""))) &&
			     now == lines;
		if (!ok && printed++ < 10)
			printf("#   allocation %ld failed (%s): rc %d, %.300s; %lu audit lines added%s%.300s\n", k,
			       fa_failed == FA_MODULE ? "node.c" : fa_failed == FA_CJSON ? "cJSON" : "none", rc, got,
			       now - lines, line ? ": " : "", line ? line : "");
		CHECK(ok);
		c->in_node += fa_failed == FA_MODULE;
		c->in_cjson += fa_failed == FA_CJSON;
		lines = now;
		free(got);
		free(line);
		free(r.body);
		if (fa_failed == FA_NONE)
			break;
		c->runs++;
	}
	fa_cjson_off();
	printf("#   %ld runs failed an allocation: %ld in node.c, %ld in cJSON\n", c->runs, c->in_node, c->in_cjson);

	memset(&r, 0, sizeof(r));
	CHECK(gw_node_lookup(&fx.env, &groningen, body, &r) == 0);
	again = answer_text(&r, id);
	CHECK_STR(again, want);
	free(again);
	free(r.body);
	CHECK(audit_lines() == lines + 1);
	free(want);
	free(want_line);
	cJSON_Delete(body);
	fixture_close(&fx);
}

/* A value that cannot be copied while fetching is the node's failure (500),
 * not a generalisation it cannot apply (501, audited as a refusal). */
static void out_of_memory_generalising(void)
{
	struct oom_count c;

	/* node.c's allocations only: every text value of the one record */
	lookup_oom(LOOKUP_A, 200, 0, &c);
	CHECK(c.in_node >= 4 && c.in_cjson == 0);
}

static void out_of_memory_found(void)
{
	struct oom_count c;

	/* one row, every type: text values are copied (strndup), the rest not */
	lookup_oom(LOOKUP_A, 200, 1, &c);
	CHECK(c.in_node >= 4);
	CHECK(c.in_cjson >= 60);
	/* two rows of one person */
	lookup_oom("{\"purpose\":\"check\",\"dataset\":\"" DS "\",\"subject\":{\"bsn\":\"" BSN_B "\"},"
		   "\"fields\":[\"programme\",\"end_date\",\"start_year\"]}", 200, 1, &c);
	CHECK(c.in_node >= 3);
	CHECK(c.in_cjson >= 60);
}

static void out_of_memory_not_found(void)
{
	struct oom_count c;

	/* a valid BSN the dataset does not hold: 404, audited */
	lookup_oom("{\"purpose\":\"check\",\"dataset\":\"" DS "\",\"subject\":{\"bsn\":\"" BSN_NONE "\"},"
		   "\"fields\":[\"programme\",\"postcode\"]}", 404, 1, &c);
	CHECK(c.in_cjson >= 20);
}

/* ---- rate limit ---- */

static void rate_limit_boundary(void)
{
	struct fixture fx;
	struct gw_response r;
	const unsigned burst = 3;

	if (fixture_open(&fx, 1, burst) < 0) {
		CHECK(0);
		return;
	}
	for (unsigned i = 0; i < burst; i++) {
		CHECK(ask(&fx, &groningen, LOOKUP_A, &r) == 0);
		CHECK(r.status == 200);
		CHECK(r.retry_after == 0);
		free(r.body);
	}
	CHECK(ask(&fx, &groningen, LOOKUP_A, &r) == 0);
	CHECK(r.status == 429);
	CHECK_CONTAINS(r.body, "\"code\":\"rate_limited\"");
	/* one lookup a minute: the next token is a minute away */
	CHECK(r.retry_after >= 1);
	CHECK(r.retry_after >= 59 && r.retry_after <= 61);
	free(r.body);
	/* another requester has its own bucket */
	CHECK(ask(&fx, &leeuwarden, LOOKUP_A, &r) == 0);
	CHECK(r.status != 429);
	free(r.body);
	fixture_close(&fx);

	/* a fast rate: retry_after is still at least 1 second */
	if (fixture_open(&fx, 6000, 1) < 0) {
		CHECK(0);
		return;
	}
	CHECK(ask(&fx, &groningen, LOOKUP_A, &r) == 0);
	CHECK(r.status == 200);
	free(r.body);
	CHECK(ask(&fx, &groningen, LOOKUP_A, &r) == 0);
	CHECK(r.status == 429);
	CHECK(r.retry_after >= 1);
	free(r.body);
	fixture_close(&fx);
}

/* lookup_burst is per requesting organisation: a requester may get at most
 * that many lookups at once whatever worker its connections land on, and
 * (one connection, one worker) should get that many. */
static void rate_limit_burst_over_workers(void)
{
	struct fixture fx;
	struct gw_node_worker *w2;
	struct gw_response r;
	char err[256];
	unsigned ok = 0;

	/* burst 4, 2 workers: one connection (one worker) should get 4 */
	if (fixture_open(&fx, 1, 4) < 0) {
		CHECK(0);
		return;
	}
	for (int i = 0; i < 5; i++) {
		CHECK(ask(&fx, &groningen, LOOKUP_A, &r) == 0);
		ok += r.status == 200;
		free(r.body);
	}
	if (ok != 4)
		printf("#   burst 4 over 2 workers: one worker answered %u lookups at once\n", ok);
	CHECK(ok == 4);
	fixture_close(&fx);

	/* burst 1, 2 workers: both workers together must not give more than 1 */
	if (fixture_open(&fx, 1, 1) < 0) {
		CHECK(0);
		return;
	}
	CHECK(gw_node_worker_open(fx.node, &w2, err, sizeof(err)) == 0);
	ok = 0;
	for (int k = 0; k < 2; k++) {
		fx.env.node_worker = k ? w2 : fx.w;
		for (int i = 0; i < 2; i++) {
			CHECK(ask(&fx, &groningen, LOOKUP_A, &r) == 0);
			ok += r.status == 200;
			free(r.body);
		}
	}
	if (ok != 1)
		printf("#   burst 1 over 2 workers: %u lookups answered at once\n", ok);
	CHECK(ok == 1);
	gw_node_worker_free(w2);
	fixture_close(&fx);
}

/* ---- generalise() ---- */

static int32_t day(const char *s)
{
	int32_t d = 0;

	if (adapter_date_parse(s, strlen(s), &d) < 0)
		printf("#   bad test date %s\n", s);
	return d;
}

/* generalise() as text (cJSON_PrintUnformatted), or "(null)". */
static char *gen_text(const struct adapter_field *f, const struct adapter_value *v, enum policy_gen g,
		      const char *today)
{
	cJSON *j;
	char *s;

	if (generalise(f, v, g, day(today), &j) < 0)
		return strdup("(null)");
	s = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	return s;
}

#define GEN_IS(f, v, g, today, want)                          \
	do {                                                  \
		char *s_ = gen_text((f), (v), (g), (today));  \
		CHECK_STR(s_, (want));                        \
		free(s_);                                     \
	} while (0)

static void generalise_dates(void)
{
	static const struct adapter_field date = { "d", ADAPTER_DATE, 1, NULL, 0 };
	struct adapter_value v = { .type = ADAPTER_DATE };
	const char *t = "2025-06-30";

	v.date = day("2024-03-31");
	GEN_IS(&date, &v, POLICY_GEN_NONE, t, "\"2024-03-31\"");
	GEN_IS(&date, &v, POLICY_GEN_EXACT, t, "\"2024-03-31\"");
	GEN_IS(&date, &v, POLICY_GEN_MONTH, t, "\"2024-03\"");
	GEN_IS(&date, &v, POLICY_GEN_QUARTER, t, "\"2024-Q1\"");
	GEN_IS(&date, &v, POLICY_GEN_YEAR, t, "2024");
	GEN_IS(&date, &v, POLICY_GEN_BIRTH_YEAR, t, "2024");
	/* quarter boundaries */
	v.date = day("2024-04-01");
	GEN_IS(&date, &v, POLICY_GEN_QUARTER, t, "\"2024-Q2\"");
	v.date = day("2024-09-30");
	GEN_IS(&date, &v, POLICY_GEN_QUARTER, t, "\"2024-Q3\"");
	v.date = day("2024-10-01");
	GEN_IS(&date, &v, POLICY_GEN_QUARTER, t, "\"2024-Q4\"");
	v.date = day("2024-12-31");
	GEN_IS(&date, &v, POLICY_GEN_QUARTER, t, "\"2024-Q4\"");
	GEN_IS(&date, &v, POLICY_GEN_MONTH, t, "\"2024-12\"");
	v.date = day("1970-01-01");
	GEN_IS(&date, &v, POLICY_GEN_MONTH, t, "\"1970-01\"");
	v.date = day("1969-12-31"); /* before the epoch: negative days */
	GEN_IS(&date, &v, POLICY_GEN_QUARTER, t, "\"1969-Q4\"");
	GEN_IS(&date, &v, POLICY_GEN_YEAR, t, "1969");
	/* a date cannot be a postcode */
	GEN_IS(&date, &v, POLICY_GEN_POSTCODE4, t, "(null)");
	/* NULL stays null whatever the generalisation */
	v.null = 1;
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_10, t, "null");
}

static void generalise_age_bands(void)
{
	static const struct adapter_field date = { "birth_date", ADAPTER_DATE, 1, NULL, 0 };
	struct adapter_value v = { .type = ADAPTER_DATE };

	/* born 2000-03-15: 19 the day before the 20th birthday, 20 on it */
	v.date = day("2000-03-15");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_5, "2020-03-14", "\"15-19\"");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_10, "2020-03-14", "\"10-19\"");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_20, "2020-03-14", "\"0-19\"");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_5, "2020-03-15", "\"20-24\"");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_10, "2020-03-15", "\"20-29\"");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_20, "2020-03-15", "\"20-39\"");
	/* the month before / after */
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_10, "2020-02-29", "\"10-19\"");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_10, "2020-04-01", "\"20-29\"");
	/* 25th birthday: band 5 moves, band 10 does not */
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_5, "2025-03-14", "\"20-24\"");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_5, "2025-03-15", "\"25-29\"");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_10, "2025-03-15", "\"20-29\"");
	/* born on the last day of a year, today the first of the next */
	v.date = day("1989-12-31");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_10, "2019-12-30", "\"20-29\"");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_10, "2019-12-31", "\"30-39\"");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_10, "2020-01-01", "\"30-39\"");
	/* a leap-day birthday, in a leap year */
	v.date = day("2000-02-29");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_5, "2005-02-28", "\"0-4\"");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_5, "2005-03-01", "\"5-9\"");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_20, "2020-02-29", "\"20-39\"");
	/* born today: 0; a birth date in the future is not a negative age */
	v.date = day("2025-06-30");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_10, "2025-06-30", "\"0-9\"");
	v.date = day("2030-01-01");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_10, "2025-06-30", "\"0-9\"");
	/* old */
	v.date = day("1920-01-01");
	GEN_IS(&date, &v, POLICY_GEN_AGE_BAND_20, "2025-06-30", "\"100-119\"");
}

static void generalise_other_types(void)
{
	static const char *const cats[] = { "nld-1", "nld-2", "kv" };
	static const struct adapter_field cat = { "programme", ADAPTER_CATEGORY, 1, cats, 3 };
	static const struct adapter_field num = { "start_year", ADAPTER_INT, 1, NULL, 0 };
	static const struct adapter_field flag = { "completed", ADAPTER_BOOL, 1, NULL, 0 };
	static const struct adapter_field str = { "postcode", ADAPTER_STRING, 1, NULL, 0 };
	struct adapter_value v = { .type = ADAPTER_CATEGORY };
	const char *t = "2025-06-30";

	v.category = 2;
	GEN_IS(&cat, &v, POLICY_GEN_EXACT, t, "\"kv\"");
	GEN_IS(&cat, &v, POLICY_GEN_NONE, t, "\"kv\"");
	GEN_IS(&cat, &v, POLICY_GEN_MONTH, t, "(null)");
	v.type = ADAPTER_INT;
	v.i = -42;
	GEN_IS(&num, &v, POLICY_GEN_EXACT, t, "-42");
	GEN_IS(&num, &v, POLICY_GEN_YEAR, t, "(null)");
	v.type = ADAPTER_BOOL;
	v.b = 0;
	GEN_IS(&flag, &v, POLICY_GEN_EXACT, t, "false");
	v.type = ADAPTER_STRING;
	v.str.ptr = "9712 AB";
	v.str.len = 7;
	GEN_IS(&str, &v, POLICY_GEN_EXACT, t, "\"9712 AB\"");
	GEN_IS(&str, &v, POLICY_GEN_POSTCODE4, t, "\"9712\"");
	GEN_IS(&str, &v, POLICY_GEN_GEMEENTE, t, "(null)");
	GEN_IS(&str, &v, POLICY_GEN_ARBEIDSMARKTREGIO, t, "(null)");
	GEN_IS(&str, &v, POLICY_GEN_PROVINCIE, t, "(null)");
	GEN_IS(&str, &v, POLICY_GEN_MONTH, t, "(null)");
	/* exactly four characters: itself; fewer: cannot be generalised */
	v.str.ptr = "8911";
	v.str.len = 4;
	GEN_IS(&str, &v, POLICY_GEN_POSTCODE4, t, "\"8911\"");
	v.str.ptr = "891";
	v.str.len = 3;
	GEN_IS(&str, &v, POLICY_GEN_POSTCODE4, t, "(null)");
	/* a string value is taken by its length, not up to a NUL */
	v.str.ptr = "9712 ABxyz";
	v.str.len = 7;
	GEN_IS(&str, &v, POLICY_GEN_EXACT, t, "\"9712 AB\"");
}

int main(void)
{
	struct diag d = { 0 };
	struct audit_options ao = { 1, 10, 1000 };
	struct gw_dataset_cfg ds = { 0 };
	char err[512];
	FILE *f;
	long len;
	unsigned char *buf;

	if (!mkdtemp(dir) || sodium_init() < 0)
		return 1;
	catalog_path = check_write(dir, "catalog.yaml", catalog_text);
	csv_path = check_write(dir, "fonds.csv", csv_text);
	policy_path = check_write(dir, "policy.yaml", policy_text);
	key_path = malloc(strlen(dir) + 16);
	sprintf(key_path, "%s/master.key", dir);
	audit_path = malloc(strlen(dir) + 16);
	sprintf(audit_path, "%s/audit.log", dir);
	if (pseudo_master_generate(key_path, err, sizeof(err)) < 0) {
		printf("not ok - test_node: setup: keygen: %s\n", err);
		return 1;
	}

	/* the config, as gw_config_load would fill it for a node */
	ds.id = (char *)DS;
	ds.path = csv_path;
	ds.delimiter = ',';
	ds.skip_bad_rows = 0;
	cfg.catalog_file = catalog_path;
	cfg.node.organisation = (char *)"fonds";
	cfg.node.master_key = key_path;
	cfg.node.datasets[0] = ds;
	cfg.node.ndatasets = 1;

	/* the policies, validated against the catalog */
	f = fopen(policy_path, "rb");
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	buf = malloc((size_t)len);
	if (fread(buf, 1, (size_t)len, f) != (size_t)len)
		return 1;
	fclose(f);
	{
		struct policy_catalog *cat;
		struct policy_refs refs = { 0 };

		if (policy_catalog_load(catalog_path, &cat, &d) < 0) {
			diag_first(&d, err, sizeof(err));
			printf("not ok - test_node: setup: catalog: %s\n", err);
			return 1;
		}
		refs.catalog = cat;
		if (policy_set_load_mem("policy.yaml", buf, (size_t)len, &refs, &policies, &d) < 0) {
			diag_first(&d, err, sizeof(err));
			printf("not ok - test_node: setup: policy: %s\n", err);
			return 1;
		}
		policy_catalog_free(cat);
	}
	free(buf);
	diag_clear(&d);
	if (audit_open(audit_path, NULL, &ao, &alog, err, sizeof(err)) < 0) {
		printf("not ok - test_node: setup: audit_open: %s\n", err);
		return 1;
	}

	RUN(permit_200);
	RUN(generalisation_unavailable_501);
	RUN(audit_failure_permit_503_no_data);
	RUN(audit_failure_deny_503);
	RUN(out_of_memory_generalising);
	RUN(out_of_memory_found);
	RUN(out_of_memory_not_found);
	RUN(rate_limit_boundary);
	RUN(rate_limit_burst_over_workers);
	RUN(generalise_dates);
	RUN(generalise_age_bands);
	RUN(generalise_other_types);
	RUN(adapter_failures);

	audit_close(alog);
	policy_set_free(policies);
	unlink(catalog_path);
	unlink(csv_path);
	unlink(policy_path);
	unlink(key_path);
	unlink(audit_path);
	rmdir(dir);
	free(catalog_path);
	free(csv_path);
	free(policy_path);
	free(key_path);
	free(audit_path);
	return check_total_failed ? 1 : 0;
}
