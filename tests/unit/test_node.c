/*
 * Unit tests for the node (node/node.c): gw_node_lookup() called
 * directly over a hand-built gw_env (catalog, policies from a string, a tiny
 * CSV, an audit log in a temporary folder), fail-closed auditing, the rate
 * limit at its boundary, and generalise() for every generalisation.
 */
#define CHECK_FILE "test_node"
#include "check.h"

#include "node_fixture.h"

static char dir[] = "/tmp/np-node-XXXXXX";

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
static int fixture_open(struct fixture *fx, uint32_t per_minute, uint32_t burst)
{
	cfg.node.lookups_per_minute = per_minute;
	cfg.node.lookup_burst = burst;
	return fixture_start(fx);
}

/* Runs one lookup with |json| as the body; the caller frees r->body. */
static int ask(struct fixture *fx, const struct gw_member *m, const char *json, struct gw_response *r)
{
	return ask_node(gw_node_lookup, fx, m, json, r);
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

/* node_oom() over one lookup by gemeente-groningen (node_fixture.h). */
static void lookup_oom(const char *json, int want_status, int with_cjson, struct oom_count *c)
{
	struct fixture fx;

	if (fixture_open(&fx, 0, 30) < 0) {
		memset(c, 0, sizeof(*c));
		CHECK(0);
		return;
	}
	node_oom(gw_node_lookup, answer_text, &fx, &groningen, json, want_status, with_cjson, c);
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
		fx.env.worker = k ? w2 : fx.w;
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
	if (!mkdtemp(dir) || sodium_init() < 0)
		return 1;
	if (node_fixture_setup("test_node", dir, catalog_text, csv_text, policy_text) < 0)
		return 1;

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
	gw_members_free(members);
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
