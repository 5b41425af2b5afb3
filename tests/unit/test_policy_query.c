/* Unit tests for policies/query.c: the catalog's contents and what grants
 * offer a requester (GET /v1/catalog). */
#define CHECK_FILE "test_policy_query"
#include "check.h"
#include "../../common/diag.c"
#include "../../common/yamldoc.c"

#include <errno.h>
#include <sodium.h>

/*
 * Allocation hook for the policy code below (not for libyaml or diag):
 * allocation number |alloc_fail_at| fails, so each one can fail in turn.
 */
static long alloc_fail_at = -1, alloc_count;

static void *hook_malloc(size_t n)
{
	return alloc_count++ == alloc_fail_at ? NULL : malloc(n);
}

static void *hook_calloc(size_t n, size_t size)
{
	return alloc_count++ == alloc_fail_at ? NULL : calloc(n, size);
}

static __attribute__((unused)) void *hook_realloc(void *p, size_t n)
{
	return alloc_count++ == alloc_fail_at ? NULL : realloc(p, n);
}

#define malloc(n) hook_malloc(n)
#define calloc(n, size) hook_calloc(n, size)
#define realloc(p, n) hook_realloc(p, n)
#include "../../policies/load.c"
#include "../../policies/catalog.c"
#include "../../policies/query.c"
#undef malloc
#undef calloc
#undef realloc

static int64_t at(const char *day, int seconds)
{
	int64_t t = 0;

	policy_parse_date(day, &t);
	return t + seconds;
}

/* ---- catalog ------------------------------------------------------------ */

static const char small_catalog[] =
	"datasets:\n"
	"  o/ds:\n"
	"    description: Een testset\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      birth_date: {type: date, role: quasi_identifier}\n"
	"      pc: {type: string, role: quasi_identifier}\n"
	"      kind: {type: category, role: attribute, categories: [a, b, c]}\n"
	"      n: {type: int, role: attribute}\n"
	"      ok: {type: bool, role: attribute}\n"
	"  o/bare:\n"
	"    fields:\n"
	"      x: {type: int, role: attribute}\n";

static struct policy_catalog *load_small(struct diag *d)
{
	struct policy_catalog *c = NULL;

	policy_catalog_load_mem("c.yaml", (const unsigned char *)small_catalog, sizeof(small_catalog) - 1,
				&c, d);
	return c;
}

static void catalog_inline(void)
{
	const struct policy_catalog_field *f = NULL;
	struct diag d = { 0 };
	struct policy_catalog *c = load_small(&d);

	CHECK(c != NULL);
	CHECK_STR(diag_text(&d), "");
	if (!c)
		return;
	CHECK(policy_catalog_count(c) == 2);
	CHECK_STR(policy_catalog_dataset(c, 0), "o/ds");
	CHECK_STR(policy_catalog_dataset(c, 1), "o/bare");
	CHECK(policy_catalog_dataset(c, 2) == NULL);
	CHECK_STR(policy_catalog_description(c, "o/ds"), "Een testset");
	CHECK_STR(policy_catalog_description(c, "o/bare"), "");
	CHECK(policy_catalog_fields(c, "o/ds", &f) == 6);
	if (f) {
		static const char *const names[] = { "bsn", "birth_date", "pc", "kind", "n", "ok" };
		static const enum policy_field_type types[] = { POLICY_T_BSN, POLICY_T_DATE, POLICY_T_STRING,
								POLICY_T_CATEGORY, POLICY_T_INT, POLICY_T_BOOL };
		static const enum policy_field_role roles[] = {
			POLICY_ROLE_IDENTIFIER, POLICY_ROLE_QUASI_IDENTIFIER, POLICY_ROLE_QUASI_IDENTIFIER,
			POLICY_ROLE_ATTRIBUTE, POLICY_ROLE_ATTRIBUTE, POLICY_ROLE_ATTRIBUTE,
		};

		for (size_t i = 0; i < 6; i++) {
			CHECK_STR(f[i].name, names[i]);
			CHECK(f[i].type == types[i]);
			CHECK(f[i].role == roles[i]);
			CHECK((f[i].type == POLICY_T_CATEGORY) == (f[i].categories != NULL));
		}
		CHECK(f[3].ncategories == 3);
		if (f[3].categories) {
			CHECK_STR(f[3].categories[0], "a");
			CHECK_STR(f[3].categories[2], "c");
		}
		CHECK(f[0].ncategories == 0);
	}
	CHECK(policy_catalog_fields(c, "o/bare", &f) == 1);
	CHECK(f && strcmp(f[0].name, "x") == 0 && f[0].type == POLICY_T_INT);
	/* what validation reads agrees with what the view shows */
	CHECK(pol_catalog_field(c, "o/ds", "bsn")->identifier == 1);
	CHECK(pol_catalog_field(c, "o/ds", "birth_date")->identifier == 0);
	CHECK(pol_catalog_field(c, "o/ds", "pc")->role == POLICY_ROLE_QUASI_IDENTIFIER);
	policy_catalog_free(c);
}

static void catalog_unknown(void)
{
	const struct policy_catalog_field *f = (const struct policy_catalog_field *)1;
	struct diag d = { 0 };
	struct policy_catalog *c = load_small(&d);

	CHECK(c != NULL);
	CHECK(policy_catalog_fields(c, "o/none", &f) == -1);
	CHECK(f == NULL);
	CHECK(policy_catalog_fields(c, "o/d", &f) == -1);   /* a prefix is not a match */
	CHECK(policy_catalog_fields(c, NULL, &f) == -1);
	CHECK(policy_catalog_fields(c, "o/ds", NULL) == -1);
	CHECK(policy_catalog_fields(NULL, "o/ds", &f) == -1);
	CHECK(policy_catalog_description(c, "o/none") == NULL);
	CHECK(policy_catalog_description(c, NULL) == NULL);
	CHECK(policy_catalog_description(NULL, "o/ds") == NULL);
	CHECK(policy_catalog_count(NULL) == 0);
	CHECK(policy_catalog_dataset(NULL, 0) == NULL);
	policy_catalog_free(c);
}

static void catalog_example(void)
{
	const struct policy_catalog_field *f = NULL;
	struct policy_catalog *c = NULL;
	struct diag d = { 0 };

	CHECK(policy_catalog_load("policies/examples/catalog.yaml", &c, &d) == 0);
	CHECK_STR(diag_text(&d), "");
	if (!c)
		return;
	CHECK(policy_catalog_count(c) == 9);
	CHECK_STR(policy_catalog_dataset(c, 0), "provincie-groningen/jtf-deelnemers");
	CHECK_STR(policy_catalog_dataset(c, 1), "provincie-fryslan/jtf-deelnemers");
	CHECK_STR(policy_catalog_dataset(c, 6), "uwv/ww-uitkeringen");
	CHECK_STR(policy_catalog_dataset(c, 8), "opleidingsfonds-zorg/inschrijvingen");
	/* the three provinces declare the same fields, written out in full */
	CHECK_STR(policy_catalog_description(c, "provincie-fryslan/jtf-deelnemers"),
		  "Deelnemers aan JTF-scholingstrajecten (leven lang ontwikkelen)");
	CHECK(policy_catalog_fields(c, "provincie-drenthe/jtf-deelnemers", &f) == 8);
	if (f) {
		CHECK_STR(f[6].name, "postcode");
		CHECK(f[6].type == POLICY_T_STRING && f[6].role == POLICY_ROLE_QUASI_IDENTIFIER);
	}
	CHECK_STR(policy_catalog_description(c, "uwv/ww-uitkeringen"), "WW-uitkeringen in Noord-Nederland");
	CHECK(policy_catalog_fields(c, "uwv/ww-uitkeringen", &f) == 5);
	if (f) {
		CHECK_STR(f[0].name, "bsn");
		CHECK(f[0].type == POLICY_T_BSN && f[0].role == POLICY_ROLE_IDENTIFIER);
		CHECK_STR(f[2].name, "end_date");
		CHECK(f[2].type == POLICY_T_DATE && f[2].role == POLICY_ROLE_ATTRIBUTE);
		CHECK_STR(f[3].name, "end_reason");
		CHECK(f[3].type == POLICY_T_CATEGORY && f[3].ncategories == 5);
		CHECK(f[3].ncategories == 5 && strcmp(f[3].categories[4], "lopend") == 0);
	}
	CHECK(policy_catalog_fields(c, "opleidingsfonds-techniek/inschrijvingen", &f) == 7);
	if (f) {
		CHECK_STR(f[3].name, "start_year");
		CHECK(f[3].type == POLICY_T_INT);
		CHECK_STR(f[4].name, "completed");
		CHECK(f[4].type == POLICY_T_BOOL);
	}
	CHECK(policy_catalog_fields(c, "uwv/bijstand", &f) == -1);
	policy_catalog_free(c);
}

/* Validation is what it was: the new role and description handling refuses
 * what it refused and count_calls more. */
static void catalog_validation(void)
{
	static const char bad[] =
		"datasets:\n"
		"  a/b:\n"
		"    description: [not, text]\n"
		"    fields:\n"
		"      x: {type: bsn, role: quasi_identifier}\n"
		"      y: {type: int, role: owner}\n"
		"      z: {type: text, role: attribute, categories: [q]}\n";
	static const char empty_description[] =
		"datasets:\n  a/b:\n    description: ''\n    fields:\n      x: {type: int, role: attribute}\n";
	struct policy_catalog *c = (struct policy_catalog *)1;
	struct diag d = { 0 };

	CHECK(policy_catalog_load_mem("c.yaml", (const unsigned char *)bad, sizeof(bad) - 1, &c, &d) < 0);
	CHECK(c == NULL);
	CHECK_CONTAINS(diag_text(&d), "c.yaml:3:18: error: a/b.description: expected a single value");
	CHECK_CONTAINS(diag_text(&d), "c.yaml:5:10: error: a/b.x: a bsn field must have role identifier");
	CHECK_CONTAINS(diag_text(&d), "c.yaml:6:28: error: a/b.y.role: expected identifier, quasi_identifier or attribute");
	CHECK_CONTAINS(diag_text(&d), "c.yaml:7:17: error: a/b.z.type: unknown type 'text'");
	CHECK_CONTAINS(diag_text(&d), "a/b.z.categories: only category fields have categories");
	diag_clear(&d);
	CHECK(policy_catalog_load_mem("c.yaml", (const unsigned char *)empty_description,
				      sizeof(empty_description) - 1, &c, &d) == 0);
	CHECK_STR(diag_text(&d), "");
	CHECK_STR(policy_catalog_description(c, "a/b"), "");
	policy_catalog_free(c);
}

static void type_and_role_names(void)
{
	CHECK_STR(policy_field_type_name(POLICY_T_BSN), "bsn");
	CHECK_STR(policy_field_type_name(POLICY_T_CATEGORY), "category");
	CHECK_STR(policy_field_type_name(POLICY_T_INT), "int");
	CHECK_STR(policy_field_type_name(POLICY_T_DATE), "date");
	CHECK_STR(policy_field_type_name(POLICY_T_BOOL), "bool");
	CHECK_STR(policy_field_type_name(POLICY_T_STRING), "string");
	CHECK_STR(policy_field_type_name((enum policy_field_type)6), "?");
	CHECK_STR(policy_field_role_name(POLICY_ROLE_IDENTIFIER), "identifier");
	CHECK_STR(policy_field_role_name(POLICY_ROLE_QUASI_IDENTIFIER), "quasi_identifier");
	CHECK_STR(policy_field_role_name(POLICY_ROLE_ATTRIBUTE), "attribute");
	CHECK_STR(policy_field_role_name((enum policy_field_role)3), "?");
}

/* Every allocation of the catalog loader fails in turn: -1, count_calls out,
 * "out of memory" said, count_calls leaked (ASan checks at exit). */
static void catalog_out_of_memory(void)
{
	struct policy_catalog *c;
	long failures = 0;

	for (long n = 0;; n++) {
		struct diag d = { 0 };
		int rc;

		c = (struct policy_catalog *)1;
		alloc_fail_at = n;
		alloc_count = 0;
		rc = policy_catalog_load_mem("c.yaml", (const unsigned char *)small_catalog,
					     sizeof(small_catalog) - 1, &c, &d);
		alloc_fail_at = -1;
		if (rc == 0) {
			const struct policy_catalog_field *f = NULL;

			CHECK(policy_catalog_fields(c, "o/ds", &f) == 6 && f != NULL);
			policy_catalog_free(c);
			diag_clear(&d);
			break;
		}
		failures++;
		CHECK(c == NULL);
		CHECK_CONTAINS(diag_text(&d), "out of memory");
		diag_clear(&d);
		if (n > 1000)
			break;
	}
	CHECK(failures >= 2); /* the catalog struct and its arena */
}

/* ---- grants ------------------------------------------------------------- */

static const char policy_text[] =
	"purposes:\n"
	"  - id: p\n"
	"    description: test purpose\n"
	"    legal_basis: art. 6 lid 1 sub e AVG\n"
	"    valid: {from: 2025-01-01, until: 2025-12-31}\n"
	"    grants:\n"
	"      - id: g-a\n"
	"        requesters: [a, b]\n"
	"        operations: [aggregate, lookup]\n"
	"        datasets:\n"
	"          o/ds: {f: exact, birth_date: age_band_10, pc: gemeente}\n"
	"          o/two: {x: quarter}\n"
	"        min_cell: 15\n"
	"        noise: {mechanism: discrete_laplace, epsilon: 0.5}\n"
	"        round_to: 5\n"
	"        budget: {epsilon: 3, per: year}\n"
	"        identifiers: pseudonym\n"
	"        on_node_failure: partial\n"
	"      - requesters: [b]\n"
	"        operations: [linked_aggregate]\n"
	"        noise: {mechanism: discrete_laplace, epsilon: 1}\n"
	"        datasets:\n"
	"          o/ds: {f: exact}\n"
	"    forbid:\n"
	"      - id: no-two\n"
	"        reason: o/two never leaves\n"
	"        datasets: {o/two: all}\n"
	"  - id: q\n"
	"    description: later purpose\n"
	"    legal_basis: convenant\n"
	"    valid: {from: 2026-03-01, until: 2026-03-31}\n"
	"    grants:\n"
	"      - id: g-q\n"
	"        requesters: [a]\n"
	"        operations: [aggregate]\n"
	"        noise: {mechanism: discrete_laplace, epsilon: 1}\n"
	"        datasets:\n"
	"          o/ds: {f: month}\n";

static struct policy_set *load_policy(const char *text, size_t len)
{
	struct policy_set *s = NULL;
	struct diag d = { 0 };

	CHECK(policy_set_load_mem("t.yaml", (const unsigned char *)text, len, NULL, &s, &d) == 0);
	CHECK(strstr(diag_text(&d), "error") == NULL);
	diag_clear(&d);
	return s;
}

/* What the callback saw, copied out (the view lives only during the call). */
struct seen {
	size_t n;
	struct {
		char purpose[32], description[64], legal_basis[64], rule[32], dataset[32];
		unsigned ops;
		size_t nfields;
		char fields[1024]; /* "f=exact,birth_date=age_band_10" */
		struct policy_output out;
	} v[8];
};

static void collect(void *arg, const struct policy_grant_view *v)
{
	struct seen *s = arg;

	if (s->n >= sizeof(s->v) / sizeof(s->v[0])) {
		s->n++;
		return;
	}
	snprintf(s->v[s->n].purpose, sizeof(s->v[s->n].purpose), "%s", v->purpose);
	snprintf(s->v[s->n].description, sizeof(s->v[s->n].description), "%s", v->purpose_description);
	snprintf(s->v[s->n].legal_basis, sizeof(s->v[s->n].legal_basis), "%s", v->legal_basis);
	snprintf(s->v[s->n].rule, sizeof(s->v[s->n].rule), "%s", v->rule);
	snprintf(s->v[s->n].dataset, sizeof(s->v[s->n].dataset), "%s", v->dataset);
	s->v[s->n].ops = v->operations;
	s->v[s->n].nfields = v->nfields;
	s->v[s->n].out = v->out;
	s->v[s->n].fields[0] = 0;
	for (size_t i = 0; i < v->nfields; i++) {
		size_t used = strlen(s->v[s->n].fields);

		snprintf(s->v[s->n].fields + used, sizeof(s->v[s->n].fields) - used, "%s%s=%s", i ? "," : "",
			 v->field_names[i], policy_gen_name(v->field_gens[i]));
	}
	s->n++;
}

static struct seen offered(const struct policy_set *s, const char *who, int64_t when)
{
	struct seen r;

	memset(&r, 0, sizeof(r));
	CHECK(policy_grants_for(s, who, when, collect, &r) == 0);
	return r;
}

static void grants_listed(void)
{
	struct policy_set *s = load_policy(policy_text, sizeof(policy_text) - 1);
	struct seen r;

	if (!s)
		return;
	r = offered(s, "a", at("2025-06-01", 0));
	CHECK(r.n == 2);
	CHECK_STR(r.v[0].purpose, "p");
	CHECK_STR(r.v[0].description, "test purpose");
	CHECK_STR(r.v[0].legal_basis, "art. 6 lid 1 sub e AVG");
	CHECK_STR(r.v[0].rule, "g-a");
	CHECK_STR(r.v[0].dataset, "o/ds");
	CHECK(r.v[0].ops == (POLICY_OP_AGGREGATE | POLICY_OP_LOOKUP));
	CHECK(r.v[0].nfields == 3);
	CHECK_STR(r.v[0].fields, "f=exact,birth_date=age_band_10,pc=gemeente");
	CHECK(r.v[0].out.min_cell == 15);
	CHECK(r.v[0].out.noise == 1 && r.v[0].out.epsilon == 0.5);
	CHECK(r.v[0].out.round_to == 5);
	CHECK(r.v[0].out.max_cells_per_person == 1);
	CHECK(r.v[0].out.has_budget == 1 && r.v[0].out.budget_epsilon == 3.0);
	CHECK(r.v[0].out.budget_per == POLICY_PER_YEAR);
	CHECK(r.v[0].out.identifiers == POLICY_IDENT_PSEUDONYM);
	CHECK(r.v[0].out.partial_ok == 1);
	/* the second dataset of the same grant: forbids are not applied here */
	CHECK_STR(r.v[1].rule, "g-a");
	CHECK_STR(r.v[1].dataset, "o/two");
	CHECK_STR(r.v[1].fields, "x=quarter");
	CHECK(r.v[1].out.min_cell == 15);

	/* b is listed in both grants of p; the default id and defaults show */
	r = offered(s, "b", at("2025-06-01", 0));
	CHECK(r.n == 3);
	CHECK_STR(r.v[2].rule, "p/grant[1]");
	CHECK_STR(r.v[2].dataset, "o/ds");
	CHECK(r.v[2].ops == POLICY_OP_LINKED_AGGREGATE);
	CHECK_STR(r.v[2].fields, "f=exact");
	CHECK(r.v[2].out.min_cell == 10 && r.v[2].out.noise == 1 && r.v[2].out.epsilon == 1 && r.v[2].out.round_to == 1);
	CHECK(r.v[2].out.has_budget == 0 && r.v[2].out.identifiers == POLICY_IDENT_NEVER);
	CHECK(r.v[2].out.partial_ok == 0);

	/* not listed anywhere, or listed only by prefix / case */
	CHECK(offered(s, "c", at("2025-06-01", 0)).n == 0);
	CHECK(offered(s, "", at("2025-06-01", 0)).n == 0);
	CHECK(offered(s, "A", at("2025-06-01", 0)).n == 0);
	policy_set_free(s);
}

/* Validity is read as policy_decide() reads it: from 00:00 UTC on the first
 * day through 23:59:59 UTC on the last. */
static void grants_validity(void)
{
	struct policy_set *s = load_policy(policy_text, sizeof(policy_text) - 1);
	struct seen r;

	if (!s)
		return;
	CHECK(offered(s, "a", at("2024-12-31", 86399)).n == 0);  /* the day before p */
	CHECK(offered(s, "a", at("2025-01-01", 0)).n == 2);      /* p's first day */
	CHECK(offered(s, "a", at("2025-12-31", 86399)).n == 2);  /* p's last second */
	CHECK(offered(s, "a", at("2026-01-01", 0)).n == 0);      /* p has expired */
	CHECK(offered(s, "a", at("2026-02-28", 86399)).n == 0);  /* before q */
	r = offered(s, "a", at("2026-03-01", 0));                /* q's first day */
	CHECK(r.n == 1);
	CHECK_STR(r.v[0].purpose, "q");
	CHECK_STR(r.v[0].rule, "g-q");
	CHECK_STR(r.v[0].fields, "f=month");
	CHECK(offered(s, "a", at("2026-03-31", 86399)).n == 1);  /* q's last second */
	CHECK(offered(s, "a", at("2026-04-01", 0)).n == 0);      /* q has expired */
	CHECK(offered(s, "b", at("2026-03-15", 0)).n == 0);      /* q does not list b */
	policy_set_free(s);
}

static void count_calls(void *arg, const struct policy_grant_view *v)
{
	(void)v;
	++*(int *)arg;
}

static void grants_null(void)
{
	struct policy_set *s = load_policy(policy_text, sizeof(policy_text) - 1);
	int calls = 0;

	CHECK(policy_grants_for(NULL, "a", at("2025-06-01", 0), count_calls, &calls) == -1);
	CHECK(policy_grants_for(s, NULL, at("2025-06-01", 0), count_calls, &calls) == -1);
	CHECK(policy_grants_for(s, "a", at("2025-06-01", 0), NULL, &calls) == -1);
	CHECK(calls == 0);
	/* |arg| is the caller's: NULL is passed through */
	CHECK(policy_grants_for(s, "c", at("2025-06-01", 0), count_calls, NULL) == 0);
	policy_set_free(s);
}

/* A grant dataset of more fields than POLICY_MAX_FIELDS takes the heap path;
 * each of its allocations fails in turn. */
static void grants_many_fields(void)
{
	size_t nf = POLICY_MAX_FIELDS + 6, len;
	char *text = malloc(16384);
	struct policy_set *s;
	struct seen r;

	if (!text)
		return;
	len = (size_t)snprintf(text, 16384,
			       "purposes:\n  - id: p\n    description: d\n    legal_basis: x\n"
			       "    valid: {from: 2025-01-01, until: 2025-12-31}\n"
			       "    grants:\n"
			       "      - requesters: [a]\n        operations: [aggregate]\n"
			       "        noise: {mechanism: discrete_laplace, epsilon: 1}\n        datasets:\n"
			       "          o/small: {f: exact}\n"
			       "          o/wide:\n");
	for (size_t i = 0; i < nf; i++)
		len += (size_t)snprintf(text + len, 16384 - len, "            f%zu: %s\n", i,
					i == nf - 1 ? "year" : "exact");
	len += (size_t)snprintf(text + len, 16384 - len, "          o/after: {g: exact}\n");
	s = load_policy(text, len);
	free(text);
	if (!s)
		return;
	r = offered(s, "a", at("2025-06-01", 0));
	CHECK(r.n == 3);
	CHECK(r.v[1].nfields == nf);
	CHECK_CONTAINS(r.v[1].fields, "f0=exact,f1=exact,");
	CHECK_CONTAINS(r.v[1].fields, "f69=year");
	CHECK_STR(r.v[2].fields, "g=exact");
	for (long n = 0; n < 2; n++) {
		memset(&r, 0, sizeof(r));
		alloc_fail_at = n;
		alloc_count = 0;
		CHECK(policy_grants_for(s, "a", at("2025-06-01", 0), collect, &r) == -1);
		alloc_fail_at = -1;
		CHECK(r.n == 1); /* o/small was seen, o/wide and what follows not */
	}
	policy_set_free(s);
}

int main(void)
{
	RUN(catalog_inline);
	RUN(catalog_unknown);
	RUN(catalog_example);
	RUN(catalog_validation);
	RUN(type_and_role_names);
	RUN(catalog_out_of_memory);
	RUN(grants_listed);
	RUN(grants_validity);
	RUN(grants_null);
	RUN(grants_many_fields);
	return check_total_failed ? 1 : 0;
}
