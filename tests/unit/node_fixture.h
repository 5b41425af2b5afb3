/*
 * The node under test, shared by test_node.c (lookups) and test_subquery.c
 * (subqueries): node/node.c included with its allocations routed through
 * failalloc.h and its dataset scans through a hook that can fail as the
 * adapter would, one dataset DS in a temporary folder, a node config for it,
 * policies from a string, an audit log, and a node + worker per test.
 *
 * Out of memory: node.c's own allocations fail one at a time through the
 * macros below (cJSON's through its hooks, failalloc.h). Every header node.c
 * uses comes first, so the macros rewrite node.c's code only.
 */
#ifndef NOORDPOORT_TEST_NODE_FIXTURE_H
#define NOORDPOORT_TEST_NODE_FIXTURE_H

#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <sodium.h>
#include <cjson/cJSON.h>
#include "../../adapters/adapter.h"
#include "../../aggregate/wire.h"
#include "../../crypto/pseudo.h"
#include "../../policies/policy.h"
#include "../../audit/audit.h"
#include "../../gateway/config.h"
#include "../../gateway/log.h"
#include "../../gateway/members.h"
#include "../../node/node.h"
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
#include "../../node/node.c"
#undef adapter_scan
#undef malloc
#undef calloc
#undef realloc
#undef strdup
#undef strndup

#include <sys/stat.h>

#include "../../common/diag.h"

#define DS "fonds/inschrijvingen"

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
static struct gw_members *members;

/* The members a subquery's "requester" is checked against (an id that is
 * not one is audited as a marker, gateway/ident.h). */
static const char fixture_members_text[] =
	"members:\n"
	"  - {id: hub, name: Hub, oin: \"00000001000000001000\", roles: [hub]}\n"
	"  - {id: arbeidsmarkttafel, name: AMT, oin: \"00000001000000001001\", roles: [coordinator]}\n"
	"  - {id: gemeente-groningen, name: G, oin: \"00000001000000001002\", roles: [coordinator]}\n"
	"  - {id: fonds, name: F, oin: \"00000001000000001003\", roles: [node]}\n";

/*
 * Writes the catalog, the CSV of DS and the policy file into |dir|, makes a
 * master key, fills |cfg| for a node serving DS, loads the policies and
 * opens the audit log. 0, or -1 after a "not ok - NAME: setup: ..." line.
 */
static int node_fixture_setup(const char *name, const char *dir, const char *catalog_text,
			      const char *csv_text, const char *policy_text)
{
	struct audit_options ao = { 1, 10, 1000 };
	struct gw_dataset_cfg ds = { 0 };
	struct policy_catalog *cat;
	struct policy_refs refs = { 0 };
	struct diag d = { 0 };
	char err[512];

	catalog_path = check_write(dir, "catalog.yaml", catalog_text);
	csv_path = check_write(dir, "fonds.csv", csv_text);
	policy_path = check_write(dir, "policy.yaml", policy_text);
	key_path = malloc(strlen(dir) + 16);
	sprintf(key_path, "%s/master.key", dir);
	audit_path = malloc(strlen(dir) + 16);
	sprintf(audit_path, "%s/audit.log", dir);
	if (pseudo_master_generate(key_path, err, sizeof(err)) < 0) {
		printf("not ok - %s: setup: master key: %s\n", name, err);
		return -1;
	}

	/* the config, as gw_config_load would fill it for a node */
	ds.id = (char *)DS;
	ds.path = csv_path;
	ds.delimiter = ',';
	cfg.catalog_file = catalog_path;
	cfg.node.organisation = (char *)"fonds";
	cfg.node.master_key = key_path;
	cfg.node.datasets[0] = ds;
	cfg.node.ndatasets = 1;

	/* the policies, validated against the catalog */
	if (policy_catalog_load(catalog_path, &cat, &d) < 0) {
		diag_first(&d, err, sizeof(err));
		printf("not ok - %s: setup: catalog: %s\n", name, err);
		return -1;
	}
	refs.catalog = cat;
	if (policy_set_load_mem("policy.yaml", (const unsigned char *)policy_text, strlen(policy_text), &refs,
				&policies, &d) < 0) {
		diag_first(&d, err, sizeof(err));
		printf("not ok - %s: setup: policy: %s\n", name, err);
		policy_catalog_free(cat);
		return -1;
	}
	policy_catalog_free(cat);
	diag_clear(&d);
	if (audit_open(audit_path, NULL, &ao, &alog, err, sizeof(err)) < 0) {
		printf("not ok - %s: setup: audit_open: %s\n", name, err);
		return -1;
	}
	/* the tests refuse on purpose, many times over (out-of-memory loops):
	 * the per-requester refusal limit has tests of its own */
	audit_set_refusal_limit(alog, 1000000);
	{
		char *mp = check_write(dir, "members.yaml", fixture_members_text);

		if (gw_members_load(mp, &members, &d) < 0) {
			printf("not ok - %s: setup: members: %s\n", name, diag_text(&d));
			free(mp);
			return -1;
		}
		unlink(mp);
		free(mp);
		diag_clear(&d);
	}
	return 0;
}

/* One node + worker for a test, over |cfg| as the test has set it. */
struct fixture {
	struct gw_node *node;
	struct gw_node_worker *w;
	struct gw_env env;
};

static int fixture_start(struct fixture *fx)
{
	char err[512];
	struct diag nd = { 0 };
	int nrc;

	memset(fx, 0, sizeof(*fx));
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
	fx->env.members = members;
	fx->env.worker = fx->w;
	fx->env.audit = alog;
	return 0;
}

static void fixture_close(struct fixture *fx)
{
	gw_node_worker_free(fx->w);
	gw_node_free(fx->node);
}

typedef int (*node_handler)(const struct gw_env *, const struct gw_member *, const cJSON *,
			    struct gw_response *);

/* Runs |handler| with |json| as the body; the caller frees r->body. */
static int ask_node(node_handler handler, struct fixture *fx, const struct gw_member *m, const char *json,
		    struct gw_response *r)
{
	cJSON *body = cJSON_Parse(json);
	int rc;

	memset(r, 0, sizeof(*r));
	if (!body) {
		printf("#   bad test JSON: %s\n", json);
		return -1;
	}
	rc = handler(&fx->env, m, body, r);
	cJSON_Delete(body);
	return rc;
}

/* Records in the audit log (verified), or (unsigned long)-1. */
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

/* The audit log's last line, parsed (NULL if none); the caller deletes it. */
static cJSON *last_audit(void)
{
	FILE *f = fopen(audit_path, "r");
	char *line = NULL, *last = NULL;
	size_t cap = 0;
	cJSON *o;

	while (f && getline(&line, &cap, f) > 0) {
		free(last);
		last = strdup(line);
	}
	if (f)
		fclose(f);
	free(line);
	o = last ? cJSON_Parse(last) : NULL;
	free(last);
	return o;
}

/* The last audit line without what differs on every line (seq, time,
 * audit_id, prev); its audit id goes to |id|. The caller frees it. */
static char *last_audit_text(char id[33])
{
	cJSON *a = last_audit();
	char *t;

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

/* An answer as text to compare, its audit id to |id| ("" if none); the
 * caller frees it. Each test knows its answers (JSON, or sealed). */
typedef char *(*answer_text_fn)(const struct gw_response *r, char id[33]);

/*
 * Makes each allocation of one request fail in turn (node.c's own, and with
 * |with_cjson| cJSON's too), k = 0, 1, 2, ..., until a run needs no more
 * than k. A run whose failure the node cannot get around answers 500
 * internal or 503 audit_unavailable, releases nothing and leaves no audit
 * line (the line would record an answer or a refusal that was not given);
 * one that gets around it answers exactly as a run without failures and
 * records exactly its line. After the loop the worker answers as before.
 * |fx| is open; the caller closes it.
 */
static void node_oom(node_handler handler, answer_text_fn answer_text, struct fixture *fx,
		     const struct gw_member *m, const char *json, int want_status, int with_cjson,
		     struct oom_count *c)
{
	struct gw_response r;
	cJSON *body = cJSON_Parse(json);
	char id[33], line_id[33], *want, *want_line, *again;
	unsigned long lines;
	int printed = 0;

	memset(c, 0, sizeof(*c));
	if (!body) {
		CHECK(0);
		return;
	}
	lines = audit_lines();
	memset(&r, 0, sizeof(r));
	CHECK(handler(&fx->env, m, body, &r) == 0);
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
		rc = handler(&fx->env, m, body, &r);
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
	CHECK(handler(&fx->env, m, body, &r) == 0);
	again = answer_text(&r, id);
	CHECK_STR(again, want);
	free(again);
	free(r.body);
	CHECK(audit_lines() == lines + 1);
	free(want);
	free(want_line);
	cJSON_Delete(body);
}

#endif
