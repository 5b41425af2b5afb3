/* Unit tests for policies/domain.c: the declared domains a group-by field's
 * keys come from (docs/disclosure.md, "Declared domains"), their edges, and
 * the catalog keys that declare them. */
#define CHECK_FILE "test_domain"
#include "check.h"
#include "../../common/diag.c"
#include "../../common/yamldoc.c"

#include <sodium.h>

#include "../../policies/load.c"
#include "../../policies/catalog.c"
#include "../../policies/query.c"
#include "../../policies/domain.c"

static const char catalog_text[] =
	"datasets:\n"
	"  fonds/x:\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      amount: {type: int, role: attribute, bins: [0, 1000, 2500, 5000]}\n"
	"      year: {type: int, role: attribute, bins: [2023, 2024, 2025]}\n"
	"      plain: {type: int, role: attribute}\n"
	"      start: {type: date, role: attribute, range: [2015-02-10, 2016-01-31]}\n"
	"      birth: {type: date, role: quasi_identifier, range: [1950-01-01, 2005-12-31], ages: [22, 65]}\n"
	"      day: {type: date, role: attribute}\n"
	"      kind: {type: category, role: attribute, categories: [a, b]}\n"
	"      done: {type: bool, role: attribute}\n"
	"      postcode: {type: string, role: quasi_identifier}\n";

static struct policy_catalog *cat;

static const struct policy_catalog_field *field(const char *name)
{
	const struct policy_catalog_field *f;
	int n = policy_catalog_fields(cat, "fonds/x", &f);

	for (int i = 0; i < n; i++)
		if (strcmp(f[i].name, name) == 0)
			return &f[i];
	return NULL;
}

static long idx(const char *name, enum policy_gen g, const char *v)
{
	return policy_domain_index(field(name), g, v, strlen(v));
}

/* Every key of |name| under |g|, joined by spaces. */
static const char *keys(const char *name, enum policy_gen g)
{
	static char out[4096];
	char buf[POLICY_DOMAIN_KEY_LEN];
	size_t n = policy_domain_size(field(name), g);

	out[0] = 0;
	for (size_t i = 0; i < n; i++) {
		const char *k = policy_domain_key(field(name), g, i, buf);

		if (i)
			strcat(out, " ");
		strcat(out, k ? k : "(null)");
	}
	return out;
}

static void test_bins_edges(void)
{
	CHECK_STR(keys("amount", POLICY_GEN_EXACT), "[0,1000) [1000,2500) [2500,5000) other");
	/* An edge belongs to the bin above it. */
	CHECK(idx("amount", POLICY_GEN_EXACT, "0") == 0);
	CHECK(idx("amount", POLICY_GEN_EXACT, "999") == 0);
	CHECK(idx("amount", POLICY_GEN_EXACT, "1000") == 1);
	CHECK(idx("amount", POLICY_GEN_EXACT, "2499") == 1);
	CHECK(idx("amount", POLICY_GEN_EXACT, "2500") == 2);
	CHECK(idx("amount", POLICY_GEN_EXACT, "4999") == 2);
	/* Below the first edge and at or above the last: other. */
	CHECK(idx("amount", POLICY_GEN_EXACT, "-1") == 3);
	CHECK(idx("amount", POLICY_GEN_EXACT, "5000") == 3);
	CHECK(idx("amount", POLICY_GEN_EXACT, "5001") == 3);
	CHECK(idx("amount", POLICY_GEN_EXACT, "999999999999999999") == 3);
	/* Not an int: refused, never a key. */
	CHECK(idx("amount", POLICY_GEN_EXACT, "12a") == -1);
	CHECK(idx("amount", POLICY_GEN_EXACT, "") == -1);
	CHECK(idx("amount", POLICY_GEN_EXACT, "9999999999999999999999") == -1);
	/* A bin one wide reads as its value. */
	CHECK_STR(keys("year", POLICY_GEN_EXACT), "2023 2024 other");
	CHECK(idx("year", POLICY_GEN_EXACT, "2022") == 2);
	CHECK(idx("year", POLICY_GEN_EXACT, "2023") == 0);
	CHECK(idx("year", POLICY_GEN_EXACT, "2024") == 1);
	CHECK(idx("year", POLICY_GEN_EXACT, "2025") == 2);
	/* POLICY_GEN_NONE reads as exact. */
	CHECK(policy_domain_size(field("amount"), POLICY_GEN_NONE) == 4);
}

static void test_dates_at_range_edges(void)
{
	/* The range touches Feb 2015 .. Jan 2016: whole periods. */
	CHECK_STR(keys("start", POLICY_GEN_YEAR), "2015 2016 other");
	CHECK_STR(keys("start", POLICY_GEN_QUARTER), "2015-Q1 2015-Q2 2015-Q3 2015-Q4 2016-Q1 other");
	CHECK(policy_domain_size(field("start"), POLICY_GEN_MONTH) == 12 + 1);
	CHECK_STR(policy_domain_key(field("start"), POLICY_GEN_MONTH, 0, (char[POLICY_DOMAIN_KEY_LEN]){ 0 }),
		  "2015-02");
	CHECK_STR(policy_domain_key(field("start"), POLICY_GEN_MONTH, 11, (char[POLICY_DOMAIN_KEY_LEN]){ 0 }),
		  "2016-01");
	CHECK(idx("start", POLICY_GEN_MONTH, "2015-01") == 12);   /* the month before: other */
	CHECK(idx("start", POLICY_GEN_MONTH, "2015-02") == 0);    /* first */
	CHECK(idx("start", POLICY_GEN_MONTH, "2016-01") == 11);   /* last */
	CHECK(idx("start", POLICY_GEN_MONTH, "2016-02") == 12);   /* the month after: other */
	CHECK(idx("start", POLICY_GEN_QUARTER, "2014-Q4") == 5);
	CHECK(idx("start", POLICY_GEN_QUARTER, "2015-Q1") == 0);
	CHECK(idx("start", POLICY_GEN_QUARTER, "2016-Q1") == 4);
	CHECK(idx("start", POLICY_GEN_QUARTER, "2016-Q2") == 5);
	CHECK(idx("start", POLICY_GEN_YEAR, "2014") == 2);
	CHECK(idx("start", POLICY_GEN_YEAR, "2016") == 1);
	CHECK(idx("start", POLICY_GEN_YEAR, "2017") == 2);
	CHECK(idx("start", POLICY_GEN_QUARTER, "2015-Q5") == -1);
	CHECK(idx("start", POLICY_GEN_MONTH, "2015-13") == -1);
	CHECK(idx("start", POLICY_GEN_MONTH, "2015") == -1);
	/* Exact dates and age bands without ages: no domain. */
	CHECK(policy_domain_size(field("start"), POLICY_GEN_EXACT) == 0);
	CHECK(policy_domain_size(field("start"), POLICY_GEN_AGE_BAND_10) == 0);
	CHECK(policy_domain_size(field("day"), POLICY_GEN_YEAR) == 0);
}

static void test_age_bands(void)
{
	/* ages [22, 65): bands that fit wholly inside. */
	CHECK_STR(keys("birth", POLICY_GEN_AGE_BAND_10), "30-39 40-49 50-59 other");
	CHECK_STR(keys("birth", POLICY_GEN_AGE_BAND_20), "40-59 other");
	CHECK_STR(keys("birth", POLICY_GEN_AGE_BAND_5),
		  "25-29 30-34 35-39 40-44 45-49 50-54 55-59 60-64 other");
	CHECK(idx("birth", POLICY_GEN_AGE_BAND_10, "20-29") == 3);
	CHECK(idx("birth", POLICY_GEN_AGE_BAND_10, "30-39") == 0);
	CHECK(idx("birth", POLICY_GEN_AGE_BAND_10, "50-59") == 2);
	CHECK(idx("birth", POLICY_GEN_AGE_BAND_10, "60-69") == 3);
	CHECK(idx("birth", POLICY_GEN_AGE_BAND_5, "60-64") == 7);
	CHECK(idx("birth", POLICY_GEN_AGE_BAND_5, "65-69") == 8);
	CHECK(idx("birth", POLICY_GEN_AGE_BAND_10, "31-40") == -1);
	CHECK(idx("birth", POLICY_GEN_AGE_BAND_10, "30-34") == -1);
	CHECK(idx("birth", POLICY_GEN_BIRTH_YEAR, "1950") == 0);
	CHECK(idx("birth", POLICY_GEN_BIRTH_YEAR, "1949") == 56);
}

static void test_closed_lists_and_no_domain(void)
{
	CHECK_STR(keys("kind", POLICY_GEN_EXACT), "a b");
	CHECK(idx("kind", POLICY_GEN_EXACT, "c") == -1); /* a closed list has no other */
	CHECK_STR(keys("done", POLICY_GEN_EXACT), "false true");
	CHECK(idx("done", POLICY_GEN_EXACT, "yes") == -1);
	CHECK(policy_domain_size(field("plain"), POLICY_GEN_EXACT) == 0);
	CHECK(idx("plain", POLICY_GEN_EXACT, "12") == -1);
	CHECK(policy_domain_size(field("postcode"), POLICY_GEN_EXACT) == 0);
	CHECK(policy_domain_size(field("postcode"), POLICY_GEN_POSTCODE4) == 0);
	CHECK(!policy_domain_declared(field("postcode"), POLICY_GEN_POSTCODE4));
	CHECK(!policy_domain_declared(field("plain"), POLICY_GEN_EXACT));
	CHECK(!policy_domain_declared(field("day"), POLICY_GEN_EXACT));
	CHECK(policy_domain_declared(field("start"), POLICY_GEN_EXACT));   /* exact allows year */
	CHECK(policy_domain_declared(field("birth"), POLICY_GEN_AGE_BAND_10));
	CHECK(policy_domain_declared(field("amount"), POLICY_GEN_EXACT));
}

static int load_err(const char *text, const char *want)
{
	struct diag d = { 0 };
	struct policy_catalog *c = NULL;
	int rc;

	rc = policy_catalog_load_mem("bad.yaml", (const unsigned char *)text, strlen(text), &c, &d);
	policy_catalog_free(c);
	if (rc == 0 || !strstr(diag_text(&d), want)) {
		printf("#   got: %s\n", diag_text(&d));
		diag_clear(&d);
		return 0;
	}
	diag_clear(&d);
	return 1;
}

static void test_catalog_refuses_bad_domains(void)
{
#define HEAD "datasets:\n  a/b:\n    fields:\n      bsn: {type: bsn, role: identifier}\n"
	CHECK(load_err(HEAD "      x: {type: int, role: attribute, bins: [5, 5]}\n", "bad.yaml:5:"));
	CHECK(load_err(HEAD "      x: {type: int, role: attribute, bins: [5, 5]}\n", "must increase"));
	CHECK(load_err(HEAD "      x: {type: int, role: attribute, bins: [5]}\n", "at least two edges"));
	CHECK(load_err(HEAD "      x: {type: int, role: attribute, bins: [1, x]}\n", "not a whole number"));
	CHECK(load_err(HEAD "      x: {type: date, role: attribute, bins: [1, 2]}\n", "only int fields have bins"));
	CHECK(load_err(HEAD "      x: {type: int, role: attribute, range: [2015-01-01, 2016-01-01]}\n",
		       "only date fields have a range"));
	CHECK(load_err(HEAD "      x: {type: date, role: attribute, range: [2016-01-01, 2015-01-01]}\n",
		       "end is before the start"));
	CHECK(load_err(HEAD "      x: {type: date, role: attribute, range: [2015-02-30, 2016-01-01]}\n",
		       "not a date"));
	CHECK(load_err(HEAD "      x: {type: date, role: attribute, ages: [60, 20]}\n", "above the start"));
	CHECK(load_err(HEAD "      x: {type: string, role: attribute, ages: [20, 60]}\n", "only date fields"));
#undef HEAD
}

int main(void)
{
	struct diag d = { 0 };

	if (policy_catalog_load_mem("cat.yaml", (const unsigned char *)catalog_text, sizeof(catalog_text) - 1,
				    &cat, &d) < 0) {
		printf("Bail out! %s\n", diag_text(&d));
		return 1;
	}
	diag_clear(&d);
	RUN(test_bins_edges);
	RUN(test_dates_at_range_edges);
	RUN(test_age_bands);
	RUN(test_closed_lists_and_no_domain);
	RUN(test_catalog_refuses_bad_domains);
	policy_catalog_free(cat);
	return check_failures != 0;
}
