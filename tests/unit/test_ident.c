/* Unit tests for gateway/ident.c: the identifier check, the audit marker,
 * and whether a purpose is declared. */
#define CHECK_FILE "test_ident"
#include "check.h"
#include "../../gateway/ident.c"

#include <sodium.h>

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static void length_boundaries(void)
{
	char *s127 = repeat('a', 127), *s128 = repeat('a', 128), *s129 = repeat('a', 129);
	char *big = repeat('a', 900 * 1024);

	CHECK(gw_ident_ok("a", GW_IDENT_MAX, GW_IDENT_NAME) == 1);
	CHECK(gw_ident_ok(s127, GW_IDENT_MAX, GW_IDENT_NAME) == 1);
	CHECK(gw_ident_ok(s128, GW_IDENT_MAX, GW_IDENT_NAME) == 1);
	CHECK(gw_ident_ok(s129, GW_IDENT_MAX, GW_IDENT_NAME) == 0);
	CHECK(gw_ident_ok(big, GW_IDENT_MAX, GW_IDENT_NAME) == 0);
	CHECK(gw_ident_ok("", GW_IDENT_MAX, GW_IDENT_NAME) == 0);
	CHECK(gw_ident_ok(NULL, GW_IDENT_MAX, GW_IDENT_NAME) == 0);
	/* the hub's references may be longer, to their own bound */
	CHECK(gw_ident_ok(s129, GW_IDENT_REF_MAX, GW_IDENT_REF) == 1);
	free(s127);
	free(s128);
	free(s129);
	free(big);
}

static void allowed_characters(void)
{
	char one[2] = { 0, 0 };
	int c;

	CHECK(gw_ident_ok("test-scholingscheck", GW_IDENT_MAX, GW_IDENT_NAME));
	CHECK(gw_ident_ok("start_year", GW_IDENT_MAX, GW_IDENT_NAME));
	CHECK(gw_ident_ok("age_band_10", GW_IDENT_MAX, GW_IDENT_NAME));
	CHECK(gw_ident_ok("a.b", GW_IDENT_MAX, GW_IDENT_NAME));
	CHECK(gw_ident_ok("uwv/ww-uitkeringen", GW_IDENT_MAX, GW_IDENT_DATASET));
	CHECK(!gw_ident_ok("uwv/ww-uitkeringen", GW_IDENT_MAX, GW_IDENT_NAME));
	CHECK(gw_ident_ok("uwv/ww.end_date:month", GW_IDENT_REF_MAX, GW_IDENT_REF));
	CHECK(!gw_ident_ok("uwv/ww.end_date:month", GW_IDENT_MAX, GW_IDENT_DATASET));
	/* every byte: exactly a-z 0-9 _ - (and the kind's extra) pass */
	for (c = 1; c < 256; c++) {
		int want = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';

		one[0] = (char)c;
		if (gw_ident_ok(one, GW_IDENT_MAX, GW_IDENT_NAME) != want) {
			printf("#   byte 0x%02x: %d\n", c, !want);
			CHECK(0);
		}
	}
	CHECK(!gw_ident_ok("Purpose", GW_IDENT_MAX, GW_IDENT_NAME));
	CHECK(!gw_ident_ok("a b", GW_IDENT_MAX, GW_IDENT_NAME));
	CHECK(!gw_ident_ok("a\"b", GW_IDENT_MAX, GW_IDENT_NAME));
	CHECK(!gw_ident_ok("a\nb", GW_IDENT_MAX, GW_IDENT_NAME));
	CHECK(!gw_ident_ok("caf\xc3\xa9", GW_IDENT_MAX, GW_IDENT_NAME));
	/* digits are allowed: a BSN is well-formed, which is why what is
	 * not declared is never written as sent (below) */
	CHECK(gw_ident_ok("320836125", GW_IDENT_MAX, GW_IDENT_NAME));
}

static int is_mark(const char *m, const char *prefix)
{
	size_t n = strlen(prefix);

	if (strlen(m) != n + 8 || strncmp(m, prefix, n) != 0)
		return 0;
	for (size_t i = n; i < n + 8; i++)
		if (!strchr("0123456789abcdef", m[i]))
			return 0;
	return 1;
}

static void audit_marks(void)
{
	char b1[GW_IDENT_MARK_SIZE], b2[GW_IDENT_MARK_SIZE], b3[GW_IDENT_MARK_SIZE];
	char *big = repeat('x', 900 * 1024);
	const char *m;

	/* declared and well-formed: as sent */
	CHECK_STR(gw_ident_audit("test-scholingscheck", GW_IDENT_MAX, GW_IDENT_NAME, 1, b1),
		  "test-scholingscheck");
	/* well-formed, not declared: a marker, never the bytes */
	m = gw_ident_audit("320836125", GW_IDENT_MAX, GW_IDENT_NAME, 0, b1);
	CHECK(is_mark(m, "unknown:"));
	CHECK(strstr(m, "320836125") == NULL);
	/* not well-formed: "invalid:", whatever the caller says of it */
	m = gw_ident_audit("a\"b", GW_IDENT_MAX, GW_IDENT_NAME, 1, b2);
	CHECK(is_mark(m, "invalid:"));
	m = gw_ident_audit(big, GW_IDENT_MAX, GW_IDENT_NAME, 1, b2);
	CHECK(is_mark(m, "invalid:"));
	CHECK(strlen(m) == 16);
	CHECK(is_mark(gw_ident_audit(NULL, GW_IDENT_MAX, GW_IDENT_NAME, 1, b2), "invalid:"));
	CHECK(is_mark(gw_ident_audit("", GW_IDENT_MAX, GW_IDENT_NAME, 1, b2), "invalid:"));
	/* the same bytes, the same marker within a process; others differ */
	CHECK_STR(gw_ident_audit("320836125", GW_IDENT_MAX, GW_IDENT_NAME, 0, b2), b1);
	gw_ident_audit("320836126", GW_IDENT_MAX, GW_IDENT_NAME, 0, b3);
	CHECK(strcmp(b3, b1) != 0);
	/* keyed: not the unkeyed BLAKE2b of the bytes */
	{
		unsigned char h[crypto_generichash_BYTES_MIN];
		char hex[9];

		crypto_generichash(h, sizeof(h), (const unsigned char *)"320836125", 9, NULL, 0);
		snprintf(hex, sizeof(hex), "%02x%02x%02x%02x", h[0], h[1], h[2], h[3]);
		CHECK(strcmp(b1 + 8, hex) != 0);
	}
	free(big);
}

static const char policy_text[] =
	"purposes:\n"
	"  - id: declared\n"
	"    description: test\n"
	"    legal_basis: {text: test}\n"
	"    valid: {from: 2020-01-01, until: 2021-12-31}\n"
	"    grants:\n"
	"      - id: g\n"
	"        requesters: [somebody]\n"
	"        operations: [lookup]\n"
	"        datasets:\n"
	"          a/b:\n"
	"            f: exact\n";

static void purpose_declared(void)
{
	struct policy_set *s = NULL;
	struct policy_refs refs = { 0 };
	struct diag d = { 0 };

	CHECK(policy_set_load_mem("p.yaml", (const unsigned char *)policy_text, strlen(policy_text), &refs, &s,
				  &d) == 0);
	if (!s) {
		printf("#   %s", diag_text(&d));
		diag_clear(&d);
		return;
	}
	diag_clear(&d);
	/* declared, even though expired and not granted to anyone asking */
	CHECK(gw_ident_purpose_declared(s, "declared") == 1);
	CHECK(gw_ident_purpose_declared(s, "320836125") == 0);
	CHECK(gw_ident_purpose_declared(s, "declare") == 0);
	CHECK(gw_ident_purpose_declared(s, "") == 0);
	CHECK(gw_ident_purpose_declared(s, NULL) == 0);
	CHECK(gw_ident_purpose_declared(NULL, "declared") == 0);
	policy_set_free(s);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	RUN(length_boundaries);
	RUN(allowed_characters);
	RUN(audit_marks);
	RUN(purpose_declared);
	return check_total_failed ? 1 : 0;
}
