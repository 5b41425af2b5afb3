/* Unit tests for the request engine (gateway/routes.c) and metrics text. */
#define CHECK_FILE "test_routes"
#include "check.h"
#include "../../common/diag.c"
#include "../../common/yamldoc.c"
#include "../../gateway/members.c"
#include "../../gateway/metrics.c"
#include "../../gateway/routes.c"
#include "../../gateway/tls.c"

static struct gw_members *members;
static struct gw_metrics metrics;
static struct gw_metrics *all[1] = { &metrics };
static struct gw_metrics_global global;
static struct gw_env env;

static const struct gw_peer groningen = {
	"00000001001589623000",
	"53532ff3423abb81b93c022c9c01350df4ab271c5b416229a6b558f422a7ee1e",
	"2029-03-01T20:36:17Z",
	1867091777,
};
static const struct gw_peer ops = { "00000001009876545000", "ef", "2029-01-01T00:00:00Z", 1861920000 };
static const struct gw_peer amt = { "00000001009876543000", "ef", "2029-01-01T00:00:00Z", 1861920000 };
static const struct gw_peer stranger = { "99999999999999999999", "ab", "2029-01-01T00:00:00Z", 1861920000 };
static const struct gw_peer no_oin = { "", "cd", "2029-01-01T00:00:00Z", 1861920000 };

static int ask(const struct gw_peer *p, const char *method, const char *path,
	       const char *body, struct gw_response *r)
{
	struct gw_request req = { method, path, (const unsigned char *)body,
				  body ? strlen(body) : 0, p };

	memset(r, 0, sizeof(*r));
	return gw_handle(&env, &req, r);
}

static void whoami(void)
{
	struct gw_response r;

	CHECK(ask(&groningen, "GET", "/v1/whoami", NULL, &r) == 0);
	CHECK(r.status == 200);
	CHECK_STR(r.org, "provincie-groningen");
	CHECK_STR(r.body,
		  "{\"organisation\":{\"id\":\"provincie-groningen\",\"name\":\"Provincie \\\"Groningen\\\"\","
		  "\"oin\":\"00000001001589623000\",\"roles\":[\"node\"]},"
		  "\"certificate\":{\"fingerprint_sha256\":\"53532ff3423abb81b93c022c9c01350df4ab271c5b416229a6b558f422a7ee1e\","
		  "\"not_after\":\"2029-03-01T20:36:17Z\"}}");
	CHECK(r.len == strlen(r.body));
	free(r.body);
}

static void authentication_comes_first(void)
{
	struct gw_response r;
	uint64_t before = metrics.authn_refused[GW_AUTHN_UNKNOWN_ORG];

	ask(&stranger, "GET", "/v1/whoami", NULL, &r);
	CHECK(r.status == 403);
	CHECK_CONTAINS(r.body, "\"code\":\"unknown_organisation\"");
	free(r.body);
	/* A non-member cannot probe which routes exist. */
	ask(&stranger, "GET", "/v1/secret", NULL, &r);
	CHECK(r.status == 403);
	free(r.body);
	CHECK(metrics.authn_refused[GW_AUTHN_UNKNOWN_ORG] == before + 2);
	ask(&no_oin, "POST", "/v1/lookup", "{}", &r);
	CHECK(r.status == 403);
	CHECK_CONTAINS(r.body, "\"code\":\"no_oin\"");
	free(r.body);
	/* /healthz answers any verified certificate. */
	ask(&stranger, "GET", "/healthz", NULL, &r);
	CHECK(r.status == 200);
	CHECK_STR(r.body, "{\"status\":\"ok\"}");
	free(r.body);
}

static void not_found_and_method(void)
{
	struct gw_response r;

	ask(&groningen, "GET", "/v1/nothing", NULL, &r);
	CHECK(r.status == 404 && r.route == GW_ROUTE_OTHER);
	CHECK_STR(r.body, "{\"error\":{\"code\":\"not_found\",\"message\":\"no such route\"}}");
	free(r.body);
	ask(&groningen, "DELETE", "/v1/whoami", NULL, &r);
	CHECK(r.status == 405);
	CHECK_STR(r.allow, "GET, HEAD");
	free(r.body);
	ask(&groningen, "GET", "/v1/aggregate", NULL, &r);
	CHECK(r.status == 405);
	CHECK_STR(r.allow, "POST");
	free(r.body);
}

/* HEAD is GET without content (RFC 9110 9.3.2): the engine answers it as
 * GET (the server leaves the body out); a POST route still says 405. */
static void head_is_get(void)
{
	struct gw_response r, g;

	ask(&groningen, "HEAD", "/v1/whoami", NULL, &r);
	ask(&groningen, "GET", "/v1/whoami", NULL, &g);
	CHECK(r.status == 200 && r.allow == NULL);
	CHECK(r.len == g.len);
	free(r.body);
	free(g.body);
	ask(&stranger, "HEAD", "/healthz", NULL, &r);
	CHECK(r.status == 200);
	free(r.body);
	ask(&groningen, "HEAD", "/v1/lookup", NULL, &r);
	CHECK(r.status == 405);
	CHECK_STR(r.allow, "POST");
	free(r.body);
	ask(&groningen, "HEAD", "/metrics", NULL, &r);
	CHECK(r.status == 403);
	free(r.body);
}

static void json_bodies(void)
{
	static const char *const bad[] = {
		"", "{", "{\"a\":}", "{} x", "[1,2]", "\"s\"", "{\"a\":1}}", "nul",
	};
	struct gw_response r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ask(&groningen, "POST", "/v1/lookup", bad[i], &r);
		if (r.status != 400)
			printf("#   body '%s' gave %d\n", bad[i], r.status);
		CHECK(r.status == 400);
		CHECK_CONTAINS(r.body, "\"code\":\"invalid_json\"");
		free(r.body);
	}
	ask(&groningen, "POST", "/v1/lookup", " {\"purpose\":\"x\"}\n", &r);
	CHECK(r.status == 501);
	free(r.body);
}

/* Bodies are UTF-8 without NUL, so no string is cut short or echoed broken. */
static void body_text_is_checked(void)
{
#define CASE(text, st) { text, sizeof(text) - 1, st }
	static const struct {
		const char *body;
		size_t len;
		int status;
	} cases[] = {
		CASE("{\"p\":\"a\\u0000b\"}", 400),              /* escaped NUL */
		CASE("{\"p\":\"a\0b\"}", 400),                    /* raw NUL */
		CASE("{\"p\":\"a\xff" "b\"}", 400),               /* not UTF-8 */
		CASE("{\"p\":\"a\xc0\xaf" "b\"}", 400),           /* overlong '/' */
		CASE("{\"p\":\"a\xed\xa0\x80" "b\"}", 400),      /* a surrogate */
		CASE("{\"p\":\"a\xe2\x82" "b\"}", 400),           /* truncated sequence */
		CASE("{\"p\":\"Frysl\xc3\xa2n \xf0\x9f\x98\x80\"}", 501), /* fine */
		CASE("{\"p\":\"\\\\u0000\"}", 501),              /* an escaped backslash, then text */
		CASE("{\"p\":\"a\",\"p\":\"b\"}", 400),               /* a duplicate key */
		CASE("{\"q\":[{\"x\":1,\"x\":2}]}", 400),              /* ... nested */
		CASE("{\"p\":{\"x\":1},\"q\":{\"x\":2}}", 501),       /* same key, other objects */
	};
#undef CASE
	struct gw_response r;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct gw_request req = { "POST", "/v1/lookup", (const unsigned char *)cases[i].body,
					  cases[i].len, &groningen };
		memset(&r, 0, sizeof(r));
		gw_handle(&env, &req, &r);
		if (r.status != cases[i].status)
			printf("#   case %zu: status %d, want %d: %s\n", i, r.status, cases[i].status, r.body);
		CHECK(r.status == cases[i].status);
		free(r.body);
	}
}

static const char cat_text[] =
	"datasets:\n"
	"  uwv/ww:\n"
	"    description: WW\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      end_reason: {type: category, role: attribute, categories: [werk, overig]}\n"
	"      birth_date: {type: date, role: quasi_identifier, ages: [20, 80]}\n";
static const char pol_text[] =
	"purposes:\n"
	"  - id: p1\n"
	"    description: test\n"
	"    legal_basis: art. 6\n"
	"    valid: {from: 2020-01-01, until: 2099-12-31}\n"
	"    grants:\n"
	"      - id: g1\n"
	"        requesters: [provincie-groningen]\n"
	"        operations: [aggregate, lookup]\n"
	"        noise: {mechanism: discrete_laplace, epsilon: 1}\n"
	"        identifiers: pseudonym\n"
	"        datasets:\n"
	"          uwv/ww: {end_reason: exact, birth_date: age_band_10}\n";

/* A growable text buffer for generated bodies; aborts on OOM (a test). */
struct buf {
	char *p;
	size_t n, cap;
};

static void bput(struct buf *b, const char *s)
{
	size_t l = strlen(s);

	if (b->n + l + 1 > b->cap) {
		b->cap = (b->n + l + 1) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->n, s, l + 1);
	b->n += l;
}

/* {"k0":0,...} with |n| distinct keys (|dup|: the last repeats the first). */
static void object_of(struct buf *b, size_t n, int dup)
{
	char k[32];

	bput(b, "{");
	for (size_t i = 0; i < n; i++) {
		snprintf(k, sizeof(k), "%s\"k%zu\":0", i ? "," : "", dup && i + 1 == n && n > 1 ? (size_t)0 : i);
		bput(b, k);
	}
	bput(b, "}");
}

static int status_of(const char *body, char *code, size_t codelen)
{
	struct gw_response r;
	const char *c;
	int st;

	ask(&groningen, "POST", "/v1/lookup", body, &r);
	st = r.status;
	code[0] = '\0';
	if (r.body && (c = strstr(r.body, "\"code\":\""))) {
		c += 8;
		snprintf(code, codelen, "%.*s", (int)strcspn(c, "\""), c);
	}
	free(r.body);
	return st;
}

#define EXPECT(body, st, code_)                                                              \
	do {                                                                                 \
		char code_got[64];                                                           \
		int got = status_of(body, code_got, sizeof(code_got));                       \
		if (got != (st) || strcmp(code_got, code_) != 0)                             \
			printf("#   %s:%d: %d %s, want %d %s\n", __FILE__, __LINE__, got, code_got, \
			       (st), code_);                                                 \
		CHECK(got == (st) && strcmp(code_got, code_) == 0);                          \
	} while (0)

/* Members per object, values per body and depth, each at cap - 1, cap and
 * cap + 1; at the root and further down. Accepted bodies reach the handler
 * (501: no node role here). */
static void json_caps(void)
{
	const size_t caps[] = { GW_JSON_MAX_MEMBERS - 1, GW_JSON_MAX_MEMBERS, GW_JSON_MAX_MEMBERS + 1 };
	struct buf b = { 0 };

	for (size_t i = 0; i < 3; i++) {
		int want = caps[i] > GW_JSON_MAX_MEMBERS ? 400 : 501;
		const char *code = want == 400 ? "json_limit" : "not_implemented";

		b.n = 0;
		object_of(&b, caps[i], 0);
		EXPECT(b.p, want, code);
		/* the same object three levels down, inside an array */
		b.n = 0;
		bput(&b, "{\"a\":{\"b\":[1,");
		object_of(&b, caps[i], 0);
		bput(&b, "]}}");
		EXPECT(b.p, want, code);
	}
	/* An array does not count as an object's members; only as values. */
	b.n = 0;
	bput(&b, "{\"a\":[");
	for (size_t i = 0; i < GW_JSON_MAX_MEMBERS + 1; i++)
		bput(&b, i ? ",0" : "0");
	bput(&b, "]}");
	EXPECT(b.p, 501, "not_implemented");
	/* Values: the root, member "a", and k elements. */
	for (size_t k = GW_JSON_MAX_VALUES - 3; k <= GW_JSON_MAX_VALUES - 1; k++) {
		size_t values = 2 + k;

		b.n = 0;
		bput(&b, "{\"a\":[");
		for (size_t i = 0; i < k; i++)
			bput(&b, i ? ",[]" : "[]");
		bput(&b, "]}");
		if (values > GW_JSON_MAX_VALUES)
			EXPECT(b.p, 400, "json_limit");
		else
			EXPECT(b.p, 501, "not_implemented");
	}
	/* Members and values together: nine objects of 1000 members are
	 * 9 011 values, eleven are 11 013. */
	for (size_t n = 9; n <= 11; n += 2) {
		b.n = 0;
		bput(&b, "{\"a\":[");
		for (size_t i = 0; i < n; i++) {
			if (i)
				bput(&b, ",");
			object_of(&b, GW_JSON_MAX_MEMBERS, 0);
		}
		bput(&b, "]}");
		if (n == 9)
			EXPECT(b.p, 501, "not_implemented");
		else
			EXPECT(b.p, 400, "json_limit");
	}
	/* Depth: the root plus d - 1 arrays. */
	for (size_t d = GW_JSON_MAX_DEPTH - 1; d <= GW_JSON_MAX_DEPTH + 1; d++) {
		b.n = 0;
		bput(&b, "{\"a\":");
		for (size_t i = 1; i < d; i++)
			bput(&b, "[");
		for (size_t i = 1; i < d; i++)
			bput(&b, "]");
		bput(&b, "}");
		if (d > GW_JSON_MAX_DEPTH)
			EXPECT(b.p, 400, "json_limit");
		else
			EXPECT(b.p, 501, "not_implemented");
	}
	/* The message names the cap. */
	{
		struct gw_response r;

		b.n = 0;
		object_of(&b, GW_JSON_MAX_MEMBERS + 1, 0);
		ask(&groningen, "POST", "/v1/lookup", b.p, &r);
		CHECK_CONTAINS(r.body, "more than 1000 members");
		free(r.body);
	}
	/* Strings with brackets, commas and escaped quotes do not count. */
	b.n = 0;
	bput(&b, "{\"a\":\"");
	for (size_t i = 0; i < 3 * GW_JSON_MAX_VALUES; i++)
		bput(&b, "[{,\\\"");
	bput(&b, "\"}");
	EXPECT(b.p, 501, "not_implemented");
	free(b.p);
}

/* Duplicate keys anywhere: first and last of a thousand, a prefix of
 * another key (not a duplicate), escaped spellings of the same key. */
static void duplicates_at_depth(void)
{
	struct buf b = { 0 };

	b.n = 0;
	bput(&b, "{\"a\":{\"b\":[0,{\"c\":");
	object_of(&b, GW_JSON_MAX_MEMBERS, 1);
	bput(&b, "}]}}");
	EXPECT(b.p, 400, "invalid_json");
	b.n = 0;
	bput(&b, "{\"a\":{\"b\":[0,{\"c\":");
	object_of(&b, GW_JSON_MAX_MEMBERS, 0);
	bput(&b, "}]}}");
	EXPECT(b.p, 501, "not_implemented");
	EXPECT("{\"x\":[[[[{\"p\":1,\"q\":{\"r\":[{\"s\":1,\"t\":2,\"s\":3}]}}]]]]}", 400, "invalid_json");
	EXPECT("{\"ab\":1,\"a\":2,\"abc\":3,\"b\":{\"a\":1,\"ab\":2}}", 501, "not_implemented");
	EXPECT("{\"a\":1,\"\\u0061\":2}", 400, "invalid_json");
	EXPECT("{\"\\u00e9\":1,\"\xc3\xa9\":2}", 400, "invalid_json");
	free(b.p);
}

/* The route's role is checked before the body is parsed: a member that may
 * not use the route is refused as it was, whatever it sent (the old engine
 * parsed first: 400 for a broken body, and 33 s for 120 000 keys). */
static void role_before_body(void)
{
	static const char broken[] = "{\"purpose\":";
	struct gw_response r;
	struct gw_env e = env;
	struct buf b = { 0 };
	struct gw_request req;

	object_of(&b, 120000, 0);
	e.hub = 1;
	for (int i = 0; i < 2; i++) {
		req = (struct gw_request){ "POST", "/v1/aggregate",
					   (const unsigned char *)(i ? b.p : broken), i ? b.n : strlen(broken),
					   &groningen };
		memset(&r, 0, sizeof(r));
		gw_handle(&e, &req, &r);
		CHECK(r.status == 403);
		CHECK_CONTAINS(r.body, "\"code\":\"not_a_coordinator\"");
		CHECK(!r.deferred);
		free(r.body);
	}
	/* A coordinator's body is parsed (and broken). */
	req = (struct gw_request){ "POST", "/v1/aggregate", (const unsigned char *)broken,
				   strlen(broken), &amt };
	memset(&r, 0, sizeof(r));
	gw_handle(&e, &req, &r);
	CHECK(r.status == 400);
	CHECK_CONTAINS(r.body, "\"code\":\"invalid_json\"");
	free(r.body);

	/* A node: only the hub sends subqueries. The node's refusal is
	 * audited; without an audit log here it is 503, never a parse error. */
	{
		struct policy_catalog *cat = NULL;
		struct policy_set *set = NULL;
		struct policy_refs refs = { 0 };
		struct diag d = { 0 };
		char dummy;

		CHECK(policy_catalog_load_mem("cat.yaml", (const unsigned char *)cat_text,
					      sizeof(cat_text) - 1, &cat, &d) == 0);
		refs.catalog = cat;
		CHECK(policy_set_load_mem("p.yaml", (const unsigned char *)pol_text, sizeof(pol_text) - 1,
					  &refs, &set, &d) == 0);
		e = env;
		e.policies = set;
		/* never dereferenced: the role is refused first */
		e.worker = (struct gw_node_worker *)(void *)&dummy;
		for (int i = 0; i < 2; i++) {
			req = (struct gw_request){ "POST", "/v1/federation/subquery",
						   (const unsigned char *)(i ? b.p : broken),
						   i ? b.n : strlen(broken), &groningen };
			memset(&r, 0, sizeof(r));
			gw_handle(&e, &req, &r);
			CHECK(r.status == 503);
			CHECK_CONTAINS(r.body, "\"code\":\"audit_unavailable\"");
			free(r.body);
		}
		policy_set_free(set);
		policy_catalog_free(cat);
		diag_clear(&d);
	}
	free(b.p);
}

static void error_messages_are_escaped(void)
{
	struct gw_response r = { 0 };

	CHECK(gw_error(&r, 400, "x", "a \"quoted\" \\ line\n") == 0);
	CHECK_STR(r.body, "{\"error\":{\"code\":\"x\",\"message\":\"a \\\"quoted\\\" \\\\ line\\u000a\"}}");
	free(r.body);
}

static void metrics_text(void)
{
	struct gw_response r;

	/* Only an operator reads it: a partner would see every other
	 * partner's requests by route and status. */
	ask(&groningen, "GET", "/metrics", NULL, &r);
	CHECK(r.status == 403);
	CHECK_CONTAINS(r.body, "\"code\":\"not_an_operator\"");
	free(r.body);
	ask(&amt, "GET", "/metrics", NULL, &r);
	CHECK(r.status == 403);
	free(r.body);

	gw_count(&metrics.hs_fail[GW_HS_REVOKED], 3);
	gw_count(&global.reload_failed, 1);
	ask(&ops, "GET", "/metrics", NULL, &r);
	CHECK(r.status == 200);
	CHECK_STR(r.content_type, "text/plain; version=0.0.4");
	CHECK_CONTAINS(r.body, "noordpoort_tls_handshake_failures_total{reason=\"revoked\"} 3\n");
	CHECK_CONTAINS(r.body, "noordpoort_reloads_total{result=\"failed\"} 1\n");
	CHECK_CONTAINS(r.body, "noordpoort_authn_refusals_total{reason=\"unknown_organisation\"} 2\n");
	free(r.body);

	/* Requests are counted by the server after it answers. */
	gw_metrics_request(&metrics, GW_ROUTE_WHOAMI, 200, 50);
	gw_metrics_request(&metrics, GW_ROUTE_WHOAMI, 200, 2000000);
	gw_metrics_request(&metrics, GW_ROUTE_OTHER, 418, 10);
	ask(&ops, "GET", "/metrics", NULL, &r);
	CHECK_CONTAINS(r.body, "noordpoort_requests_total{route=\"/v1/whoami\",status=\"200\"} 2\n");
	CHECK_CONTAINS(r.body, "noordpoort_requests_total{route=\"other\",status=\"other\"} 1\n");
	CHECK_CONTAINS(r.body, "noordpoort_request_duration_seconds_bucket{le=\"0.0001\"} 2\n");
	CHECK_CONTAINS(r.body, "noordpoort_request_duration_seconds_bucket{le=\"1\"} 2\n");
	CHECK_CONTAINS(r.body, "noordpoort_request_duration_seconds_bucket{le=\"+Inf\"} 3\n");
	CHECK_CONTAINS(r.body, "noordpoort_request_duration_seconds_count 3\n");
	free(r.body);
}

static void catalog_lists_fields_and_grants(void)
{
	struct policy_catalog *cat = NULL;
	struct policy_set *set = NULL;
	struct policy_refs refs = { 0 };
	struct diag d = { 0 };
	struct gw_response r;
	struct gw_env e = env;

	ask(&groningen, "GET", "/v1/catalog", NULL, &r);
	CHECK(r.status == 404); /* no catalog configured */
	free(r.body);
	CHECK(policy_catalog_load_mem("cat.yaml", (const unsigned char *)cat_text, sizeof(cat_text) - 1,
				      &cat, &d) == 0);
	refs.catalog = cat;
	CHECK(policy_set_load_mem("p.yaml", (const unsigned char *)pol_text, sizeof(pol_text) - 1,
				  &refs, &set, &d) == 0);
	if (d.errors)
		printf("# %s", diag_text(&d));
	e.catalog = cat;
	e.policies = set;
	{
		struct gw_request req = { "GET", "/v1/catalog", NULL, 0, &groningen };
		memset(&r, 0, sizeof(r));
		gw_handle(&e, &req, &r);
	}
	CHECK(r.status == 200);
	CHECK_CONTAINS(r.body, "{\"id\":\"uwv/ww\",\"description\":\"WW\",\"fields\":[");
	CHECK_CONTAINS(r.body, "{\"name\":\"bsn\",\"type\":\"bsn\",\"role\":\"identifier\"}");
	CHECK_CONTAINS(r.body, "\"categories\":[\"werk\",\"overig\"]");
	CHECK_CONTAINS(r.body, "\"role\":\"quasi_identifier\"");
	CHECK_CONTAINS(r.body, "\"purpose\":\"p1\"");
	CHECK_CONTAINS(r.body, "\"operations\":[\"lookup\",\"aggregate\"]");
	CHECK_CONTAINS(r.body, "\"fields\":{\"end_reason\":\"exact\",\"birth_date\":\"age_band_10\"}");
	free(r.body);
	/* Another member sees the datasets but no grants. */
	{
		static const struct gw_peer other = { "00000001009876543000", "ef", "2029-01-01T00:00:00Z", 1861920000 };
		struct gw_request req = { "GET", "/v1/catalog", NULL, 0, &other };
		memset(&r, 0, sizeof(r));
		gw_handle(&e, &req, &r);
	}
	CHECK(r.status == 200);
	CHECK_CONTAINS(r.body, "\"your_grants\":[]");
	free(r.body);
	policy_set_free(set);
	policy_catalog_free(cat);
	diag_clear(&d);
}

int main(void)
{
	char dir[] = "/tmp/np-routes-XXXXXX";
	struct diag d = { 0 };
	char *p;

	if (!mkdtemp(dir))
		return 1;
	p = check_write(dir, "m.yaml",
			"members:\n"
			"  - {id: provincie-groningen, name: 'Provincie \"Groningen\"', "
			"oin: \"00000001001589623000\", roles: [node]}\n"
			"  - {id: arbeidsmarkttafel, name: AMT, "
			"oin: \"00000001009876543000\", roles: [coordinator]}\n"
			"  - {id: hub, name: Hub, oin: \"00000001009876544000\", roles: [hub]}\n"
			"  - {id: beheer, name: Beheer, oin: \"00000001009876545000\", roles: [operator]}\n");
	if (gw_members_load(p, &members, &d) < 0) {
		printf("not ok - test_routes: setup: %s", diag_text(&d));
		return 1;
	}
	env = (struct gw_env){ .members = members, .metrics = &metrics, .all_metrics = all,
			       .nworkers = 1, .global = &global };
	RUN(whoami);
	RUN(authentication_comes_first);
	RUN(not_found_and_method);
	RUN(head_is_get);
	RUN(json_bodies);
	RUN(json_caps);
	RUN(duplicates_at_depth);
	RUN(role_before_body);
	RUN(body_text_is_checked);
	RUN(error_messages_are_escaped);
	RUN(metrics_text);
	RUN(catalog_lists_fields_and_grants);
	gw_members_free(members);
	unlink(p);
	rmdir(dir);
	free(p);
	return check_total_failed ? 1 : 0;
}
