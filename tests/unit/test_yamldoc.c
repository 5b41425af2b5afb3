/* Unit tests for common/yamldoc.c and common/diag.c. */
#define CHECK_FILE "test_yamldoc"
#include "check.h"
#include "../../common/yamldoc.c"
#include "../../common/diag.c"

static void durations(void)
{
	uint64_t v;

	CHECK(ydoc_parse_duration_ms("10", &v) == 0 && v == 10000);
	CHECK(ydoc_parse_duration_ms("250ms", &v) == 0 && v == 250);
	CHECK(ydoc_parse_duration_ms("2m", &v) == 0 && v == 120000);
	CHECK(ydoc_parse_duration_ms("1h", &v) == 0 && v == 3600000);
	CHECK(ydoc_parse_duration_ms("0s", &v) == 0 && v == 0);
	CHECK(ydoc_parse_duration_ms("", &v) < 0);
	CHECK(ydoc_parse_duration_ms("-1s", &v) < 0);
	CHECK(ydoc_parse_duration_ms("10 s", &v) < 0);
	CHECK(ydoc_parse_duration_ms("1d", &v) < 0);
	CHECK(ydoc_parse_duration_ms("99999999999999999999s", &v) < 0);
	CHECK(ydoc_parse_duration_ms("18446744073709551615h", &v) < 0);
}

static void sizes(void)
{
	uint64_t v;

	CHECK(ydoc_parse_bytes("4096", &v) == 0 && v == 4096);
	CHECK(ydoc_parse_bytes("64KiB", &v) == 0 && v == 65536);
	CHECK(ydoc_parse_bytes("1MiB", &v) == 0 && v == 1048576);
	CHECK(ydoc_parse_bytes("1GiB", &v) == 0 && v == 1073741824ull);
	CHECK(ydoc_parse_bytes("1MB", &v) < 0);
	CHECK(ydoc_parse_bytes("0x10", &v) < 0);
	CHECK(ydoc_parse_bytes("18446744073709551615GiB", &v) < 0);
}

static void map_reports_unknown_and_duplicate_keys(void)
{
	static const char text[] = "a: 1\nzz: 2\na: 3\n";
	struct diag d = { 0 };
	struct ydoc y;
	struct ykey k[] = { { "a", 1, NULL }, { "b", 1, NULL } };

	CHECK(ydoc_load_mem(&y, "t.yaml", (const unsigned char *)text, sizeof(text) - 1, &d) == 0);
	CHECK(ydoc_map(&y, ydoc_root(&y), "config", k, 2) < 0);
	CHECK_CONTAINS(diag_text(&d), "t.yaml:2:1: error: config: unknown key 'zz'");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:3:1: error: config: key 'a' appears twice");
	CHECK_CONTAINS(diag_text(&d), "missing required key 'b'");
	CHECK(d.errors == 3);
	ydoc_fini(&y);
	diag_clear(&d);
}

static void typed_values(void)
{
	static const char text[] = "n: 12\nbig: 70000\nb: yes\nbad: maybe\nl: [1]\nnul: \"a\\0b\"\n";
	struct diag d = { 0 };
	struct ydoc y;
	struct ykey k[] = { { "n", 0, NULL }, { "big", 0, NULL }, { "b", 0, NULL },
			    { "bad", 0, NULL }, { "l", 0, NULL }, { "nul", 0, NULL } };
	uint64_t v;
	int b;

	CHECK(ydoc_load_mem(&y, "v.yaml", (const unsigned char *)text, sizeof(text) - 1, &d) == 0);
	CHECK(ydoc_map(&y, ydoc_root(&y), "v", k, 6) == 0);
	CHECK(ydoc_uint(&y, k[0].value, "n", 0, 100, &v) == 0 && v == 12);
	CHECK(ydoc_uint(&y, k[1].value, "big", 0, 65535, &v) < 0);
	CHECK_CONTAINS(diag_text(&d), "v.yaml:2:6: error: big: 70000 is out of range (0 to 65535)");
	CHECK(ydoc_bool(&y, k[2].value, "b", &b) == 0 && b == 1);
	CHECK(ydoc_bool(&y, k[3].value, "bad", &b) < 0);
	CHECK(ydoc_str(&y, k[4].value, "l") == NULL);
	CHECK_CONTAINS(diag_text(&d), "l: expected a single value, found a list");
	CHECK(ydoc_str(&y, k[5].value, "nul") == NULL);
	CHECK_CONTAINS(diag_text(&d), "nul: contains a NUL byte");
	ydoc_fini(&y);
	diag_clear(&d);
}

static void syntax_error_has_position(void)
{
	static const char text[] = "a: 1\nb: [1, 2\n";
	struct diag d = { 0 };
	struct ydoc y;

	CHECK(ydoc_load_mem(&y, "s.yaml", (const unsigned char *)text, sizeof(text) - 1, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "s.yaml:3:1: error: YAML syntax:");
	ydoc_fini(&y);
	diag_clear(&d);

	CHECK(ydoc_load_mem(&y, "e.yaml", (const unsigned char *)"", 0, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "e.yaml: error: the file is empty");
	ydoc_fini(&y);
	diag_clear(&d);
}

int main(void)
{
	RUN(durations);
	RUN(sizes);
	RUN(map_reports_unknown_and_duplicate_keys);
	RUN(typed_values);
	RUN(syntax_error_has_position);
	return check_total_failed ? 1 : 0;
}
