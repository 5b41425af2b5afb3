/*
 * Unit tests for the node's subquery (node/node.c, gw_node_subquery):
 * called directly over a hand-built gw_env like test_node.c, against a
 * generated CSV whose answers are recomputed here by brute force: counts
 * per cell, sealed tokens (opened with the hub's secret key), contribution
 * bounding, filters, generalisation, the declared domains (every key a
 * bin, a period of the range, an age band or "other"), refusals, and
 * failing closed.
 */
#define CHECK_FILE "test_subquery"
#include "check.h"

#include "node_fixture.h"

static char dir[] = "/tmp/np-subquery-XXXXXX";
static char *hubpub_path;
static struct pseudo_master *master;
static unsigned char hub_pk[32], hub_sk[32];

#define QID_A "00112233445566778899aabbccddeeff"
#define QID_B "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
/* three rows, three programmes, in this order: kv, nld-1, nld-2; amounts
 * 1201 and 2001 (one bin, [1000,2500)) and 3001 ([2500,5000)), amounts no
 * other row has */
#define BSN_TRIPLE 123456782u

static const char catalog_text[] =
	"datasets:\n"
	"  fonds/inschrijvingen:\n"
	"    description: test\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      programme: {type: category, role: attribute, categories: [nld-1, nld-2, kv]}\n"
	"      start_year: {type: int, role: attribute, bins: [2021, 2022, 2023, 2024, 2025]}\n"
	"      start_date: {type: date, role: attribute, range: [2021-01-01, 2025-12-31]}\n"
	"      completed: {type: bool, role: attribute}\n"
	"      amount: {type: int, role: attribute, bins: [0, 1000, 2500, 5000]}\n"
	"      postcode: {type: string, role: quasi_identifier}\n"
	"      birth_date: {type: date, role: quasi_identifier, ages: [0, 120]}\n";

/* The declared domains above, written out by hand (not from
 * policies/domain.c): every key an answer may hold, null aside. */
static const char *const dom_programme[] = { "nld-1", "nld-2", "kv", NULL };
static const char *const dom_start_year[] = { "2021", "2022", "2023", "2024", "other", NULL };
static const char *const dom_start_date[] = { "2021", "2022", "2023", "2024", "2025", "other", NULL };
static const char *const dom_completed[] = { "false", "true", NULL };
static const char *const dom_amount[] = { "[0,1000)", "[1000,2500)", "[2500,5000)", "other", NULL };

/* 1 when |key| is in the declared domain of |field| (as the year for
 * start_date; birth_date as a band of 10 or 20 years within 0..119). */
static int in_domain(const char *field, const char *key)
{
	const char *const *d = strcmp(field, "programme") == 0	? dom_programme
			       : strcmp(field, "start_year") == 0 ? dom_start_year
			       : strcmp(field, "start_date") == 0 ? dom_start_date
			       : strcmp(field, "completed") == 0	? dom_completed
			       : strcmp(field, "amount") == 0	? dom_amount
								: NULL;
	int lo, hi, end = 0;

	if (strcmp(field, "birth_date") == 0)
		return strcmp(key, "other") == 0 ||
		       (sscanf(key, "%d-%d%n", &lo, &hi, &end) == 2 && key[end] == '\0' && lo >= 0 &&
			(hi - lo + 1 == 10 || hi - lo + 1 == 20) && lo % (hi - lo + 1) == 0 && hi < 120);
	for (; d && *d; d++)
		if (strcmp(*d, key) == 0)
			return 1;
	return 0;
}

#define GRANT_FIELDS                                  \
	"        datasets:\n"                          \
	"          fonds/inschrijvingen:\n"             \
	"            programme: exact\n"                \
	"            start_year: exact\n"               \
	"            start_date: year\n"                \
	"            completed: exact\n"                \
	"            amount: exact\n"                   \
	"            birth_date: age_band_10\n"

static const char policy_text[] =
	"purposes:\n"
	"  - id: fed\n"
	"    description: test\n"
	"    legal_basis: {text: test}\n"
	"    valid: {from: 2020-01-01, until: 2099-12-31}\n"
	"    grants:\n"
	"      - id: fed-grant\n"
	"        requesters: [arbeidsmarkttafel]\n"
	"        operations: [aggregate, linked_aggregate]\n"
	"        noise: {mechanism: discrete_laplace, epsilon: 1}\n"
	GRANT_FIELDS
	"  - id: fed-two\n"
	"    description: test, two cells per person\n"
	"    legal_basis: {text: test}\n"
	"    valid: {from: 2020-01-01, until: 2099-12-31}\n"
	"    grants:\n"
	"      - id: fed-two-grant\n"
	"        requesters: [arbeidsmarkttafel]\n"
	"        operations: [aggregate, linked_aggregate]\n"
	"        noise: {mechanism: discrete_laplace, epsilon: 1}\n"
	"        max_cells_per_person: 2\n"
	GRANT_FIELDS
	/* start_date granted exact: its range declares years, quarters and
	 * months, so the grant loads, but an exact date has no domain; the
	 * postcode (a string) can never be granted for aggregates */
	"  - id: fed-exact\n"
	"    description: test, an exact date\n"
	"    legal_basis: {text: test}\n"
	"    valid: {from: 2020-01-01, until: 2099-12-31}\n"
	"    grants:\n"
	"      - id: fed-exact-grant\n"
	"        requesters: [arbeidsmarkttafel]\n"
	"        operations: [aggregate, linked_aggregate]\n"
	"        noise: {mechanism: discrete_laplace, epsilon: 1}\n"
	"        datasets:\n"
	"          fonds/inschrijvingen:\n"
	"            programme: exact\n"
	"            start_date: exact\n";

static struct gw_member hub = { .id = "hub", .name = "Hub", .oin = "00000001000000001000",
				.roles = GW_ROLE_HUB };
static struct gw_member coordinator = { .id = "arbeidsmarkttafel", .name = "AMT",
					.oin = "00000001000000002000", .roles = GW_ROLE_COORDINATOR };

/* ---- the generated dataset, kept here for the brute force ---- */

#define NROWS 400
struct row {
	uint32_t bsn;
	const char *programme;
	int start_year;
	char start_date[11];
	int completed;
	int has_amount; /* 0 = null */
	int amount;
	char postcode[8]; /* "" = null */
	char birth_date[11];
};
static struct row rows[NROWS];
static const char *const programmes[] = { "nld-1", "nld-2", "kv" };

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint32_t random_bsn(uint64_t *s)
{
	for (;;) {
		uint32_t v = (uint32_t)(splitmix(s) % 90000000u) + 10000000u, sum = 0, d = v;
		for (int w = 2; w <= 9; w++, d /= 10)
			sum += (d % 10) * (uint32_t)w;
		if (sum % 11 != 10)
			return v * 10 + sum % 11;
	}
}

/* 400 rows over ~150 persons (up to 5 rows each), BSN_TRIPLE's rows first;
 * then amounts at every bin edge and beside it; about one row in 12 with a
 * start_year outside the bins and a start_date outside the range (rows 11
 * and 12 for sure), which must all come out as "other". */
static char *make_csv(void)
{
	static const int edges[] = { -1, 0, 999, 1000, 2499, 2500, 4999, 5000 };
	size_t cap = NROWS * 112 + 128, len;
	char *text = malloc(cap);
	uint32_t persons[150];
	uint64_t s = 2024;

	len = (size_t)snprintf(text, cap, "bsn,programme,start_year,start_date,completed,amount,postcode,birth_date\n");
	for (int i = 0; i < 150; i++)
		persons[i] = random_bsn(&s);
	persons[0] = BSN_TRIPLE;
	for (int i = 0; i < NROWS; i++) {
		struct row *r = &rows[i];
		int y = 2021 + (int)(splitmix(&s) % 4);

		r->bsn = i < 3 ? BSN_TRIPLE : persons[1 + splitmix(&s) % 149];
		r->programme = i < 3 ? (const char *[]){ "kv", "nld-1", "nld-2" }[i] : programmes[splitmix(&s) % 3];
		/* start_year and the year of start_date differ now and then */
		r->start_year = y;
		snprintf(r->start_date, sizeof(r->start_date), "%04d-%02d-%02d",
			 splitmix(&s) % 5 ? y : y + 1, 1 + (int)(splitmix(&s) % 12), 1 + (int)(splitmix(&s) % 28));
		r->completed = (int)(splitmix(&s) % 2);
		/* multiples of 10 in -100..6100, so never 1201, 2001 or 3001 */
		r->amount = (int)(splitmix(&s) % 621) * 10 - 100;
		r->has_amount = splitmix(&s) % 6 != 0;
		if (i < 3) {
			r->amount = (int[]){ 1201, 2001, 3001 }[i];
			r->has_amount = 1;
		} else if (i < 3 + 8) {
			r->amount = edges[i - 3];
			r->has_amount = 1;
		}
		/* outside the declared bins and range: 2030 (a date in 2031)
		 * and 2019 (a date in 2020, before the range's first day) */
		if (i == 11 || (i > 12 && splitmix(&s) % 24 == 0)) {
			r->start_year = 2030;
			snprintf(r->start_date, sizeof(r->start_date), "2031-%02d-15", 1 + (int)(splitmix(&s) % 12));
		} else if (i == 12 || (i > 12 && splitmix(&s) % 24 == 0)) {
			r->start_year = 2019;
			snprintf(r->start_date, sizeof(r->start_date), "2020-12-31");
		}
		if (splitmix(&s) % 6)
			snprintf(r->postcode, sizeof(r->postcode), "97%02d AB", (int)(splitmix(&s) % 4));
		else
			r->postcode[0] = '\0';
		snprintf(r->birth_date, sizeof(r->birth_date), "19%02d-06-15", 60 + (int)(splitmix(&s) % 40));
		len += (size_t)snprintf(text + len, cap - len, "%09u,%s,%d,%s,%s,", r->bsn, r->programme,
					r->start_year, r->start_date, r->completed ? "true" : "false");
		if (r->has_amount)
			len += (size_t)snprintf(text + len, cap - len, "%d", r->amount);
		len += (size_t)snprintf(text + len, cap - len, ",%s,%s\n", r->postcode, r->birth_date);
	}
	return text;
}

/* The brute force: one field's text in a row, as the node should make it:
 * the generalised value a filter compares with (|raw|), or the key of the
 * declared domain a group-by releases (a bin, a year of the range, other). */
static const char *field_text(const struct row *r, const char *field, char buf[16], int raw)
{
	if (strcmp(field, "programme") == 0)
		return r->programme;
	if (strcmp(field, "start_year") == 0) /* bins one wide: 2021..2024 */
		return raw || (r->start_year >= 2021 && r->start_year < 2025)
			       ? (snprintf(buf, 16, "%d", r->start_year), buf)
			       : "other";
	if (strcmp(field, "start_date") == 0) /* as the policy's year; the range 2021..2025 */
		return raw || (strncmp(r->start_date, "2021", 4) >= 0 && strncmp(r->start_date, "2025", 4) <= 0)
			       ? (snprintf(buf, 16, "%.4s", r->start_date), buf)
			       : "other";
	if (strcmp(field, "completed") == 0)
		return r->completed ? "true" : "false";
	if (strcmp(field, "amount") == 0) {
		if (!r->has_amount)
			return NULL;
		if (raw)
			return snprintf(buf, 16, "%d", r->amount), buf;
		return r->amount < 0 ? "other" : r->amount < 1000 ? "[0,1000)" : r->amount < 2500 ? "[1000,2500)"
		       : r->amount < 5000 ? "[2500,5000)" : "other";
	}
	return "?";
}

struct expect {
	uint32_t bsn;
	char key[128]; /* the field texts joined by '|', "~" for null */
};

/* The records the node may release: filter (one field in a set of texts,
 * or none), then each person's distinct combinations, all of them (the
 * node keeps min(k, that many) of each person's, chosen at random:
 * check_counts and check_tokens check the bound, not which ones). */
static size_t brute_force(const char *const *fields, size_t nf, const char *ffield, const char *const *fvals,
			  size_t nfv, struct expect *out)
{
	size_t n = 0;

	for (int i = 0; i < NROWS; i++) {
		struct expect e = { rows[i].bsn, "" };
		int dup = 0, match = !ffield;
		char buf[16];

		for (size_t j = 0; ffield && j < nfv; j++) {
			const char *t = field_text(&rows[i], ffield, buf, 1);
			match |= t && strcmp(t, fvals[j]) == 0;
		}
		if (!match)
			continue;
		for (size_t f = 0; f < nf; f++) {
			const char *t = field_text(&rows[i], fields[f], buf, 0);
			size_t l = strlen(e.key);
			snprintf(e.key + l, sizeof(e.key) - l, "%s%s", f ? "|" : "", t ? t : "~");
		}
		for (size_t j = 0; j < n; j++)
			dup |= out[j].bsn == e.bsn && strcmp(out[j].key, e.key) == 0;
		if (!dup)
			out[n++] = e;
	}
	return n;
}

/* How many distinct combinations |bsn| has among |e|. */
static unsigned combos_of(const struct expect *e, size_t ne, uint32_t bsn)
{
	unsigned n = 0;

	for (size_t i = 0; i < ne; i++)
		n += e[i].bsn == bsn;
	return n;
}

/* What the node releases under bound |k|: sum over persons of min(k, combos). */
static size_t bounded_total(const struct expect *e, size_t ne, unsigned k)
{
	size_t total = 0;

	for (size_t i = 0; i < ne; i++) {
		int first = 1;

		for (size_t j = 0; j < i && first; j++)
			first = e[j].bsn != e[i].bsn;
		if (first) {
			unsigned c = combos_of(e, ne, e[i].bsn);
			total += c < k ? c : k;
		}
	}
	return total;
}

/* ---- fixture ---- */

static int fixture_open(struct fixture *fx, int with_hub_key)
{
	cfg.node.hub_public_key = with_hub_key ? hubpub_path : NULL;
	return fixture_start(fx);
}

static int ask(struct fixture *fx, const struct gw_member *m, const char *json, struct gw_response *r)
{
	return ask_node(gw_node_subquery, fx, m, json, r);
}

#define BODY(purpose, qid, op, mode, fields, filters)                                            \
	"{\"query_id\":\"" qid "\",\"requester\":\"arbeidsmarkttafel\",\"purpose\":\"" purpose "\"," \
	"\"operation\":\"" op "\",\"dataset\":\"" DS "\",\"mode\":\"" mode "\","                     \
	"\"fields\":" fields ",\"filters\":" filters ",\"max_cells_per_person\":5}"

#define F_PROG_YEAR_AMT "[{\"field\":\"programme\",\"gen\":\"exact\"},{\"field\":\"start_date\",\"gen\":\"year\"}," \
			"{\"field\":\"amount\"}]"
#define FILTER_YEARS "[{\"field\":\"start_year\",\"gen\":\"exact\",\"values\":[2023,\"2024\"]}]"
#define FILTER_DATE_YEAR "[{\"field\":\"start_date\",\"gen\":\"year\",\"values\":[\"2022\",\"2023\"]}]"

/* ---- counts ---- */

/* Checks a counts answer against the brute force of the same question
 * under bound |k|: each cell holds at least the persons who must count
 * there (at most k combinations, this one among them) and at most those
 * who may; the total is each person's min(k, combinations); every key must
 * be in its field's declared domain. */
static void check_counts(const char *body, const struct expect *e, size_t ne, unsigned k)
{
	cJSON *o = cJSON_Parse(body), *cells = cJSON_GetObjectItem(o, "cells"), *c;
	cJSON *names = cJSON_GetObjectItem(o, "fields");
	size_t total = 0, ncells = 0;

	CHECK(o != NULL);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(o, "dataset")), DS);
	CHECK(cJSON_GetStringValue(cJSON_GetObjectItem(o, "policy_hash")) &&
	      strlen(cJSON_GetStringValue(cJSON_GetObjectItem(o, "policy_hash"))) == 64);
	cJSON_ArrayForEach(c, cells) {
		char key[128] = "";
		cJSON *v;
		size_t may = 0, must = 0;
		double got = cJSON_GetNumberValue(cJSON_GetObjectItem(c, "persons"));
		int f = 0;

		cJSON_ArrayForEach(v, cJSON_GetObjectItem(c, "key")) {
			size_t l = strlen(key);
			const char *name = cJSON_GetStringValue(cJSON_GetArrayItem(names, f));

			if (!cJSON_IsNull(v) && (!name || !cJSON_IsString(v) || !in_domain(name, v->valuestring))) {
				printf("#   key %s of %s is not in its declared domain\n",
				       cJSON_IsString(v) ? v->valuestring : "?", name ? name : "?");
				CHECK(0);
			}
			snprintf(key + l, sizeof(key) - l, "%s%s", f++ ? "|" : "", cJSON_IsNull(v) ? "~" : v->valuestring);
		}
		for (size_t i = 0; i < ne; i++)
			if (strcmp(e[i].key, key) == 0) {
				may++;
				must += combos_of(e, ne, e[i].bsn) <= k;
			}
		if (got < (double)must || got > (double)may) {
			printf("#   cell %s: %g persons, brute force %zu to %zu\n", key, got, must, may);
			CHECK(0);
		}
		CHECK(got > 0); /* only cells that occur */
		total += (size_t)got;
		ncells++;
	}
	CHECK(total == bounded_total(e, ne, k));
	CHECK(ncells > 1);
	cJSON_Delete(o);
}

static void counts_equal_brute_force(void)
{
	static const char *const fields[] = { "programme", "start_date", "amount" };
	static const char *const years[] = { "2023", "2024" };
	static const char *const dyears[] = { "2022", "2023" };
	struct expect *e = malloc(NROWS * sizeof(*e));
	struct fixture fx;
	struct gw_response r;
	unsigned long before = audit_lines();
	size_t ne;
	cJSON *a;

	if (fixture_open(&fx, 1) < 0) {
		CHECK(0);
		free(e);
		return;
	}
	/* an exact filter (pushed to the adapter), one cell per person */
	CHECK(ask(&fx, &hub, BODY("fed", QID_A, "aggregate", "counts", F_PROG_YEAR_AMT, FILTER_YEARS), &r) == 0);
	CHECK(r.status == 200);
	ne = brute_force(fields, 3, "start_year", years, 2, e);
	check_counts(r.body, e, ne, 1);
	CHECK_CONTAINS(r.body, "\"fields\":[\"programme\",\"start_date\",\"amount\"]");
	CHECK_CONTAINS(r.body, "null"); /* missing amounts are their own category */
	CHECK_CONTAINS(r.body, "\"[2500,5000)\""); /* bins, never the amounts */
	CHECK(!strstr(r.body, "2490") && !strstr(r.body, "4990"));
	free(r.body);
	CHECK(audit_lines() == before + 1);
	a = last_audit();
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(a, "operation")), "subquery");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(a, "hub")), "hub");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(a, "requester")), "arbeidsmarkttafel");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(a, "purpose")), "fed");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(a, "decision")), "permit");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(a, "rule")), "fed-grant");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(a, "mode")), "counts");
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(a, "records")) == (double)bounded_total(e, ne, 1));
	cJSON_Delete(a);

	/* a generalised filter (evaluated on the year text), two cells per person */
	CHECK(ask(&fx, &hub, BODY("fed-two", QID_A, "aggregate", "counts", F_PROG_YEAR_AMT, FILTER_DATE_YEAR), &r) == 0);
	CHECK(r.status == 200);
	ne = brute_force(fields, 3, "start_date", dyears, 2, e);
	check_counts(r.body, e, ne, 2);
	free(r.body);

	/* no filter, one field, the hub's bound (1) stricter than the policy's (2) */
	CHECK(ask(&fx, &hub,
		  "{\"query_id\":\"" QID_A "\",\"requester\":\"arbeidsmarkttafel\",\"purpose\":\"fed-two\","
		  "\"operation\":\"aggregate\",\"dataset\":\"" DS "\",\"mode\":\"counts\","
		  "\"fields\":[{\"field\":\"programme\"}],\"max_cells_per_person\":1}", &r) == 0);
	CHECK(r.status == 200);
	ne = brute_force(fields, 1, NULL, NULL, 0, e);
	check_counts(r.body, e, ne, 1);
	free(r.body);

	/* a filter value that can never match ("02023" is not an int's text): no cells */
	CHECK(ask(&fx, &hub, BODY("fed", QID_A, "aggregate", "counts", F_PROG_YEAR_AMT,
				  "[{\"field\":\"start_year\",\"values\":[\"02023\"]}]"), &r) == 0);
	CHECK(r.status == 200);
	CHECK_CONTAINS(r.body, "\"cells\":[]");
	free(r.body);
	fixture_close(&fx);
	free(e);
}

/* ---- tokens ---- */


/* Opens and decodes a tokens answer (wire.h: "NPS1", the box, a JSON head);
 * 0 or -1. */
static int open_answer(const struct gw_response *r, struct wire_tokens *t)
{
	const unsigned char *box = NULL;
	const char *head = NULL;
	size_t boxlen = 0, headlen = 0, len = 0;
	unsigned char *plain = NULL;
	cJSON *o = NULL;
	char err[200] = "not a sealed answer";
	int rc = -1;

	if (r->content_type && strcmp(r->content_type, WIRE_SEALED_CONTENT_TYPE) == 0 &&
	    wire_unwrap((const unsigned char *)r->body, r->len, &box, &boxlen, &head, &headlen, err,
			sizeof(err)) == 0 &&
	    (o = cJSON_ParseWithLength(head, headlen)) != NULL &&
	    wire_open(box, boxlen, hub_pk, hub_sk, &plain, &len, err, sizeof(err)) == 0 &&
	    wire_decode(plain, len, t, err, sizeof(err)) == 0 &&
	    cJSON_GetNumberValue(cJSON_GetObjectItem(o, "records")) == (double)t->nrecords &&
	    cJSON_IsString(cJSON_GetObjectItem(o, "audit_id")))
		rc = 0;
	else
		printf("#   cannot open the answer: %s\n", err);
	if (plain) {
		sodium_memzero(plain, len);
		free(plain);
	}
	cJSON_Delete(o);
	return rc;
}

static void token16(const char *purpose, const char *qid_hex, uint32_t bsn, unsigned char out[16])
{
	struct pseudo_key *pk, *qk;
	unsigned char qid[16], tok[PSEUDO_TOKEN_BYTES];

	sodium_hex2bin(qid, 16, qid_hex, 32, NULL, NULL, NULL);
	pseudo_key_purpose(master, purpose, &pk);
	pseudo_key_query(pk, qid, &qk);
	pseudo_token(qk, bsn, tok);
	memcpy(out, tok, 16);
	pseudo_key_free(qk);
	pseudo_key_free(pk);
}

struct expect_tok {
	unsigned char tok[16];
	char key[128];
};

static int exp_cmp(const void *a, const void *b)
{
	const struct expect_tok *x = a, *y = b;
	int c = memcmp(x->tok, y->tok, 16);

	return c ? c : strcmp(x->key, y->key);
}

/* Checks a decoded answer against the brute force under bound |k|: every
 * record is one of its person's combinations, none twice, and each person
 * has min(k, its combinations) records; the answer is sorted by token, and
 * every value of its dictionaries must be in the declared domain of |fields|. */
static void check_tokens(const struct wire_tokens *t, const char *purpose, const char *qid,
			 const char *const *fields, const struct expect *e, size_t ne, unsigned k)
{
	struct expect_tok *want = malloc((ne + 1) * sizeof(*want)), *got = malloc((t->nrecords + 1) * sizeof(*got));
	unsigned *per = calloc(ne + 1, sizeof(*per)); /* want[i]'s person: combinations */

	CHECK(t->nrecords == bounded_total(e, ne, k));
	for (uint32_t f = 0; f < t->nfields; f++)
		for (uint16_t c = 0; c < t->fields[f].nvalues; c++)
			if (!in_domain(fields[f], t->fields[f].values[c])) {
				printf("#   %s: %s is not in the declared domain\n", fields[f], t->fields[f].values[c]);
				CHECK(0);
			}
	for (size_t i = 0; i < ne; i++) {
		token16(purpose, qid, e[i].bsn, want[i].tok);
		snprintf(want[i].key, sizeof(want[i].key), "%s", e[i].key);
	}
	for (uint32_t r = 0; r < t->nrecords; r++) {
		memcpy(got[r].tok, t->tokens + (size_t)r * 16, 16);
		got[r].key[0] = '\0';
		for (uint32_t f = 0; f < t->nfields; f++) {
			uint16_t c = t->codes[(size_t)r * t->nfields + f];
			size_t l = strlen(got[r].key);
			snprintf(got[r].key + l, sizeof(got[r].key) - l, "%s%s", f ? "|" : "",
				 c == WIRE_NULL ? "~" : t->fields[f].values[c]);
		}
		if (r)
			CHECK(memcmp(got[r - 1].tok, got[r].tok, 16) <= 0);
	}
	qsort(want, ne, sizeof(*want), exp_cmp);
	qsort(got, t->nrecords, sizeof(*got), exp_cmp);
	for (size_t i = 0; i < ne; i++)
		for (size_t j = 0; j < ne; j++)
			per[i] += memcmp(want[i].tok, want[j].tok, 16) == 0;
	for (size_t i = 0; i < t->nrecords; i++) {
		const struct expect_tok *w = bsearch(&got[i], want, ne, sizeof(*want), exp_cmp);
		size_t have = 0;

		if (!w || (i && exp_cmp(&got[i - 1], &got[i]) == 0)) {
			printf("#   record %zu (%s): %s\n", i, got[i].key, w ? "twice" : "not one of its person's");
			CHECK(0);
			break;
		}
		for (size_t j = 0; j < t->nrecords; j++)
			have += memcmp(got[j].tok, got[i].tok, 16) == 0;
		if (have != (per[w - want] < k ? per[w - want] : k)) {
			printf("#   record %zu: its person has %zu records of %u combinations, bound %u\n", i,
			       have, per[w - want], k);
			CHECK(0);
			break;
		}
	}
	free(per);
	free(want);
	free(got);
}

/* The records of one person (by its token) in |t|, keys joined by ','. */
static size_t person_records(const struct wire_tokens *t, const char *purpose, const char *qid, uint32_t bsn,
			     char *keys, size_t keyslen)
{
	unsigned char tok[16];
	size_t n = 0;

	token16(purpose, qid, bsn, tok);
	keys[0] = '\0';
	for (uint32_t r = 0; r < t->nrecords; r++)
		if (memcmp(t->tokens + (size_t)r * 16, tok, 16) == 0) {
			uint16_t c = t->codes[(size_t)r * t->nfields];
			size_t l = strlen(keys);
			snprintf(keys + l, keyslen - l, "%s%s", n++ ? "," : "", c == WIRE_NULL ? "~" : t->fields[0].values[c]);
		}
	return n;
}

static void tokens_equal_brute_force(void)
{
	static const char *const fields[] = { "programme", "start_date", "amount" };
	static const char *const years[] = { "2023", "2024" };
	static const char *const dyears[] = { "2022", "2023" };
	struct expect *e = malloc(NROWS * sizeof(*e));
	struct fixture fx;
	struct gw_response r;
	struct wire_tokens t;
	unsigned long before = audit_lines();
	char keys[256];
	size_t ne;
	cJSON *a;

	if (fixture_open(&fx, 1) < 0) {
		CHECK(0);
		free(e);
		return;
	}
	CHECK(ask(&fx, &hub, BODY("fed", QID_A, "linked_aggregate", "tokens", F_PROG_YEAR_AMT, FILTER_YEARS), &r) == 0);
	CHECK(r.status == 200);
	/* binary: the box, then the JSON head (wire.h) */
	CHECK(r.len > 4 && memcmp(r.body, "NPS1", 4) == 0);
	CHECK(memmem(r.body, r.len, "\"dataset\":\"" DS "\"", strlen("\"dataset\":\"" DS "\"")) != NULL);
	CHECK(memmem(r.body, r.len, "\"policy_hash\":\"", 15) != NULL);
	CHECK(memmem(r.body, r.len, "\"cells\"", 7) == NULL);
	ne = brute_force(fields, 3, "start_year", years, 2, e);
	if (open_answer(&r, &t) == 0) {
		CHECK(t.nfields == 3);
		check_tokens(&t, "fed", QID_A, fields, e, ne, 1);
		wire_tokens_free(&t);
	} else {
		CHECK(0);
	}
	free(r.body);
	CHECK(audit_lines() == before + 1);
	a = last_audit();
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(a, "mode")), "tokens");
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(a, "records")) == (double)bounded_total(e, ne, 1));
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(a, "max_cells_per_person")) == 1);
	cJSON_Delete(a);

	/* generalised filter, two per person */
	CHECK(ask(&fx, &hub, BODY("fed-two", QID_B, "linked_aggregate", "tokens", F_PROG_YEAR_AMT, FILTER_DATE_YEAR),
		  &r) == 0);
	CHECK(r.status == 200);
	ne = brute_force(fields, 3, "start_date", dyears, 2, e);
	if (open_answer(&r, &t) == 0) {
		check_tokens(&t, "fed-two", QID_B, fields, e, ne, 2);
		wire_tokens_free(&t);
	} else {
		CHECK(0);
	}
	free(r.body);

	/* the person with three rows (kv, nld-1, nld-2): one of them, or two
	 * different ones (which: bounding_uniform) */
#define PROG_ONLY(purpose, qid) \
	BODY(purpose, qid, "linked_aggregate", "tokens", "[{\"field\":\"programme\"}]", "[]")
	CHECK(ask(&fx, &hub, PROG_ONLY("fed", QID_A), &r) == 0);
	if (r.status == 200 && open_answer(&r, &t) == 0) {
		CHECK(person_records(&t, "fed", QID_A, BSN_TRIPLE, keys, sizeof(keys)) == 1);
		CHECK(strcmp(keys, "kv") == 0 || strcmp(keys, "nld-1") == 0 || strcmp(keys, "nld-2") == 0);
		ne = brute_force(fields, 1, NULL, NULL, 0, e);
		check_tokens(&t, "fed", QID_A, fields, e, ne, 1);
		wire_tokens_free(&t);
	} else {
		CHECK(0);
	}
	free(r.body);
	CHECK(ask(&fx, &hub, PROG_ONLY("fed-two", QID_A), &r) == 0);
	if (r.status == 200 && open_answer(&r, &t) == 0) {
		CHECK(person_records(&t, "fed-two", QID_A, BSN_TRIPLE, keys, sizeof(keys)) == 2);
		{
			const char *c = strchr(keys, ','); /* two different programmes */

			CHECK(c && !((size_t)(c - keys) == strlen(c + 1) && strncmp(keys, c + 1, (size_t)(c - keys)) == 0));
		}
		wire_tokens_free(&t);
	} else {
		CHECK(0);
	}
	free(r.body);

	/* no fields at all: the persons only (a population dataset) */
	CHECK(ask(&fx, &hub, BODY("fed", QID_A, "linked_aggregate", "tokens", "[]", "[]"), &r) == 0);
	CHECK(r.status == 200);
	if (r.status == 200 && open_answer(&r, &t) == 0) {
		CHECK(t.nfields == 0);
		CHECK(t.nrecords == brute_force(fields, 0, NULL, NULL, 0, e));
		wire_tokens_free(&t);
	} else {
		CHECK(0);
	}
	free(r.body);
	fixture_close(&fx);
	free(e);
}

/*
 * Issue 11: which rows count is chosen uniformly at random per question,
 * not by file order. BSN_TRIPLE's rows are kv, nld-1, nld-2 in that order;
 * with one cell per person, over N questions each programme must be its
 * one record about N/3 times (binomial, sd sqrt(N 2/9) = 8.2 at N = 300:
 * the bound 100 +- 41 is 5 sd, false alarm < 1e-6). The first-row code
 * gave kv 300 times; with two cells per person, each pair about N/3.
 */
/* The bound's per-question stream: uniform over [0, upper) (each value
 * within 5 sd over 60 000 draws, for an upper bound that divides 2^32 and
 * one that does not), 0 for upper 1, and a fresh key per stream. */
static void bound_stream_uniform(void)
{
	static const uint32_t uppers[] = { 2, 3, 7 };
	struct sq_rand a, b;
	int same = 1;

	sq_rand_init(&a);
	CHECK(sq_rand_uniform(&a, 1) == 0);
	for (size_t u = 0; u < sizeof(uppers) / sizeof(uppers[0]); u++) {
		unsigned hist[7] = { 0 };
		const unsigned draws = 60000;
		double p = 1.0 / uppers[u], var = draws * p * (1 - p);

		for (unsigned i = 0; i < draws; i++) {
			uint32_t r = sq_rand_uniform(&a, uppers[u]);

			CHECK(r < uppers[u]);
			if (r < uppers[u])
				hist[r]++;
		}
		for (uint32_t v = 0; v < uppers[u]; v++)
			if ((hist[v] - draws * p) * (hist[v] - draws * p) > 25 * var) { /* 5 sd */
				printf("#   upper %u: value %u drawn %u times, expected %.0f\n", uppers[u], v,
				       hist[v], draws * p);
				CHECK(0);
			}
	}
	sq_rand_init(&a);
	sq_rand_init(&b);
	for (int i = 0; i < 8; i++)
		same &= sq_rand_word(&a) == sq_rand_word(&b);
	CHECK(!same);
}

static void bounding_uniform(void)
{
	static const char *const progs[] = { "kv", "nld-1", "nld-2" };
	enum { N = 300 };
	unsigned seen1[3] = { 0 }, seen2[3] = { 0 }; /* seen2: the programme left out */
	struct fixture fx;
	struct gw_response r;
	struct wire_tokens t;
	char keys[256];

	if (fixture_open(&fx, 1) < 0) {
		CHECK(0);
		return;
	}
	for (int i = 0; i < 2 * N; i++) {
		int two = i >= N;

		CHECK(ask(&fx, &hub, two ? PROG_ONLY("fed-two", QID_A) : PROG_ONLY("fed", QID_A), &r) == 0);
		if (r.status == 200 && open_answer(&r, &t) == 0) {
			size_t n = person_records(&t, two ? "fed-two" : "fed", QID_A, BSN_TRIPLE, keys, sizeof(keys));

			CHECK(n == (two ? 2u : 1u));
			for (int p = 0; p < 3; p++) {
				int has = strcmp(keys, progs[p]) == 0 || strncmp(keys, progs[p], strlen(progs[p])) == 0 ||
					  (strchr(keys, ',') && strcmp(strchr(keys, ',') + 1, progs[p]) == 0);

				if (two)
					seen2[p] += !has;
				else
					seen1[p] += has;
			}
			wire_tokens_free(&t);
		} else {
			CHECK(0);
		}
		free(r.body);
	}
	printf("#   one cell: kv %u, nld-1 %u, nld-2 %u of %d; two cells, left out: kv %u, nld-1 %u, nld-2 %u\n",
	       seen1[0], seen1[1], seen1[2], N, seen2[0], seen2[1], seen2[2]);
	for (int p = 0; p < 3; p++) {
		CHECK(seen1[p] >= N / 3 - 41 && seen1[p] <= N / 3 + 41);
		CHECK(seen2[p] >= N / 3 - 41 && seen2[p] <= N / 3 + 41);
	}
	CHECK(seen1[0] + seen1[1] + seen1[2] == N);
	CHECK(seen2[0] + seen2[1] + seen2[2] == N);
	fixture_close(&fx);
}

/*
 * End to end through the node: a start_year beyond the declared bins (2030,
 * 2019) and a start_date outside the declared range (2031, 2020-12-31) are
 * counted under "other", as the brute force counts them, and no key of the
 * answer lies outside the declared domain: not 2030, not 2031.
 */
static void out_of_domain_values_are_other(void)
{
	static const char *const fields[] = { "start_year", "start_date" };
	static const char *const y2030[] = { "2030" };
	struct expect *e = malloc(NROWS * sizeof(*e));
	struct fixture fx;
	struct gw_response r;
	struct wire_tokens t;
	size_t ne, other = 0, must = 0;
	int found = 0;
	cJSON *o, *c;

	if (fixture_open(&fx, 1) < 0) {
		CHECK(0);
		free(e);
		return;
	}
#define F_YEAR_DATE "[{\"field\":\"start_year\"},{\"field\":\"start_date\",\"gen\":\"year\"}]"
	/* the whole table: every cell as the brute force, keys in the domain */
	CHECK(ask(&fx, &hub, BODY("fed-two", QID_A, "aggregate", "counts", F_YEAR_DATE, "[]"), &r) == 0);
	CHECK(r.status == 200);
	ne = brute_force(fields, 2, NULL, NULL, 0, e);
	for (size_t i = 0; i < ne; i++)
		if (strcmp(e[i].key, "other|other") == 0) {
			other++; /* may count there */
			must += combos_of(e, ne, e[i].bsn) <= 2; /* must: the bound keeps it */
		}
	CHECK(other >= 2); /* rows 11 and 12 at least, different persons */
	CHECK(must >= 1);  /* so the cell cannot be bounded away */
	check_counts(r.body, e, ne, 2);
	o = cJSON_Parse(r.body);
	cJSON_ArrayForEach(c, cJSON_GetObjectItem(o, "cells")) {
		cJSON *k = cJSON_GetObjectItem(c, "key");

		if (cJSON_IsString(cJSON_GetArrayItem(k, 0)) && cJSON_IsString(cJSON_GetArrayItem(k, 1)) &&
		    strcmp(cJSON_GetArrayItem(k, 0)->valuestring, "other") == 0 &&
		    strcmp(cJSON_GetArrayItem(k, 1)->valuestring, "other") == 0) {
			double got = cJSON_GetNumberValue(cJSON_GetObjectItem(c, "persons"));

			CHECK(got >= (double)must && got <= (double)other);
			found++;
		}
	}
	CHECK(found == 1); /* the cell was there, once */
	cJSON_Delete(o);
	CHECK(!strstr(r.body, "2030") && !strstr(r.body, "2031") && !strstr(r.body, "2019") &&
	      !strstr(r.body, "2020"));
	free(r.body);

	/* only the rows of 2030 (a filter compares the value itself): one
	 * cell, other|other, with every person of those rows */
	CHECK(ask(&fx, &hub, BODY("fed", QID_A, "aggregate", "counts", F_YEAR_DATE,
				  "[{\"field\":\"start_year\",\"values\":[2030]}]"), &r) == 0);
	CHECK(r.status == 200);
	/* each person of those rows has the one combination other|other, so
	 * the bound keeps every one of them whatever it draws */
	ne = brute_force(fields, 2, "start_year", y2030, 1, e);
	CHECK(ne >= 1);
	CHECK(bounded_total(e, ne, 1) == ne);
	o = cJSON_Parse(r.body);
	CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(o, "cells")) == 1);
	c = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "cells"), 0);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(c, "key"), 0)), "other");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(c, "key"), 1)), "other");
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(c, "persons")) == (double)ne);
	cJSON_Delete(o);
	CHECK(!strstr(r.body, "2030") && !strstr(r.body, "2031"));
	free(r.body);

	/* tokens: the dictionaries hold domain keys only (every value the
	 * scan met, before the bound: so "other" is there whatever it drew),
	 * the records match */
	CHECK(ask(&fx, &hub, BODY("fed", QID_B, "linked_aggregate", "tokens", F_YEAR_DATE, "[]"), &r) == 0);
	CHECK(r.status == 200);
	ne = brute_force(fields, 2, NULL, NULL, 0, e);
	if (r.status == 200 && open_answer(&r, &t) == 0) {
		check_tokens(&t, "fed", QID_B, fields, e, ne, 1);
		for (uint32_t f = 0; f < t.nfields; f++) {
			int has_other = 0;
			for (uint16_t v = 0; v < t.fields[f].nvalues; v++)
				has_other |= strcmp(t.fields[f].values[v], "other") == 0;
			CHECK(has_other);
		}
		wire_tokens_free(&t);
	} else {
		CHECK(0);
	}
	free(r.body);
#undef F_YEAR_DATE
	fixture_close(&fx);
	free(e);
}

static int item_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* A counts answer of one field as "key=persons,..." sorted by key (a
 * static buffer), to compare whatever the order of the cells. */
static const char *one_field_cells(const char *body)
{
	static char out[512];
	char items[16][64];
	size_t n = 0, len = 0;
	cJSON *o = cJSON_Parse(body), *c;

	cJSON_ArrayForEach(c, cJSON_GetObjectItem(o, "cells")) {
		cJSON *k = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "key"), 0);

		if (n < 16)
			snprintf(items[n++], sizeof(items[0]), "%s=%g", cJSON_IsString(k) ? k->valuestring : "~",
				 cJSON_GetNumberValue(cJSON_GetObjectItem(c, "persons")));
	}
	cJSON_Delete(o);
	qsort(items, n, sizeof(items[0]), item_cmp);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(out + len, sizeof(out) - len, "%s%s", i ? "," : "", items[i]);
	return out;
}

/*
 * max_cells_per_person counts a person once per *mapped* key: BSN_TRIPLE's
 * amounts 1201 and 2001 are two values but one bin, [1000,2500), so with two
 * cells per person it is counted in [1000,2500) once and in [2500,5000)
 * (3001) once, not twice in [1000,2500), whichever order the bound draws
 * its rows in (the two distinct mapped keys are within the bound of 2).
 * With one cell: the bound keeps one row drawn at random, so either bin
 * once ([1000,2500) two times in three), never both and never twice.
 */
static void a_person_counts_once_per_mapped_key(void)
{
#define TRIPLE_AMOUNTS "[{\"field\":\"amount\",\"values\":[1201,2001,3001]}]"
	static const char *const fields[] = { "amount" };
	enum { N = 40 };
	struct expect *e = malloc(NROWS * sizeof(*e));
	struct fixture fx;
	struct gw_response r;
	unsigned low = 0, high = 0;
	size_t ne;

	if (fixture_open(&fx, 1) < 0) {
		CHECK(0);
		free(e);
		return;
	}
	/* asked N times: the bound draws the order of the three rows afresh
	 * each time, and a bound that compared raw amounts would keep 1201 and
	 * 2001 (both [1000,2500)) and drop 3001 whenever 3001 is drawn last,
	 * one time in three: it passes N times with chance (2/3)^N, 1e-7 */
	for (int i = 0; i < N; i++) {
		CHECK(ask(&fx, &hub,
			  BODY("fed-two", QID_A, "aggregate", "counts", "[{\"field\":\"amount\"}]", TRIPLE_AMOUNTS),
			  &r) == 0);
		CHECK(r.status == 200);
		CHECK_STR(one_field_cells(r.body), "[1000,2500)=1,[2500,5000)=1");
		free(r.body);
	}
	/* one cell: one of its bins (whichever row the bound keeps), once;
	 * [1000,2500) two times in three, so both turn up over N */
	for (int i = 0; i < N; i++) {
		const char *got;

		CHECK(ask(&fx, &hub, BODY("fed", QID_A, "aggregate", "counts", "[{\"field\":\"amount\"}]", TRIPLE_AMOUNTS),
			  &r) == 0);
		CHECK(r.status == 200);
		got = one_field_cells(r.body);
		low += strcmp(got, "[1000,2500)=1") == 0;
		high += strcmp(got, "[2500,5000)=1") == 0;
		if (strcmp(got, "[1000,2500)=1") != 0 && strcmp(got, "[2500,5000)=1") != 0) {
			printf("#   got %s\n", got);
			CHECK(0);
		}
		free(r.body);
	}
	printf("#   one cell: [1000,2500) %u, [2500,5000) %u of %d\n", low, high, N);
	CHECK(low + high == N && low > 0 && high > 0);
	/* and over everyone: persons with two amounts in one bin are common */
	CHECK(ask(&fx, &hub, BODY("fed-two", QID_A, "aggregate", "counts", "[{\"field\":\"amount\"}]", "[]"), &r) == 0);
	CHECK(r.status == 200);
	ne = brute_force(fields, 1, NULL, NULL, 0, e);
	check_counts(r.body, e, ne, 2);
	free(r.body);
#undef TRIPLE_AMOUNTS
	fixture_close(&fx);
	free(e);
}

static void generalisation_applied(void)
{
	struct fixture fx;
	struct gw_response r;
	struct wire_tokens t;

	if (fixture_open(&fx, 1) < 0) {
		CHECK(0);
		return;
	}
	/* the hub asks for age_band_20 where the policy grants age_band_10:
	 * the coarser applies; start_date: the policy's year for NONE */
	CHECK(ask(&fx, &hub, BODY("fed", QID_A, "linked_aggregate", "tokens",
				  "[{\"field\":\"birth_date\",\"gen\":\"age_band_20\"},{\"field\":\"start_date\"},"
				  "{\"field\":\"amount\"},{\"field\":\"completed\"},{\"field\":\"start_year\"}]",
				  "[]"), &r) == 0);
	CHECK(r.status == 200);
	if (r.status == 200 && open_answer(&r, &t) == 0) {
		for (uint16_t c = 0; c < t.fields[0].nvalues; c++) {
			int lo, hi;
			CHECK(sscanf(t.fields[0].values[c], "%d-%d", &lo, &hi) == 2 && lo % 20 == 0 && hi == lo + 19);
		}
		for (uint16_t c = 0; c < t.fields[1].nvalues; c++) /* a year of the range, or other */
			CHECK(in_domain("start_date", t.fields[1].values[c]));
		CHECK(t.fields[1].nvalues == 6); /* 2021..2025, other */
		for (uint16_t c = 0; c < t.fields[2].nvalues; c++) /* a bin, never an amount */
			CHECK(in_domain("amount", t.fields[2].values[c]));
		CHECK(t.fields[2].nvalues == 4); /* the three bins and other: the edges and beyond are in the data */
		for (uint16_t c = 0; c < t.fields[3].nvalues; c++)
			CHECK(strcmp(t.fields[3].values[c], "true") == 0 || strcmp(t.fields[3].values[c], "false") == 0);
		CHECK(t.fields[3].nvalues == 2);
		for (uint16_t c = 0; c < t.fields[4].nvalues; c++)
			CHECK(in_domain("start_year", t.fields[4].values[c]));
		CHECK(t.fields[4].nvalues == 5); /* 2021..2024, other (2019 and 2030) */
		wire_tokens_free(&t);
	} else {
		CHECK(0);
	}
	free(r.body);

	/* a field without a declared domain is never grouped: the postcode
	 * (a string) cannot even be granted for aggregates, so the node's
	 * policy refuses it; an exact date, granted (its range declares years)
	 * but without a domain itself, is 422 no_declared_domain, audited,
	 * nothing released */
	CHECK(ask(&fx, &hub, BODY("fed", QID_A, "aggregate", "counts", "[{\"field\":\"postcode\"}]", "[]"),
		  &r) == 0);
	CHECK(r.status == 403);
	CHECK(!strstr(r.body, "cells") && !strstr(r.body, "97"));
	free(r.body);
	{
		unsigned long before = audit_lines();
		cJSON *a;

		CHECK(ask(&fx, &hub, BODY("fed-exact", QID_A, "aggregate", "counts",
					  "[{\"field\":\"start_date\",\"gen\":\"exact\"}]", "[]"), &r) == 0);
		CHECK(r.status == 422);
		CHECK_CONTAINS(r.body, "\"code\":\"no_declared_domain\"");
		CHECK(!strstr(r.body, "cells"));
		free(r.body);
		CHECK(audit_lines() == before + 1);
		a = last_audit();
		CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(a, "outcome")), "no_declared_domain");
		cJSON_Delete(a);
		CHECK(ask(&fx, &hub, BODY("fed-exact", QID_A, "linked_aggregate", "tokens",
					  "[{\"field\":\"programme\"},{\"field\":\"start_date\",\"gen\":\"exact\"}]", "[]"),
			  &r) == 0);
		CHECK(r.status == 422);
		CHECK(memcmp(r.body, "NPS1", 4) != 0);
		free(r.body);
		/* the same grant at the year: the range's years */
		CHECK(ask(&fx, &hub, BODY("fed-exact", QID_A, "aggregate", "counts",
					  "[{\"field\":\"start_date\",\"gen\":\"year\"}]", "[]"), &r) == 0);
		CHECK(r.status == 200);
		CHECK_CONTAINS(r.body, "\"other\"");
		free(r.body);
	}

	/* finer than granted: the node's own policy refuses */
	CHECK(ask(&fx, &hub, BODY("fed", QID_A, "linked_aggregate", "tokens",
				  "[{\"field\":\"start_date\",\"gen\":\"exact\"}]", "[]"), &r) == 0);
	CHECK(r.status == 403);
	CHECK_CONTAINS(r.body, "generalisation_too_fine");
	free(r.body);
	/* also in a filter */
	CHECK(ask(&fx, &hub, BODY("fed", QID_A, "aggregate", "counts", "[{\"field\":\"programme\"}]",
				  "[{\"field\":\"start_date\",\"gen\":\"month\",\"values\":[\"2023-01\"]}]"), &r) == 0);
	CHECK(r.status == 403);
	free(r.body);
	fixture_close(&fx);
}

static void tokens_differ_by_query_and_purpose(void)
{
	struct fixture fx;
	struct gw_response r;
	struct wire_tokens t[3];
	const char *bodies[3] = { PROG_ONLY("fed", QID_A), PROG_ONLY("fed", QID_B), PROG_ONLY("fed-two", QID_A) };
	int ok = 1;

	if (fixture_open(&fx, 1) < 0) {
		CHECK(0);
		return;
	}
	for (int i = 0; i < 3; i++) {
		CHECK(ask(&fx, &hub, bodies[i], &r) == 0);
		ok &= r.status == 200 && open_answer(&r, &t[i]) == 0;
		free(r.body);
		if (!ok) {
			CHECK(0);
			for (int j = 0; j < i; j++)
				wire_tokens_free(&t[j]);
			fixture_close(&fx);
			return;
		}
	}
	/* no token of one answer appears in another */
	for (int a = 0; a < 3; a++)
		for (int b = a + 1; b < 3; b++)
			for (uint32_t i = 0; i < t[a].nrecords; i++)
				for (uint32_t j = 0; j < t[b].nrecords; j++)
					if (memcmp(t[a].tokens + i * 16, t[b].tokens + j * 16, 16) == 0) {
						printf("#   answers %d and %d share a token\n", a, b);
						CHECK(0);
						i = t[a].nrecords;
						break;
					}
	/* and the same question twice gives the same tokens */
	CHECK(ask(&fx, &hub, bodies[0], &r) == 0);
	{
		struct wire_tokens again;
		if (open_answer(&r, &again) == 0) {
			CHECK(again.nrecords == t[0].nrecords &&
			      memcmp(again.tokens, t[0].tokens, (size_t)again.nrecords * 16) == 0);
			wire_tokens_free(&again);
		} else {
			CHECK(0);
		}
	}
	free(r.body);
	for (int i = 0; i < 3; i++)
		wire_tokens_free(&t[i]);
	fixture_close(&fx);
}

/* ---- refusals ---- */

static void not_a_hub_403(void)
{
	struct fixture fx;
	struct gw_response r;
	unsigned long before = audit_lines();
	cJSON *a;

	if (fixture_open(&fx, 1) < 0) {
		CHECK(0);
		return;
	}
	CHECK(ask(&fx, &coordinator, BODY("fed", QID_A, "aggregate", "counts", F_PROG_YEAR_AMT, "[]"), &r) == 0);
	CHECK(r.status == 403);
	CHECK_CONTAINS(r.body, "\"code\":\"not_a_hub\"");
	CHECK(!strstr(r.body, "cells"));
	free(r.body);
	CHECK(audit_lines() == before + 1);
	a = last_audit();
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(a, "outcome")), "not_a_hub");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(a, "hub")), "arbeidsmarkttafel");
	cJSON_Delete(a);
	fixture_close(&fx);
}

static void policy_deny_403_audited(void)
{
	struct fixture fx;
	struct gw_response r;
	unsigned long before = audit_lines();
	cJSON *a;

	if (fixture_open(&fx, 1) < 0) {
		CHECK(0);
		return;
	}
	/* a requester the policy does not list */
	CHECK(ask(&fx, &hub,
		  "{\"query_id\":\"" QID_A "\",\"requester\":\"gemeente-groningen\",\"purpose\":\"fed\","
		  "\"operation\":\"aggregate\",\"dataset\":\"" DS "\",\"mode\":\"counts\","
		  "\"fields\":[{\"field\":\"programme\"}]}", &r) == 0);
	CHECK(r.status == 403);
	CHECK_CONTAINS(r.body, "requester_not_listed");
	CHECK(!strstr(r.body, "cells"));
	free(r.body);
	CHECK(audit_lines() == before + 1);
	a = last_audit();
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(a, "decision")), "deny");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(a, "reason")), "requester_not_listed");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(a, "requester")), "gemeente-groningen");
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(a, "records")) == 0);
	cJSON_Delete(a);
	/* an unknown purpose */
	CHECK(ask(&fx, &hub, BODY("nope", QID_A, "aggregate", "counts", "[]", "[]"), &r) == 0);
	CHECK(r.status == 403);
	CHECK_CONTAINS(r.body, "unknown_purpose");
	free(r.body);
	fixture_close(&fx);
}

static void bad_requests_400(void)
{
	static const char *const bad[] = {
		/* query_id: short, not hex, missing */
		BODY("fed", "0011223344556677", "aggregate", "counts", "[]", "[]"),
		BODY("fed", "zz112233445566778899aabbccddeeff", "aggregate", "counts", "[]", "[]"),
		"{\"requester\":\"arbeidsmarkttafel\",\"purpose\":\"fed\",\"operation\":\"aggregate\","
		"\"dataset\":\"" DS "\",\"mode\":\"counts\"}",
		/* mode, operation */
		BODY("fed", QID_A, "aggregate", "rows", "[]", "[]"),
		BODY("fed", QID_A, "lookup", "counts", "[]", "[]"),
		BODY("fed", QID_A, "aggregate", "tokens", "[]", "[]"),
		/* unknown fields, the identifier, a field twice, a bad gen */
		BODY("fed", QID_A, "aggregate", "counts", "[{\"field\":\"salary\"}]", "[]"),
		BODY("fed", QID_A, "aggregate", "counts", "[{\"field\":\"bsn\"}]", "[]"),
		BODY("fed", QID_A, "aggregate", "counts", "[]", "[{\"field\":\"salary\",\"values\":[\"1\"]}]"),
		BODY("fed", QID_A, "aggregate", "counts", "[]", "[{\"field\":\"bsn\",\"values\":[\"123456782\"]}]"),
		BODY("fed", QID_A, "aggregate", "counts", "[{\"field\":\"programme\"},{\"field\":\"programme\"}]", "[]"),
		BODY("fed", QID_A, "aggregate", "counts", "[{\"field\":\"programme\",\"gen\":\"weekly\"}]", "[]"),
		/* filters without values, with a non-scalar value */
		BODY("fed", QID_A, "aggregate", "counts", "[]", "[{\"field\":\"programme\",\"values\":[]}]"),
		BODY("fed", QID_A, "aggregate", "counts", "[]", "[{\"field\":\"programme\",\"values\":[{}]}]"),
		BODY("fed", QID_A, "aggregate", "counts", "[]", "[{\"field\":\"start_year\",\"values\":[2023.5]}]"),
		/* nine fields */
		BODY("fed", QID_A, "aggregate", "counts",
		     "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]", "[]"),
		/* max_cells_per_person */
		"{\"query_id\":\"" QID_A "\",\"requester\":\"arbeidsmarkttafel\",\"purpose\":\"fed\","
		"\"operation\":\"aggregate\",\"dataset\":\"" DS "\",\"mode\":\"counts\",\"max_cells_per_person\":0}",
		"[]",
	};
	struct fixture fx;
	struct gw_response r;
	unsigned long before = audit_lines();
	size_t n = sizeof(bad) / sizeof(bad[0]);

	if (fixture_open(&fx, 1) < 0) {
		CHECK(0);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		CHECK(ask(&fx, &hub, bad[i], &r) == 0);
		if (r.status != 400) {
			printf("#   case %zu: %d %s\n", i, r.status, r.body ? r.body : "");
			CHECK(0);
		}
		CHECK_CONTAINS(r.body, "\"code\":\"bad_request\"");
		free(r.body);
	}
	CHECK(audit_lines() == before + n);
	/* a dataset this node does not hold */
	CHECK(ask(&fx, &hub,
		  "{\"query_id\":\"" QID_A "\",\"requester\":\"arbeidsmarkttafel\",\"purpose\":\"fed\","
		  "\"operation\":\"aggregate\",\"dataset\":\"uwv/ww\",\"mode\":\"counts\"}", &r) == 0);
	CHECK(r.status == 404);
	free(r.body);
	fixture_close(&fx);
}

/* The node accepts what the hub may send: 16 filters, 256 values each; one
 * more of either is a 400. */
static void limits_at_the_boundary(void)
{
	static const char *const names[] = { "programme", "start_year", "start_date", "completed", "amount",
					     "birth_date" };
	struct fixture fx;
	struct gw_response r;
	char *body = malloc(65536);
	size_t len;

	if (fixture_open(&fx, 1) < 0) {
		CHECK(0);
		free(body);
		return;
	}
	for (int values = 256; values <= 257; values++) {
		len = (size_t)snprintf(body, 65536, "%s", BODY("fed", QID_A, "aggregate", "counts",
							       "[{\"field\":\"programme\"}]", "X"));
		len -= strlen("X,\"max_cells_per_person\":5}");
		len += (size_t)snprintf(body + len, 65536 - len, "[{\"field\":\"start_year\",\"values\":[");
		for (int i = 0; i < values; i++)
			len += (size_t)snprintf(body + len, 65536 - len, "%s%d", i ? "," : "", 1900 + i);
		snprintf(body + len, 65536 - len, "]}]}");
		CHECK(ask(&fx, &hub, body, &r) == 0);
		CHECK(r.status == (values == 256 ? 200 : 400));
		free(r.body);
	}
	/* 16 filters: the six fields can only be named once each, so 16
	 * distinct names are 16 - 6 unknown fields (400 as unknown, not as
	 * too many); 17 is refused for the count before the schema is read */
	for (int n = 16; n <= 17; n++) {
		len = (size_t)snprintf(body, 65536, "%s", BODY("fed", QID_A, "aggregate", "counts", "[]", "X"));
		len -= strlen("X,\"max_cells_per_person\":5}");
		len += (size_t)snprintf(body + len, 65536 - len, "[");
		for (int i = 0; i < n; i++)
			len += (size_t)snprintf(body + len, 65536 - len, "%s{\"field\":\"%s%.0d\",\"values\":[\"1\"]}",
						i ? "," : "", names[i % 6], i / 6);
		snprintf(body + len, 65536 - len, "]}");
		CHECK(ask(&fx, &hub, body, &r) == 0);
		CHECK(r.status == 400);
		if (n == 16)
			CHECK_CONTAINS(r.body, "not in the dataset");
		else
			CHECK_CONTAINS(r.body, "more than 16");
		free(r.body);
	}
	fixture_close(&fx);
	free(body);
}

static void no_hub_key_501(void)
{
	struct fixture fx;
	struct gw_response r;

	if (fixture_open(&fx, 0) < 0) {
		CHECK(0);
		return;
	}
	CHECK(ask(&fx, &hub, PROG_ONLY("fed", QID_A), &r) == 0);
	CHECK(r.status == 501);
	CHECK_CONTAINS(r.body, "no_hub_key");
	free(r.body);
	/* counts need no key */
	CHECK(ask(&fx, &hub, BODY("fed", QID_A, "aggregate", "counts", "[{\"field\":\"programme\"}]", "[]"), &r) == 0);
	CHECK(r.status == 200);
	free(r.body);
	fixture_close(&fx);
}

static void audit_failure_503_nothing_released(void)
{
	struct fixture fx;
	struct gw_response r;
	unsigned long before = audit_lines();

	if (fixture_open(&fx, 1) < 0) {
		CHECK(0);
		return;
	}
	audit_fail_next_writes(alog, 1);
	CHECK(ask(&fx, &hub, PROG_ONLY("fed", QID_A), &r) == 0);
	CHECK(r.status == 503);
	CHECK_CONTAINS(r.body, "audit_unavailable");
	CHECK(memcmp(r.body, "NPS1", 4) != 0 && !strstr(r.body, "records"));
	CHECK_STR(r.content_type, "application/json");
	free(r.body);
	audit_fail_next_writes(alog, 1);
	CHECK(ask(&fx, &hub, BODY("fed", QID_A, "aggregate", "counts", "[{\"field\":\"programme\"}]", "[]"), &r) == 0);
	CHECK(r.status == 503);
	CHECK(!strstr(r.body, "cells") && !strstr(r.body, "persons"));
	free(r.body);
	/* a deny that cannot be recorded is not answered as a deny */
	audit_fail_next_writes(alog, 1);
	CHECK(ask(&fx, &hub, BODY("nope", QID_A, "aggregate", "counts", "[]", "[]"), &r) == 0);
	CHECK(r.status == 503);
	free(r.body);
	/* nor a non-hub */
	audit_fail_next_writes(alog, 1);
	CHECK(ask(&fx, &coordinator, BODY("fed", QID_A, "aggregate", "counts", "[]", "[]"), &r) == 0);
	CHECK(r.status == 503);
	free(r.body);
	CHECK(audit_lines() == before);
	/* without an audit log: nothing either */
	fx.env.audit = NULL;
	CHECK(ask(&fx, &hub, PROG_ONLY("fed", QID_A), &r) == 0);
	CHECK(r.status == 503);
	free(r.body);
	fx.env.audit = alog;
	/* and then answered again */
	CHECK(ask(&fx, &hub, PROG_ONLY("fed", QID_A), &r) == 0);
	CHECK(r.status == 200);
	free(r.body);
	CHECK(audit_lines() == before + 1);
	fixture_close(&fx);
}

/* ---- out of memory ---- */

/* The answer in |r| as text to compare: the status, then the JSON body, or
 * a sealed answer's head and a hash of its opened plaintext, without the
 * audit id (which goes to |id|, "" if none). The caller frees it. */
static char *answer_text(const struct gw_response *r, char id[33])
{
	int sealed = r->content_type && strcmp(r->content_type, WIRE_SEALED_CONTENT_TYPE) == 0;
	const unsigned char *box = NULL;
	const char *head = NULL, *a;
	size_t boxlen = 0, headlen = 0, plen = 0, n;
	unsigned char *plain = NULL, h[16];
	char hex[33] = "-", err[200], *t = NULL, *out;
	cJSON *o = NULL;

	id[0] = '\0';
	if (sealed) {
		if (wire_unwrap((const unsigned char *)r->body, r->len, &box, &boxlen, &head, &headlen, err,
				sizeof(err)) == 0 &&
		    wire_open(box, boxlen, hub_pk, hub_sk, &plain, &plen, err, sizeof(err)) == 0) {
			crypto_generichash(h, sizeof(h), plain, plen, NULL, 0);
			sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
			o = cJSON_ParseWithLength(head, headlen);
			sodium_memzero(plain, plen);
			free(plain);
		}
	} else if (r->body) {
		o = cJSON_ParseWithLength(r->body, r->len);
	}
	if ((a = cJSON_GetStringValue(cJSON_GetObjectItem(o, "audit_id"))) != NULL)
		snprintf(id, 33, "%s", a);
	cJSON_DeleteItemFromObject(o, "audit_id");
	t = o ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	n = (t ? strlen(t) : 0) + 128;
	out = malloc(n);
	snprintf(out, n, "%d %s %s %s", r->status, sealed ? "sealed" : r->content_type ? r->content_type : "-",
		 t ? t : "(no JSON)", hex);
	free(t);
	return out;
}

/* A repeatable draw for sq_bound(): the last row first, always. */
static uint32_t uniform_zero(const uint32_t upper_bound)
{
	(void)upper_bound;
	return 0;
}

/* node_oom() over one subquery by |m| (node_fixture.h); cJSON fails too.
 * The bound's draw is made repeatable: every run must answer alike. */
static void subquery_oom(const struct gw_member *m, const char *json, int want_status, struct oom_count *c)
{
	struct fixture fx;

	if (fixture_open(&fx, 1) < 0) {
		memset(c, 0, sizeof(*c));
		CHECK(0);
		return;
	}
	sq_uniform = uniform_zero;
	node_oom(gw_node_subquery, answer_text, &fx, m, json, want_status, 1, c);
	sq_uniform = NULL;
	fixture_close(&fx);
}

static void out_of_memory_counts(void)
{
	struct oom_count c;

	/* a filter evaluated here (the year of a date), two cells per person */
	subquery_oom(&hub, BODY("fed-two", QID_A, "aggregate", "counts", F_PROG_YEAR_AMT, FILTER_DATE_YEAR), 200, &c);
	CHECK(c.in_node >= 20);
	CHECK(c.in_cjson >= 200);
}

static void out_of_memory_tokens(void)
{
	struct oom_count c;

	/* an exact filter pushed to the adapter */
	subquery_oom(&hub, BODY("fed", QID_A, "linked_aggregate", "tokens", F_PROG_YEAR_AMT, FILTER_YEARS), 200, &c);
	CHECK(c.in_node >= 20);
	CHECK(c.in_cjson >= 30);
}

static void out_of_memory_refused(void)
{
	struct oom_count c;

	/* a requester the node's policy does not list: 403, audited */
	subquery_oom(&hub,
		     "{\"query_id\":\"" QID_A "\",\"requester\":\"gemeente-groningen\",\"purpose\":\"fed\","
		     "\"operation\":\"aggregate\",\"dataset\":\"" DS "\",\"mode\":\"counts\","
		     "\"fields\":[{\"field\":\"programme\"}]}",
		     403, &c);
	CHECK(c.in_node >= 1);
	CHECK(c.in_cjson >= 20);
}

/* ---- generalise_text() agrees with adapter_date_format ---- */

/* The adapter out of memory is the node's trouble, not the dataset's: 500
 * internal and no audit line; an unreadable source is 503
 * source_unavailable, audited as a refusal. */
static void adapter_failures(void)
{
	struct fixture fx;
	struct gw_response r;
	unsigned long before = audit_lines();

	if (fixture_open(&fx, 1) < 0) {
		CHECK(0);
		return;
	}
	scan_fails_with = ADAPTER_ERR_NOMEM;
	CHECK(ask(&fx, &hub, PROG_ONLY("fed", QID_A), &r) == 0);
	CHECK(r.status == 500);
	CHECK_CONTAINS(r.body, "\"internal\"");
	free(r.body);
	CHECK(ask(&fx, &hub, BODY("fed", QID_A, "aggregate", "counts", "[{\"field\":\"programme\"}]", "[]"), &r) == 0);
	CHECK(r.status == 500);
	free(r.body);
	CHECK(audit_lines() == before);
	scan_fails_with = ADAPTER_ERR_IO;
	CHECK(ask(&fx, &hub, PROG_ONLY("fed", QID_A), &r) == 0);
	CHECK(r.status == 503);
	CHECK_CONTAINS(r.body, "source_unavailable");
	free(r.body);
	CHECK(audit_lines() == before + 1);
	scan_fails_with = 0;
	CHECK(ask(&fx, &hub, PROG_ONLY("fed", QID_A), &r) == 0);
	CHECK(r.status == 200);
	free(r.body);
	fixture_close(&fx);
}

static void civil_date_matches_adapter(void)
{
	int32_t lo, hi;
	int bad = 0;

	adapter_date_parse("0001-01-01", 10, &lo);
	adapter_date_parse("9999-12-31", 10, &hi);
	for (int32_t d = lo; d <= hi && bad < 3; d++) {
		char a[11], b[16];
		int y, m, dd;

		adapter_date_format(d, a);
		civil_date(d, &y, &m, &dd);
		snprintf(b, sizeof(b), "%04d-%02d-%02d", y, m, dd);
		if (strcmp(a, b) != 0) {
			printf("#   day %d: adapter %s, civil_date %s\n", d, a, b);
			bad++;
		}
	}
	CHECK(bad == 0);
}

int main(void)
{
	char err[512], hex[65];
	char *csv;
	int rc;

	if (!mkdtemp(dir) || sodium_init() < 0)
		return 1;
	csv = make_csv();
	rc = node_fixture_setup("test_subquery", dir, catalog_text, csv, policy_text);
	free(csv);
	if (rc < 0)
		return 1;
	crypto_box_keypair(hub_pk, hub_sk);
	sodium_bin2hex(hex, sizeof(hex), hub_pk, 32);
	hubpub_path = check_write(dir, "hub.pub", hex);
	if (pseudo_master_load(key_path, &master, err, sizeof(err)) < 0) {
		printf("not ok - test_subquery: setup: master key: %s\n", err);
		return 1;
	}

	RUN(not_a_hub_403);
	RUN(counts_equal_brute_force);
	RUN(tokens_equal_brute_force);
	RUN(bound_stream_uniform);
	RUN(bounding_uniform);
	RUN(generalisation_applied);
	RUN(out_of_domain_values_are_other);
	RUN(a_person_counts_once_per_mapped_key);
	RUN(tokens_differ_by_query_and_purpose);
	RUN(policy_deny_403_audited);
	RUN(bad_requests_400);
	RUN(limits_at_the_boundary);
	RUN(no_hub_key_501);
	RUN(audit_failure_503_nothing_released);
	RUN(out_of_memory_counts);
	RUN(out_of_memory_tokens);
	RUN(out_of_memory_refused);
	RUN(adapter_failures);
	RUN(civil_date_matches_adapter);

	audit_close(alog);
	policy_set_free(policies);
	gw_members_free(members);
	pseudo_master_free(master);
	sodium_memzero(hub_sk, sizeof(hub_sk));
	unlink(catalog_path);
	unlink(csv_path);
	unlink(policy_path);
	unlink(key_path);
	unlink(audit_path);
	unlink(hubpub_path);
	rmdir(dir);
	free(catalog_path);
	free(csv_path);
	free(policy_path);
	free(key_path);
	free(audit_path);
	free(hubpub_path);
	return check_total_failed ? 1 : 0;
}
