/* Unit tests for common/yamldoc.c and common/diag.c. */
#define CHECK_FILE "test_yamldoc"
#include "check.h"
#include "../../common/yamldoc.c"
#include "../../common/diag.c"

#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

#define DIST(a, b) ydoc_edit_distance((a), strlen(a), (b), strlen(b))

static void edit_distance_counts_swaps_as_one(void)
{
	CHECK(DIST("min_cell", "min_cell") == 0);
	CHECK(DIST("min_cel", "min_cell") == 1);
	CHECK(DIST("mni_cell", "min_cell") == 1);  /* one swap, not two substitutions */
	CHECK(DIST("imn_clel", "min_cell") == 2);
	CHECK(DIST("legal_base", "legal_basis") == 2);
	CHECK(DIST("", "abc") == 3);
	CHECK(DIST("abc", "") == 3);
	/* past the length cap nothing is compared */
	char big[YDOC_SUGGEST_MAX_LEN + 2];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK(DIST(big, "a") == SIZE_MAX);
	big[YDOC_SUGGEST_MAX_LEN] = '\0';
	CHECK(DIST(big, big) == 0);
}

#define SUGGEST(w) ydoc_suggest((w), strlen(w), keys, sizeof(keys) / sizeof(keys[0]))

static void suggestion_both_sides_of_the_limit(void)
{
	const struct ykey keys[] = { { "as", 0, NULL }, { "from", 0, NULL },
				     { "min_cell", 0, NULL }, { "legal_basis", 0, NULL } };
	const char *s;

	/* a long key: distance 2 suggests, 3 does not */
	CHECK((s = SUGGEST("min_cel")) && strcmp(s, "min_cell") == 0);
	CHECK((s = SUGGEST("mn_cel")) && strcmp(s, "min_cell") == 0);
	CHECK((s = SUGGEST("imn_clel")) && strcmp(s, "min_cell") == 0);
	CHECK(SUGGEST("mn_ce") == NULL);
	CHECK((s = SUGGEST("legal_base")) && strcmp(s, "legal_basis") == 0);
	CHECK(SUGGEST("legal_bas_xyz") == NULL);
	/* a short key (<= YDOC_SUGGEST_SHORT characters): 1 suggests, 2 does not */
	CHECK((s = SUGGEST("frmo")) && strcmp(s, "from") == 0);
	CHECK((s = SUGGEST("fro")) && strcmp(s, "from") == 0);
	CHECK(SUGGEST("fr") == NULL);
	CHECK(SUGGEST("frxx") == NULL);
	CHECK((s = SUGGEST("ax")) && strcmp(s, "as") == 0);
	CHECK(SUGGEST("xy") == NULL);
	CHECK(SUGGEST("colour") == NULL);
}

static void map_suggests_the_nearest_key(void)
{
	static const char text[] = "min_cel: 1\nzz: 2\nlegal_bsais: x\n";
	struct diag d = { 0 };
	struct ydoc y;
	struct ykey k[] = { { "min_cell", 0, NULL }, { "a", 0, NULL }, { "legal_basis", 0, NULL } };

	CHECK(ydoc_load_mem(&y, "t.yaml", (const unsigned char *)text, sizeof(text) - 1, &d) == 0);
	CHECK(ydoc_map(&y, ydoc_root(&y), "grant", k, 3) < 0);
	CHECK_CONTAINS(diag_text(&d), "t.yaml:1:1: error: grant: unknown key 'min_cel'; did you mean 'min_cell'?\n");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:2:1: error: grant: unknown key 'zz'\n");
	CHECK_CONTAINS(diag_text(&d), "t.yaml:3:1: error: grant: unknown key 'legal_bsais'; did you mean 'legal_basis'?\n");
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

/* Loads |text|; returns what ydoc_load_mem() did, the diagnostics in |d|. */
static int load_text(const char *text, size_t len, struct diag *d)
{
	struct ydoc y;
	int rc = ydoc_load_mem(&y, "a.yaml", (const unsigned char *)text, len, d);

	ydoc_fini(&y);
	return rc;
}

static void aliases_and_anchors_are_refused_with_position(void)
{
	static const char alias_only[] = "a: 1\nb: [x, *nowhere]\n";
	static const char anchor_only[] = "a: &one 1\nb: 2\n";
	static const char both[] = "base: &b {x: 1}\nuse: *b\n";
	struct diag d = { 0 };

	/* an alias is refused while the events are read: even one whose
	 * anchor does not exist (yaml_parser_load would fail differently) */
	CHECK(load_text(alias_only, sizeof(alias_only) - 1, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "a.yaml:2:8: error: YAML aliases are not allowed");
	CHECK(d.errors == 1);
	diag_clear(&d);
	/* an anchor alone is refused too: nothing may be shared */
	CHECK(load_text(anchor_only, sizeof(anchor_only) - 1, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "a.yaml:1:4: error: YAML anchors are not allowed");
	diag_clear(&d);
	CHECK(load_text(both, sizeof(both) - 1, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "a.yaml:1:7: error: YAML anchors are not allowed");
	CHECK_CONTAINS(diag_text(&d), "a.yaml:2:6: error: YAML aliases are not allowed");
	CHECK(d.errors == 2);
	diag_clear(&d);
	/* after an anchored collection is refused, its end does not unbalance
	 * the reading: a later, deeper alias is still reported */
	CHECK(load_text("a: &x [1]\nb:\n  c: {d: *x}\n", 26, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "a.yaml:1:4: error: YAML anchors are not allowed");
	CHECK_CONTAINS(diag_text(&d), "a.yaml:3:10: error: YAML aliases are not allowed");
	CHECK(d.errors == 2);
	diag_clear(&d);
	/* '&' and '*' inside quoted or plain values are just text */
	CHECK(load_text("a: 'x &y *z'\nb: a&b\n", 20, &d) == 0);
	CHECK_STR(diag_text(&d), "");
	diag_clear(&d);
}

static void alias_bomb_is_refused_quickly(void)
{
	/* billion laughs: 10 levels of 10 aliases each would be 10^10 visits */
	char *text = malloc(8192);
	size_t n = 0;
	struct diag d = { 0 };
	clock_t t0 = clock();

	n += (size_t)snprintf(text + n, 8192 - n, "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
	for (int i = 1; i < 10; i++) {
		n += (size_t)snprintf(text + n, 8192 - n, "l%d: &l%d [", i, i);
		for (int j = 0; j < 10; j++)
			n += (size_t)snprintf(text + n, 8192 - n, "%s*l%d", j ? ", " : "", i - 1);
		n += (size_t)snprintf(text + n, 8192 - n, "]\n");
	}
	CHECK(load_text(text, n, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "a.yaml:1:5: error: YAML anchors are not allowed");
	CHECK_CONTAINS(diag_text(&d), "a.yaml:2:10: error: YAML aliases are not allowed");
	/* reading stops after YDOC_MAX_ERRORS refusals */
	CHECK(d.errors == YDOC_MAX_ERRORS);
	CHECK((double)(clock() - t0) / CLOCKS_PER_SEC < 1.0);
	diag_clear(&d);
	free(text);
}

/* A flow list of |items| scalars nested in |depth| lists: items + depth values. */
static char *nested(int depth, int items, size_t *len)
{
	size_t cap = (size_t)depth * 2 + (size_t)items * 3 + 16, n = 0;
	char *t = malloc(cap);

	for (int i = 0; i < depth; i++)
		t[n++] = '[';
	for (int i = 0; i < items; i++) {
		if (i)
			t[n++] = ',';
		t[n++] = '1';
	}
	for (int i = 0; i < depth; i++)
		t[n++] = ']';
	t[n++] = '\n';
	*len = n;
	return t;
}

static void node_cap_both_sides(void)
{
	struct diag d = { 0 };
	size_t len;
	char *t;

	/* one list holding N scalars is N + 1 values */
	t = nested(1, YDOC_MAX_NODES - 2, &len);
	CHECK(load_text(t, len, &d) == 0);
	free(t);
	t = nested(1, YDOC_MAX_NODES - 1, &len);
	CHECK(load_text(t, len, &d) == 0);
	free(t);
	CHECK_STR(diag_text(&d), "");
	t = nested(1, YDOC_MAX_NODES, &len);
	CHECK(load_text(t, len, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "a.yaml:1:");
	CHECK_CONTAINS(diag_text(&d), ": error: more than 20000 values in one file");
	CHECK(d.errors == 1);
	free(t);
	diag_clear(&d);
}

static void depth_cap_both_sides(void)
{
	struct diag d = { 0 };
	size_t len;
	char *t;

	t = nested(YDOC_MAX_DEPTH - 1, 1, &len);
	CHECK(load_text(t, len, &d) == 0);
	free(t);
	t = nested(YDOC_MAX_DEPTH, 1, &len);
	CHECK(load_text(t, len, &d) == 0);
	free(t);
	CHECK_STR(diag_text(&d), "");
	t = nested(YDOC_MAX_DEPTH + 1, 1, &len);
	CHECK(load_text(t, len, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "a.yaml:1:65: error: nested more than 64 levels deep");
	free(t);
	diag_clear(&d);
}

static void built_document_matches_the_text(void)
{
	static const char text[] = "# c\nm:\n  k: v\n  l: [a, 'b c', \"d\\0e\"]\ns: |\n  two\n  lines\n";
	struct diag d = { 0 };
	struct ydoc y;
	struct ykey k[] = { { "m", 1, NULL }, { "s", 1, NULL } };
	struct ykey mk[] = { { "k", 1, NULL }, { "l", 1, NULL } };
	yaml_node_t *l;

	CHECK(ydoc_load_mem(&y, "b.yaml", (const unsigned char *)text, sizeof(text) - 1, &d) == 0);
	CHECK(ydoc_map(&y, ydoc_root(&y), "b", k, 2) == 0);
	CHECK(ydoc_map(&y, k[0].value, "m", mk, 2) == 0);
	CHECK_STR(ydoc_str(&y, mk[0].value, "k"), "v");
	CHECK(mk[0].value && mk[0].value->start_mark.line == 2 && mk[0].value->start_mark.column == 5);
	l = mk[1].value;
	CHECK(l && l->type == YAML_SEQUENCE_NODE &&
	      l->data.sequence.items.top - l->data.sequence.items.start == 3);
	if (l && l->type == YAML_SEQUENCE_NODE) {
		CHECK_STR(ydoc_str(&y, ydoc_item(&y, l->data.sequence.items.start[1]), "l"), "b c");
		CHECK(ydoc_str(&y, ydoc_item(&y, l->data.sequence.items.start[2]), "l") == NULL);
		CHECK_CONTAINS(diag_text(&d), "b.yaml:4:17: error: l: contains a NUL byte");
	}
	CHECK_STR(ydoc_str(&y, k[1].value, "s"), "two\nlines\n");
	ydoc_fini(&y);
	diag_clear(&d);
	/* only the first document is read, as before */
	CHECK(load_text("a: 1\n---\nb: *x\n", 15, &d) == 0);
	diag_clear(&d);
}

static void diagnostics_are_capped(void)
{
	struct diag d = { 0 };

	for (int i = 0; i < 1000; i++)
		diag_error(&d, "f.yaml", (unsigned)i + 1, 1, "problem %d", i);
	CHECK(d.errors == 1000);
	CHECK(d.lines == DIAG_MAX_LINES + 1);
	CHECK_CONTAINS(diag_text(&d), "f.yaml:100:1: error: problem 99\n");
	CHECK_CONTAINS(diag_text(&d), "error: too many problems; stopped reporting after 100\n");
	CHECK(strstr(diag_text(&d), "problem 100") == NULL);
	diag_clear(&d);
}

static void non_regular_files_are_refused_without_blocking(void)
{
	char dir[] = "/tmp/test_yamldoc.XXXXXX", fifo[64], big[64];
	struct diag d = { 0 };
	struct ydoc y;
	FILE *f;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(fifo, sizeof(fifo), "%s/fifo.yaml", dir);
	snprintf(big, sizeof(big), "%s/big.yaml", dir);
	CHECK(mkfifo(fifo, 0600) == 0);
	/* no writer: a blocking open would never return */
	CHECK(ydoc_load_file(&y, fifo, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "fifo.yaml: error: not a regular file");
	ydoc_fini(&y);
	CHECK(ydoc_load_file(&y, dir, &d) < 0);
	ydoc_fini(&y);
	diag_clear(&d);
	/* the size cap, both sides: a comment of exactly the cap loads as empty */
	f = fopen(big, "wb");
	if (f) {
		fputc('#', f);
		for (unsigned i = 1; i < YDOC_MAX_FILE_BYTES - 5; i++)
			fputc('x', f);
		fputs("\na: 1", f); /* YDOC_MAX_FILE_BYTES bytes in all */
		fclose(f);
	}
	CHECK(ydoc_load_file(&y, big, &d) == 0);
	CHECK_STR(diag_text(&d), "");
	ydoc_fini(&y);
	f = fopen(big, "ab");
	if (f) {
		fputc('\n', f);
		fclose(f);
	}
	CHECK(ydoc_load_file(&y, big, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "big.yaml: error: larger than 4 MiB");
	ydoc_fini(&y);
	diag_clear(&d);
	unlink(fifo);
	unlink(big);
	rmdir(dir);
}

int main(void)
{
	RUN(durations);
	RUN(sizes);
	RUN(map_reports_unknown_and_duplicate_keys);
	RUN(edit_distance_counts_swaps_as_one);
	RUN(suggestion_both_sides_of_the_limit);
	RUN(map_suggests_the_nearest_key);
	RUN(typed_values);
	RUN(syntax_error_has_position);
	RUN(aliases_and_anchors_are_refused_with_position);
	RUN(alias_bomb_is_refused_quickly);
	RUN(node_cap_both_sides);
	RUN(depth_cap_both_sides);
	RUN(built_document_matches_the_text);
	RUN(diagnostics_are_capped);
	RUN(non_regular_files_are_refused_without_blocking);
	return check_total_failed ? 1 : 0;
}
