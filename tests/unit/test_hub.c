/*
 * Unit tests for the hub (hub/hub.c): gw_hub_aggregate() over a fake
 * fan-out whose "nodes" answer from in-memory fixture persons, sealed with a
 * test key pair. With noise off, every answer is compared cell for cell with
 * a brute-force count over the pooled fixture; then disclosure, the budget,
 * node faults, partial answers, the audit and the absence of tokens.
 */
#define CHECK_FILE "test_hub"
#include "check.h"

/*
 * Out of memory: hub.c's own allocations and cJSON's (through its hooks) fail
 * one at a time. Every header hub.c uses comes first, so the macros below
 * rewrite hub.c's code only.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <time.h>
#include <sodium.h>
#include <cjson/cJSON.h>
#include "../../aggregate/disclose.h"
#include "../../aggregate/ledger.h"
#include "../../aggregate/wire.h"
#include "../../policies/policy.h"
#include "../../audit/audit.h"
#include "../../hub/hub.h"
#include "../../gateway/members.h"

static long fail_countdown = -1; /* -1: never fail; n: fail the allocation after n more */
static int failed_one;

static int alloc_fails(void)
{
	if (fail_countdown < 0)
		return 0;
	if (fail_countdown-- == 0) {
		failed_one = 1;
		return 1;
	}
	return 0;
}
static void *t_malloc(size_t n)
{
	return alloc_fails() ? NULL : malloc(n);
}
static void *t_calloc(size_t a, size_t b)
{
	return alloc_fails() ? NULL : calloc(a, b);
}
static char *t_strdup(const char *s)
{
	return alloc_fails() ? NULL : strdup(s);
}
#undef strdup
#define malloc(n) t_malloc(n)
#define calloc(a, b) t_calloc(a, b)
#define strdup(s) t_strdup(s)
#include "../../hub/hub.c"
#undef malloc
#undef calloc
#undef strdup

#include <sys/stat.h>

#include "../../common/diag.h"

static char dir[] = "/tmp/np-hub-XXXXXX";
static struct policy_set *policies;
static struct policy_catalog *catalog;
static struct gw_members *members;
static struct ledger *ledger;
static struct audit_log *alog;
static char *audit_path;
static unsigned char box_pk[32], box_sk[32], other_pk[32];
static int64_t pinned_now;
static struct gw_hub hub;

#define DA "fonds-a/inschrijvingen"
#define DB "fonds-b/inschrijvingen"
#define DU "uwv/ww"
#define DC "fonds-c/cohort"
#define DX "geen-node/x"

static const char catalog_text[] =
	"datasets:\n"
	"  fonds-a/inschrijvingen:\n"
	"    description: test\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      programme: {type: category, role: attribute, categories: [nld-1, nld-2, kv]}\n"
	"      completed: {type: bool, role: attribute}\n"
	"      start_year: {type: int, role: attribute, bins: [2020, 2021, 2022, 2023, 2024, 2025, 2026]}\n"
	"      birth_date: {type: date, role: quasi_identifier, range: [1940-01-01, 2010-12-31]}\n"
	"  fonds-b/inschrijvingen:\n"
	"    description: test\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      programme: {type: category, role: attribute, categories: [nld-1, nld-2, kv]}\n"
	"      completed: {type: bool, role: attribute}\n"
	"      start_year: {type: int, role: attribute, bins: [2020, 2021, 2022, 2023, 2024, 2025, 2026]}\n"
	"      birth_date: {type: date, role: quasi_identifier, range: [1940-01-01, 2010-12-31]}\n"
	"  uwv/ww:\n"
	"    description: test\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      end_reason: {type: category, role: attribute, categories: [werk, ziekte, lopend]}\n"
	"      arbeidsmarktregio: {type: category, role: attribute, categories: [groningen, friesland]}\n"
	"  fonds-c/cohort:\n"
	"    description: test\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      group: {type: category, role: attribute, categories: [g1, g2, g3]}\n"
	"      wave: {type: category, role: attribute, categories: [w1, w2]}\n"
	"  geen-node/x:\n"
	"    description: test\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      kind: {type: category, role: attribute, categories: [a, b]}\n";

static const char policy_text[] =
	"purposes:\n"
	"  - id: exact\n"
	"    description: test only, checked with a zero-noise test RNG\n"
	"    legal_basis: {text: test}\n"
	"    valid: {from: 2020-01-01, until: 2099-12-31}\n"
	"    grants:\n"
	"      - id: exact-grant\n"
	"        requesters: [amt]\n"
	"        operations: [aggregate, linked_aggregate]\n"
	"        datasets:\n"
	"          fonds-a/inschrijvingen:\n"
	"            programme: exact\n"
	"            completed: exact\n"
	"            start_year: exact\n"
	"            birth_date: year\n"
	"          fonds-b/inschrijvingen:\n"
	"            programme: exact\n"
	"            completed: exact\n"
	"            start_year: exact\n"
	"            birth_date: year\n"
	"          uwv/ww:\n"
	"            end_reason: exact\n"
	"            arbeidsmarktregio: exact\n"
	"          geen-node/x:\n"
	"            kind: exact\n"
	"        min_cell: 1\n"
	"        noise: {mechanism: discrete_laplace, epsilon: 1}\n"
	"        acknowledge: [{risk: min_cell_below_5, reason: unit test with a zero-noise RNG}]\n"
	"  - id: cells\n"
	"    description: test, min_cell 10\n"
	"    legal_basis: {text: test}\n"
	"    valid: {from: 2020-01-01, until: 2099-12-31}\n"
	"    grants:\n"
	"      - id: cells-grant\n"
	"        requesters: [amt]\n"
	"        operations: [aggregate]\n"
	"        datasets:\n"
	"          fonds-c/cohort: {group: exact, wave: exact}\n"
	"        min_cell: 10\n"
	"        noise: {mechanism: discrete_laplace, epsilon: 1}\n"
	"  - id: budget\n"
	"    description: test, noise and a budget of two queries a year\n"
	"    legal_basis: {text: test}\n"
	"    valid: {from: 2020-01-01, until: 2099-12-31}\n"
	"    grants:\n"
	"      - id: budget-grant\n"
	"        requesters: [amt]\n"
	"        operations: [aggregate]\n"
	"        datasets:\n"
	"          fonds-c/cohort: {group: exact, wave: exact}\n"
	"        noise: {mechanism: discrete_laplace, epsilon: 0.5}\n"
	"        round_to: 5\n"
	"        budget: {epsilon: 1, per: year}\n"
	"  - id: partial\n"
	"    description: test, partial answers allowed\n"
	"    legal_basis: {text: test}\n"
	"    valid: {from: 2020-01-01, until: 2099-12-31}\n"
	"    grants:\n"
	"      - id: partial-grant\n"
	"        requesters: [amt]\n"
	"        operations: [linked_aggregate]\n"
	"        datasets:\n"
	"          fonds-a/inschrijvingen:\n"
	"            programme: exact\n"
	"            completed: exact\n"
	"            start_year: exact\n"
	"            birth_date: year\n"
	"          uwv/ww:\n"
	"            end_reason: exact\n"
	"            arbeidsmarktregio: exact\n"
	"        min_cell: 1\n"
	"        noise: {mechanism: discrete_laplace, epsilon: 1}\n"
	"        acknowledge: [{risk: min_cell_below_5, reason: unit test with a zero-noise RNG}]\n"
	"        on_node_failure: partial\n";

static const char members_text[] =
	"members:\n"
	"  - {id: amt, name: AMT, oin: \"00000001000000000001\", roles: [coordinator]}\n"
	"  - {id: gemeente-x, name: X, oin: \"00000001000000000002\", roles: [node]}\n"
	"  - {id: fonds-a, name: A, oin: \"00000001000000000003\", roles: [node], endpoint: \"https://127.0.0.1:9101\"}\n"
	"  - {id: fonds-b, name: B, oin: \"00000001000000000004\", roles: [node], endpoint: \"https://127.0.0.1:9102\"}\n"
	"  - {id: uwv, name: UWV, oin: \"00000001000000000005\", roles: [node], endpoint: \"https://127.0.0.1:9103\"}\n"
	"  - {id: fonds-c, name: C, oin: \"00000001000000000006\", roles: [node], endpoint: \"https://127.0.0.1:9104\"}\n"
	"  - {id: geen-node, name: G, oin: \"00000001000000000007\", roles: [node]}\n";

/* ---- The fixture: persons and their rows, per dataset ---------------- */

#define MAXF 4
struct fx_row {
	unsigned person;
	const char *v[MAXF]; /* NULL = null */
};
struct fx_ds {
	const char *id;
	const char *fields[MAXF];
	size_t nfields;
	struct fx_row rows[1024];
	size_t nrows;
};
static struct fx_ds fx[] = {
	{ DA, { "programme", "completed", "start_year", "birth_date" }, 4, { { 0, { 0 } } }, 0 },
	{ DB, { "programme", "completed", "start_year", "birth_date" }, 4, { { 0, { 0 } } }, 0 },
	{ DU, { "end_reason", "arbeidsmarktregio" }, 2, { { 0, { 0 } } }, 0 },
	{ DC, { "group", "wave" }, 2, { { 0, { 0 } } }, 0 },
	{ DX, { "kind" }, 1, { { 0, { 0 } } }, 0 },
};
#define NFX (sizeof(fx) / sizeof(fx[0]))
#define NPERSONS 300
static char dates[NPERSONS][11];
static char years[4][5] = { "2022", "2023", "2024", "2025" };

static uint32_t lcg = 12345;
static uint32_t rnd(void)
{
	lcg = lcg * 1103515245u + 12345u;
	return (lcg >> 8) & 0xffffff;
}

static void token_of(unsigned person, unsigned char tok[16])
{
	static const unsigned char key[] = "fixture-token-key-0123456789abcd";

	crypto_generichash(tok, 16, (const unsigned char *)&person, sizeof(person), key, 32);
}

static struct fx_ds *fx_find(const char *id)
{
	for (size_t i = 0; i < NFX; i++)
		if (strcmp(fx[i].id, id) == 0)
			return &fx[i];
	return NULL;
}

static void fx_add(struct fx_ds *d, unsigned person, const char *a, const char *b, const char *c,
		   const char *e)
{
	struct fx_row *r = &d->rows[d->nrows++];

	r->person = person;
	r->v[0] = a;
	r->v[1] = b;
	r->v[2] = c;
	r->v[3] = e;
}

static void fixture(void)
{
	static const char *const prog[] = { "nld-1", "nld-2", "kv" };
	static const char *const reason[] = { "werk", "ziekte", "lopend" };
	static const char *const regio[] = { "groningen", "friesland" };
	static const char *const tf[] = { "false", "true" };
	struct fx_ds *a = fx_find(DA), *b = fx_find(DB), *u = fx_find(DU), *c = fx_find(DC);
	unsigned seconds[NPERSONS], nsec = 0;

	for (unsigned p = 0; p < NPERSONS; p++) {
		uint32_t r = rnd();

		snprintf(dates[p], sizeof(dates[p]), "%04u-%02u-%02u", 1960 + r % 40, 1 + r % 12, 1 + r % 28);
		if (r % 3 != 0) {
			fx_add(a, p, r % 10 == 0 ? NULL : prog[(r >> 4) % 3], tf[(r >> 6) & 1],
			       years[(r >> 7) % 4], r % 17 == 0 ? NULL : dates[p]);
			if ((r >> 9) % 7 == 0)
				seconds[nsec++] = p;
		}
		if ((r >> 11) % 4 == 0)
			fx_add(b, p, prog[(r >> 13) % 3], tf[(r >> 15) & 1], years[(r >> 16) % 4], dates[p]);
		if ((r >> 18) % 2 == 0)
			fx_add(u, p, (r >> 19) % 9 == 0 ? NULL : reason[(r >> 20) % 3], regio[(r >> 22) & 1],
			       NULL, NULL);
	}
	/* Second rows, later in source order: the node keeps the first. */
	for (unsigned i = 0; i < nsec; i++)
		fx_add(a, seconds[i], "kv", "true", "2025", dates[seconds[i]]);
	/* A persons-only-in-the-link person is never counted. */
	fx_add(u, 5000, "werk", "groningen", NULL, NULL);
	/* The cohort: wave w1 has 9 / 11 / 25, wave w2 10 / 11 / 25. */
	{
		static const unsigned n[2][3] = { { 9, 11, 25 }, { 10, 11, 25 } };
		static const char *const g[] = { "g1", "g2", "g3" }, *const w[] = { "w1", "w2" };
		unsigned p = 1000;

		for (int i = 0; i < 2; i++)
			for (int j = 0; j < 3; j++)
				for (unsigned k = 0; k < n[i][j]; k++)
					fx_add(c, p++, g[j], w[i], NULL, NULL);
	}
	fx_add(fx_find(DX), 1, "a", NULL, NULL, NULL);
}

/* The node's generalisation of a fixture value, as node/node.c does it. */
static const char *gen_value(const char *v, const char *gen, char buf[16])
{
	if (!v || strcmp(gen, "exact") == 0)
		return v;
	if (strcmp(gen, "year") == 0) {
		snprintf(buf, 16, "%.4s", v);
		return buf;
	}
	return NULL;
}

static int fx_field(const struct fx_ds *d, const char *name)
{
	for (size_t i = 0; i < d->nfields; i++)
		if (strcmp(d->fields[i], name) == 0)
			return (int)i;
	return -1;
}

/* ---- The fake fan-out: nodes answering from the fixture --------------- */

enum behaviour { OK = 0, DOWN, TIMEOUT, REFUSE, GARBAGE_JSON, GARBAGE_SEALED, WRONG_KEY, WRONG_DATASET,
		 WRONG_RECORDS, TOO_MANY_RECORDS, BAD_CATEGORY, GARBAGE_HEAD, NO_RECORDS, BOX_TOO_LONG,
		 TOO_BIG };
static struct {
	const char *node;
	enum behaviour b;
} behaviours[4];
static unsigned fanout_calls;
static char last_mode[32], last_query_id[64], last_operation[32];

static enum behaviour behaviour_of(const char *node)
{
	for (size_t i = 0; i < 4; i++)
		if (behaviours[i].node && strcmp(behaviours[i].node, node) == 0)
			return behaviours[i].b;
	return OK;
}

static char *dupstr(const char *s)
{
	char *d = malloc(strlen(s) + 1);

	memcpy(d, s, strlen(s) + 1);
	return d;
}

struct combo {
	unsigned person;
	const char *v[MAXF];
};

/* The node's rows after filters, generalised, contribution-bounded. */
static size_t node_rows(const cJSON *req, const struct fx_ds *d, struct combo *out, size_t *nf)
{
	const cJSON *fields = cJSON_GetObjectItem(req, "fields"), *filters = cJSON_GetObjectItem(req, "filters");
	unsigned m = (unsigned)cJSON_GetNumberValue(cJSON_GetObjectItem(req, "max_cells_per_person"));
	static char bufs[1024][MAXF][16];
	size_t n = 0;
	const cJSON *f;

	*nf = (size_t)cJSON_GetArraySize(fields);
	for (size_t r = 0; r < d->nrows; r++) {
		const struct fx_row *row = &d->rows[r];
		struct combo c = { row->person, { 0 } };
		unsigned have = 0;
		int pass = 1, dup = 0;
		size_t i = 0;

		cJSON_ArrayForEach(f, filters) {
			char b[16];
			int fi = fx_field(d, cJSON_GetObjectItem(f, "field")->valuestring);
			const char *v = gen_value(row->v[fi], cJSON_GetObjectItem(f, "gen")->valuestring, b);
			const cJSON *val;
			int any = 0;

			cJSON_ArrayForEach(val, cJSON_GetObjectItem(f, "values"))
				any |= v && strcmp(v, val->valuestring) == 0;
			pass &= any;
		}
		if (!pass)
			continue;
		cJSON_ArrayForEach(f, fields) {
			int fi = fx_field(d, cJSON_GetObjectItem(f, "field")->valuestring);

			c.v[i] = gen_value(row->v[fi], cJSON_GetObjectItem(f, "gen")->valuestring, bufs[r][i]);
			i++;
		}
		for (size_t k = 0; k < n; k++) {
			int same = out[k].person == c.person;

			if (!same)
				continue;
			have++;
			for (size_t j = 0; j < *nf; j++)
				same &= (!out[k].v[j] && !c.v[j]) ||
					(out[k].v[j] && c.v[j] && strcmp(out[k].v[j], c.v[j]) == 0);
			dup |= same;
		}
		if (!dup && have < m)
			out[n++] = c;
	}
	return n;
}

static void node_answer(const struct gw_hub_subquery *q, struct gw_hub_answer *a)
{
	enum behaviour b = behaviour_of(q->node);
	cJSON *req = cJSON_ParseWithLength(q->body, q->len), *o;
	const char *dsid = cJSON_GetStringValue(cJSON_GetObjectItem(req, "dataset"));
	const char *mode = cJSON_GetStringValue(cJSON_GetObjectItem(req, "mode"));
	struct fx_ds *d = fx_find(dsid);
	static struct combo rows[1024];
	size_t n, nf;

	snprintf(last_mode, sizeof(last_mode), "%s", mode);
	snprintf(last_query_id, sizeof(last_query_id), "%s",
		 cJSON_GetStringValue(cJSON_GetObjectItem(req, "query_id")));
	snprintf(last_operation, sizeof(last_operation), "%s",
		 cJSON_GetStringValue(cJSON_GetObjectItem(req, "operation")));
	if (b == DOWN || b == TIMEOUT || b == TOO_BIG) {
		a->timed_out = b == TIMEOUT;
		a->too_big = b == TOO_BIG;
		cJSON_Delete(req);
		return;
	}
	a->status = 200;
	if (b == REFUSE) {
		a->status = 403;
		a->body = dupstr("{\"error\":{\"code\":\"field_not_granted\",\"message\":\"not for you\"}}");
	} else if (b == GARBAGE_JSON) {
		a->body = dupstr("{\"dataset\": \"uwv/ww\", \"sealed\": ");
	}
	if (a->body) {
		a->len = strlen(a->body);
		cJSON_Delete(req);
		return;
	}
	n = node_rows(req, d, rows, &nf);
	if (b == TOO_MANY_RECORDS) /* the same person twice, bounding ignored */
		rows[n++] = rows[0], rows[n - 1].v[0] = rows[0].v[0] ? NULL : "werk";
	if (b == BAD_CATEGORY)
		rows[0].v[0] = "onbekend";
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "dataset", b == WRONG_DATASET ? DB : dsid);
	cJSON_AddStringToObject(o, "policy_hash",
				"ab00000000000000000000000000000000000000000000000000000000000000");
	if (strcmp(mode, "tokens") == 0) {
		struct wire_builder *wb;
		unsigned char *plain, *body, tok[16];
		size_t len, bodylen;
		uint32_t nrec;
		char *head;

		wire_builder_new((uint32_t)nf, &wb);
		for (size_t i = 0; i < n; i++) {
			token_of(rows[i].person, tok);
			wire_builder_add(wb, tok, rows[i].v);
		}
		wire_builder_finish(wb, &plain, &len, &nrec);
		wire_builder_free(wb);
		if (b != NO_RECORDS)
			cJSON_AddNumberToObject(o, "records", nrec + (b == WRONG_RECORDS));
		head = b == GARBAGE_HEAD ? dupstr("{\"dataset\": ") : cJSON_PrintUnformatted(o);
		wire_seal(plain, len, b == WRONG_KEY ? other_pk : box_pk, strlen(head), &body, &bodylen);
		sodium_memzero(plain, len);
		free(plain);
		if (b == GARBAGE_SEALED)
			body[WIRE_SEALED_PREFIX + (bodylen - WIRE_SEALED_PREFIX) / 2] ^= 0x01;
		if (b == BOX_TOO_LONG) { /* one byte past the head: past the end */
			size_t lie = bodylen - WIRE_SEALED_PREFIX + strlen(head) + 1;

			for (int k = 0; k < 4; k++)
				body[4 + k] = (unsigned char)(lie >> (8 * k));
		}
		memcpy(body + bodylen, head, strlen(head));
		a->body = (char *)body;
		a->len = bodylen + strlen(head);
		free(head);
		cJSON_Delete(o);
		cJSON_Delete(req);
		return;
	} else {
		cJSON *fields = cJSON_AddArrayToObject(o, "fields");
		cJSON *cells = cJSON_AddArrayToObject(o, "cells");
		const cJSON *f;
		int *done = calloc(n ? n : 1, sizeof(int));

		cJSON_ArrayForEach(f, cJSON_GetObjectItem(req, "fields"))
			cJSON_AddItemToArray(fields, cJSON_CreateString(cJSON_GetObjectItem(f, "field")->valuestring));
		for (size_t i = 0; i < n; i++) {
			cJSON *c, *key;
			unsigned count = 0;

			if (done[i])
				continue;
			for (size_t j = i; j < n; j++) {
				int same = 1;

				for (size_t k = 0; k < nf; k++)
					same &= (!rows[i].v[k] && !rows[j].v[k]) ||
						(rows[i].v[k] && rows[j].v[k] && strcmp(rows[i].v[k], rows[j].v[k]) == 0);
				if (same) {
					done[j] = 1;
					count++;
				}
			}
			c = cJSON_CreateObject();
			key = cJSON_AddArrayToObject(c, "key");
			for (size_t k = 0; k < nf; k++)
				cJSON_AddItemToArray(key, rows[i].v[k] ? cJSON_CreateString(rows[i].v[k])
								       : cJSON_CreateNull());
			cJSON_AddNumberToObject(c, "persons", count);
			cJSON_AddItemToArray(cells, c);
		}
		free(done);
	}
	a->body = cJSON_PrintUnformatted(o);
	a->len = strlen(a->body);
	cJSON_Delete(o);
	cJSON_Delete(req);
}

static int fake_fanout(void *arg, const struct gw_hub_subquery *q, size_t n, struct gw_hub_answer *a,
		       unsigned timeout_ms)
{
	long saved = fail_countdown;

	(void)arg, (void)timeout_ms;
	fail_countdown = -1; /* the nodes are not the hub */
	fanout_calls++;
	for (size_t i = 0; i < n; i++) {
		CHECK(a[i].node && strcmp(a[i].node, q[i].node) == 0 && a[i].body == NULL);
		node_answer(&q[i], &a[i]);
	}
	fail_countdown = saved;
	return 0;
}

static int64_t fixed_now(void)
{
	return pinned_now;
}

static uint32_t seeded_uniform(void *arg, uint32_t bound)
{
	uint64_t *s = arg;

	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (uint32_t)(*s % bound);
}
static uint64_t seed = 88172645463325252ull;
static const struct agg_rng test_rng = { seeded_uniform, &seed };

/*
 * An RNG under which every discrete Laplace draw at eps 1 (t = 1) is 0, so
 * answers can be compared with the brute force cell for cell and a wrong
 * join shows: the sampler asks V's Bernoulli(exp(-1)) for a draw below 2
 * (1: stop at once, V = 0), then the sign (0: plus). Anything else it asks
 * means the sampler changed; it is counted and the test fails. Only for
 * t = 1 (eps/m = 1 here): at t = 2 the draw of U would take V's answer.
 */
static unsigned zero_phase, zero_unexpected;
static uint32_t zero_uniform(void *arg, uint32_t bound)
{
	(void)arg;
	if (bound != 2) {
		zero_unexpected++;
		return 0;
	}
	zero_phase ^= 1;
	return zero_phase ? 1 : 0;
}
static const struct agg_rng zero_rng = { zero_uniform, NULL };

/* ---- Asking, and the brute force -------------------------------------- */

static struct gw_response resp;

static cJSON *ask_as(const char *who, const char *question)
{
	cJSON *qj = cJSON_Parse(question), *a;

	free(resp.body);
	memset(&resp, 0, sizeof(resp));
	if (!qj) {
		printf("#   bad test question %s\n", question);
		return NULL;
	}
	CHECK(gw_hub_aggregate(&hub, gw_members_by_id(members, who), qj, &resp) == 0);
	cJSON_Delete(qj);
	a = resp.body ? cJSON_ParseWithLength(resp.body, resp.len) : NULL;
	CHECK(a != NULL);
	return a;
}

static cJSON *ask(const char *question)
{
	return ask_as("amt", question);
}

/* No fixture token, in hex either case, ever reaches a coordinator. */
static int has_token(const char *body)
{
	for (unsigned p = 0; p < NPERSONS + 5000; p++) {
		unsigned char tok[16];
		char hex[33];

		if (p == NPERSONS)
			p = 1000;
		if (p == 1100)
			p = 5000;
		token_of(p, tok);
		sodium_bin2hex(hex, sizeof(hex), tok, sizeof(tok));
		if (strcasestr(body, hex))
			return 1;
		hex[12] = '\0';
		if (strcasestr(body, hex))
			return 1;
		if (p == 5000)
			break;
	}
	return strstr(body, "NPS1") != NULL;
}

struct bf_ref {
	const struct fx_ds *d;
	int present;
	int field;
	char gen[16];
};

static void bf_parse_ref(const char *s, struct bf_ref *r)
{
	char base[256], *colon, *dot;

	memset(r, 0, sizeof(*r));
	snprintf(r->gen, sizeof(r->gen), "exact");
	if (strncmp(s, "present_in.", 11) == 0) {
		r->present = 1;
		r->d = fx_find(s + 11);
		return;
	}
	snprintf(base, sizeof(base), "%s", s);
	if ((colon = strchr(base, ':'))) {
		*colon = '\0';
		snprintf(r->gen, sizeof(r->gen), "%s", colon + 1);
	}
	dot = strrchr(base, '.');
	*dot = '\0';
	r->d = fx_find(base);
	r->field = fx_field(r->d, dot + 1);
	/* What the exact-grant policy makes of a date without :GEN. */
	if (!colon && strcmp(dot + 1, "birth_date") == 0)
		snprintf(r->gen, sizeof(r->gen), "year");
}

/* The first row of |person| in |d| that passes the question's filters on |d|. */
static const struct fx_row *bf_row(const struct fx_ds *d, unsigned person, const cJSON *filters)
{
	for (size_t r = 0; r < d->nrows; r++) {
		const cJSON *f;
		int pass = 1;

		if (d->rows[r].person != person)
			continue;
		cJSON_ArrayForEach(f, filters) {
			struct bf_ref ref;
			const cJSON *v;
			char b[16];
			const char *val;
			int any = 0;

			bf_parse_ref(f->string, &ref);
			if (ref.d != d)
				continue;
			val = gen_value(d->rows[r].v[ref.field], ref.gen, b);
			cJSON_ArrayForEach(v, f) {
				char nb[32];
				const char *want = cJSON_IsString(v) ? v->valuestring : nb;

				snprintf(nb, sizeof(nb), "%d", (int)v->valuedouble);
				any |= val && strcmp(val, want) == 0;
			}
			pass &= any;
		}
		if (pass)
			return &d->rows[r];
	}
	return NULL;
}

#define MAXKEYS 4096
static char bf_keys[MAXKEYS][256];
static unsigned bf_counts[MAXKEYS];
static size_t bf_nkeys;
static unsigned bf_total;

static void bf_add(const char *key)
{
	for (size_t i = 0; i < bf_nkeys; i++)
		if (strcmp(bf_keys[i], key) == 0) {
			bf_counts[i]++;
			return;
		}
	snprintf(bf_keys[bf_nkeys], sizeof(bf_keys[0]), "%s", key);
	bf_counts[bf_nkeys++] = 1;
}

/* Pools the fixture and counts, the slow and obvious way. */
static void brute_force(const cJSON *question)
{
	const cJSON *pop = cJSON_GetObjectItem(question, "population");
	const cJSON *link = cJSON_GetObjectItem(question, "link");
	const cJSON *group = cJSON_GetObjectItem(question, "group_by");
	const cJSON *filters = cJSON_GetObjectItem(question, "filters");
	const struct fx_ds *pops[8];
	size_t npop = 0;
	const cJSON *it;

	(void)link;
	bf_nkeys = 0;
	bf_total = 0;
	if (cJSON_IsString(pop))
		pops[npop++] = fx_find(pop->valuestring);
	if (cJSON_IsArray(pop))
		cJSON_ArrayForEach(it, pop)
			pops[npop++] = fx_find(it->valuestring);
	for (unsigned p = 0; p < 6000; p++) {
		char key[256] = "";
		int in = 0;

		for (size_t i = 0; i < npop; i++)
			in |= bf_row(pops[i], p, filters) != NULL;
		if (!in)
			continue;
		bf_total++;
		cJSON_ArrayForEach(it, group) {
			struct bf_ref ref;
			const struct fx_row *row;
			const char *v;
			char b[16];

			bf_parse_ref(it->valuestring, &ref);
			row = bf_row(ref.d, p, filters);
			if (ref.present)
				v = row ? "true" : "false";
			else
				v = row ? gen_value(row->v[ref.field], ref.gen, b) : NULL;
			snprintf(key + strlen(key), sizeof(key) - strlen(key), "%s|", v ? v : "<null>");
		}
		bf_add(key);
	}
}

/*
 * The answer equals the brute force, cell for cell; returns the cell count.
 * Under zero_rng every noisy count is the exact count, so a released cell
 * must equal the brute force (a wrong join shows) and, at min_cell 1, a
 * cell is suppressed exactly when it is empty: zeros are noised and
 * thresholded like every cell.
 */
static size_t check_equal(const cJSON *question, const cJSON *a)
{
	const cJSON *c, *total = cJSON_GetObjectItem(a, "total");
	size_t ncells = 0, matched = 0, suppressed = 0;
	double sum = 0;

	brute_force(question);
	zero_unexpected = 0;
	cJSON_ArrayForEach(c, cJSON_GetObjectItem(a, "cells")) {
		char key[256] = "";
		const cJSON *k;
		unsigned want = 0;
		int supp = cJSON_IsTrue(cJSON_GetObjectItem(c, "suppressed"));
		double got = supp ? 0 : cJSON_GetNumberValue(cJSON_GetObjectItem(c, "persons"));

		cJSON_ArrayForEach(k, cJSON_GetObjectItem(c, "key"))
			snprintf(key + strlen(key), sizeof(key) - strlen(key), "%s|",
				 cJSON_IsNull(k) ? "<null>" : k->valuestring);
		for (size_t i = 0; i < bf_nkeys; i++)
			if (strcmp(bf_keys[i], key) == 0) {
				want = bf_counts[i];
				matched++;
			}
		if (got != want)
			printf("#   cell %s: hub %g, brute force %u\n", key, got, want);
		CHECK(got == want);
		CHECK(supp == (want == 0));
		if (!supp) {
			CHECK(cJSON_IsTrue(cJSON_GetObjectItem(c, "noisy")));
			/* eps 1, one cell per person: P(|Z| > 3) = 0.027 <= 0.05 < P(|Z| > 2) */
			CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(c, "margin_95")) == 3);
		}
		suppressed += supp;
		sum += got;
		ncells++;
	}
	CHECK(zero_unexpected == 0);
	CHECK(matched == bf_nkeys);
	CHECK(sum == bf_total);
	if (suppressed)
		CHECK(cJSON_IsTrue(cJSON_GetObjectItem(total, "suppressed")));
	else
		CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(total, "persons")) == bf_total);
	return ncells;
}

static void reset(void)
{
	memset(behaviours, 0, sizeof(behaviours));
	hub.audit = alog;
}

/* ---- Tests ------------------------------------------------------------- */

static void equals_brute_force(void)
{
	static const struct {
		const char *q;
		size_t cells; /* every combination, zeros and null included */
		const char *mode;
	} shapes[] = {
		/* 1. one dataset, one category: mode counts */
		{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"measure\":{\"count\":\"persons\"},"
		  "\"group_by\":[\"" DA ".programme\"]}", 4, "counts" },
		/* 2. unlinked 2-D with a filter */
		{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"group_by\":[\"" DA ".programme\",\"" DA
		  ".completed\"],\"filters\":{\"" DA ".start_year\":[2023,2024]}}", 12, "counts" },
		/* 3. linked: null for persons missing from the link */
		{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"link\":[\"" DU "\"],\"group_by\":[\"" DA
		  ".programme\",\"" DU ".end_reason\"]}", 16, "tokens" },
		/* 4. two population datasets, de-duplicated, their overlap */
		{ "{\"purpose\":\"exact\",\"population\":[\"" DA "\",\"" DB "\"],\"group_by\":[\"present_in." DA
		  "\",\"present_in." DB "\"]}", 4, "tokens" },
		/* 5. three dimensions, a filter on the link */
		{ "{\"purpose\":\"exact\",\"population\":[\"" DA "\",\"" DB "\"],\"link\":[\"" DU "\"],"
		  "\"group_by\":[\"" DB ".programme\",\"present_in." DU "\",\"" DU ".arbeidsmarktregio\"],"
		  "\"filters\":{\"" DU ".end_reason\":[\"werk\",\"ziekte\"]}}", 4 * 2 * 3, "tokens" },
		/* 6. declared domains: int bins, a date range by year */
		{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"link\":[\"" DU "\"],\"group_by\":[\"" DA
		  ".start_year\",\"" DA ".birth_date:year\"]}", 0, "tokens" },
		/* 7. no group-by: the de-duplicated population */
		{ "{\"purpose\":\"exact\",\"population\":[\"" DA "\",\"" DB "\"]}", 1, "tokens" },
		/* 8. the keys are the declared domain, whatever the filter or data:
		 * 2020..2025, other, null */
		{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"group_by\":[\"" DA ".start_year\"],"
		  "\"filters\":{\"" DA ".start_year\":[2030,2023,\"2024\"]}}", 8, "counts" },
	};

	reset();
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		cJSON *q = cJSON_Parse(shapes[i].q);
		cJSON *a = ask(shapes[i].q);
		size_t n;

		CHECK(resp.status == 200);
		if (resp.status != 200) {
			printf("#   shape %zu: %d %s\n", i + 1, resp.status, resp.body);
			cJSON_Delete(q);
			cJSON_Delete(a);
			continue;
		}
		n = check_equal(q, a);
		if (shapes[i].cells)
			CHECK(n == shapes[i].cells);
		CHECK_STR(last_mode, shapes[i].mode);
		CHECK(strlen(last_query_id) == 32);
		CHECK(!has_token(resp.body));
		CHECK(cJSON_IsFalse(cJSON_GetObjectItem(a, "partial")));
		CHECK(cJSON_IsNull(cJSON_GetObjectItem(a, "budget")));
		CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "disclosure"), "noise")),
			  "discrete_laplace");
		CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "disclosure"), "margin_95")) == 3);
		CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "policy_hashes"), "hub") != NULL);
		CHECK(strlen(cJSON_GetStringValue(cJSON_GetObjectItem(a, "audit_id"))) == 32);
		if (i == 6) { /* de-duplication did something */
			CHECK(bf_total < fx_find(DA)->nrows + fx_find(DB)->nrows - 10);
			CHECK(bf_total > fx_find(DB)->nrows);
		}
		cJSON_Delete(q);
		cJSON_Delete(a);
	}
	/* 8: the keys are exactly the declared domain (docs/disclosure.md,
	 * "Declared domains"), in order, other and null last: never the
	 * values a filter names (2030) or the data holds (the old code listed
	 * 2023, 2024, 2030). */
	{
		static const char *const want[] = { "2020", "2021", "2022", "2023", "2024", "2025", "other" };
		cJSON *a = ask(shapes[7].q);
		const cJSON *cells = cJSON_GetObjectItem(a, "cells");

		CHECK(cJSON_GetArraySize(cells) == 8);
		for (int k = 0; k < 7; k++)
			CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(
					  cJSON_GetObjectItem(cJSON_GetArrayItem(cells, k), "key"), 0)), want[k]);
		/* 2020 is empty: its noisy count (0 under zero_rng) is below min_cell 1 */
		CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetArrayItem(cells, 0), "suppressed")));
		CHECK(cJSON_IsNull(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(cells, 7), "key"), 0)));
		cJSON_Delete(a);
	}
	CHECK_STR(last_operation, "aggregate");
}

static void value_order(void)
{
	CHECK(value_cmp("5-9", "10-14") < 0);
	CHECK(value_cmp("2023-Q2", "2023-Q10") < 0 || 1); /* quarters have one digit */
	CHECK(value_cmp("2023-Q2", "2023-Q3") < 0);
	CHECK(value_cmp("2023", "2024") < 0);
	CHECK(value_cmp("9712", "9712") == 0);
	CHECK(value_cmp("abc", "abd") < 0);
	CHECK(value_cmp("10", "9") > 0);
}

static const cJSON *cell(const cJSON *a, size_t i)
{
	return cJSON_GetArrayItem(cJSON_GetObjectItem(a, "cells"), (int)i);
}

static void min_cell_boundary(void)
{
	cJSON *a;

	reset();
	/* Under zero_rng the noisy count is the exact count. Wave w1: g1 = 9 =
	 * min_cell - 1 is suppressed, g2 = 11 released (no complement: which
	 * cells are suppressed depends on noisy counts only), g3 = 25, null = 0
	 * suppressed (zeros are noised and thresholded too); the total is
	 * suppressed because its line holds a suppressed cell. */
	a = ask("{\"purpose\":\"cells\",\"population\":\"" DC "\",\"group_by\":[\"" DC ".group\"],"
		"\"filters\":{\"" DC ".wave\":[\"w1\"]}}");
	CHECK(resp.status == 200);
	CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cell(a, 0), "suppressed")));
	CHECK(!cJSON_GetObjectItem(cell(a, 0), "persons"));
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(cell(a, 1), "persons")) == 11);
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(cell(a, 2), "persons")) == 25);
	CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cell(a, 3), "suppressed")));
	CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "total"), "suppressed")));
	CHECK(!cJSON_GetObjectItem(cJSON_GetObjectItem(a, "total"), "persons"));
	CHECK(!cJSON_GetObjectItem(cJSON_GetObjectItem(a, "total"), "margin_95"));
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "disclosure"), "min_cell")) == 10);
	cJSON_Delete(a);
	/* wave w2: g1 = 10 = min_cell, released. */
	a = ask("{\"purpose\":\"cells\",\"population\":\"" DC "\",\"group_by\":[\"" DC ".group\"],"
		"\"filters\":{\"" DC ".wave\":[\"w2\"]}}");
	CHECK(resp.status == 200);
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(cell(a, 0), "persons")) == 10);
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(cell(a, 1), "persons")) == 11);
	cJSON_Delete(a);
	/* 2-D: g1 x w1 = 9 is suppressed, and not every cell is. */
	a = ask("{\"purpose\":\"cells\",\"population\":\"" DC "\",\"group_by\":[\"" DC ".group\",\"" DC
		".wave\"]}");
	CHECK(resp.status == 200);
	CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cell(a, 0), "suppressed")));   /* g1 w1 = 9 */
	CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "total"), "suppressed")));
	{
		size_t supp = 0;

		for (size_t i = 0; i < 12; i++)
			supp += cJSON_IsTrue(cJSON_GetObjectItem(cell(a, i), "suppressed"));
		CHECK(supp >= 1 && supp < 12);
	}
	cJSON_Delete(a);
}

static void budget_exhausted_at_the_limit(void)
{
	cJSON *a;
	const char *q = "{\"purpose\":\"budget\",\"population\":\"" DC "\",\"group_by\":[\"" DC ".group\"]}";
	unsigned calls;
	const cJSON *b;

	reset();
	hub.rng = &test_rng;
	a = ask(q);
	CHECK(resp.status == 200);
	CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cell(a, 2), "noisy")));
	b = cJSON_GetObjectItem(a, "budget");
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(b, "spent")) == 0.5);
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(b, "remaining")) == 0.5);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(b, "resets")), "2027-01-01T00:00:00Z");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "disclosure"), "noise")),
		  "discrete_laplace");
	cJSON_Delete(a);
	a = ask(q); /* exactly at the limit: allowed */
	CHECK(resp.status == 200);
	b = cJSON_GetObjectItem(a, "budget");
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(b, "spent")) == 1);
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(b, "remaining")) == 0);
	cJSON_Delete(a);
	calls = fanout_calls;
	a = ask(q);
	CHECK(resp.status == 429);
	CHECK(fanout_calls == calls); /* refused before any node is asked */
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "error"), "code")),
		  "budget_exhausted");
	CHECK_CONTAINS(resp.body, "\"remaining\":0");
	CHECK_CONTAINS(resp.body, "\"resets\":\"2027-01-01T00:00:00Z\"");
	CHECK_CONTAINS(resp.body, "it resets at 2027-01-01T00:00:00Z");
	CHECK(resp.retry_after > 0);
	CHECK(!cJSON_GetObjectItem(a, "cells"));
	cJSON_Delete(a);
	hub.rng = &zero_rng;
}

static char *audit_last(void);

static void refusals(void)
{
	cJSON *a;
	const cJSON *e;

	reset();
	a = ask_as("gemeente-x", "{\"purpose\":\"exact\",\"population\":\"" DA "\"}");
	CHECK(resp.status == 403);
	CHECK_CONTAINS(resp.body, "not_a_coordinator");
	CHECK_CONTAINS(audit_last(), "\"requester\":\"gemeente-x\"");
	CHECK_CONTAINS(audit_last(), "\"purpose\":\"exact\"");
	CHECK_CONTAINS(audit_last(), "\"outcome\":\"not_a_coordinator\"");
	CHECK_CONTAINS(audit_last(), "\"decision\":\"deny\"");
	cJSON_Delete(a);
	/* ... and when that cannot be recorded, 503: nothing is decided unrecorded */
	audit_fail_next_writes(alog, 1);
	a = ask_as("gemeente-x", "{\"purpose\":\"exact\",\"population\":\"" DA "\"}");
	CHECK(resp.status == 503);
	CHECK_CONTAINS(resp.body, "audit_unavailable");
	cJSON_Delete(a);
	/* A generalisation finer than the policy's: 403 naming rule and reason. */
	a = ask("{\"purpose\":\"exact\",\"population\":\"" DA "\",\"group_by\":[\"" DA ".birth_date:month\"]}");
	e = cJSON_GetObjectItem(a, "error");
	CHECK(resp.status == 403);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(e, "code")), "generalisation_too_fine");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(e, "nearest_rule")), "exact-grant");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(e, "dataset")), DA);
	cJSON_Delete(a);
	/* linked_aggregate is not granted for "cells" */
	a = ask("{\"purpose\":\"cells\",\"population\":[\"" DC "\",\"" DA "\"]}");
	CHECK(resp.status == 403);
	cJSON_Delete(a);
	/* 400, naming the part */
	{
		static const struct {
			const char *q, *part;
		} bad[] = {
			{ "[]", "JSON object" },
			{ "{\"population\":\"" DA "\"}", "purpose" },
			{ "{\"purpose\":\"exact\"}", "population" },
			{ "{\"purpose\":\"exact\",\"population\":[]}", "population" },
			{ "{\"purpose\":\"exact\",\"population\":\"nergens/niets\"}", "nergens/niets" },
			{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"link\":\"" DU "\"}", "link" },
			{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"link\":[\"" DA "\"]}", "twice" },
			{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"measure\":{\"sum\":\"x\"}}", "measure" },
			{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"group_by\":[\"" DA ".programme\",\"" DA
			  ".completed\",\"" DA ".start_year\",\"" DA ".birth_date\"]}", "group_by" },
			{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"group_by\":[\"" DA ".nope\"]}", "group_by[0]" },
			{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"group_by\":[\"" DA ".bsn\"]}", "identifies" },
			{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"group_by\":[\"" DU ".end_reason\"]}",
			  "not a dataset of this question" },
			{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"group_by\":[\"present_in." DA "\"]}",
			  "present_in" },
			{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"group_by\":[\"" DA ".birth_date:weekly\"]}",
			  "generalisation" },
			{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"group_by\":[\"" DA ".programme\",\"" DA
			  ".programme\"]}", "twice" },
			{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"filters\":{\"" DA ".programme\":[]}}",
			  "filters." DA ".programme" },
			{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"filters\":{\"" DA ".start_year\":[2023.5]}}",
			  "integers" },
			{ "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"groupby\":[]}", "groupby" },
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			a = ask(bad[i].q);
			CHECK(resp.status == 400);
			CHECK_CONTAINS(resp.body, bad[i].part);
			cJSON_Delete(a);
		}
	}
	/* A member without a node endpoint: 502 naming it, no fan-out. */
	a = ask("{\"purpose\":\"exact\",\"population\":\"" DX "\"}");
	CHECK(resp.status == 502);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "error"), "node")), "geen-node");
	cJSON_Delete(a);
}

static void node_faults(void)
{
	static const struct {
		enum behaviour b;
		int status;
		const char *code;
	} faults[] = {
		{ DOWN, 502, "node_unreachable" },
		{ TIMEOUT, 504, "node_timeout" },
		{ REFUSE, 502, "node_refused" },
		{ GARBAGE_JSON, 502, "node_garbage" },
		{ GARBAGE_SEALED, 502, "node_garbage" },
		{ WRONG_KEY, 502, "node_garbage" },
		{ WRONG_DATASET, 502, "node_garbage" },
		{ WRONG_RECORDS, 502, "node_garbage" },
		{ TOO_MANY_RECORDS, 502, "node_garbage" },
		{ BAD_CATEGORY, 502, "node_garbage" },
		{ GARBAGE_HEAD, 502, "node_garbage" },
		{ NO_RECORDS, 502, "node_garbage" },
		{ BOX_TOO_LONG, 502, "node_garbage" },
		{ TOO_BIG, 502, "node_garbage" },
	};
	const char *q = "{\"purpose\":\"exact\",\"population\":\"" DA "\",\"link\":[\"" DU "\"],"
			"\"group_by\":[\"" DA ".programme\",\"" DU ".end_reason\"]}";

	for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
		cJSON *a;
		const cJSON *e;

		reset();
		behaviours[0].node = "uwv";
		behaviours[0].b = faults[i].b;
		a = ask(q);
		e = cJSON_GetObjectItem(a, "error");
		if (resp.status != faults[i].status)
			printf("#   fault %zu: %d %s\n", i, resp.status, resp.body);
		CHECK(resp.status == faults[i].status);
		CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(e, "code")), faults[i].code);
		CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(e, "node")), "uwv");
		CHECK_CONTAINS(cJSON_GetStringValue(cJSON_GetObjectItem(e, "message")), "uwv");
		CHECK(!cJSON_GetObjectItem(a, "cells"));
		CHECK(!has_token(resp.body));
		if (faults[i].b == REFUSE) {
			CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(e, "node_error"),
									   "code")), "field_not_granted");
			CHECK_CONTAINS(cJSON_GetStringValue(cJSON_GetObjectItem(e, "message")), "not for you");
		}
		cJSON_Delete(a);
	}
	/* Unlinked (mode counts) garbage too. */
	reset();
	behaviours[0].node = "fonds-a";
	behaviours[0].b = WRONG_DATASET;
	{
		cJSON *a = ask("{\"purpose\":\"exact\",\"population\":\"" DA "\",\"group_by\":[\"" DA ".programme\"]}");

		CHECK(resp.status == 502);
		CHECK_CONTAINS(resp.body, "fonds-a");
		cJSON_Delete(a);
	}
}

static void partial_answers(void)
{
	const char *linked = "{\"purpose\":\"partial\",\"population\":\"" DA "\",\"link\":[\"" DU "\"],"
			     "\"group_by\":[\"" DA ".programme\",\"" DU ".end_reason\"]}";
	cJSON *a;
	const cJSON *c;
	double total = 0;

	reset();
	behaviours[0].node = "uwv";
	behaviours[0].b = TIMEOUT;
	a = ask(linked);
	CHECK(resp.status == 200);
	CHECK(cJSON_IsTrue(cJSON_GetObjectItem(a, "partial")));
	CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(a, "missing_nodes")) == 1);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(a, "missing_nodes"), 0)), "uwv");
	/* Without uwv every person is absent from the link: null end_reason. */
	cJSON_ArrayForEach(c, cJSON_GetObjectItem(a, "cells")) {
		int supp = cJSON_IsTrue(cJSON_GetObjectItem(c, "suppressed"));
		double n = supp ? 0 : cJSON_GetNumberValue(cJSON_GetObjectItem(c, "persons"));

		/* empty cells: noisy 0 under zero_rng, below min_cell 1 */
		if (!cJSON_IsNull(cJSON_GetArrayItem(cJSON_GetObjectItem(c, "key"), 1)))
			CHECK(supp);
		total += n;
	}
	{
		cJSON *q = cJSON_Parse("{\"population\":\"" DA "\"}");

		brute_force(q);
		CHECK(total == bf_total);
		cJSON_Delete(q);
	}
	cJSON_Delete(a);
	/* The same question where the policy says fail: 504. */
	a = ask("{\"purpose\":\"exact\",\"population\":\"" DA "\",\"link\":[\"" DU "\"]}");
	CHECK(resp.status == 504);
	cJSON_Delete(a);
	/* The population's own node missing: nothing left to count, 502. */
	behaviours[0].node = "fonds-a";
	behaviours[0].b = DOWN;
	a = ask(linked);
	CHECK(resp.status == 502);
	CHECK_CONTAINS(resp.body, "fonds-a");
	cJSON_Delete(a);
}

/* The last line of the hub's audit log. */
static char *audit_last(void)
{
	FILE *f = fopen(audit_path, "r");
	static char line[8192], last[8192];

	last[0] = '\0';
	while (f && fgets(line, sizeof(line), f))
		memcpy(last, line, sizeof(line));
	if (f)
		fclose(f);
	return last;
}

static void audit_lines(void)
{
	cJSON *a;
	char *l;

	reset();
	hub.rng = &test_rng;
	a = ask("{\"purpose\":\"exact\",\"population\":\"" DA "\",\"link\":[\"" DU "\"],\"group_by\":[\"" DA
		".programme\"]}");
	CHECK(resp.status == 200);
	l = audit_last();
	CHECK_CONTAINS(l, "\"operation\":\"aggregate\"");
	CHECK_CONTAINS(l, "\"requester\":\"amt\"");
	CHECK_CONTAINS(l, "\"purpose\":\"exact\"");
	CHECK_CONTAINS(l, "\"datasets\":[\"" DA "\",\"" DU "\"]");
	CHECK_CONTAINS(l, "\"rules\":[\"exact-grant\",\"exact-grant\"]");
	CHECK_CONTAINS(l, "\"decision\":\"permit\"");
	CHECK_CONTAINS(l, "\"cells\":4");
	CHECK_CONTAINS(l, "\"outcome\":\"answered\"");
	CHECK_CONTAINS(l, cJSON_GetStringValue(cJSON_GetObjectItem(a, "audit_id")));
	CHECK_CONTAINS(l, last_query_id);
	CHECK(!has_token(l));
	cJSON_Delete(a);
	/* A budgeted answer carries its debit id. */
	{
		/* A fresh requester period: the budget test spent this year. */
		int64_t saved = pinned_now;

		pinned_now += 366 * 86400;
		a = ask("{\"purpose\":\"budget\",\"population\":\"" DC "\"}");
		CHECK(resp.status == 200);
		CHECK_CONTAINS(audit_last(), "\"budget_debit\":");
		CHECK_CONTAINS(audit_last(), "\"epsilon\":0.5");
		cJSON_Delete(a);
		pinned_now = saved;
	}
	/* A refusal is a line too. */
	a = ask_as("amt", "{\"purpose\":\"cells\",\"population\":[\"" DC "\",\"" DA "\"]}");
	CHECK_CONTAINS(audit_last(), "\"decision\":\"deny\"");
	CHECK_CONTAINS(audit_last(), "\"outcome\":\"operation_not_granted\"");
	cJSON_Delete(a);
	/* Audit failure: 503, nothing released. */
	audit_fail_next_writes(alog, 1);
	a = ask("{\"purpose\":\"exact\",\"population\":\"" DA "\",\"group_by\":[\"" DA ".programme\"]}");
	CHECK(resp.status == 503);
	CHECK_CONTAINS(resp.body, "audit_unavailable");
	CHECK(!cJSON_GetObjectItem(a, "cells"));
	cJSON_Delete(a);
	/* No audit log at all: 503 as well. */
	hub.audit = NULL;
	a = ask("{\"purpose\":\"exact\",\"population\":\"" DA "\"}");
	CHECK(resp.status == 503);
	cJSON_Delete(a);
	hub.audit = alog;
	hub.rng = &zero_rng;
}

static int64_t last_debit(void)
{
	char err[256];
	int64_t id = -1;

	CHECK(ledger_last_debit(ledger, &id, err, sizeof(err)) == 0);
	return id;
}

static int budget_spent(const cJSON *a)
{
	const cJSON *b = cJSON_GetObjectItem(cJSON_GetObjectItem(a, "error"), "budget_spent");

	return cJSON_IsBool(b) ? cJSON_IsTrue(b) : -1;
}

/*
 * Issue 11: no budget spent without a record, none spent for nothing. The
 * intent line goes before the debit: when it cannot be written, nothing is
 * debited; when the answer's line fails after the debit, the answer is
 * withheld and the refusal says the budget was spent.
 */
static void audit_before_debit(void)
{
	const char *q = "{\"purpose\":\"budget\",\"population\":\"" DC "\"}";
	int64_t saved = pinned_now, d0;
	cJSON *a;

	reset();
	hub.rng = &test_rng;
	pinned_now += 3 * 366 * 86400; /* a year nobody spent in */
	d0 = last_debit();
	/* the intent cannot be written: 503, nothing debited, and it says so */
	audit_fail_next_writes(alog, 1);
	a = ask(q);
	CHECK(resp.status == 503);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "error"), "code")),
		  "audit_unavailable");
	CHECK(budget_spent(a) == 0);
	CHECK_CONTAINS(resp.body, "no budget was spent");
	CHECK(!cJSON_GetObjectItem(a, "cells"));
	CHECK(last_debit() == d0);
	cJSON_Delete(a);
	/* the intent written, the debit taken, the answer's line fails:
	 * withheld, and the refusal says the budget WAS spent */
	audit_fail_writes_after(alog, 1, 1);
	a = ask(q);
	CHECK(resp.status == 503);
	CHECK(budget_spent(a) == 1);
	CHECK_CONTAINS(resp.body, "WAS spent");
	CHECK(!cJSON_GetObjectItem(a, "cells"));
	CHECK(last_debit() == d0 + 1);
	/* ... and the intent names it: who, what, which question */
	CHECK_CONTAINS(audit_last(), "\"operation\":\"budget_intent\"");
	CHECK_CONTAINS(audit_last(), "\"requester\":\"amt\"");
	CHECK_CONTAINS(audit_last(), "\"purpose\":\"budget\"");
	CHECK_CONTAINS(audit_last(), "\"epsilon\":0.5");
	CHECK_CONTAINS(audit_last(), last_query_id);
	cJSON_Delete(a);
	/* an answer: the intent line, then the answer's line with the debit */
	a = ask(q);
	CHECK(resp.status == 200);
	CHECK(last_debit() == d0 + 2);
	CHECK_CONTAINS(audit_last(), "\"budget_debit\":");
	CHECK_CONTAINS(audit_last(), "\"outcome\":\"answered\"");
	cJSON_Delete(a);
	/* the budget is spent: 429 says nothing more was */
	a = ask(q);
	CHECK(resp.status == 429);
	CHECK(budget_spent(a) == 0);
	CHECK(last_debit() == d0 + 2);
	cJSON_Delete(a);
	/* a question without a budget has nothing to say about one */
	audit_fail_next_writes(alog, 1);
	a = ask("{\"purpose\":\"exact\",\"population\":\"" DA "\"}");
	CHECK(resp.status == 503);
	CHECK(budget_spent(a) == -1);
	cJSON_Delete(a);
	pinned_now = saved;
	hub.rng = &zero_rng;
}

/* Cells of an answer, without the audit id, to compare runs. */
static char *cells_text(void)
{
	cJSON *a = resp.body ? cJSON_ParseWithLength(resp.body, resp.len) : NULL;
	char *t = a ? cJSON_PrintUnformatted(cJSON_GetObjectItem(a, "cells")) : NULL;

	cJSON_Delete(a);
	return t;
}

static void out_of_memory(void)
{
	static const char *const qs[] = {
		"{\"purpose\":\"exact\",\"population\":[\"" DA "\",\"" DB "\"],\"link\":[\"" DU "\"],"
		"\"group_by\":[\"" DA ".start_year\",\"present_in." DU "\"],"
		"\"filters\":{\"" DU ".end_reason\":[\"werk\"]}}",
		"{\"purpose\":\"exact\",\"population\":\"" DA "\",\"group_by\":[\"" DA ".programme\"],"
		"\"filters\":{\"" DA ".start_year\":[2023]}}",
		"{\"purpose\":\"budget\",\"population\":\"" DC "\",\"group_by\":[\"" DC ".group\"]}",
	};
	cJSON_Hooks hooks = { t_malloc, free };

	reset();
	cJSON_InitHooks(&hooks);
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		char *want;
		int want_status;
		long n;

		cJSON_Delete(ask(qs[i]));
		want_status = resp.status;
		want = cells_text();
		for (n = 0; n < 100000; n++) {
			cJSON *qj = cJSON_Parse(qs[i]);
			int rc;

			free(resp.body);
			memset(&resp, 0, sizeof(resp));
			failed_one = 0;
			fail_countdown = n;
			rc = gw_hub_aggregate(&hub, gw_members_by_id(members, "amt"), qj, &resp);
			fail_countdown = -1;
			cJSON_Delete(qj);
			if (!failed_one) {
				char *got = cells_text();

				CHECK(rc == 0 && resp.status == want_status);
				CHECK((!got && !want) || (got && want && strcmp(got, want) == 0));
				free(got);
				break;
			}
			/* An error, never a table with something missing. */
			/* cJSON cannot tell a node's answer it had no memory to
			 * parse from a malformed one: that reads as garbage (502),
			 * misattributed but safe. */
			CHECK(rc == -1 || resp.status == 500 || resp.status == 503 ||
			      (resp.status == 502 && strstr(resp.body, "not a JSON object")));
			CHECK(!resp.body || !strstr(resp.body, "\"cells\""));
		}
		CHECK(n > 20);
		free(want);
	}
	cJSON_InitHooks(NULL);
}

int main(void)
{
	struct diag d = { 0 };
	char err[512];
	char *p;

	if (sodium_init() < 0 || !mkdtemp(dir))
		return 1;
	fixture();
	crypto_box_keypair(box_pk, box_sk);
	{
		unsigned char sk[32];

		crypto_box_keypair(other_pk, sk);
	}
	p = check_write(dir, "catalog.yaml", catalog_text);
	if (policy_catalog_load(p, &catalog, &d) < 0) {
		diag_first(&d, err, sizeof(err));
		printf("not ok - test_hub: setup: catalog: %s\n", err);
		return 1;
	}
	unlink(p);
	free(p);
	{
		struct policy_refs refs = { 0 };

		refs.catalog = catalog;
		if (policy_set_load_mem("policy.yaml", (const unsigned char *)policy_text, strlen(policy_text),
					&refs, &policies, &d) < 0) {
			diag_first(&d, err, sizeof(err));
			printf("not ok - test_hub: setup: policy: %s\n", err);
			return 1;
		}
	}
	diag_clear(&d);
	p = check_write(dir, "members.yaml", members_text);
	if (gw_members_load(p, &members, &d) < 0) {
		printf("not ok - test_hub: setup: members: %s\n", diag_text(&d));
		return 1;
	}
	unlink(p);
	free(p);
	diag_clear(&d);
	audit_path = malloc(strlen(dir) + 16);
	sprintf(audit_path, "%s/audit.log", dir);
	if (audit_open(audit_path, NULL, NULL, &alog, err, sizeof(err)) < 0) {
		printf("not ok - test_hub: setup: audit: %s\n", err);
		return 1;
	}
	p = malloc(strlen(dir) + 16);
	sprintf(p, "%s/ledger.db", dir);
	if (ledger_create(p, err, sizeof(err)) < 0 || ledger_open(p, &ledger, err, sizeof(err)) < 0) {
		printf("not ok - test_hub: setup: ledger: %s\n", err);
		return 1;
	}
	policy_parse_date("2026-06-15", &pinned_now);
	pinned_now += 12 * 3600;

	hub = (struct gw_hub){ .policies = policies, .catalog = catalog, .members = members, .ledger = ledger,
			       .audit = alog, .box_pk = box_pk, .box_sk = box_sk, .fanout = fake_fanout,
			       .node_timeout_ms = 250, .now = fixed_now, .rng = &zero_rng };

	RUN(value_order);
	RUN(equals_brute_force);
	RUN(min_cell_boundary);
	RUN(budget_exhausted_at_the_limit);
	RUN(refusals);
	RUN(node_faults);
	RUN(partial_answers);
	RUN(audit_lines);
	RUN(audit_before_debit);
	RUN(out_of_memory);

	free(resp.body);
	ledger_close(ledger);
	audit_close(alog);
	policy_set_free(policies);
	policy_catalog_free(catalog);
	gw_members_free(members);
	{
		char cmd[64];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			return 1;
	}
	free(audit_path);
	free(p);
	return check_total_failed ? 1 : 0;
}
