/* Unit tests for policies/: the loader, the decision, diff and signatures. */
#define CHECK_FILE "test_policy"
#include "check.h"
#include "../../common/diag.c"
#include "../../common/yamldoc.c"
#include "../../policies/load.c"
#include "../../policies/catalog.c"
#include "../../policies/decide.c"
#include "../../policies/diff.c"
#include "../../policies/sign.c"
#include "../../cli/policy_cli.c"

#include <sys/stat.h>
#include <time.h>

static char dir[] = "/tmp/np-policy-XXXXXX";

/* One purpose 'p' (2025-01-01 through 2025-12-31) with one grant to 'a';
 * |grant| adds keys to that grant, |more| adds text after the purpose. */
/* Every aggregate grant needs noise (no exact releases): the base grant
 * gets this line unless the test writes its own. */
#define DEFAULT_NOISE "        noise: {mechanism: discrete_laplace, epsilon: 1}\n"

static char *policy_text_raw(const char *grant, const char *more, const char *noise)
{
	static char buf[8192];
	int new_grant = strncmp(grant, "      - ", 8) == 0;

	snprintf(buf, sizeof(buf),
		 "purposes:\n"
		 "  - id: p\n"
		 "    description: test purpose\n"
		 "    legal_basis: art. 6 lid 1 sub e AVG\n"
		 "    valid: {from: 2025-01-01, until: 2025-12-31}\n"
		 "    grants:\n"
		 "      - requesters: [a]\n"
		 "        operations: [aggregate, lookup]\n"
		 "        datasets:\n"
		 "          o/ds: {f: exact, birth_date: age_band_10, pc: gemeente}\n"
		 "%s%s%s%s", new_grant ? noise : "", grant, new_grant ? "" : noise, more);
	return buf;
}

static char *policy_text(const char *grant, const char *more)
{
	return policy_text_raw(grant, more, strstr(grant, "noise:") && strncmp(grant, "      - ", 8) != 0
						    ? "" : DEFAULT_NOISE);
}

static struct policy_set *load_text(const char *text, struct diag *d)
{
	struct policy_set *s = NULL;

	policy_set_load_mem("t.yaml", (const unsigned char *)text, strlen(text), NULL, &s, d);
	return s;
}

static struct policy_set *load_grant(const char *grant, struct diag *d)
{
	return load_text(policy_text(grant, ""), d);
}

static int64_t at(const char *day, int seconds)
{
	int64_t t = 0;

	policy_parse_date(day, &t);
	return t + seconds;
}

/* Decides for |who| under 'p' using |fields| ("o/ds.f,o/ds.birth_date as age_band_10"). */
static struct policy_decision dec;

static int ask(const struct policy_set *s, const char *who, const char *purpose, enum policy_op op,
	       int64_t when, const char *fields, enum policy_ident ident)
{
	struct req q = { 0 };
	char buf[1024], err[256];
	int rc;

	snprintf(buf, sizeof(buf), "%s", fields);
	for (char *f = strtok(buf, ","); f; f = strtok(NULL, ","))
		if (add_field(&q, f, err, sizeof(err)) < 0)
			printf("#   bad test field %s: %s\n", f, err);
	complete(&q);
	q.r.requester = who;
	q.r.purpose = purpose;
	q.r.operation = op;
	q.r.time = when;
	q.r.identifiers = ident;
	rc = policy_decide(s, &q.r, &dec);
	pol_arena_free(q.a);
	return rc == 0 && dec.permit;
}

#define MID at("2025-06-01", 43200)

static void defaults(void)
{
	struct diag d = { 0 };
	const char *text = policy_text_raw("", "", "");
	struct policy_set *s = load_text(text, &d);
	unsigned char h[32];
	char hex[65];

	/* No noise is no default: an aggregate grant without it is refused. */
	CHECK(s == NULL);
	CHECK_CONTAINS(diag_text(&d), "t.yaml:8:21: error: grant 'p/grant[0]'.noise: an aggregate grant needs 'noise:");
	CHECK_CONTAINS(diag_text(&d), "docs/disclosure.md");
	diag_clear(&d);
	/* A lookup-only grant may leave noise out: nothing it releases is a table. */
	s = load_text("purposes:\n  - id: p\n    description: d\n    legal_basis: x\n"
		      "    valid: {from: 2025-01-01, until: 2025-12-31}\n"
		      "    grants: [{requesters: a, operations: lookup, datasets: {o/ds: {f: exact}},\n"
		      "              budget: {epsilon: 1, per: year}}]\n", &d);
	CHECK(s != NULL);
	CHECK_CONTAINS(diag_text(&d), "budget: has no effect without noise");
	policy_set_free(s);
	diag_clear(&d);
	text = policy_text("", "");
	s = load_text(text, &d);
	CHECK(s != NULL);
	CHECK_STR(diag_text(&d), "");
	if (!s)
		return;
	CHECK(ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "o/ds.f", POLICY_IDENT_NEVER));
	CHECK_STR(dec.rule, "p/grant[0]");
	CHECK(dec.reason == POLICY_OK);
	CHECK(dec.out.min_cell == 10);
	CHECK(dec.out.noise == 1 && dec.out.epsilon == 1);
	CHECK(dec.out.round_to == 1);
	CHECK(dec.out.max_cells_per_person == 1);
	CHECK(dec.out.has_budget == 0);
	CHECK(dec.out.identifiers == POLICY_IDENT_NEVER);
	CHECK(dec.out.partial_ok == 0);
	CHECK(dec.gen[0] == POLICY_GEN_EXACT);
	crypto_hash_sha256(h, (const unsigned char *)text, strlen(text));
	sodium_bin2hex(hex, sizeof(hex), h, 32);
	CHECK_STR(policy_set_hash(s), hex);
	CHECK_STR(dec.policy_hash, hex);
	/* no generalisation asked: the decision says which one applies */
	CHECK(ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "o/ds.birth_date", POLICY_IDENT_NEVER));
	CHECK(dec.gen[0] == POLICY_GEN_AGE_BAND_10);
	policy_set_free(s);
	policy_set_free(NULL);
	diag_clear(&d);
}

static void every_field(void)
{
	struct diag d = { 0 };
	struct policy_set *s = load_grant("        id: g-1\n"
					  "        min_cell: 20\n"
					  "        noise: {mechanism: discrete_laplace, epsilon: 0.5}\n"
					  "        round_to: 5\n"
					  "        max_cells_per_person: 2\n"
					  "        budget: {epsilon: 3, per: quarter}\n"
					  "        identifiers: pseudonym\n"
					  "        on_node_failure: partial\n", &d);

	CHECK(s != NULL);
	CHECK_STR(diag_text(&d), "");
	if (!s)
		return;
	CHECK(ask(s, "a", "p", POLICY_OP_LOOKUP, MID, "o/ds.pc as provincie", POLICY_IDENT_PSEUDONYM));
	CHECK_STR(dec.rule, "g-1");
	CHECK(dec.out.min_cell == 20);
	CHECK(dec.out.noise == 1 && dec.out.epsilon == 0.5);
	CHECK(dec.out.round_to == 5);
	CHECK(dec.out.max_cells_per_person == 2);
	CHECK(dec.out.has_budget && dec.out.budget_epsilon == 3 && dec.out.budget_per == POLICY_PER_QUARTER);
	CHECK(dec.out.identifiers == POLICY_IDENT_PSEUDONYM);
	CHECK(dec.out.partial_ok == 1);
	CHECK(dec.gen[0] == POLICY_GEN_PROVINCIE);
	/* the legal basis may name its processing-register entry */
	policy_set_free(s);
	s = load_text("purposes:\n"
		      "  - id: p\n    description: d\n"
		      "    legal_basis: {text: art. 6 AVG, register: VWR-1}\n"
		      "    valid: {from: 2025-01-01, until: 2025-01-01}\n"
		      "    grants: [{requesters: a, operations: lookup, datasets: {o/ds: {f: exact}}}]\n", &d);
	CHECK(s && strcmp(s->purposes[0].register_ref, "VWR-1") == 0);
	policy_set_free(s);
	diag_clear(&d);
}

static void validity_days(void)
{
	struct diag d = { 0 };
	struct policy_set *s = load_grant("", &d);

	if (!s)
		return;
	CHECK(!ask(s, "a", "p", POLICY_OP_AGGREGATE, at("2025-01-01", -1), "o/ds.f", 0));
	CHECK(dec.reason == POLICY_PURPOSE_NOT_YET_VALID);
	CHECK_CONTAINS(dec.message, "valid only from 2025-01-01");
	CHECK(ask(s, "a", "p", POLICY_OP_AGGREGATE, at("2025-01-01", 0), "o/ds.f", 0));
	CHECK(ask(s, "a", "p", POLICY_OP_AGGREGATE, at("2025-12-31", 86399), "o/ds.f", 0));
	CHECK(!ask(s, "a", "p", POLICY_OP_AGGREGATE, at("2026-01-01", 0), "o/ds.f", 0));
	CHECK(dec.reason == POLICY_PURPOSE_EXPIRED);
	CHECK_CONTAINS(dec.message, "valid until 2025-12-31");
	policy_set_free(s);
	diag_clear(&d);
}

static void min_cell_boundary(void)
{
	struct diag d = { 0 };
	struct policy_set *s = load_grant("        min_cell: 4\n", &d);

	CHECK(s == NULL);
	CHECK_CONTAINS(diag_text(&d), "t.yaml:11:19: error: grant 'p/grant[0]'.min_cell: 4 is below 5");
	CHECK_CONTAINS(diag_text(&d), "risk: min_cell_below_5");
	diag_clear(&d);
	s = load_grant("        min_cell: 5\n", &d);
	CHECK(s != NULL);
	CHECK_STR(diag_text(&d), "");
	policy_set_free(s);
	s = load_grant("        min_cell: 4\n"
		       "        acknowledge:\n"
		       "          - risk: min_cell_below_5\n"
		       "            reason: internal quality check, never published\n", &d);
	CHECK(s != NULL);
	if (s && ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "o/ds.f", 0))
		CHECK(dec.out.min_cell == 4);
	policy_set_free(s);
	CHECK_STR(diag_text(&d), "");
	s = load_grant("        min_cell: 0\n", &d);
	CHECK(s == NULL);
	CHECK_CONTAINS(diag_text(&d), "min_cell: 0 is out of range");
	diag_clear(&d);
	/* an acknowledgement without a reason is not one */
	s = load_grant("        min_cell: 3\n        acknowledge: [{risk: min_cell_below_5}]\n", &d);
	CHECK(s == NULL);
	CHECK_CONTAINS(diag_text(&d), "missing required key 'reason'");
	diag_clear(&d);
	/* an acknowledgement of a risk the grant does not take is a warning */
	s = load_grant("        acknowledge: [{risk: min_cell_below_5, reason: x}]\n", &d);
	CHECK(s != NULL);
	CHECK_CONTAINS(diag_text(&d), "warning: grant 'p/grant[0]': acknowledges min_cell_below_5, but min_cell is 10");
	policy_set_free(s);
	diag_clear(&d);
}

static void epsilon_boundary(void)
{
	static const struct {
		const char *eps;
		int ok;
		const char *msg;
	} cases[] = {
		{ "0", 0, "must be greater than 0" },
		{ "0.0", 0, "must be greater than 0" },
		{ "-1", 0, "must be greater than 0" },
		{ "0.000001", 1, "" },
		{ "10", 1, "" },
		{ "10.0", 1, "" },
		{ "10.0001", 0, "10.0001 is above 10" },
		{ "1e3", 0, "is not a number" },
		{ "nan", 0, "is not a number" },
		{ "inf", 0, "is not a number" },
		{ ".5", 1, "" },
	};
	struct diag d = { 0 };
	char g[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy_set *s;

		snprintf(g, sizeof(g), "        noise: {mechanism: discrete_laplace, epsilon: %s}\n", cases[i].eps);
		s = load_grant(g, &d);
		if ((s != NULL) != cases[i].ok)
			printf("#   epsilon %s: expected %s\n", cases[i].eps, cases[i].ok ? "ok" : "an error");
		CHECK((s != NULL) == cases[i].ok);
		CHECK_CONTAINS(diag_text(&d), cases[i].msg);
		policy_set_free(s);
		diag_clear(&d);
	}
	struct policy_set *s = load_grant("        noise: {mechanism: discrete_laplace, epsilon: 12}\n"
					  "        acknowledge: [{risk: epsilon_above_10, reason: public statistics}]\n", &d);
	CHECK(s != NULL);
	policy_set_free(s);
	s = load_grant("        budget: {epsilon: 11, per: year}\n"
		       "        noise: {mechanism: discrete_laplace, epsilon: 1}\n", &d);
	CHECK(s == NULL);
	CHECK_CONTAINS(diag_text(&d), "budget.epsilon: 11 is above 10");
	diag_clear(&d);
	s = load_grant("        noise: {mechanism: gaussian, epsilon: 1}\n", &d);
	CHECK(s == NULL);
	CHECK_CONTAINS(diag_text(&d), "only discrete_laplace is supported");
	diag_clear(&d);
}

static void strictest_wins(void)
{
	struct diag d = { 0 };
	struct policy_set *s = load_text(
		policy_text("        id: loose\n"
			    "        min_cell: 15\n"
			    "        noise: {mechanism: discrete_laplace, epsilon: 2}\n"
			    "        round_to: 10\n"
			    "        max_cells_per_person: 3\n"
			    "        identifiers: pseudonym\n"
			    "        on_node_failure: partial\n"
			    "      - id: strict\n"
			    "        requesters: [a]\n"
			    "        operations: [lookup]\n"
			    "        datasets: {o/ds: {f: exact, birth_date: birth_year}}\n"
			    "        min_cell: 10\n"
			    "        noise: {mechanism: discrete_laplace, epsilon: 0.5}\n"
			    "        round_to: 5\n"
			    "        max_cells_per_person: 1\n"
			    "        budget: {epsilon: 2, per: month}\n"
			    "        identifiers: bsn\n", ""), &d);

	CHECK(s != NULL);
	if (!s)
		return;
	CHECK(ask(s, "a", "p", POLICY_OP_LOOKUP, MID, "o/ds.f,o/ds.birth_date", POLICY_IDENT_NEVER));
	CHECK(dec.napplied == 2);
	CHECK_STR(dec.rule, "loose");
	CHECK_CONTAINS(dec.message, "and 1 more; the strictest");
	CHECK(dec.out.min_cell == 15);
	CHECK(dec.out.noise && dec.out.epsilon == 0.5);
	CHECK(dec.out.round_to == 10);
	CHECK(dec.out.max_cells_per_person == 1);
	CHECK(dec.out.has_budget && dec.out.budget_epsilon == 2 && dec.out.budget_per == POLICY_PER_MONTH);
	CHECK(dec.out.identifiers == POLICY_IDENT_PSEUDONYM);
	CHECK(dec.out.partial_ok == 0);
	CHECK(dec.gen[1] == POLICY_GEN_AGE_BAND_10); /* the coarsest of birth_year and age_band_10 */
	/* only one grant covers an aggregate: its controls alone */
	CHECK(ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "o/ds.f", POLICY_IDENT_NEVER));
	CHECK(dec.napplied == 1 && dec.out.noise && dec.out.epsilon == 2 && dec.out.min_cell == 15);
	/* asking birth_year explicitly: only 'strict' allows it */
	CHECK(ask(s, "a", "p", POLICY_OP_LOOKUP, MID, "o/ds.birth_date as birth_year", POLICY_IDENT_NEVER));
	CHECK(dec.napplied == 1);
	CHECK_STR(dec.rule, "strict");
	policy_set_free(s);
	diag_clear(&d);

	/* budgets: the smallest epsilon and the longest period */
	struct policy_output a = { .min_cell = 10, .has_budget = 1, .budget_epsilon = 6, .budget_per = POLICY_PER_MONTH };
	struct policy_output b = { .min_cell = 10, .has_budget = 1, .budget_epsilon = 3, .budget_per = POLICY_PER_QUARTER };

	policy_output_merge(&a, &b);
	CHECK(a.budget_epsilon == 3 && a.budget_per == POLICY_PER_QUARTER);
	b.budget_epsilon = 9;
	b.budget_per = POLICY_PER_YEAR;
	policy_output_merge(&a, &b);
	CHECK(a.budget_epsilon == 3 && a.budget_per == POLICY_PER_YEAR);
}

static void forbid_over_grant(void)
{
	struct diag d = { 0 };
	struct policy_set *s = load_text(policy_text("",
		"    forbid:\n"
		"      - id: no-pc-lookup\n"
		"        reason: postcode is never looked up\n"
		"        operations: [lookup]\n"
		"        datasets: {o/ds: [pc]}\n"
		"forbid:\n"
		"  - reason: b is suspended\n"
		"    requesters: [b]\n"
		"  - id: other-purpose\n"
		"    reason: not here\n"
		"    purposes: [q]\n"
		"    datasets: {o/ds: all}\n"), &d);

	CHECK(s != NULL);
	CHECK_CONTAINS(diag_text(&d), "warning: forbid 'other-purpose' names purpose 'q', which no loaded file declares");
	if (!s)
		return;
	CHECK(ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "o/ds.pc", 0));
	CHECK(!ask(s, "a", "p", POLICY_OP_LOOKUP, MID, "o/ds.pc", 0));
	CHECK(dec.reason == POLICY_FORBIDDEN);
	CHECK_STR(dec.rule, "no-pc-lookup");
	CHECK_STR(dec.message, "forbidden by 'no-pc-lookup': postcode is never looked up");
	CHECK(ask(s, "a", "p", POLICY_OP_LOOKUP, MID, "o/ds.f", 0));
	CHECK(!ask(s, "b", "p", POLICY_OP_LOOKUP, MID, "o/ds.f", 0));
	CHECK(dec.reason == POLICY_FORBIDDEN);
	CHECK_STR(dec.rule, "t.yaml/forbid[0]");
	policy_set_free(s);
	diag_clear(&d);

	/* 'all' forbids a dataset even when the request names no field of it */
	s = load_text(policy_text("", "    forbid: [{reason: r, datasets: {o/ds: all}}]\n"), &d);
	CHECK(s != NULL);
	CHECK_CONTAINS(diag_text(&d), "forbid 'p/forbid[0]' forbids it to all its requesters");
	if (s) {
		CHECK(!ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "", 0) || 1);
		struct policy_request r = { .requester = "a", .purpose = "p", .operation = POLICY_OP_AGGREGATE,
					    .time = MID };
		const char *ds[] = { "o/ds" };

		r.datasets = ds;
		r.ndatasets = 1;
		policy_decide(s, &r, &dec);
		CHECK(!dec.permit && dec.reason == POLICY_FORBIDDEN);
	}
	policy_set_free(s);
	diag_clear(&d);
}

static void each_deny_reason(void)
{
	struct diag d = { 0 };
	struct policy_set *s = load_grant("", &d);
	const char *too_many = "o/ds.f,o/ds.f,o/ds.f,o/ds.f,o/ds.f,o/ds.f,o/ds.f,o/ds.f";

	if (!s)
		return;
	CHECK(!ask(s, "a", "nope", POLICY_OP_AGGREGATE, MID, "o/ds.f", 0));
	CHECK(dec.reason == POLICY_UNKNOWN_PURPOSE);
	CHECK_STR(dec.message, "purpose 'nope' is not declared in any policy");
	CHECK(!ask(s, "gemeente-emmen", "p", POLICY_OP_AGGREGATE, MID, "o/ds.f", 0));
	CHECK(dec.reason == POLICY_REQUESTER_NOT_LISTED);
	CHECK_STR(dec.message, "gemeente-emmen is not listed as a requester for purpose 'p'");
	CHECK(!ask(s, "a", "p", POLICY_OP_LINKED_AGGREGATE, MID, "o/ds.f", 0));
	CHECK(dec.reason == POLICY_OPERATION_NOT_GRANTED);
	CHECK_STR(dec.message, "operation 'linked_aggregate' is not granted to a for purpose 'p'");
	CHECK(!ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "uwv/ww-uitkeringen.end_reason", 0));
	CHECK(dec.reason == POLICY_DATASET_NOT_GRANTED);
	CHECK_STR(dec.message, "dataset 'uwv/ww-uitkeringen' is not granted to a for purpose 'p'");
	CHECK(!ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "o/ds.birth", 0));
	CHECK(dec.reason == POLICY_FIELD_NOT_GRANTED);
	CHECK_STR(dec.message, "field 'birth' of dataset 'o/ds' is not granted to a for purpose 'p'");
	CHECK(!ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "o/ds.birth_date as age_band_5", 0));
	CHECK(dec.reason == POLICY_GENERALISATION_TOO_FINE);
	CHECK_CONTAINS(dec.message, "only as age_band_10 or coarser, not as age_band_5");
	CHECK(!ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "o/ds.birth_date as exact", 0));
	CHECK(dec.reason == POLICY_GENERALISATION_TOO_FINE);
	CHECK(!ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "o/ds.pc as month", 0)); /* wrong kind */
	CHECK(dec.reason == POLICY_GENERALISATION_TOO_FINE);
	CHECK(ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "o/ds.pc as provincie", 0));
	CHECK(ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "o/ds.birth_date as age_band_20", 0));
	CHECK(!ask(s, "a", "p", POLICY_OP_LOOKUP, MID, "o/ds.f", POLICY_IDENT_PSEUDONYM));
	CHECK(dec.reason == POLICY_IDENTIFIERS_NOT_GRANTED);
	CHECK(!ask(s, "a", "p", POLICY_OP_LOOKUP, MID, too_many, 0) || 1);
	{
		struct policy_field f[POLICY_MAX_FIELDS + 1];
		const char *ds[] = { "o/ds" };
		struct policy_request r = { .requester = "a", .purpose = "p", .operation = POLICY_OP_AGGREGATE,
					    .datasets = ds, .ndatasets = 1, .fields = f, .time = MID };

		for (size_t i = 0; i <= POLICY_MAX_FIELDS; i++)
			f[i] = (struct policy_field){ "o/ds", "f", POLICY_GEN_NONE };
		r.nfields = POLICY_MAX_FIELDS;
		policy_decide(s, &r, &dec);
		CHECK(dec.permit);
		r.nfields = POLICY_MAX_FIELDS + 1;
		policy_decide(s, &r, &dec);
		CHECK(!dec.permit && dec.reason == POLICY_BAD_REQUEST);
		f[0].dataset = "o/other";
		r.nfields = 1;
		policy_decide(s, &r, &dec);
		CHECK(dec.reason == POLICY_BAD_REQUEST);
		CHECK_CONTAINS(dec.message, "which the request does not list");
		r.requester = NULL;
		policy_decide(s, &r, &dec);
		CHECK(dec.reason == POLICY_BAD_REQUEST);
		r.requester = "a";
		r.operation = 3;
		f[0].dataset = "o/ds";
		policy_decide(s, &r, &dec);
		CHECK(dec.reason == POLICY_BAD_REQUEST);
		CHECK(policy_decide(NULL, &r, &dec) == -1);
	}
	policy_set_free(s);
	s = load_text("purposes:\n  - id: p\n    description: d\n    legal_basis: x\n"
		      "    valid: {from: 2025-01-01, until: 2025-12-31}\n    grants: []\n", &d);
	CHECK(s != NULL);
	CHECK_CONTAINS(diag_text(&d), "warning: purpose 'p' grants nothing");
	if (s) {
		CHECK(!ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "o/ds.f", 0));
		CHECK(dec.reason == POLICY_NOTHING_GRANTED);
	}
	policy_set_free(s);
	diag_clear(&d);
	for (int r = 0; r < POLICY_REASON_COUNT; r++) {
		enum policy_reason back;

		CHECK(policy_reason_parse(policy_reason_name(r), &back) == 0 && (int)back == r);
	}
	CHECK_STR(policy_reason_name(POLICY_FIELD_NOT_GRANTED), "field_not_granted");
}

static void nearest_grant(void)
{
	struct diag d = { 0 };
	struct policy_set *s = load_text(policy_text(
		"      - id: for-b\n"
		"        requesters: [b]\n"
		"        operations: [linked_aggregate]\n"
		"        datasets: {o/ds: {f: exact, x: exact, y: exact}, o/two: {z: exact}}\n"
		DEFAULT_NOISE, ""), &d);

	if (!s)
		return;
	/* a asks what only b has: the nearest is still a's own grant */
	CHECK(!ask(s, "a", "p", POLICY_OP_LINKED_AGGREGATE, MID, "o/ds.f,o/ds.x,o/ds.y,o/two.z", 0));
	CHECK_STR(dec.nearest, "p/grant[0]");
	CHECK(dec.reason == POLICY_OPERATION_NOT_GRANTED);
	CHECK_CONTAINS(dec.missing, "operation 'linked_aggregate' is not granted to a");
	CHECK_CONTAINS(dec.missing, "; dataset 'o/two' is not granted to a");
	CHECK_CONTAINS(dec.missing, "; field 'x' of dataset 'o/ds' is not granted to a");
	CHECK_CONTAINS(dec.missing, "; field 'y' of dataset 'o/ds'");
	/* b misses one field */
	CHECK(!ask(s, "b", "p", POLICY_OP_LINKED_AGGREGATE, MID, "o/ds.f,o/ds.pc", 0));
	CHECK_STR(dec.nearest, "for-b");
	CHECK_STR(dec.missing, "field 'pc' of dataset 'o/ds' is not granted to b for purpose 'p'");
	CHECK_STR(dec.message, dec.missing);
	policy_set_free(s);
	diag_clear(&d);
}

static void hash_and_files(void)
{
	struct diag d = { 0 };
	const char *text = policy_text("", "");
	char *p1 = check_write(dir, "h1.yaml", text), *p2, *p3;
	struct policy_set *s1 = NULL, *s2 = NULL;
	char h1[65];

	CHECK(policy_set_load((const char *const *)&p1, 1, NULL, &s1, &d) == 0);
	if (!s1)
		return;
	memcpy(h1, policy_set_hash(s1), 65);
	{
		struct policy_set *m = load_text(text, &d);

		CHECK(m && strcmp(policy_set_hash(m), h1) == 0);
		policy_set_free(m);
	}
	/* one byte in a comment changes the hash, not the meaning */
	char changed[8192];

	snprintf(changed, sizeof(changed), "%s#\n", text);
	p2 = check_write(dir, "h2.yaml", changed);
	CHECK(policy_set_load((const char *const *)&p2, 1, NULL, &s2, &d) == 0);
	CHECK(s2 && strcmp(policy_set_hash(s2), h1) != 0);
	policy_set_free(s2);
	/* two files: the hash of their bytes concatenated (cat a b | sha256sum) */
	p3 = check_write(dir, "h3.yaml", "purposes:\n  - id: q\n    description: d\n    legal_basis: x\n"
			 "    valid: {from: 2025-01-01, until: 2025-12-31}\n"
			 "    grants: [{requesters: a, operations: lookup, datasets: {o/ds: {f: exact}}}]\n");
	{
		const char *two[] = { p1, p3 };
		unsigned char h[32];
		char hex[65];
		crypto_hash_sha256_state st;
		unsigned char *b3;
		size_t l3;
		char err[128];

		CHECK(policy_set_load(two, 2, NULL, &s2, &d) == 0);
		slurp(p3, 1 << 20, &b3, &l3, err, sizeof(err));
		crypto_hash_sha256_init(&st);
		crypto_hash_sha256_update(&st, (const unsigned char *)text, strlen(text));
		crypto_hash_sha256_update(&st, b3, l3);
		crypto_hash_sha256_final(&st, h);
		sodium_bin2hex(hex, sizeof(hex), h, 32);
		CHECK(s2 && strcmp(policy_set_hash(s2), hex) == 0);
		free(b3);
		policy_set_free(s2);
		/* the same purpose in two files is an error */
		const char *dup2[] = { p1, p2 };

		CHECK(policy_set_load(dup2, 2, NULL, &s2, &d) < 0);
		CHECK_CONTAINS(diag_text(&d), "h2.yaml:2:5: error: purpose 'p' is declared twice (also at");
		diag_clear(&d);
	}
	policy_set_free(s1);
	free(p1);
	free(p2);
	free(p3);
	diag_clear(&d);
}

static void bad_yaml_positions(void)
{
	struct diag d = { 0 };
	struct policy_set *s;

	s = load_text("purposes:\n  - id: p\n    description: [unclosed\n", &d);
	CHECK(s == NULL);
	CHECK_CONTAINS(diag_text(&d), "t.yaml:4:1: error: YAML syntax:");
	diag_clear(&d);
	s = load_text("", &d); /* found by fuzz_policy: an empty input */
	CHECK(s == NULL);
	CHECK_CONTAINS(diag_text(&d), "t.yaml: error: the file is empty");
	diag_clear(&d);
	s = load_text("purposes:\n"
		      "  - id: Bad_Id\n"
		      "    description: d\n"
		      "    colour: blue\n"
		      "    valid: {from: 2025-02-30, until: 2025-01-01}\n"
		      "    grants:\n"
		      "      - requesters: []\n"
		      "        operations: [lookup, delete]\n"
		      "        datasets: {o/ds: {f: fine, g: [x]}, nodataset: {f: exact}}\n"
		      "        min_cell: ten\n"
		      "        identifiers: always\n"
		      "        budget: {epsilon: 1, per: week}\n", &d);
	CHECK(s == NULL);
	CHECK_CONTAINS(diag_text(&d), "t.yaml:4:5: error: purposes[0]: unknown key 'colour'");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:2:5: error: purposes[0]: missing required key 'legal_basis'");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:2:9: error: purposes[0].id: 'Bad_Id' must be lower-case");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:5:19: error: purpose 'Bad_Id'.valid.from: '2025-02-30' is not a date");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:7:21: error: grant 'Bad_Id/grant[0]'.requesters: the list is empty");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:8:21: error: grant 'Bad_Id/grant[0]'.operations: unknown operation 'delete'");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:9:30: error: grant 'Bad_Id/grant[0]'.datasets.o/ds.f: unknown generalisation 'fine'");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:9:39: error: g: expected a single value, found a list");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:9:45: error: grant 'Bad_Id/grant[0]'.datasets: 'nodataset' is not a dataset id");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:10:19: error: grant 'Bad_Id/grant[0]'.min_cell: 'ten' is not a whole number");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:11:22: error: grant 'Bad_Id/grant[0]'.identifiers: expected never, pseudonym or bsn");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:12:35: error: grant 'Bad_Id/grant[0]'.budget.per: expected month, quarter or year");
	diag_clear(&d);
	s = load_text("purposes:\n  - id: p\n    description: d\n    legal_basis: x\n"
		      "    valid: {from: 2025-06-01, until: 2025-05-31}\n"
		      "    grants: [{id: g, requesters: a, operations: lookup, datasets: {o/ds: {f: exact}}},\n"
		      "             {id: g, requesters: a, operations: lookup, datasets: {o/ds: {f: exact}}}]\n", &d);
	CHECK(s == NULL);
	CHECK_CONTAINS(diag_text(&d), "t.yaml:5:38: error: purpose 'p'.valid: until 2025-05-31 is before from 2025-06-01");
	diag_clear(&d);
	s = load_text("purposes:\n  - id: p\n    description: d\n    legal_basis: x\n"
		      "    valid: {from: 2025-06-01, until: 2025-06-01}\n"
		      "    grants: [{id: g, requesters: a, operations: lookup, datasets: {o/ds: {f: exact}}},\n"
		      "             {id: g, requesters: a, operations: lookup, datasets: {o/ds: {f: exact}}}]\n", &d);
	CHECK(s == NULL);
	CHECK_CONTAINS(diag_text(&d), "t.yaml:7:14: error: rule id 'g' is used twice (also at t.yaml:6)");
	diag_clear(&d);
	s = load_text("purposes: {}\nforbid: 3\nextra: 1\n", &d);
	CHECK(s == NULL);
	CHECK_CONTAINS(diag_text(&d), "t.yaml:3:1: error: policy file: unknown key 'extra'");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:1:11: error: purposes: expected a list of purposes");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:2:9: error: forbid: expected a list of rules");
	diag_clear(&d);
}

static const char catalog_text[] =
	"datasets:\n"
	"  uwv/ww:\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      end_date: {type: date, role: attribute, range: [2015-01-01, 2026-12-31]}\n"
	"      end_reason: {type: category, role: attribute, categories: [werk, ziekte]}\n"
	"      postcode: {type: string, role: quasi_identifier}\n"
	"      amount: {type: int, role: attribute}\n"
	"      start_date: {type: date, role: attribute}\n"
	"      birth_date: {type: date, role: quasi_identifier, range: [1940-01-01, 2010-12-31]}\n";

static void catalog_and_members(void)
{
	static const char *const members[] = { "uwv", "gemeente-emmen" };
	struct policy_catalog *c = NULL;
	struct policy_refs refs = { members, 2, NULL, NULL, 0, 1, 0 }; /* as policy check */
	struct policy_set *s = NULL;
	struct diag d = { 0 };
	const char *text =
		"purposes:\n  - id: p\n    description: d\n    legal_basis: x\n"
		"    valid: {from: 2025-01-01, until: 2025-12-31}\n"
		"    grants:\n"
		"      - requesters: [gemeente-emmen, gemeente-assen]\n"
		"        operations: [aggregate]\n"
		"        datasets:\n"
		"          uwv/ww: {bsn: exact, end_date: month, end_reason: quarter, postcode: gemeente, x: exact}\n"
		"          uwv/other: {f: exact}\n"
		"          cbs/ww: {f: exact}\n"
		"      - requesters: [gemeente-emmen]\n"
		"        operations: [aggregate]\n"
		"        datasets:\n"
		"          uwv/ww: {amount: exact, start_date: year, birth_date: age_band_10}\n"
		"      - requesters: [gemeente-emmen]\n"
		"        operations: [lookup]\n"
		"        datasets:\n"
		"          uwv/ww: {amount: exact, start_date: exact, postcode: exact}\n";

	CHECK(policy_catalog_load_mem("c.yaml", (const unsigned char *)catalog_text, sizeof(catalog_text) - 1,
				      &c, &d) == 0);
	CHECK_STR(diag_text(&d), "");
	refs.catalog = c;
	CHECK(policy_set_load_mem("t.yaml", (const unsigned char *)text, strlen(text), &refs, &s, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "t.yaml:7:38: error: grant 'p/grant[0]'.requesters: 'gemeente-assen' is not a member");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:10:20: error: grant 'p/grant[0]'.datasets.uwv/ww: 'bsn' is an identifier");
	CHECK_CONTAINS(diag_text(&d), "'end_reason' cannot be generalised as quarter (that is for dates)");
	CHECK_CONTAINS(diag_text(&d), "dataset 'uwv/ww' has no field 'x' in the catalog");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:11:11: error: grant 'p/grant[0]'.datasets: dataset 'uwv/other' is not in the catalog");
	CHECK_CONTAINS(diag_text(&d), "dataset 'cbs/ww' belongs to 'cbs', which is not a member");
	CHECK(strstr(diag_text(&d), "end_date") == NULL); /* it has a range */
	/* Declared domains: a group-by grant on a field without one is refused,
	 * at the field; lookups need none (the last grant). */
	CHECK_CONTAINS(diag_text(&d), "t.yaml:10:70: error: grant 'p/grant[0]'.datasets.uwv/ww: 'postcode' cannot "
		       "be granted for aggregates: a string field has no declared domain and can never be grouped");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:16:20: error: grant 'p/grant[1]'.datasets.uwv/ww: 'amount' cannot be "
		       "granted for aggregates: the catalog declares no bins for it");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:16:35: error: grant 'p/grant[1]'.datasets.uwv/ww: 'start_date' cannot "
		       "be granted for aggregates: the catalog declares no range for it");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:16:53: error: grant 'p/grant[1]'.datasets.uwv/ww: 'birth_date' cannot "
		       "be granted for aggregates: the catalog declares no ages for it");
	CHECK(strstr(diag_text(&d), "grant[2]") == NULL);
	diag_clear(&d);
	policy_catalog_free(c);
	CHECK(policy_catalog_load_mem("c.yaml", (const unsigned char *)
				      "datasets:\n  a/b:\n    fields:\n      x: {type: category, role: attribute}\n"
				      "      y: {type: text, role: attribute}\n      z: {type: bsn, role: attribute}\n",
				      149, &c, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "c.yaml:4:10: error: a/b.x: a category field needs its list of categories");
	CHECK_CONTAINS(diag_text(&d), "c.yaml:5:17: error: a/b.y.type: unknown type 'text'");
	CHECK_CONTAINS(diag_text(&d), "a/b.z: a bsn field must have role identifier");
	diag_clear(&d);
	policy_catalog_free(NULL);
}

/*
 * The gateway's way (issue 10): a member removed from the members file while
 * policies still name it. The set loads with a warning per name, and the
 * grants never apply to it, however the name reaches policy_decide (a hub's
 * subquery carries the requester as a string).
 */
static void removed_member_inert(void)
{
	static const char *const with[] = { "a", "b", "o" };
	static const char *const without[] = { "b", "o" };
	static const char *const no_owner[] = { "a", "b" };
	const char *text =
		"purposes:\n  - id: p\n    description: d\n    legal_basis: x\n"
		"    valid: {from: 2025-01-01, until: 2025-12-31}\n"
		"    grants:\n"
		"      - id: g-ab\n        requesters: [a, b]\n        operations: [aggregate]\n"
		"        noise: {mechanism: discrete_laplace, epsilon: 1}\n"
		"        datasets:\n          o/ds: {f: exact}\n"
		"      - id: g-a\n        requesters: [a]\n        operations: [aggregate]\n"
		"        noise: {mechanism: discrete_laplace, epsilon: 1}\n"
		"        datasets:\n          o/ds: {g: exact}\n"
		"    forbid:\n      - id: f-a\n        reason: r\n        requesters: [a]\n"
		"        datasets:\n          o/ds: [h]\n";
	struct policy_refs refs = { with, 3, NULL, NULL, 0, 0, 0 };
	struct policy_set *s = NULL;
	struct diag d = { 0 };

	/* Everyone a member: as before, no warning. */
	CHECK(policy_set_load_mem("t.yaml", (const unsigned char *)text, strlen(text), &refs, &s, &d) == 0);
	CHECK_STR(diag_text(&d), "");
	CHECK(ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "o/ds.f", 0));
	CHECK(ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "o/ds.g", 0));
	policy_set_free(s);
	s = NULL;
	diag_clear(&d);

	/* 'a' removed: loads, one warning per place that names it. */
	refs.members = without;
	refs.nmembers = 2;
	CHECK(policy_set_load_mem("t.yaml", (const unsigned char *)text, strlen(text), &refs, &s, &d) == 0);
	CHECK(d.errors == 0);
	CHECK(d.warnings >= 3);
	CHECK_CONTAINS(diag_text(&d), "t.yaml:8:22: warning: grant 'g-ab'.requesters: 'a' is not a member "
		       "of the federation: this grant never applies to it");
	CHECK_CONTAINS(diag_text(&d), "grant 'g-a'.requesters: 'a' is not a member");
	CHECK_CONTAINS(diag_text(&d), "forbid 'f-a'.requesters: 'a' is not a member");
	CHECK(s != NULL);
	if (s) {
		CHECK(!ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "o/ds.f", 0));
		CHECK(dec.reason == POLICY_REQUESTER_NOT_LISTED);
		CHECK(!ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "o/ds.g", 0));
		CHECK(ask(s, "b", "p", POLICY_OP_AGGREGATE, MID, "o/ds.f", 0)); /* the other side */
		CHECK(!ask(s, "b", "p", POLICY_OP_AGGREGATE, MID, "o/ds.g", 0));
	}
	policy_set_free(s);
	s = NULL;
	diag_clear(&d);

	/* The dataset's owner removed: a warning, and nothing on it is granted. */
	refs.members = no_owner;
	CHECK(policy_set_load_mem("t.yaml", (const unsigned char *)text, strlen(text), &refs, &s, &d) == 0);
	CHECK(d.errors == 0);
	CHECK_CONTAINS(diag_text(&d), "dataset 'o/ds' belongs to 'o', which is not a member: it is never granted");
	if (s) {
		CHECK(!ask(s, "a", "p", POLICY_OP_AGGREGATE, MID, "o/ds.f", 0));
		CHECK(dec.reason == POLICY_DATASET_NOT_GRANTED);
		CHECK(!ask(s, "b", "p", POLICY_OP_AGGREGATE, MID, "o/ds.f", 0));
	}
	policy_set_free(s);
	s = NULL;
	diag_clear(&d);

	/* policy check's way: the same names are errors. */
	refs.members = without;
	refs.unknown_member_is_error = 1;
	CHECK(policy_set_load_mem("t.yaml", (const unsigned char *)text, strlen(text), &refs, &s, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "t.yaml:8:22: error: grant 'g-ab'.requesters: 'a' is not a member");
	diag_clear(&d);
}

static void check_warnings(void)
{
	struct diag d = { 0 };
	struct policy_refs refs = { 0 };
	struct policy_set *s = NULL;
	const char *text = policy_text("        budget: {epsilon: 1, per: year}\n",
				       "    forbid: [{reason: r, datasets: {o/ds: [pc]}}]\n");

	refs.now = at("2025-12-02", 0); /* 30 days before the end of 2025-12-31 */
	CHECK(policy_set_load_mem("t.yaml", (const unsigned char *)text, strlen(text), &refs, &s, &d) == 0);
	CHECK_CONTAINS(diag_text(&d), "t.yaml:5:38: warning: purpose 'p' expires on 2025-12-31, within 30 days");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:10:53: warning: grant 'p/grant[0]' lists field 'pc' of 'o/ds', but "
		       "forbid 'p/forbid[0]' forbids it to all its requesters");
	CHECK(d.errors == 0);
	policy_set_free(s);
	diag_clear(&d);
	refs.now = at("2025-12-02", -1); /* one second more than 30 days */
	CHECK(policy_set_load_mem("t.yaml", (const unsigned char *)text, strlen(text), &refs, &s, &d) == 0);
	CHECK(strstr(diag_text(&d), "expires on") == NULL);
	policy_set_free(s);
	diag_clear(&d);
	refs.now = at("2026-01-01", 0);
	CHECK(policy_set_load_mem("t.yaml", (const unsigned char *)text, strlen(text), &refs, &s, &d) == 0);
	CHECK_CONTAINS(diag_text(&d), "warning: purpose 'p' expired on 2025-12-31: its grants can never apply");
	policy_set_free(s);
	diag_clear(&d);
	text = policy_text("        noise: {mechanism: discrete_laplace, epsilon: 2}\n"
			   "        budget: {epsilon: 1, per: year}\n", "");
	CHECK(policy_set_load_mem("t.yaml", (const unsigned char *)text, strlen(text), NULL, &s, &d) == 0);
	CHECK_CONTAINS(diag_text(&d), "less than one query's epsilon 2, so the grant can never answer");
	policy_set_free(s);
	diag_clear(&d);
}

static void diff_words(void)
{
	struct diag d = { 0 };
	struct pol_text l = { 0 }, t = { 0 }, o = { 0 };
	char old_text[8192];
	struct policy_set *a, *b;

	snprintf(old_text, sizeof(old_text), "%s",
		 policy_text("        min_cell: 10\n        noise: {mechanism: discrete_laplace, epsilon: 1}\n",
			     "    forbid: [{id: nopc, reason: r, operations: [lookup], datasets: {o/ds: [pc]}}]\n"));
	a = load_text(old_text, &d);
	b = load_text("purposes:\n"
		      "  - id: p\n"
		      "    description: test purpose\n"
		      "    legal_basis: art. 6 lid 1 sub e AVG\n"
		      "    valid: {from: 2025-01-01, until: 2026-06-30}\n"
		      "    grants:\n"
		      "      - requesters: [a, c]\n"
		      "        operations: [aggregate]\n"
		      "        datasets:\n"
		      "          o/ds: {f: exact, birth_date: birth_year, pc: provincie}\n"
		      "        min_cell: 5\n"
		      "        noise: {mechanism: discrete_laplace, epsilon: 0.5}\n"
		      "    forbid: [{id: nopc2, reason: r2, datasets: {o/ds: [f]}}]\n", &d);
	CHECK(a && b);
	if (!a || !b)
		goto out;
	CHECK(pol_diff(a, b, &l, &t, &o) == 1);
	CHECK_CONTAINS(l.buf, "purpose 'p' now runs longer: until 2026-06-30 (was 2025-12-31)");
	CHECK_CONTAINS(l.buf, "purpose 'p': c is a new requester");
	CHECK_CONTAINS(l.buf, "purpose 'p': c may now use from 'o/ds' for aggregate: f (as stored), birth_date (birth_year), pc (provincie)");
	CHECK_CONTAINS(l.buf, "purpose 'p': a may now see field 'birth_date' of 'o/ds' finer: birth_year instead of age_band_10 (aggregate)");
	CHECK_CONTAINS(l.buf, "grant 'p/grant[0]': min_cell lowered from 10 to 5");
	CHECK_CONTAINS(l.buf, "forbid 'nopc' removed (it said: r)");
	CHECK_CONTAINS(t.buf, "purpose 'p': a now sees field 'pc' of 'o/ds' coarser: provincie instead of gemeente (aggregate)");
	CHECK_CONTAINS(t.buf, "purpose 'p': a may no longer use field 'f' of 'o/ds' for lookup");
	CHECK_CONTAINS(t.buf, "grant 'p/grant[0]': epsilon lowered from 1 to 0.5 (more noise)");
	CHECK_CONTAINS(t.buf, "new forbid 'nopc2': r2");
	CHECK(l.buf && strstr(l.buf, "epsilon") == NULL);
	pol_text_free(&l);
	pol_text_free(&t);
	pol_text_free(&o);
	CHECK(pol_diff(a, a, &l, &t, &o) == 0);
	CHECK(l.len == 0 && t.len == 0 && o.len == 0);
	CHECK(pol_diff(b, a, &l, &t, &o) == 1);
	CHECK_CONTAINS(t.buf, "purpose 'p' now ends sooner");
	CHECK_CONTAINS(t.buf, "c may no longer use field 'f' of 'o/ds' for aggregate");
	CHECK_CONTAINS(t.buf, "grant 'p/grant[0]': min_cell raised from 5 to 10");
out:
	pol_text_free(&l);
	pol_text_free(&t);
	pol_text_free(&o);
	policy_set_free(a);
	policy_set_free(b);
	diag_clear(&d);
}

/* Section 5 of issue 10: serials rise at signing, and a set says what each
 * file carries. */
static void serials(void)
{
	char prefix[256], sec[300], rec[300], err[600], text[8400];
	struct policy_file_info fi;
	struct policy_serials *r = NULL;
	struct policy_refs refs = { 0 };
	struct policy_set *s = NULL;
	struct diag d = { 0 };
	char *file, *recf;

	snprintf(prefix, sizeof(prefix), "%s/officer2", dir);
	snprintf(sec, sizeof(sec), "%s.sec", prefix);
	CHECK(policy_keygen(prefix, err, sizeof(err)) == 0);
	CHECK(policy_serials_path(sec, rec, sizeof(rec)) == 0);
	CHECK(strlen(rec) > 16 && strcmp(rec + strlen(rec) - 16, "officer2.serials") == 0);
	/* no serial: not signed */
	file = check_write(dir, "ser.yaml", policy_text("", ""));
	CHECK(policy_sign_file(file, sec, &fi, err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, "'serial:' is required");
	free(file);
	/* serial 2 signs and is recorded */
	snprintf(text, sizeof(text), "serial: 2\nvalid_until: 2025-06-30\n%s", policy_text("", ""));
	file = check_write(dir, "ser.yaml", text);
	CHECK(policy_sign_file(file, sec, &fi, err, sizeof(err)) == 0);
	CHECK(fi.serial == 2 && strcmp(fi.valid_until, "2025-06-30") == 0);
	CHECK(policy_serials_read(rec, &r, err, sizeof(err)) == 0);
	CHECK(r && policy_serials_find(r, "ser.yaml") &&
	      policy_serials_find(r, "ser.yaml")->serial == 2 &&
	      strcmp(policy_serials_find(r, "ser.yaml")->sha256, fi.sha256) == 0);
	policy_serials_free(r);
	r = NULL;
	/* the same bytes again: fine */
	CHECK(policy_sign_file(file, sec, NULL, err, sizeof(err)) == 0);
	/* same serial, other bytes: refused */
	snprintf(text, sizeof(text), "serial: 2\nvalid_until: 2025-06-30\n# changed\n%s",
		 policy_text("", ""));
	free(check_write(dir, "ser.yaml", text));
	CHECK(policy_sign_file(file, sec, NULL, err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, "serial 2 was already signed for 'ser.yaml' with other content");
	CHECK_CONTAINS(err, "raise 'serial:' to 3");
	/* lower (serial - 1): refused, naming the file, the serial and the last one */
	snprintf(text, sizeof(text), "serial: 1\nvalid_until: 2025-06-30\n%s", policy_text("", ""));
	free(check_write(dir, "ser.yaml", text));
	CHECK(policy_sign_file(file, sec, NULL, err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, "ser.yaml: serial 1 is below the last one signed for 'ser.yaml', 2 (");
	CHECK_CONTAINS(err, "officer2.serials); raise 'serial:' to 3 or more");
	/* serial + 1: fine */
	snprintf(text, sizeof(text), "serial: 3\nvalid_until: 2025-06-30\n%s", policy_text("", ""));
	free(check_write(dir, "ser.yaml", text));
	CHECK(policy_sign_file(file, sec, NULL, err, sizeof(err)) == 0);
	/* serial 0 and past 2^53 - 1 are not serials */
	snprintf(text, sizeof(text), "serial: 0\nvalid_until: 2025-06-30\n%s", policy_text("", ""));
	free(check_write(dir, "ser.yaml", text));
	CHECK(policy_sign_file(file, sec, NULL, err, sizeof(err)) < 0);
	snprintf(text, sizeof(text), "serial: 9007199254740992\nvalid_until: 2025-06-30\n%s",
		 policy_text("", ""));
	free(check_write(dir, "ser.yaml", text));
	CHECK(policy_sign_file(file, sec, NULL, err, sizeof(err)) < 0);
	/* a malformed record is refused, not guessed at */
	recf = check_write(dir, "officer2.serials", "ser.yaml three abc\n");
	snprintf(text, sizeof(text), "serial: 4\nvalid_until: 2025-06-30\n%s", policy_text("", ""));
	free(check_write(dir, "ser.yaml", text));
	CHECK(policy_sign_file(file, sec, NULL, err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, "officer2.serials:1: not a serial record");
	free(recf);
	free(file);

	/* the loader: required only when asked; valid_until ends every purpose */
	refs.require_serial = 1;
	s = load_text(policy_text("", ""), &d);
	CHECK(s && policy_set_nfiles(s) == 1 && policy_set_file(s, 0)->serial == 0 &&
	      policy_set_file(s, 0)->valid_end == 0);
	policy_set_free(s);
	CHECK(policy_set_load_mem("t.yaml", (const unsigned char *)policy_text("", ""),
				  strlen(policy_text("", "")), &refs, &s, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "'serial:' is required");
	CHECK_CONTAINS(diag_text(&d), "'valid_until:' is required");
	diag_clear(&d);
	snprintf(text, sizeof(text), "serial: 7\nvalid_until: 2025-06-30\n%s", policy_text("", ""));
	CHECK(policy_set_load_mem("t.yaml", (const unsigned char *)text, strlen(text), &refs, &s, &d) == 0);
	CHECK(s && policy_set_file(s, 0)->serial == 7 && policy_set_file(s, 0)->serial_line == 1 &&
	      policy_set_file(s, 0)->valid_line == 2 &&
	      policy_set_file(s, 0)->valid_end == 1751328000 /* 2025-07-01 */);
	if (s) {
		/* the purpose runs until 2025-12-31, the file until 2025-06-30:
		 * grants end with the file (both sides of the boundary) */
		struct policy_decision dn;
		struct policy_field f = { "o/ds", "f", POLICY_GEN_NONE };
		const char *ds[] = { "o/ds" };
		struct policy_request q = { "a", "p", POLICY_OP_AGGREGATE, ds, 1, &f, 1,
					    POLICY_IDENT_NEVER, 1751328000 - 1 };

		CHECK(policy_decide(s, &q, &dn) == 0 && dn.permit);
		q.time = 1751328000;
		CHECK(policy_decide(s, &q, &dn) == 0 && !dn.permit &&
		      dn.reason == POLICY_PURPOSE_EXPIRED);
	}
	policy_set_free(s);
	s = NULL;
	snprintf(text, sizeof(text), "serial: x\nvalid_until: 2025-02-30\n%s", policy_text("", ""));
	CHECK(policy_set_load_mem("t.yaml", (const unsigned char *)text, strlen(text), &refs, &s, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "t.yaml:1:");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:2:14: error: valid_until: '2025-02-30' is not a date");
	diag_clear(&d);
}

static void signatures(void)
{
	char prefix[256], sec[300], pub[300], err[600];
	char signed_text[8400];
	char *file;
	char sig[300];
	unsigned char pk[32], other[32], sk2[64];
	struct stat st;
	struct policy_refs refs = { 0 };
	struct policy_set *s = NULL;
	struct diag d = { 0 };

	snprintf(signed_text, sizeof(signed_text), "serial: 1\nvalid_until: 2099-12-31\n%s",
		 policy_text("", ""));
	file = check_write(dir, "signed.yaml", signed_text);
	snprintf(prefix, sizeof(prefix), "%s/officer", dir);
	snprintf(sec, sizeof(sec), "%s.sec", prefix);
	snprintf(pub, sizeof(pub), "%s.pub", prefix);
	snprintf(sig, sizeof(sig), "%s.sig", file);
	CHECK(policy_keygen(prefix, err, sizeof(err)) == 0);
	CHECK(stat(sec, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK(policy_keygen(prefix, err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, "already exists; refusing to overwrite");
	CHECK(policy_read_pub(pub, pk, err, sizeof(err)) == 0);
	CHECK(policy_verify_file(file, pk, err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, "signed.yaml.sig is missing: the file is not signed");
	CHECK(policy_sign_file(file, sec, NULL, err, sizeof(err)) == 0);
	CHECK(policy_verify_file(file, pk, err, sizeof(err)) == 0);
	/* the gateway's path: verify the bytes it parses */
	refs.signing_key = pk;
	CHECK(policy_set_load((const char *const *)&file, 1, &refs, &s, &d) == 0);
	policy_set_free(s);
	/* a wrong key */
	crypto_sign_keypair(other, sk2);
	CHECK(policy_verify_file(file, other, err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, "bad signature in");
	/* a tampered file: one byte */
	{
		FILE *f = fopen(file, "r+");

		if (f) {
			fseek(f, 20, SEEK_SET);
			fputc('X', f);
			fclose(f);
		}
	}
	CHECK(policy_verify_file(file, pk, err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, "the file was changed after signing, or signed with another key");
	CHECK(policy_set_load((const char *const *)&file, 1, &refs, &s, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "signed.yaml: error: bad signature in");
	diag_clear(&d);
	/* a malformed signature */
	free(check_write(dir, "signed.yaml.sig", "abc\n"));
	CHECK(policy_verify_file(file, pk, err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, "not a signature");
	/* a secret key others may read is refused */
	CHECK(chmod(sec, 0640) == 0);
	CHECK(policy_sign_file(file, sec, NULL, err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, ": secret key file is accessible by group or others (mode 0640); "
			    "run: chmod 600 '");
	CHECK(chmod(sec, 0604) == 0);
	CHECK(policy_sign_file(file, sec, NULL, err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, "(mode 0604)");
	CHECK(chmod(sec, 0400) == 0);
	free(check_write(dir, "signed.yaml", signed_text)); /* the signed bytes again */
	/* owned by another user: refused too (root may chown it away) */
	if (geteuid() == 0 && chown(sec, 4242, (gid_t)-1) == 0) {
		CHECK(policy_sign_file(file, sec, NULL, err, sizeof(err)) < 0);
		CHECK_CONTAINS(err, ": secret key file is owned by uid 4242, not by this user (uid 0) "
				    "or root; run: chown 0 '");
		CHECK(chown(sec, 0, (gid_t)-1) == 0);
	}
	CHECK(policy_sign_file(file, sec, NULL, err, sizeof(err)) == 0);
	CHECK(policy_verify_file(file, pk, err, sizeof(err)) == 0);
	CHECK(policy_read_pub(sec, pk, err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, "not a public key");
	free(file);
}

static void names_and_dates(void)
{
	int64_t t;
	char s[11];
	enum policy_gen g;

	CHECK(policy_parse_date("2024-02-29", &t) == 0);
	pol_date_str(t, s);
	CHECK_STR(s, "2024-02-29");
	CHECK(policy_parse_date("2025-02-29", &t) < 0);
	CHECK(policy_parse_date("2100-02-29", &t) < 0);
	CHECK(policy_parse_date("2000-02-29", &t) == 0);
	CHECK(policy_parse_date("2025-13-01", &t) < 0);
	CHECK(policy_parse_date("2025-1-01", &t) < 0);
	CHECK(policy_parse_date("1970-01-01", &t) == 0 && t == 0);
	CHECK(policy_parse_date("2025-01-01", &t) == 0 && t == 1735689600);
	pol_date_str(1735689600 + 86399, s);
	CHECK_STR(s, "2025-01-01");
	CHECK(pol_gen_allows(POLICY_GEN_EXACT, POLICY_GEN_POSTCODE4));
	CHECK(pol_gen_allows(POLICY_GEN_YEAR, POLICY_GEN_BIRTH_YEAR));
	CHECK(pol_gen_allows(POLICY_GEN_BIRTH_YEAR, POLICY_GEN_AGE_BAND_5));
	CHECK(!pol_gen_allows(POLICY_GEN_AGE_BAND_5, POLICY_GEN_BIRTH_YEAR));
	CHECK(!pol_gen_allows(POLICY_GEN_GEMEENTE, POLICY_GEN_POSTCODE4));
	CHECK(!pol_gen_allows(POLICY_GEN_GEMEENTE, POLICY_GEN_YEAR));
	CHECK(!pol_gen_allows(POLICY_GEN_MONTH, POLICY_GEN_EXACT));
	CHECK(pol_gen_allows(POLICY_GEN_MONTH, POLICY_GEN_NONE));
	CHECK(policy_gen_parse("none", &g) == 0 && g == POLICY_GEN_NONE);
	CHECK(policy_gen_parse("postcode6", &g) < 0);
}

/* Microseconds per call matter: every request is decided. */
static void decision_speed(void)
{
	struct diag d = { 0 };
	struct policy_set *s = load_grant("", &d);
	struct policy_field f[] = { { "o/ds", "f", POLICY_GEN_NONE }, { "o/ds", "birth_date", POLICY_GEN_NONE } };
	const char *ds[] = { "o/ds" };
	struct policy_request r = { "a", "p", POLICY_OP_AGGREGATE, ds, 1, f, 2, POLICY_IDENT_NEVER, MID };
	struct timespec t0, t1;
	int n = 20000, ok = 1;

	if (!s)
		return;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++) {
		policy_decide(s, &r, &dec);
		ok &= dec.permit;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / n / 1000;

	printf("# policy_decide: %.2f us per call (sanitizer build)\n", us);
	CHECK(ok);
	CHECK(us < 100);
	policy_set_free(s);
	diag_clear(&d);
}

int main(void)
{
	if (!mkdtemp(dir) || sodium_init() < 0)
		return 1;
	RUN(defaults);
	RUN(every_field);
	RUN(validity_days);
	RUN(min_cell_boundary);
	RUN(epsilon_boundary);
	RUN(strictest_wins);
	RUN(forbid_over_grant);
	RUN(each_deny_reason);
	RUN(nearest_grant);
	RUN(hash_and_files);
	RUN(bad_yaml_positions);
	RUN(catalog_and_members);
	RUN(removed_member_inert);
	RUN(check_warnings);
	RUN(diff_words);
	RUN(signatures);
	RUN(serials);
	RUN(names_and_dates);
	RUN(decision_speed);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", dir);
	}
	return check_total_failed ? 1 : 0;
}
