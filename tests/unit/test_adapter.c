/*
 * Unit tests for adapters/: RFC 4180 edge cases, strict typing and bad rows
 * (skip and fail), projection and filters, the same rows from CSV and
 * SQLite, SQLite query validation and injection attempts, the CSV adapter's
 * in-memory copy of a clean file (the same answers as the file, dropped when
 * the file changes), a file renamed over or removed under the CSV adapter,
 * every allocation failing in turn, and memory that does not grow with a
 * 50 MB file.
 */
#define CHECK_FILE "test_adapter"
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "../../common/diag.c"
#include "../../crypto/pseudo.c"

/*
 * Allocation hook for the code under test: counts live blocks and can make
 * the Nth allocation fail (as test_pseudo.c does for sodium_malloc).
 */
static long alloc_fail_at = -1;
static long alloc_count;
static long alloc_live;

static int alloc_fails(void)
{
	long i = alloc_count++;

	return alloc_fail_at >= 0 && i == alloc_fail_at;
}
static void *hook_malloc(size_t n)
{
	void *p = alloc_fails() ? NULL : malloc(n);
	if (p)
		alloc_live++;
	return p;
}
static void *hook_calloc(size_t n, size_t s)
{
	void *p = alloc_fails() ? NULL : calloc(n, s);
	if (p)
		alloc_live++;
	return p;
}
static void *hook_realloc(void *old, size_t n)
{
	void *p = alloc_fails() ? NULL : realloc(old, n);
	if (p && !old)
		alloc_live++;
	return p;
}
static char *hook_strdup(const char *s)
{
	char *p = alloc_fails() ? NULL : strdup(s);
	if (p)
		alloc_live++;
	return p;
}
/* When set, every block the adapter frees is searched for this BSN as the
 * uint32_t a typed value holds (a row's personal data must be wiped first),
 * and for |free_watch_text| as the digits a raw row holds. */
static uint32_t free_watch_bsn;
static const char *free_watch_text;
static long free_watch_hits;
static void hook_free(void *p)
{
	if (p)
		alloc_live--;
	if (p && free_watch_text && memmem(p, malloc_usable_size(p), free_watch_text, strlen(free_watch_text)))
		free_watch_hits++;
	if (p && free_watch_bsn) {
		size_t n = malloc_usable_size(p);

		for (size_t i = 0; i + sizeof(uint32_t) <= n; i++)
			if (memcmp((char *)p + i, &free_watch_bsn, sizeof(uint32_t)) == 0) {
				free_watch_hits++;
				break;
			}
	}
	free(p);
}
#define malloc(n) hook_malloc(n)
#define calloc(n, s) hook_calloc(n, s)
#define realloc(p, n) hook_realloc(p, n)
#define strdup(s) hook_strdup(s)
#define free(p) hook_free(p)
#include "../../adapters/adapter.c"
/* and the CSV adapter's stat() of its path can be refused, as for a node
 * that dropped its privileges (root, which runs the tests, never is) */
static int stat_denied;
static int hook_stat(const char *path, struct stat *sb)
{
	if (stat_denied) {
		errno = EACCES;
		return -1;
	}
	return stat(path, sb);
}
#define stat(p, s) hook_stat(p, s)
/* csv.c's wipes, counted (sodium.h is already in: pseudo.c, adapter.c) */
static size_t wiped_bytes;
static void hook_memzero(void *p, size_t n)
{
	wiped_bytes += n;
	sodium_memzero(p, n);
}
#define sodium_memzero(p, n) hook_memzero(p, n)
#include "../../adapters/csv.c"
#undef sodium_memzero
#undef stat
#include "../../adapters/sqlite.c"
#undef malloc
#undef calloc
#undef realloc
#undef strdup
#undef free

#define DATA "tests/unit/data/csv/"

static char dir[] = "/tmp/np-adapter-XXXXXX";

static const char *const programmes[] = { "noorden-leert-door-1", "noorden-leert-door-2", "kansrijk-verzilveren" };
static const char *const sectors[] = { "techniek", "zorg", "ict", "bouw", "energie" };

/* the opleidingsfonds inschrijvingen dataset of the example catalog, plus notes */
static const struct adapter_field enrol_fields[] = {
	{ "bsn", ADAPTER_BSN, 0, NULL, 0 },
	{ "programme", ADAPTER_CATEGORY, 0, programmes, 3 },
	{ "sector", ADAPTER_CATEGORY, 0, sectors, 5 },
	{ "start_year", ADAPTER_INT, 1, NULL, 0 },
	{ "completed", ADAPTER_BOOL, 1, NULL, 0 },
	{ "birth_date", ADAPTER_DATE, 1, NULL, 0 },
	{ "notes", ADAPTER_STRING, 1, NULL, 0 },
};
static const struct adapter_schema enrol = { enrol_fields, 7 };
enum { F_BSN, F_PROGRAMME, F_SECTOR, F_START_YEAR, F_COMPLETED, F_BIRTH_DATE, F_NOTES };

/* The rows of valid.csv, serialised as the sink below does. */
static const char valid_rows[] =
	"441205069|noorden-leert-door-1|techniek|2021|1|1980-05-17|Frysl\xc3\xa2n\n"
	"869479167|noorden-leert-door-2|zorg|2022|0|1975-12-01|with \"quotes\" and, comma\n"
	"073186545|kansrijk-verzilveren|ict|~|1|2000-02-29|two\\nlines\n"
	"586255771|noorden-leert-door-1|bouw|-5|0|~|\n"
	"289445760|kansrijk-verzilveren|energie|0|1|1999-01-01|~\n"
	"441205069|kansrijk-verzilveren|zorg|2023|0|1980-05-17|second row, same person\n";

/* ---- a sink that writes rows as text ------------------------------------ */

struct sink {
	const struct adapter_schema *schema;
	const unsigned *proj;
	char buf[16384];
	size_t len;
	size_t rows;
	size_t stop_after;   /* return 1 after this many rows; 0: never */
	size_t abort_after;  /* return -42 after this many rows; 0: never */
};

static void sink_add(struct sink *s, const char *p, size_t n)
{
	if (s->len + n + 1 < sizeof(s->buf)) {
		memcpy(s->buf + s->len, p, n);
		s->len += n;
		s->buf[s->len] = '\0';
	}
}

static int collect(void *arg, const struct adapter_value *v, size_t n)
{
	struct sink *s = arg;
	char tmp[64];

	for (size_t i = 0; i < n; i++) {
		const struct adapter_field *f = &s->schema->fields[s->proj ? s->proj[i] : i];

		if (i)
			sink_add(s, "|", 1);
		CHECK(v[i].type == f->type);
		if (v[i].null) {
			sink_add(s, "~", 1);
			continue;
		}
		switch (v[i].type) {
		case ADAPTER_BSN:
			bsn_format(v[i].bsn, tmp);
			sink_add(s, tmp, 9);
			break;
		case ADAPTER_CATEGORY:
			sink_add(s, f->categories[v[i].category], strlen(f->categories[v[i].category]));
			break;
		case ADAPTER_INT:
			snprintf(tmp, sizeof(tmp), "%lld", (long long)v[i].i);
			sink_add(s, tmp, strlen(tmp));
			break;
		case ADAPTER_DATE:
			adapter_date_format(v[i].date, tmp);
			sink_add(s, tmp, 10);
			break;
		case ADAPTER_BOOL:
			sink_add(s, v[i].b ? "1" : "0", 1);
			break;
		case ADAPTER_STRING:
			CHECK(v[i].str.ptr[v[i].str.len] == '\0');
			for (size_t k = 0; k < v[i].str.len; k++) {
				char c = v[i].str.ptr[k];
				if (c == '\n')
					sink_add(s, "\\n", 2);
				else if (c == '\r')
					sink_add(s, "\\r", 2);
				else
					sink_add(s, &c, 1);
			}
			break;
		}
	}
	sink_add(s, "\n", 1);
	s->rows++;
	if (s->abort_after && s->rows == s->abort_after)
		return -42;
	if (s->stop_after && s->rows == s->stop_after)
		return 1;
	return 0;
}

static void sink_init(struct sink *s, const struct adapter_schema *schema, const unsigned *proj)
{
	memset(s, 0, sizeof(*s));
	s->schema = schema;
	s->proj = proj;
}

static int cmp_line(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/* The sink's lines sorted (SQLite promises no order without ORDER BY). */
static void sink_sorted(const struct sink *s, char *out, size_t outlen)
{
	char copy[16384], *lines[256];
	size_t n = 0, o = 0;

	memcpy(copy, s->buf, s->len + 1);
	for (char *p = strtok(copy, "\n"); p && n < 256; p = strtok(NULL, "\n"))
		lines[n++] = p;
	qsort(lines, n, sizeof(lines[0]), cmp_line);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		o += (size_t)snprintf(out + o, outlen - o, "%s\n", lines[i]);
}

static struct adapter *open_csv(const char *path, enum adapter_on_bad_row mode, const struct adapter_schema *schema)
{
	struct adapter_source src = { .kind = ADAPTER_CSV, .path = path, .on_bad_row = mode };
	struct adapter *a = NULL;
	char err[512];
	int rc = adapter_open(&src, schema, &a, err, sizeof(err));

	if (rc != 0)
		printf("#   open %s: %s\n", path, err);
	CHECK(rc == 0);
	return a;
}

static int scan_all(struct adapter *a, struct sink *s, struct adapter_stats *st, struct diag *d)
{
	return adapter_scan(a, NULL, 0, NULL, 0, collect, s, st, d);
}

/* ---- typing ------------------------------------------------------------- */

static void value_parsing(void)
{
	struct adapter_field fi = { "n", ADAPTER_INT, 0, NULL, 0 }, fd = { "d", ADAPTER_DATE, 1, NULL, 0 };
	struct adapter_field fb = { "b", ADAPTER_BOOL, 0, NULL, 0 }, fs = { "s", ADAPTER_STRING, 1, NULL, 0 };
	struct adapter_field fc = { "sector", ADAPTER_CATEGORY, 0, sectors, 5 }, fn = { "bsn", ADAPTER_BSN, 0, NULL, 0 };
	struct adapter_value v;
	char why[512], out[11];
	int32_t days;

	CHECK(adapter_value_parse(&fi, "-9223372036854775808", 20, &v, why, sizeof(why)) == 0 && v.i == INT64_MIN);
	CHECK(adapter_value_parse(&fi, "9223372036854775807", 19, &v, why, sizeof(why)) == 0 && v.i == INT64_MAX);
	CHECK(adapter_value_parse(&fi, "9223372036854775808", 19, &v, why, sizeof(why)) < 0);
	CHECK_STR(why, "'9223372036854775808' is out of range for a whole number");
	CHECK(adapter_value_parse(&fi, "-9223372036854775809", 20, &v, why, sizeof(why)) < 0);
	CHECK(adapter_value_parse(&fi, "0", 1, &v, why, sizeof(why)) == 0 && v.i == 0);
	const char *bad_ints[] = { "-0", "007", "+1", " 1", "1 ", "1.0", "1e3", "-", "0x10", "１" };
	for (size_t i = 0; i < sizeof(bad_ints) / sizeof(bad_ints[0]); i++)
		CHECK(adapter_value_parse(&fi, bad_ints[i], strlen(bad_ints[i]), &v, why, sizeof(why)) < 0);
	CHECK(adapter_value_parse(&fi, "", 0, &v, why, sizeof(why)) < 0);
	CHECK_STR(why, "empty, and the field is not nullable");

	/* dates: both sides of every boundary */
	CHECK(adapter_date_parse("1970-01-01", 10, &days) == 0 && days == 0);
	CHECK(adapter_date_parse("1969-12-31", 10, &days) == 0 && days == -1);
	CHECK(adapter_date_parse("2000-02-29", 10, &days) == 0);
	CHECK(adapter_date_parse("2024-02-29", 10, &days) == 0);
	CHECK(adapter_date_parse("2023-02-29", 10, &days) < 0);
	CHECK(adapter_date_parse("1900-02-29", 10, &days) < 0);
	CHECK(adapter_date_parse("2023-04-30", 10, &days) == 0);
	CHECK(adapter_date_parse("2023-04-31", 10, &days) < 0);
	CHECK(adapter_date_parse("2023-12-31", 10, &days) == 0);
	CHECK(adapter_date_parse("2023-13-01", 10, &days) < 0);
	CHECK(adapter_date_parse("2023-00-10", 10, &days) < 0);
	CHECK(adapter_date_parse("2023-01-00", 10, &days) < 0);
	CHECK(adapter_date_parse("0000-01-01", 10, &days) < 0);
	CHECK(adapter_date_parse("0001-01-01", 10, &days) == 0 && days == DATE_MIN);
	CHECK(adapter_date_parse("9999-12-31", 10, &days) == 0 && days == DATE_MAX);
	CHECK(adapter_date_parse("2023-1-01", 9, &days) < 0);
	CHECK(adapter_date_parse("2023-01-01T", 11, &days) < 0);
	for (int32_t d = DATE_MIN; d <= DATE_MAX; d += 997) {
		int32_t back;
		adapter_date_format(d, out);
		CHECK(adapter_date_parse(out, 10, &back) == 0 && back == d);
	}
	adapter_date_format(DATE_MAX, out);
	CHECK_STR(out, "9999-12-31");
	CHECK(adapter_value_parse(&fd, "2023-02-30", 10, &v, why, sizeof(why)) < 0);
	CHECK_STR(why, "'2023-02-30' is not a calendar date");
	CHECK(adapter_value_parse(&fd, "30-01-2023", 10, &v, why, sizeof(why)) < 0);
	CHECK_STR(why, "'30-01-2023' is not a date (YYYY-MM-DD)");
	CHECK(adapter_value_parse(&fd, "", 0, &v, why, sizeof(why)) == 0 && v.null);

	const char *yes[] = { "true", "TRUE", "1" }, *no[] = { "false", "FALSE", "0" };
	for (int i = 0; i < 3; i++) {
		CHECK(adapter_value_parse(&fb, yes[i], strlen(yes[i]), &v, why, sizeof(why)) == 0 && v.b == 1);
		CHECK(adapter_value_parse(&fb, no[i], strlen(no[i]), &v, why, sizeof(why)) == 0 && v.b == 0);
	}
	CHECK(adapter_value_parse(&fb, "True", 4, &v, why, sizeof(why)) < 0);
	CHECK(adapter_value_parse(&fb, "ja", 2, &v, why, sizeof(why)) < 0);
	CHECK_STR(why, "'ja' is not a boolean (true, false, 1, 0)");

	CHECK(adapter_value_parse(&fc, "ict", 3, &v, why, sizeof(why)) == 0 && v.category == 2);
	CHECK(adapter_value_parse(&fc, "ICT", 3, &v, why, sizeof(why)) < 0);
	CHECK_STR(why, "'ICT' is not one of: techniek, zorg, ict, bouw, energie");
	CHECK(adapter_value_parse(&fc, "ict ", 4, &v, why, sizeof(why)) < 0);

	/* BSN: 8 or 9 digits; the value is never echoed */
	CHECK(adapter_value_parse(&fn, "73186545", 8, &v, why, sizeof(why)) == 0 && v.bsn == 73186545);
	CHECK(adapter_value_parse(&fn, "123456789", 9, &v, why, sizeof(why)) < 0);
	CHECK_STR(why, "not a valid BSN (invalid_bsn_checksum)");
	CHECK(adapter_value_parse(&fn, "12345678a", 9, &v, why, sizeof(why)) < 0);
	CHECK_STR(why, "not a valid BSN (invalid_bsn_not_digits)");
	CHECK(adapter_value_parse(&fn, "000000000", 9, &v, why, sizeof(why)) < 0);
	CHECK_STR(why, "not a valid BSN (invalid_bsn_zero)");

	/* strings: UTF-8, no NUL; the reported text is escaped */
	CHECK(adapter_value_parse(&fs, "Frysl\xc3\xa2n", 8, &v, why, sizeof(why)) == 0 && v.str.len == 8);
	CHECK(adapter_value_parse(&fs, "a\0b", 3, &v, why, sizeof(why)) < 0);
	CHECK_STR(why, "contains a NUL byte");
	CHECK(adapter_value_parse(&fs, "\xc3\x28", 2, &v, why, sizeof(why)) < 0);
	CHECK(adapter_value_parse(&fs, "\xed\xa0\x80", 3, &v, why, sizeof(why)) < 0); /* surrogate */
	CHECK(adapter_value_parse(&fs, "\xc0\xaf", 2, &v, why, sizeof(why)) < 0);     /* overlong */
	CHECK(adapter_value_parse(&fi, "1\n2026-01-01: error: forged", 27, &v, why, sizeof(why)) < 0);
	CHECK(strchr(why, '\n') == NULL);
	CHECK_CONTAINS(why, "'1\\x0a2026-01-01: error: forged'");
	adapter_quote("it's", 4, why, sizeof(why));
	CHECK_STR(why, "'it\\'s'");
	adapter_quote("0123456789012345678901234567890123456789toolong", 47, why, sizeof(why));
	CHECK_STR(why, "'0123456789012345678901234567890123456789'...");

	enum adapter_type t;
	CHECK(adapter_type_parse("category", 8, &t) == 0 && t == ADAPTER_CATEGORY);
	CHECK(adapter_type_parse("integer", 7, &t) < 0);
	CHECK_STR(adapter_type_name(ADAPTER_DATE), "date");
}

static void schema_errors(void)
{
	struct adapter_source src = { .kind = ADAPTER_CSV, .path = DATA "valid.csv" };
	struct adapter_field dup[] = { { "bsn", ADAPTER_BSN, 0, NULL, 0 }, { "bsn", ADAPTER_INT, 0, NULL, 0 } };
	struct adapter_field nocat[] = { { "sector", ADAPTER_CATEGORY, 0, NULL, 0 } };
	struct adapter_field catint[] = { { "n", ADAPTER_INT, 0, sectors, 5 } };
	struct adapter_schema s;
	struct adapter *a = (struct adapter *)1;
	char err[512];

	s = (struct adapter_schema){ dup, 2 };
	CHECK(adapter_open(&src, &s, &a, err, sizeof(err)) == ADAPTER_ERR_ARG && a == NULL);
	CHECK_STR(err, "schema: field 'bsn' appears twice");
	s = (struct adapter_schema){ nocat, 1 };
	CHECK(adapter_open(&src, &s, &a, err, sizeof(err)) == ADAPTER_ERR_ARG);
	CHECK_STR(err, "schema: field 'sector': a category field needs categories");
	s = (struct adapter_schema){ catint, 1 };
	CHECK(adapter_open(&src, &s, &a, err, sizeof(err)) == ADAPTER_ERR_ARG);
	s = (struct adapter_schema){ dup, 0 };
	CHECK(adapter_open(&src, &s, &a, err, sizeof(err)) == ADAPTER_ERR_ARG);
	src.kind = 0;
	CHECK(adapter_open(&src, &enrol, &a, err, sizeof(err)) == ADAPTER_ERR_ARG);
	src.kind = ADAPTER_CSV;
	src.query = "SELECT 1";
	CHECK(adapter_open(&src, &enrol, &a, err, sizeof(err)) == ADAPTER_ERR_ARG);
	CHECK_CONTAINS(err, "'table' and 'query' are for SQLite sources");
	adapter_close(NULL);
}

/* ---- CSV: RFC 4180 ------------------------------------------------------ */

static void csv_valid_variants(void)
{
	const char *files[] = { DATA "valid.csv", DATA "valid_bom_crlf.csv", DATA "valid_no_final_newline.csv" };

	for (size_t i = 0; i < 3; i++) {
		struct adapter *a = open_csv(files[i], ADAPTER_BAD_ROW_FAIL, &enrol);
		struct adapter_stats st;
		struct sink s;
		struct diag d = { 0 };

		if (!a)
			continue;
		sink_init(&s, &enrol, NULL);
		CHECK(scan_all(a, &s, &st, &d) == 0);
		if (i == 1) {
			/* inside quotes the line break is data: CRLF stays CRLF */
			char want[sizeof(valid_rows) + 8];
			const char *p = strstr(valid_rows, "two\\n");
			size_t n = (size_t)(p - valid_rows) + 3;
			snprintf(want, sizeof(want), "%.*s\\r%s", (int)n, valid_rows, p + 3);
			CHECK_STR(s.buf, want);
		} else {
			CHECK_STR(s.buf, valid_rows);
		}
		CHECK(st.rows_read == 6 && st.rows_ok == 6 && st.rows_bad_skipped == 0);
		CHECK(d.errors == 0 && d.warnings == 0);
		/* a second scan reads from the start again */
		sink_init(&s, &enrol, NULL);
		CHECK(scan_all(a, &s, &st, &d) == 0 && s.rows == 6);
		diag_clear(&d);
		adapter_close(a);
	}
}

static void csv_header_errors(void)
{
	struct adapter_source src = { .kind = ADAPTER_CSV };
	struct adapter *a;
	char err[512];
	char *p;

	src.path = DATA "missing_field.csv";
	CHECK(adapter_open(&src, &enrol, &a, err, sizeof(err)) == ADAPTER_ERR_SCHEMA);
	CHECK_STR(err, DATA "missing_field.csv:1: header: no column for schema fields 'sector', 'completed', "
		  "'birth_date', 'notes' (the header has 'bsn', 'programme', 'start_year')");

	struct adapter_field two[] = { { "bsn", ADAPTER_BSN, 0, NULL, 0 }, { "notes", ADAPTER_STRING, 1, NULL, 0 } };
	struct adapter_schema s2 = { two, 2 };
	src.path = DATA "duplicate_column.csv";
	CHECK(adapter_open(&src, &s2, &a, err, sizeof(err)) == ADAPTER_ERR_SCHEMA);
	CHECK_STR(err, DATA "duplicate_column.csv:1: header: column 'bsn' appears twice");

	src.path = "/nonexistent/x.csv";
	CHECK(adapter_open(&src, &s2, &a, err, sizeof(err)) == ADAPTER_ERR_IO);
	CHECK_STR(err, "/nonexistent/x.csv: cannot open: No such file or directory");
	src.path = "/tmp";
	CHECK(adapter_open(&src, &s2, &a, err, sizeof(err)) == ADAPTER_ERR_IO);
	/* a FIFO (nobody writing): refused at once, not waited on; the alarm
	 * ends the test program should the open block */
	{
		char *fifo = malloc(strlen(dir) + 16);

		sprintf(fifo, "%s/fifo.csv", dir);
		CHECK(mkfifo(fifo, 0600) == 0);
		src.path = fifo;
		alarm(5);
		CHECK(adapter_open(&src, &s2, &a, err, sizeof(err)) == ADAPTER_ERR_IO);
		alarm(0);
		CHECK_CONTAINS(err, "fifo.csv: not a regular file");
		unlink(fifo);
		free(fifo);
	}

	p = check_write(dir, "empty.csv", "");
	src.path = p;
	CHECK(adapter_open(&src, &s2, &a, err, sizeof(err)) == ADAPTER_ERR_FORMAT);
	CHECK_CONTAINS(err, "empty.csv: empty file: expected a header naming the columns");
	free(p);
	p = check_write(dir, "hq.csv", "bsn,\"notes\n441205069,x\n");
	src.path = p;
	CHECK(adapter_open(&src, &s2, &a, err, sizeof(err)) == ADAPTER_ERR_FORMAT);
	CHECK_CONTAINS(err, "hq.csv:1:5: header: column 2: quoted field not closed before the end of the file");
	free(p);
	/* names are matched exactly: no trimming, no case folding */
	p = check_write(dir, "hs.csv", "bsn, notes\n");
	src.path = p;
	CHECK(adapter_open(&src, &s2, &a, err, sizeof(err)) == ADAPTER_ERR_SCHEMA);
	CHECK_CONTAINS(err, "no column for schema field 'notes' (the header has 'bsn', ' notes')");
	free(p);
	src.path = DATA "header_only.csv"; /* BOM + CRLF, no rows */
	CHECK(adapter_open(&src, &s2, &a, err, sizeof(err)) == 0);
	if (a) {
		struct sink s;
		struct adapter_stats st;
		sink_init(&s, &s2, NULL);
		CHECK(scan_all(a, &s, &st, NULL) == 0 && st.rows_read == 0 && s.rows == 0);
		adapter_close(a);
	}
	src.delimiter = '"';
	CHECK(adapter_open(&src, &s2, &a, err, sizeof(err)) == ADAPTER_ERR_ARG);
}

static struct adapter_field two_fields[] = { { "bsn", ADAPTER_BSN, 0, NULL, 0 }, { "notes", ADAPTER_STRING, 1, NULL, 0 } };
static struct adapter_schema two_schema = { two_fields, 2 };

static void csv_blank_lines_and_headerless(void)
{
	struct adapter *a = open_csv(DATA "blank_lines.csv", ADAPTER_BAD_ROW_FAIL, &two_schema);
	struct adapter_field three[] = { { "bsn", ADAPTER_BSN, 0, NULL, 0 }, { "notes", ADAPTER_STRING, 1, NULL, 0 },
					 { "year", ADAPTER_INT, 1, NULL, 0 } };
	struct adapter_schema s3 = { three, 3 };
	struct adapter_source src = { .kind = ADAPTER_CSV, .path = DATA "semicolon_headerless.csv",
				      .headerless = 1, .delimiter = ';' };
	struct adapter_stats st;
	struct sink s;
	char err[512];

	if (a) {
		sink_init(&s, &two_schema, NULL);
		CHECK(scan_all(a, &s, &st, NULL) == 0);
		CHECK_STR(s.buf, "441205069|a\n869479167|b\n");
		CHECK(st.rows_read == 2);
		adapter_close(a);
	}
	CHECK(adapter_open(&src, &s3, &a, err, sizeof(err)) == 0);
	if (a) {
		sink_init(&s, &s3, NULL);
		CHECK(scan_all(a, &s, &st, NULL) == 0);
		CHECK_STR(s.buf, "441205069|a;b|2020\n073186545|Frysl\xc3\xa2n|~\n");
		adapter_close(a);
	}
}

/* ---- CSV: bad rows ------------------------------------------------------ */

static void csv_bad_rows_skip(void)
{
	struct adapter *a = open_csv(DATA "bad_rows.csv", ADAPTER_BAD_ROW_SKIP, &enrol);
	struct adapter_stats st;
	struct sink s;
	struct diag d = { 0 };
	const char *t;

	if (!a)
		return;
	sink_init(&s, &enrol, NULL);
	CHECK(scan_all(a, &s, &st, &d) == 0);
	CHECK_STR(s.buf, "441205069|noorden-leert-door-1|techniek|2021|1|1980-05-17|ok\n"
		  "553263730|kansrijk-verzilveren|ict|2020|0|1990-01-01|fine,\\nspanning\n"
		  "001007919|noorden-leert-door-2|bouw|2019|1|1971-07-07|last\n");
	CHECK(st.rows_read == 15 && st.rows_ok == 3 && st.rows_bad_skipped == 12);
	t = diag_text(&d);
	CHECK_CONTAINS(t, "bad_rows.csv:3:41: warning: field 'start_year': 'abc' is not a whole number (row skipped)");
	CHECK_CONTAINS(t, "bad_rows.csv:4:1: warning: field 'bsn': not a valid BSN (invalid_bsn_checksum)");
	CHECK(strstr(t, "123456789") == NULL); /* an invalid BSN is still a BSN: never in the log */
	CHECK_CONTAINS(t, "bad_rows.csv:5:32: warning: field 'sector': 'Zorg' is not one of: techniek, zorg, ict, bouw, energie");
	CHECK_CONTAINS(t, "bad_rows.csv:6:47: warning: field 'birth_date': '2023-02-30' is not a calendar date");
	CHECK_CONTAINS(t, "bad_rows.csv:7:42: warning: field 'completed': 'yes' is not a boolean");
	CHECK_CONTAINS(t, "bad_rows.csv:8:1: warning: 6 fields, expected 7 (as in the header)");
	CHECK_CONTAINS(t, "bad_rows.csv:11:58: warning: field 'notes': '\"' inside an unquoted field");
	CHECK_CONTAINS(t, "bad_rows.csv:12:47: warning: field 'birth_date': text after the closing quote");
	CHECK_CONTAINS(t, "bad_rows.csv:13:37: warning: field 'start_year': ' 12' is not a whole number");
	CHECK_CONTAINS(t, "bad_rows.csv:14:1: warning: field 'bsn': empty, and the field is not nullable");
	CHECK_CONTAINS(t, "bad_rows.csv:15:37: warning: field 'start_year': '007' is not a whole number");
	CHECK_CONTAINS(t, "bad_rows.csv:16:");
	CHECK_CONTAINS(t, "'1980/05/17' is not a date (YYYY-MM-DD)");
	CHECK(d.errors == 0 && d.warnings == 12);
	diag_clear(&d);
	adapter_close(a);
}

static void csv_bad_rows_fail(void)
{
	struct adapter *a = open_csv(DATA "bad_rows.csv", ADAPTER_BAD_ROW_FAIL, &enrol);
	struct adapter_stats st;
	struct sink s;
	struct diag d = { 0 };

	if (!a)
		return;
	sink_init(&s, &enrol, NULL);
	CHECK(scan_all(a, &s, &st, &d) == ADAPTER_ERR_BAD_ROW);
	CHECK(s.rows == 1 && st.rows_ok == 1 && st.rows_read == 2); /* the row before was delivered */
	CHECK_STR(diag_text(&d), DATA "bad_rows.csv:3:41: error: field 'start_year': 'abc' is not a whole number\n");
	diag_clear(&d);
	adapter_close(a);
}

static void csv_multiline_positions(void)
{
	const char *const sec[] = { "zorg", "bouw" };
	struct adapter_field f[] = { { "bsn", ADAPTER_BSN, 0, NULL, 0 }, { "notes", ADAPTER_STRING, 1, NULL, 0 },
				     { "start_year", ADAPTER_INT, 1, NULL, 0 }, { "sector", ADAPTER_CATEGORY, 0, sec, 2 } };
	struct adapter_schema s4 = { f, 4 };
	struct adapter *a = open_csv(DATA "multiline.csv", ADAPTER_BAD_ROW_SKIP, &s4);
	struct adapter_stats st;
	struct sink s;
	struct diag d = { 0 };

	if (!a)
		return;
	sink_init(&s, &s4, NULL);
	CHECK(scan_all(a, &s, &st, &d) == 0);
	CHECK_STR(s.buf, "441205069|one line|2020|zorg\n");
	/* the record starts on line 3; the bad field is on line 5 */
	CHECK_CONTAINS(diag_text(&d), "multiline.csv:3:1: warning: field 'start_year' (on line 5): 'x1' is not a whole number");
	/* line counting goes on correctly after a record of three lines */
	CHECK_CONTAINS(diag_text(&d), "multiline.csv:6:22: warning: field 'sector': 'Bouw' is not one of: zorg, bouw");
	CHECK(st.rows_read == 3 && st.rows_bad_skipped == 2);
	diag_clear(&d);
	adapter_close(a);
}

static void csv_unterminated_quote(void)
{
	struct adapter *a = open_csv(DATA "unterminated.csv", ADAPTER_BAD_ROW_FAIL, &two_schema);
	struct adapter_stats st;
	struct sink s;
	struct diag d = { 0 };

	if (!a)
		return;
	sink_init(&s, &two_schema, NULL);
	CHECK(scan_all(a, &s, &st, &d) == ADAPTER_ERR_BAD_ROW);
	CHECK_STR(s.buf, "441205069|fine\n");
	CHECK_STR(diag_text(&d), DATA "unterminated.csv:3:11: error: field 'notes': quoted field not closed before the end of the file\n");
	diag_clear(&d);
	adapter_close(a);
}

/* Stray CR, a field past the cap (mapped and ignored), many columns. */
static void csv_damaged_records(void)
{
	char path[256];
	FILE *f;
	struct adapter *a;
	struct adapter_stats st;
	struct sink s;
	struct diag d = { 0 };

	snprintf(path, sizeof(path), "%s/long.csv", dir);
	f = fopen(path, "w");
	if (!f)
		return;
	fputs("bsn,notes,ignored\n", f);
	fputs("441205069,a\rb,x\n", f);                         /* 2: bare CR */
	fputs("441205069,\"", f);                               /* 3: too long, quoted */
	for (int i = 0; i < ADAPTER_FIELD_MAX + 10; i++)
		fputc(i % 100 == 99 ? '\n' : 'x', f);
	fputs("\",x\n", f);
	fputs("869479167,ok,", f);                              /* ignored column too long */
	for (int i = 0; i < ADAPTER_FIELD_MAX + 1; i++)
		fputc('y', f);
	fputs("\n", f);
	fputs("869479167,", f);                                 /* exactly the cap: fine */
	for (int i = 0; i < ADAPTER_FIELD_MAX; i++)
		fputc('z', f);
	fputs(",x\n", f);
	fputs("586255771,last,x", f);
	fclose(f);

	a = open_csv(path, ADAPTER_BAD_ROW_SKIP, &two_schema);
	if (!a)
		return;
	unsigned proj[] = { 0 };
	sink_init(&s, &two_schema, proj);
	CHECK(adapter_scan(a, NULL, 0, proj, 1, collect, &s, &st, &d) == 0);
	CHECK_STR(s.buf, "869479167\n586255771\n");
	CHECK(st.rows_read == 5 && st.rows_ok == 2 && st.rows_bad_skipped == 3);
	CHECK_CONTAINS(diag_text(&d), "long.csv:2:11: warning: field 'notes': carriage return not followed by a line feed");
	CHECK_CONTAINS(diag_text(&d), "long.csv:3:11: warning: field 'notes': longer than 65536 bytes");
	CHECK_CONTAINS(diag_text(&d), "long.csv:659:14: warning: column 3: longer than 65536 bytes");
	diag_clear(&d);
	adapter_close(a);
	unlink(path);
}

static void csv_diag_is_capped(void)
{
	char path[256];
	FILE *f;
	struct adapter *a;
	struct adapter_stats st;
	struct sink s;
	struct diag d = { 0 };

	snprintf(path, sizeof(path), "%s/many_bad.csv", dir);
	f = fopen(path, "w");
	if (!f)
		return;
	fputs("bsn,notes\n", f);
	for (int i = 0; i < 1000; i++)
		fputs("123456789,x\n", f);
	fclose(f);
	a = open_csv(path, ADAPTER_BAD_ROW_SKIP, &two_schema);
	if (!a)
		return;
	sink_init(&s, &two_schema, NULL);
	CHECK(scan_all(a, &s, &st, &d) == 0);
	CHECK(st.rows_bad_skipped == 1000 && d.warnings == ADAPTER_DIAG_MAX_ROWS + 1);
	CHECK_CONTAINS(diag_text(&d), "980 more bad rows skipped, not listed");
	diag_clear(&d);
	adapter_close(a);
	unlink(path);
}

/* Random records from the bytes that matter: nothing crashes, every record
 * is counted once, and the reader never allocates. */
static void csv_random_inputs(void)
{
	static const char alphabet[] = { ',', ',', '"', '"', '\r', '\n', '\n', 'a', '1', '\xef', '\xbb', '\xbf', ' ' };
	char path[256];
	uint32_t seed = 12345;

	snprintf(path, sizeof(path), "%s/random.csv", dir);
	for (int round = 0; round < 3000; round++) {
		FILE *f = fopen(path, "w");
		struct adapter *a;
		struct adapter_source src = { .kind = ADAPTER_CSV, .path = path, .on_bad_row = ADAPTER_BAD_ROW_SKIP,
					      .headerless = round % 2 };
		struct adapter_field rf[] = { { "a", ADAPTER_STRING, 1, NULL, 0 }, { "b", ADAPTER_INT, 1, NULL, 0 } };
		struct adapter_schema rs = { rf, 2 };
		struct adapter_stats st;
		struct sink s;
		char err[512];

		if (!f)
			return;
		if (round % 2 == 0)
			fputs("a,b\n", f);
		int len = (int)((seed >> 8) % 64);
		for (int i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			fputc(alphabet[(seed >> 16) % sizeof(alphabet)], f);
		}
		seed = seed * 1103515245u + 12345u;
		fclose(f);
		if (adapter_open(&src, &rs, &a, err, sizeof(err)) != 0)
			continue;
		sink_init(&s, &rs, NULL);
		CHECK(scan_all(a, &s, &st, NULL) == 0);
		CHECK(st.rows_read == st.rows_ok + st.rows_bad_skipped && s.rows == st.rows_ok);
		adapter_close(a);
	}
	unlink(path);
}

/* ---- filters and projection --------------------------------------------- */

struct scenario {
	const char *name;
	struct adapter_filter filters[3];
	size_t nfilters;
	unsigned proj[4];
	size_t nproj;
	const char *want; /* sorted; NULL: only compared between sources */
};

static struct adapter_value v_bsn(uint32_t b) { struct adapter_value v = { .type = ADAPTER_BSN }; v.bsn = b; return v; }
static struct adapter_value v_cat(unsigned c) { struct adapter_value v = { .type = ADAPTER_CATEGORY }; v.category = c; return v; }
static struct adapter_value v_int(int64_t i) { struct adapter_value v = { .type = ADAPTER_INT }; v.i = i; return v; }
static struct adapter_value v_bool(int b) { struct adapter_value v = { .type = ADAPTER_BOOL }; v.b = b; return v; }
static struct adapter_value v_str(const char *s) { struct adapter_value v = { .type = ADAPTER_STRING }; v.str.ptr = s; v.str.len = strlen(s); return v; }
static struct adapter_value v_date(const char *s)
{
	struct adapter_value v = { .type = ADAPTER_DATE };
	adapter_date_parse(s, strlen(s), &v.date);
	return v;
}

static struct adapter_value fv_bsn1[1], fv_bsn8[1], fv_sect[2], fv_true[1], fv_date[1], fv_years[2], fv_empty[1],
	fv_inject[3], fv_none[1];

static struct scenario scenarios[8];
static size_t nscenarios;

static void scenarios_init(void)
{
	fv_bsn1[0] = v_bsn(441205069);
	fv_bsn8[0] = v_bsn(73186545);
	fv_sect[0] = v_cat(1);
	fv_sect[1] = v_cat(2);
	fv_true[0] = v_bool(1);
	fv_date[0] = v_date("1980-05-17");
	fv_years[0] = v_int(2023);
	fv_years[1] = v_int(-5);
	fv_empty[0] = v_str("");
	fv_inject[0] = v_str("x' OR '1'='1");
	fv_inject[1] = v_str("'); DROP TABLE enrol_text; --");
	fv_inject[2] = v_str("\" OR 1=1 --");
	fv_none[0] = v_bsn(123456782);
	struct scenario sc[] = {
		{ "all", { { 0 } }, 0, { 0 }, 0, valid_rows },
		{ "lookup", { { F_BSN, fv_bsn1, 1 } }, 1, { F_NOTES, F_BSN, F_START_YEAR }, 3,
		  "Frysl\xc3\xa2n|441205069|2021\nsecond row, same person|441205069|2023\n" },
		{ "lookup 8 digits", { { F_BSN, fv_bsn8, 1 } }, 1, { F_BSN, F_PROGRAMME, F_START_YEAR }, 3,
		  "073186545|kansrijk-verzilveren|~\n" },
		{ "in and bool", { { F_SECTOR, fv_sect, 2 }, { F_COMPLETED, fv_true, 1 } }, 2, { F_SECTOR, F_SECTOR }, 2,
		  "ict|ict\n" },
		{ "date and int in", { { F_BIRTH_DATE, fv_date, 1 }, { F_START_YEAR, fv_years, 2 } }, 2, { F_BSN }, 1,
		  "441205069\n" },
		{ "empty string", { { F_NOTES, fv_empty, 1 } }, 1, { F_BSN }, 1, "586255771\n" },
		{ "injection", { { F_NOTES, fv_inject, 3 } }, 1, { F_BSN }, 1, "" },
		{ "not found", { { F_BSN, fv_none, 1 } }, 1, { 0 }, 0, "" },
	};
	memcpy(scenarios, sc, sizeof(sc));
	nscenarios = sizeof(sc) / sizeof(sc[0]);
}

static void run_scenario(struct adapter *a, const struct scenario *sc, char *out, size_t outlen)
{
	struct sink s;
	struct adapter_stats st;
	struct diag d = { 0 };

	sink_init(&s, &enrol, sc->nproj ? sc->proj : NULL);
	CHECK(adapter_scan(a, sc->filters, sc->nfilters, sc->nproj ? sc->proj : NULL, sc->nproj, collect, &s, &st, &d) == 0);
	if (d.errors)
		printf("#   %s: %s", sc->name, diag_text(&d));
	CHECK(st.rows_ok == s.rows && st.rows_bad_skipped == 0);
	sink_sorted(&s, out, outlen);
	diag_clear(&d);
}

static void csv_filters_and_projection(void)
{
	struct adapter *a = open_csv(DATA "valid.csv", ADAPTER_BAD_ROW_FAIL, &enrol);
	char got[16384], want[16384];
	struct sink tmp;

	if (!a)
		return;
	for (size_t i = 0; i < nscenarios; i++) {
		run_scenario(a, &scenarios[i], got, sizeof(got));
		sink_init(&tmp, &enrol, NULL);
		tmp.len = strlen(scenarios[i].want);
		memcpy(tmp.buf, scenarios[i].want, tmp.len + 1);
		sink_sorted(&tmp, want, sizeof(want));
		if (strcmp(got, want) != 0)
			printf("#   scenario %s\n", scenarios[i].name);
		CHECK_STR(got, want);
	}
	adapter_close(a);
}

/* Filters are checked before the rows are: a typo must not look like "not found". */
static void scan_argument_errors(void)
{
	struct adapter *a = open_csv(DATA "valid.csv", ADAPTER_BAD_ROW_FAIL, &enrol);
	struct adapter_value wrong = v_int(441205069), nul = { .type = ADAPTER_BSN, .null = 1 };
	struct adapter_value badbsn = v_bsn(123456789), badcat = v_cat(9);
	struct adapter_filter f;
	unsigned proj[] = { 7 };
	struct sink s;
	struct diag d = { 0 };

	if (!a)
		return;
	sink_init(&s, &enrol, NULL);
	f = (struct adapter_filter){ F_BSN, &wrong, 1 };
	CHECK(adapter_scan(a, &f, 1, NULL, 0, collect, &s, NULL, &d) == ADAPTER_ERR_ARG);
	CHECK_CONTAINS(diag_text(&d), "filter on 'bsn', value 0: a int value for a bsn field");
	f = (struct adapter_filter){ F_BSN, &nul, 1 };
	CHECK(adapter_scan(a, &f, 1, NULL, 0, collect, &s, NULL, &d) == ADAPTER_ERR_ARG);
	f = (struct adapter_filter){ F_BSN, &badbsn, 1 };
	CHECK(adapter_scan(a, &f, 1, NULL, 0, collect, &s, NULL, &d) == ADAPTER_ERR_ARG);
	f = (struct adapter_filter){ F_SECTOR, &badcat, 1 };
	CHECK(adapter_scan(a, &f, 1, NULL, 0, collect, &s, NULL, &d) == ADAPTER_ERR_ARG);
	f = (struct adapter_filter){ 99, &badcat, 1 };
	CHECK(adapter_scan(a, &f, 1, NULL, 0, collect, &s, NULL, &d) == ADAPTER_ERR_ARG);
	f = (struct adapter_filter){ F_BSN, &wrong, 0 };
	CHECK(adapter_scan(a, &f, 1, NULL, 0, collect, &s, NULL, &d) == ADAPTER_ERR_ARG);
	CHECK(adapter_scan(a, NULL, 0, proj, 1, collect, &s, NULL, &d) == ADAPTER_ERR_ARG);
	CHECK(adapter_scan(a, NULL, 0, NULL, 0, NULL, &s, NULL, &d) == ADAPTER_ERR_ARG);
	CHECK(adapter_scan(NULL, NULL, 0, NULL, 0, collect, &s, NULL, &d) == ADAPTER_ERR_ARG);
	CHECK(s.rows == 0);
	diag_clear(&d);

	/* the callback stops (1) or aborts with its own code (< 0) */
	s.stop_after = 2;
	CHECK(adapter_scan(a, NULL, 0, NULL, 0, collect, &s, NULL, NULL) == 0 && s.rows == 2);
	sink_init(&s, &enrol, NULL);
	s.abort_after = 3;
	CHECK(adapter_scan(a, NULL, 0, NULL, 0, collect, &s, NULL, NULL) == -42 && s.rows == 3);
	CHECK(adapter_field_index(a, "birth_date", 10) == F_BIRTH_DATE);
	CHECK(adapter_field_index(a, "birth", 5) == -1);
	int indexed = 1;
	CHECK(adapter_field_indexed(a, F_BSN, &indexed, NULL, 0) == 0 && indexed == 0);
	adapter_close(a);
}

/* ---- SQLite -------------------------------------------------------------- */

/* The rows of valid.csv as the CSV holds them (NULL: SQL NULL). */
static const char *const src_rows[6][7] = {
	{ "441205069", "noorden-leert-door-1", "techniek", "2021", "true", "1980-05-17", "Frysl\xc3\xa2n" },
	{ "869479167", "noorden-leert-door-2", "zorg", "2022", "false", "1975-12-01", "with \"quotes\" and, comma" },
	{ "73186545", "kansrijk-verzilveren", "ict", NULL, "1", "2000-02-29", "two\nlines" },
	{ "586255771", "noorden-leert-door-1", "bouw", "-5", "0", NULL, "" },
	{ "289445760", "kansrijk-verzilveren", "energie", "0", "TRUE", "1999-01-01", NULL },
	{ "441205069", "kansrijk-verzilveren", "zorg", "2023", "FALSE", "1980-05-17", "second row, same person" },
};

static void exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		printf("#   sqlite: %s: %s\n", sql, msg);
		check_failures++;
	}
	sqlite3_free(msg);
}

/* enrol_text: every value as TEXT, as loaded from the CSV;
 * enrol_typed: numbers as INTEGER, other column order, an extra column;
 * v_enrol: a view; enrol_bad: values that do not type. */
static char *make_db(void)
{
	static char path[256];
	sqlite3 *db;
	sqlite3_stmt *ins, *ins2;

	snprintf(path, sizeof(path), "%s/partner.db", dir);
	unlink(path);
	CHECK(sqlite3_open(path, &db) == SQLITE_OK);
	exec(db, "CREATE TABLE enrol_text (bsn TEXT, programme TEXT, sector TEXT, start_year TEXT, completed TEXT, "
		 "birth_date TEXT, notes TEXT)");
	exec(db, "CREATE TABLE enrol_typed (id INTEGER PRIMARY KEY, notes TEXT, birth_date TEXT, completed INTEGER, "
		 "start_year INTEGER, sector TEXT, programme TEXT, BSN INTEGER, secret TEXT)");
	CHECK(sqlite3_prepare_v2(db, "INSERT INTO enrol_text VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", -1, &ins, NULL) == SQLITE_OK);
	CHECK(sqlite3_prepare_v2(db, "INSERT INTO enrol_typed (BSN, programme, sector, start_year, completed, birth_date, notes) "
				 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", -1, &ins2, NULL) == SQLITE_OK);
	for (int r = 0; r < 6; r++) {
		for (int c = 0; c < 7; c++) {
			const char *v = src_rows[r][c];

			if (v)
				sqlite3_bind_text(ins, c + 1, v, -1, SQLITE_STATIC);
			else
				sqlite3_bind_null(ins, c + 1);
			if (!v)
				sqlite3_bind_null(ins2, c + 1);
			else if (c == 0 || c == 3)
				sqlite3_bind_int64(ins2, c + 1, atoll(v));
			else if (c == 4)
				sqlite3_bind_int(ins2, c + 1, !strcmp(v, "true") || !strcmp(v, "TRUE") || !strcmp(v, "1"));
			else
				sqlite3_bind_text(ins2, c + 1, v, -1, SQLITE_STATIC);
		}
		CHECK(sqlite3_step(ins) == SQLITE_DONE);
		CHECK(sqlite3_step(ins2) == SQLITE_DONE);
		sqlite3_reset(ins);
		sqlite3_reset(ins2);
	}
	sqlite3_finalize(ins);
	sqlite3_finalize(ins2);
	exec(db, "CREATE VIEW v_enrol AS SELECT * FROM enrol_text WHERE 1");
	exec(db, "CREATE TABLE enrol_bad (bsn INTEGER, start_year INTEGER, notes BLOB)");
	exec(db, "INSERT INTO enrol_bad VALUES (441205069, 2020, 'ok'), (869479167, 'abc', 'x'), (73186545, 12.5, 'x'),"
		 " (586255771, 2021, x'00ff'), (123456789, 2021, 'x'), (289445760, 2022.0, 'fine')");
	exec(db, "CREATE TABLE \"we\"\"ird\" (bsn TEXT, \"no\"\"tes\" TEXT)");
	exec(db, "INSERT INTO \"we\"\"ird\" VALUES ('441205069', 'a'), ('869479167', 'b')");
	sqlite3_close(db);
	return path;
}

static struct adapter *open_sql(const char *path, const char *table, const char *query,
				const struct adapter_schema *schema, enum adapter_on_bad_row mode, char *err, size_t errlen)
{
	struct adapter_source src = { .kind = ADAPTER_SQLITE, .path = path, .table = table, .query = query,
				      .on_bad_row = mode };
	struct adapter *a = NULL;

	adapter_open(&src, schema, &a, err, errlen);
	return a;
}

static void sqlite_same_rows_as_csv(void)
{
	char *db = make_db();
	struct adapter *csv = open_csv(DATA "valid.csv", ADAPTER_BAD_ROW_FAIL, &enrol);
	const char *tables[] = { "enrol_text", "enrol_typed", "v_enrol", NULL, NULL };
	const char *queries[] = { NULL, NULL, NULL,
				  "SELECT bsn, programme, sector, start_year, completed, birth_date, notes FROM enrol_typed "
				  "-- the steward's comment, no newline",
				  /* expressions: columns without affinity */
				  "SELECT bsn || '' AS bsn, programme, sector, start_year + 0 AS start_year, completed || '' AS "
				  "completed, birth_date, notes FROM enrol_typed;\n" };
	char err[512], want[16384], got[16384];

	if (!csv)
		return;
	for (size_t t = 0; t < 5; t++) {
		struct adapter *a = open_sql(db, tables[t], queries[t], &enrol, ADAPTER_BAD_ROW_FAIL, err, sizeof(err));

		if (!a) {
			printf("#   source %zu: %s\n", t, err);
			check_failures++;
			continue;
		}
		for (size_t i = 0; i < nscenarios; i++) {
			run_scenario(csv, &scenarios[i], want, sizeof(want));
			run_scenario(a, &scenarios[i], got, sizeof(got));
			if (strcmp(got, want) != 0)
				printf("#   source %zu, scenario %s\n", t, scenarios[i].name);
			CHECK_STR(got, want);
		}
		adapter_close(a);
	}
	adapter_close(csv);
}

static void sqlite_query_validation(void)
{
	char *db = make_db();
	char err[512];
	struct {
		const char *query, *msg;
	} cases[] = {
		{ "SELECT * FROM enrol_text; SELECT * FROM enrol_typed", "query: more than one statement (only one SELECT is allowed)" },
		{ "SELECT * FROM enrol_text; DELETE FROM enrol_text", "query: more than one statement" },
		{ "DELETE FROM enrol_text", "query: not read-only (only one SELECT is allowed)" },
		{ "INSERT INTO enrol_text (bsn) VALUES ('1') RETURNING *", "query: not read-only" },
		{ "WITH x AS (SELECT 1) DELETE FROM enrol_text", "query: not read-only" },
		{ "SELEC * FROM enrol_text", "query: near \"SELEC\": syntax error" },
		{ "SELECT * FROM nothing_here", "query: no such table: nothing_here" },
		{ "PRAGMA table_info(enrol_text)", "query: not a SELECT" },
		{ "ATTACH 'other.db' AS o", "query: not a SELECT" },
		{ "SELECT * FROM enrol_text WHERE bsn = ?", "query: contains parameters" },
		{ "SELECT * FROM enrol_text WHERE bsn = :bsn", "query: contains parameters" },
		{ "  -- nothing but a comment\n", "query: empty" },
		{ "SELECT \"bsn\" AS bsn, 'x' AS \"programme\" FROM enrol_text", "has no column for schema field 'sector'" },
		{ "SELECT \"nosuchcolumn\" AS bsn FROM enrol_text", "no such column: nosuchcolumn" }, /* DQS off */
		{ "SELECT bsn, bsn AS BSN, programme, sector, start_year, completed, birth_date, notes FROM enrol_text",
		  "query: 2 columns named 'bsn'" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct adapter *a = open_sql(db, NULL, cases[i].query, &enrol, ADAPTER_BAD_ROW_FAIL, err, sizeof(err));

		CHECK(a == NULL);
		if (!strstr(err, cases[i].msg))
			printf("#   case %zu\n", i);
		CHECK_CONTAINS(err, cases[i].msg);
		CHECK(strncmp(err, db, strlen(db)) == 0);
		adapter_close(a);
	}
	CHECK(open_sql(db, "enrol_text", "SELECT 1", &enrol, 0, err, sizeof(err)) == NULL);
	CHECK_CONTAINS(err, "give exactly one of 'table' and 'query'");
	CHECK(open_sql(db, NULL, NULL, &enrol, 0, err, sizeof(err)) == NULL);
	CHECK(open_sql(db, "no_table", NULL, &enrol, 0, err, sizeof(err)) == NULL);
	CHECK_CONTAINS(err, ": table 'no_table': no such table: no_table");
	CHECK(open_sql(db, "enrol_bad", NULL, &enrol, 0, err, sizeof(err)) == NULL);
	CHECK_CONTAINS(err, ": table 'enrol_bad' has no column for schema field 'programme' (it has bsn, start_year, notes)");
	CHECK(open_sql("/nonexistent.db", "t", NULL, &enrol, 0, err, sizeof(err)) == NULL);
	CHECK_STR(err, "/nonexistent.db: cannot open: No such file or directory");
	CHECK(open_sql(DATA "valid.csv", "t", NULL, &enrol, 0, err, sizeof(err)) == NULL);
	CHECK_CONTAINS(err, "valid.csv: not a readable SQLite database: file is not a database");

	/* a trailing semicolon and comment are fine */
	struct adapter *a = open_sql(db, NULL, "SELECT * FROM enrol_text; -- done\n", &enrol, 0, err, sizeof(err));
	CHECK(a != NULL);
	adapter_close(a);
}

static int count_rows(void *arg, const struct adapter_value *v, size_t n)
{
	(void)v, (void)n;
	(*(size_t *)arg)++;
	return 0;
}

static void sqlite_injection_and_quoting(void)
{
	char *db = make_db();
	char err[512];
	struct adapter_field wf[] = { { "bsn", ADAPTER_BSN, 0, NULL, 0 }, { "no\"tes", ADAPTER_STRING, 1, NULL, 0 } };
	struct adapter_schema ws = { wf, 2 };
	struct adapter *a = open_sql(db, "we\"ird", NULL, &ws, 0, err, sizeof(err));
	struct adapter_value vals[] = { v_str("b"), v_str("a' OR '1'='1"), v_str("a\"; DROP TABLE \"we\"\"ird\"; --") };
	struct adapter_filter f = { 1, vals, 3 };
	struct sink s;
	struct adapter_stats st;
	size_t n = 0;

	if (!a) {
		printf("#   %s\n", err);
		check_failures++;
		return;
	}
	sink_init(&s, &ws, NULL);
	CHECK(adapter_scan(a, &f, 1, NULL, 0, collect, &s, &st, NULL) == 0);
	CHECK_STR(s.buf, "869479167|b\n");
	CHECK(st.rows_read == 1); /* the filter ran in SQLite, not here */
	f.values = vals + 1;
	f.nvalues = 2;
	CHECK(adapter_scan(a, &f, 1, NULL, 0, count_rows, &n, NULL, NULL) == 0 && n == 0);
	CHECK(adapter_scan(a, NULL, 0, NULL, 0, count_rows, &n, NULL, NULL) == 0 && n == 2);
	adapter_close(a);

	/* the enrol_text injection scenario left the table in place */
	a = open_sql(db, "enrol_text", NULL, &enrol, 0, err, sizeof(err));
	n = 0;
	CHECK(a && adapter_scan(a, NULL, 0, NULL, 0, count_rows, &n, NULL, NULL) == 0 && n == 6);
	adapter_close(a);
}

static void sqlite_bad_rows(void)
{
	char *db = make_db();
	char err[512];
	struct adapter_field bf[] = { { "bsn", ADAPTER_BSN, 0, NULL, 0 }, { "start_year", ADAPTER_INT, 1, NULL, 0 },
				      { "notes", ADAPTER_STRING, 1, NULL, 0 } };
	struct adapter_schema bs = { bf, 3 };
	struct adapter *a = open_sql(db, "enrol_bad", NULL, &bs, ADAPTER_BAD_ROW_SKIP, err, sizeof(err));
	struct adapter_stats st;
	struct sink s;
	struct diag d = { 0 };

	if (!a)
		return;
	sink_init(&s, &bs, NULL);
	CHECK(scan_all(a, &s, &st, &d) == 0);
	CHECK_STR(s.buf, "441205069|2020|ok\n289445760|2022|fine\n");
	CHECK(st.rows_read == 6 && st.rows_ok == 2 && st.rows_bad_skipped == 4);
	CHECK_CONTAINS(diag_text(&d), ": warning: table 'enrol_bad' rowid 2: field 'start_year': 'abc' is not a whole number");
	CHECK_CONTAINS(diag_text(&d), "rowid 3: field 'start_year': 12.5 is a real number where a whole number is expected");
	CHECK_CONTAINS(diag_text(&d), "rowid 4: field 'notes': a BLOB where string is expected");
	CHECK_CONTAINS(diag_text(&d), "rowid 5: field 'bsn': not a valid BSN (invalid_bsn_checksum)");
	diag_clear(&d);
	adapter_close(a);

	a = open_sql(db, NULL, "SELECT * FROM enrol_bad", &bs, ADAPTER_BAD_ROW_FAIL, err, sizeof(err));
	if (!a)
		return;
	sink_init(&s, &bs, NULL);
	CHECK(scan_all(a, &s, &st, &d) == ADAPTER_ERR_BAD_ROW);
	CHECK(s.rows == 1);
	CHECK_CONTAINS(diag_text(&d), ": error: query row 2 (in scan order): field 'start_year': 'abc' is not a whole number");
	diag_clear(&d);
	adapter_close(a);
}

static void sqlite_index_check(void)
{
	char *db = make_db();
	char err[512];
	sqlite3 *h;
	int indexed = -1;
	struct adapter *a = open_sql(db, "enrol_text", NULL, &enrol, 0, err, sizeof(err));

	CHECK(a && adapter_field_indexed(a, F_BSN, &indexed, err, sizeof(err)) == 0 && indexed == 0);
	adapter_close(a);
	CHECK(sqlite3_open(db, &h) == SQLITE_OK);
	exec(h, "CREATE INDEX enrol_text_bsn ON enrol_text (bsn)");
	sqlite3_close(h);
	a = open_sql(db, "enrol_text", NULL, &enrol, 0, err, sizeof(err));
	CHECK(a && adapter_field_indexed(a, F_BSN, &indexed, err, sizeof(err)) == 0 && indexed == 1);
	CHECK(a && adapter_field_indexed(a, F_SECTOR, &indexed, err, sizeof(err)) == 0 && indexed == 0);
	/* and the lookup through the index still finds both spellings */
	if (a) {
		char got[4096];
		run_scenario(a, &scenarios[1], got, sizeof(got));
		CHECK_STR(got, "Frysl\xc3\xa2n|441205069|2021\nsecond row, same person|441205069|2023\n");
		run_scenario(a, &scenarios[2], got, sizeof(got));
		CHECK_STR(got, "073186545|kansrijk-verzilveren|~\n");
	}
	adapter_close(a);
}

/* The connection cannot change the file, whatever the database contains. */
static void sqlite_read_only(void)
{
	char *db = make_db();
	char err[512];
	struct stat before, after;
	struct adapter *a;

	CHECK(stat(db, &before) == 0);
	a = open_sql(db, "enrol_text", NULL, &enrol, 0, err, sizeof(err));
	CHECK(a != NULL);
	if (a) {
		CHECK(sqlite3_exec(a->sql->db, "DELETE FROM enrol_text", NULL, NULL, NULL) != SQLITE_OK);
		CHECK(sqlite3_exec(a->sql->db, "CREATE TABLE x (y)", NULL, NULL, NULL) != SQLITE_OK);
		CHECK(sqlite3_exec(a->sql->db, "ATTACH ':memory:' AS m", NULL, NULL, NULL) != SQLITE_OK);
	}
	adapter_close(a);
	CHECK(stat(db, &after) == 0 && before.st_size == after.st_size && before.st_mtime == after.st_mtime);
}

/* ---- CSV: the in-memory copy of a clean file ---------------------------------- */

static const char *const regions[] = { "groningen", "friesland", "drenthe" };
/* Every type, nullable and not, in another order than the file's columns. */
static const struct adapter_field mem_fields[] = {
	{ "bsn", ADAPTER_BSN, 0, NULL, 0 },      { "regio", ADAPTER_CATEGORY, 1, regions, 3 },
	{ "sector", ADAPTER_CATEGORY, 0, sectors, 5 }, { "n", ADAPTER_INT, 1, NULL, 0 },
	{ "d", ADAPTER_DATE, 1, NULL, 0 },       { "ok", ADAPTER_BOOL, 1, NULL, 0 },
	{ "s", ADAPTER_STRING, 1, NULL, 0 },     { "t", ADAPTER_STRING, 0, NULL, 0 },
	{ "bsn2", ADAPTER_BSN, 1, NULL, 0 },
};
static const struct adapter_schema mem_schema = { mem_fields, 9 };
enum { M_BSN, M_REGIO, M_SECTOR, M_N, M_D, M_OK, M_S, M_T, M_BSN2 };

static const char *const mem_bsns[] = { "441205069", "869479167", "073186545", "586255771", "289445760",
					"103113010", "426538651", "553263730", "518511121", "888195060" };

static char *mem_path(const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	snprintf(p, n, "%s/%s", dir, name);
	return p;
}

/* The mem schema's file: edge cases first (int64 limits, the first and
 * last dates, quoted "", NULLs, a record over two lines, an 8-digit BSN,
 * an ignored column), then |rows| generated rows, some ending in CRLF. */
static void mem_write(const char *name, size_t rows, int variant)
{
	char *p = mem_path(name);
	FILE *f = fopen(p, "w");

	free(p);
	if (!f)
		return;
	fputs("skip,s,bsn,regio,n,d,ok,sector,t,bsn2\n", f);
	fputs("x,\"\",441205069,groningen,-9223372036854775808,0001-01-01,true,techniek,\"\",\n", f);
	fputs(",,869479167,,9223372036854775807,9999-12-31,FALSE,zorg,\"a\nb\",073186545\n", f);
	fprintf(f, "\"q,q\",\"with \"\"quotes\"\"\",73186545,drenthe,,,,ict,Frysl\xc3\xa2n%d,441205069\n", variant);
	for (size_t i = 0; i < rows; i++) {
		char s[32], n[32], d[16];

		if (i % 4 == 0)
			s[0] = '\0';
		else if (i % 4 == 1)
			snprintf(s, sizeof(s), "\"\"");
		else
			snprintf(s, sizeof(s), "s%zu-%d", i, variant);
		if (i % 5 == 0)
			n[0] = '\0';
		else
			snprintf(n, sizeof(n), "%d", (int)i - 20);
		if (i % 7 == 0)
			d[0] = '\0';
		else
			snprintf(d, sizeof(d), "19%02zu-0%zu-1%zu", i % 100, 1 + i % 9, i % 10);
		fprintf(f, "%zu,%s,%s,%s,%s,%s,%s,%s,t%zu and some text to fill the arena,%s%s", i, s, mem_bsns[i % 10],
			i % 4 == 3 ? "" : regions[i % 3], n, d, i % 3 == 0 ? "" : i % 3 == 1 ? "1" : "false",
			sectors[i % 5], i, i % 2 ? "" : mem_bsns[(i + 3) % 10], i % 6 == 0 ? "\r\n" : "\n");
	}
	fclose(f);
}

/* Waits until |name| has settled (CSV_CLEAN_SETTLE_S): only a full scan of
 * a settled file keeps a copy. A ctime cannot be set back, so this sleeps;
 * the fixtures are written at the start so that it rarely has to. */
static void mem_wait_settled(const char *name)
{
	char *p = mem_path(name);
	struct stat sb;
	struct timespec now;
	time_t t;

	if (stat(p, &sb) != 0) {
		free(p);
		return;
	}
	free(p);
	t = sb.st_mtim.tv_sec > sb.st_ctim.tv_sec ? sb.st_mtim.tv_sec : sb.st_ctim.tv_sec;
	while (clock_gettime(CLOCK_REALTIME, &now) == 0 && now.tv_sec <= t + CSV_CLEAN_SETTLE_S)
		usleep(100000);
}

static void memory_fixtures(void)
{
	FILE *f;
	char *p;

	mem_write("mem.csv", 40, 0);
	mem_write("mem_big.csv", 3000, 0);
	mem_write("mem_inplace.csv", 10, 1);
	mem_write("mem_touched.csv", 10, 1);
	mem_write("mem_renamed.csv", 10, 1);
	mem_write("mem_shrunk.csv", 10, 1);
	p = mem_path("mem_bad.csv");
	if ((f = fopen(p, "w"))) {
		fputs("bsn,notes\n441205069,a\n123456789,bad bsn\n869479167,\"\"\n", f);
		fclose(f);
	}
	free(p);
}

static struct adapter *mem_open(const char *name, const struct adapter_schema *schema, int disk_only,
				enum adapter_on_bad_row mode)
{
	char *p = mem_path(name);
	struct adapter_source src = { .kind = ADAPTER_CSV, .path = p, .on_bad_row = mode, .disk_only = disk_only };
	struct adapter *a = NULL;
	char err[512];

	if (adapter_open(&src, schema, &a, err, sizeof(err)) != 0) {
		printf("#   open %s: %s\n", p, err);
		check_failures++;
	}
	free(p);
	return a;
}

struct mem_scenario {
	const char *name;
	struct adapter_filter filters[3];
	size_t nfilters;
	unsigned proj[6];
	size_t nproj;
	size_t stop_after, abort_after;
	size_t min_rows;             /* the case is not vacuous */
};

struct mem_result {
	int rc;
	struct adapter_stats st;
	struct sink s;
};

static void mem_run(struct adapter *a, const struct mem_scenario *m, struct mem_result *out)
{
	const unsigned *proj = m->nproj ? m->proj : NULL;

	sink_init(&out->s, a ? &a->schema : &mem_schema, proj);
	out->s.stop_after = m->stop_after;
	out->s.abort_after = m->abort_after;
	memset(&out->st, 0xff, sizeof(out->st)); /* reset by the scan */
	out->rc = a ? adapter_scan(a, m->filters, m->nfilters, proj, m->nproj, collect, &out->s, &out->st, NULL) : -99;
}

static int mem_same(const struct mem_result *x, const struct mem_result *y)
{
	return x->rc == y->rc && strcmp(x->s.buf, y->s.buf) == 0 && x->s.rows == y->s.rows &&
	       x->st.rows_read == y->st.rows_read && x->st.rows_ok == y->st.rows_ok &&
	       x->st.rows_bad_skipped == y->st.rows_bad_skipped;
}

/* Every scan answered from memory gives what reading the file gives: the
 * same rows in the same order, the same values, the same counts, for every
 * type and filter, projections with repeats, a stop and an abort. */
static void csv_memory_same_as_file(void)
{
	struct adapter *mem = mem_open("mem.csv", &mem_schema, 0, ADAPTER_BAD_ROW_FAIL);
	struct adapter *disk = mem_open("mem.csv", &mem_schema, 1, ADAPTER_BAD_ROW_FAIL);
	struct adapter_value bsn1 = v_bsn(441205069), bsn8 = v_bsn(73186545), regio[2] = { v_cat(0), v_cat(2) };
	struct adapter_value sect[2] = { v_cat(1), v_cat(2) }, nmin = v_int(INT64_MIN);
	struct adapter_value ns[4] = { v_int(-19), v_int(0), v_int(6), v_int(INT64_MAX) }, date = v_date("1911-03-11");
	struct adapter_value yes = v_bool(1), no = v_bool(0), empty = v_str(""), twolines = v_str("a\nb");
	struct adapter_value s7 = v_str("s7-0"), none = v_bsn(123456782), b2 = v_bsn(586255771);
	struct mem_scenario sc[] = {
		{ "all", { { 0 } }, 0, { 0 }, 0, 0, 0, 43 },
		{ "bsn, projection with repeats", { { M_BSN, &bsn1, 1 } }, 1, { M_S, M_BSN, M_S, M_REGIO, M_BSN2 }, 5, 0, 0, 5 },
		{ "8-digit bsn", { { M_BSN, &bsn8, 1 } }, 1, { M_T, M_BSN }, 2, 0, 0, 5 },
		{ "category in (nullable)", { { M_REGIO, regio, 2 } }, 1, { M_REGIO, M_N }, 2, 0, 0, 10 },
		{ "int eq, the minimum", { { M_N, &nmin, 1 } }, 1, { M_N, M_D }, 2, 0, 0, 1 },
		{ "int in", { { M_N, ns, 4 } }, 1, { M_N, M_N, M_BSN }, 3, 0, 0, 3 },
		{ "date", { { M_D, &date, 1 } }, 1, { M_D, M_BSN }, 2, 0, 0, 1 },
		{ "bool true", { { M_OK, &yes, 1 } }, 1, { M_OK, M_T }, 2, 0, 0, 10 },
		{ "bool false", { { M_OK, &no, 1 } }, 1, { M_T, M_OK }, 2, 0, 0, 10 },
		{ "quoted empty string, not NULL", { { M_S, &empty, 1 } }, 1, { M_BSN, M_S, M_T }, 3, 0, 0, 10 },
		{ "string over two lines", { { M_T, &twolines, 1 } }, 1, { M_T }, 1, 0, 0, 1 },
		{ "string", { { M_S, &s7, 1 } }, 1, { M_S, M_T }, 2, 0, 0, 0 },
		{ "three filters", { { M_SECTOR, sect, 2 }, { M_OK, &no, 1 }, { M_BSN2, &b2, 1 } }, 3, { M_BSN, M_SECTOR }, 2, 0, 0, 0 },
		{ "nullable bsn", { { M_BSN2, &bsn1, 1 } }, 1, { M_BSN2, M_BSN }, 2, 0, 0, 1 },
		{ "not found", { { M_BSN, &none, 1 } }, 1, { 0 }, 0, 0, 0, 0 },
		{ "stop", { { 0 } }, 0, { M_BSN }, 1, 3, 0, 3 },
		{ "stop on a filtered row", { { M_OK, &yes, 1 } }, 1, { M_BSN, M_D }, 2, 4, 0, 4 },
		{ "abort", { { M_REGIO, regio, 2 } }, 1, { 0 }, 0, 0, 5, 5 },
	};
	struct mem_result first, m, d;

	if (!mem || !disk)
		goto out;
	mem_wait_settled("mem.csv");
	/* the first scan reads the file, types everything and keeps the rows */
	mem_run(mem, &sc[0], &first);
	CHECK(first.rc == 0 && first.s.rows == 43 && mem->csv->from_memory == 0);
	CHECK(mem->csv->clean == 1 && mem->csv->copy != NULL && mem->csv->copy->nrows == 43);
	CHECK(mem->csv->copy && mem->csv->copy->cap == 43); /* cut to size */
	mem_run(disk, &sc[0], &d);
	CHECK(mem_same(&first, &d));
	for (size_t i = 0; i < sizeof(sc) / sizeof(sc[0]); i++) {
		mem_run(mem, &sc[i], &m);
		CHECK(mem->csv->from_memory == 1);
		mem_run(disk, &sc[i], &d);
		CHECK(disk->csv->from_memory == 0 && disk->csv->copy == NULL);
		if (!mem_same(&m, &d) || d.s.rows < sc[i].min_rows)
			printf("#   %s: memory rc %d, %zu rows:\n%s#   file rc %d, %zu rows:\n%s", sc[i].name, m.rc,
			       m.s.rows, m.s.buf, d.rc, d.s.rows, d.s.buf);
		CHECK(mem_same(&m, &d));
		CHECK(d.s.rows >= sc[i].min_rows);
	}
	/* and the stop and the abort were what the callback asked for */
	mem_run(mem, &sc[15], &m);
	CHECK(m.rc == 0 && m.s.rows == 3 && m.st.rows_read == 3 && m.st.rows_ok == 3);
	mem_run(mem, &sc[17], &m);
	CHECK(m.rc == -42 && m.s.rows == 5 && m.st.rows_ok == 5 && m.st.rows_read > 5);
	/* the copy's strings are NUL-terminated (collect checks) and NULL is not "" */
	mem_run(mem, &sc[9], &m);
	CHECK(strstr(m.s.buf, "|~|") == NULL);
	/* the path naming no file fails the scan and drops the copy; when it
	 * names the file again, the file is read and kept again */
	{
		char *path = mem->path, gone[] = "/nonexistent/mem.csv";

		mem->path = gone;
		mem_run(mem, &sc[0], &m);
		CHECK(m.rc == ADAPTER_ERR_IO && m.s.rows == 0 && m.st.rows_read == 0);
		CHECK(mem->csv->copy == NULL && mem->csv->clean == 0 && mem->csv->fd == -1);
		mem->path = path;
		mem_run(mem, &sc[0], &m);
		CHECK(m.rc == 0 && mem->csv->from_memory == 0 && mem_same(&m, &first));
		mem_run(mem, &sc[0], &m);
		CHECK(mem->csv->from_memory == 1 && mem_same(&m, &first));
	}
out:
	adapter_close(mem);
	adapter_close(disk);
}

static void mem_scan_all(struct adapter *a, struct mem_result *r)
{
	static const struct mem_scenario all = { "all", { { 0 } }, 0, { 0 }, 0, 0, 0, 0 };

	mem_run(a, &all, r);
}

/* A changed file is read again and the next full scan of it, once it has
 * settled, keeps the new rows: rewritten in place with the same size and
 * the old mtime put back (only the ctime tells), touched, shrunk, and
 * replaced by a rename (the path names another file: it is opened, with
 * and without in_memory). */
static void csv_memory_sees_changes(void)
{
	const char *names[] = { "mem_inplace.csv", "mem_touched.csv", "mem_renamed.csv", "mem_shrunk.csv" };
	struct adapter *a[4], *renamed_disk = mem_open("mem_renamed.csv", &mem_schema, 1, ADAPTER_BAD_ROW_FAIL);
	struct mem_result old[4], r, d;
	struct stat sb;
	char *p, *q;

	for (int i = 0; i < 4; i++) {
		a[i] = mem_open(names[i], &mem_schema, 0, ADAPTER_BAD_ROW_FAIL);
		mem_wait_settled(names[i]);
	}
	for (int i = 0; i < 4; i++) {
		if (!a[i] || !renamed_disk)
			goto out;
		mem_scan_all(a[i], &old[i]);
		CHECK(old[i].rc == 0 && old[i].s.rows == 13 && a[i]->csv->copy != NULL);
		mem_scan_all(a[i], &r);
		CHECK(a[i]->csv->from_memory == 1 && mem_same(&r, &old[i]));
	}

	/* in place, the same size, the old mtime back */
	p = mem_path(names[0]);
	CHECK(stat(p, &sb) == 0);
	mem_write("mem_inplace.csv.new", 10, 2);
	q = mem_path("mem_inplace.csv.new");
	{
		FILE *in = fopen(q, "r"), *out = fopen(p, "r+");
		char buf[4096];
		size_t n;

		CHECK(in && out);
		while (in && out && (n = fread(buf, 1, sizeof(buf), in)) > 0)
			CHECK(fwrite(buf, 1, n, out) == n);
		if (in)
			fclose(in);
		if (out)
			fclose(out);
	}
	{
		struct timespec ts[2] = { sb.st_atim, sb.st_mtim };
		struct stat now;

		CHECK(utimensat(AT_FDCWD, p, ts, 0) == 0);
		CHECK(stat(p, &now) == 0 && now.st_size == sb.st_size && now.st_ino == sb.st_ino &&
		      now.st_mtim.tv_sec == sb.st_mtim.tv_sec && now.st_mtim.tv_nsec == sb.st_mtim.tv_nsec);
	}
	unlink(q);
	free(q);
	free(p);
	/* touched: nothing but the mtime */
	p = mem_path(names[1]);
	{
		struct timespec ts[2] = { { 0, UTIME_OMIT }, { 1000000000, 0 } };
		CHECK(utimensat(AT_FDCWD, p, ts, 0) == 0);
	}
	free(p);
	/* replaced by a rename: another inode under the name */
	mem_write("mem_renamed.csv.new", 10, 2);
	p = mem_path(names[2]);
	q = mem_path("mem_renamed.csv.new");
	CHECK(rename(q, p) == 0);
	free(q);
	free(p);
	/* shrunk: rewritten, fewer rows */
	mem_write(names[3], 2, 2);

	mem_scan_all(a[0], &r);
	CHECK(r.rc == 0 && a[0]->csv->from_memory == 0 && r.s.rows == 13 && !mem_same(&r, &old[0]));
	CHECK_CONTAINS(r.s.buf, "Frysl\xc3\xa2n2");
	CHECK(a[0]->csv->copy == NULL); /* the new content has not settled */
	mem_scan_all(a[1], &r);
	CHECK(r.rc == 0 && a[1]->csv->from_memory == 0 && mem_same(&r, &old[1]));
	mem_scan_all(a[2], &r);
	mem_scan_all(renamed_disk, &d);
	CHECK(r.rc == 0 && a[2]->csv->from_memory == 0 && r.s.rows == 13 && !mem_same(&r, &old[2]));
	CHECK(mem_same(&r, &d));
	CHECK_CONTAINS(r.s.buf, "Frysl\xc3\xa2n2");
	CHECK(a[2]->csv->copy == NULL); /* the new file has not settled */
	mem_scan_all(a[3], &r);
	CHECK(r.rc == 0 && a[3]->csv->from_memory == 0 && r.s.rows == 5);
	CHECK_CONTAINS(r.s.buf, "Frysl\xc3\xa2n2");

	/* settled again: the next full scan keeps the new rows */
	for (int i = 0; i < 4; i++)
		mem_wait_settled(names[i]);
	for (int i = 0; i < 4; i++) {
		struct mem_result full;

		mem_scan_all(a[i], &full);
		CHECK(full.rc == 0 && a[i]->csv->from_memory == 0 && a[i]->csv->copy != NULL);
		mem_scan_all(a[i], &r);
		CHECK(a[i]->csv->from_memory == 1 && mem_same(&r, &full));
		if (i != 1)
			CHECK_CONTAINS(r.s.buf, "Frysl\xc3\xa2n2");
	}
out:
	for (int i = 0; i < 4; i++)
		adapter_close(a[i]);
	adapter_close(renamed_disk);
}

/* A file with a bad row is never clean, so it never gets a copy: skipped
 * or failing, every scan reads it and reports the row again. */
static void csv_memory_not_for_bad_rows(void)
{
	struct adapter *skip = mem_open("mem_bad.csv", &two_schema, 0, ADAPTER_BAD_ROW_SKIP);
	struct adapter *fail = mem_open("mem_bad.csv", &two_schema, 0, ADAPTER_BAD_ROW_FAIL);
	struct mem_result r;
	struct diag d = { 0 };
	struct sink s;

	if (!skip || !fail)
		goto out;
	mem_wait_settled("mem_bad.csv");
	for (int i = 0; i < 3; i++) {
		sink_init(&s, &two_schema, NULL);
		CHECK(adapter_scan(skip, NULL, 0, NULL, 0, collect, &s, &r.st, &d) == 0);
		CHECK_STR(s.buf, "441205069|a\n869479167|\n");
		CHECK(r.st.rows_read == 3 && r.st.rows_ok == 2 && r.st.rows_bad_skipped == 1);
		CHECK(skip->csv->copy == NULL && skip->csv->clean == 0 && skip->csv->from_memory == 0);
		CHECK(d.warnings == i + 1);
		mem_scan_all(fail, &r);
		CHECK(r.rc == ADAPTER_ERR_BAD_ROW && r.s.rows == 1);
		CHECK(fail->csv->copy == NULL && fail->csv->clean == 0);
	}
	diag_clear(&d);
out:
	adapter_close(skip);
	adapter_close(fail);
}

/* in_memory: false: still the clean state (fewer fields typed), no copy. */
static void csv_memory_disk_only(void)
{
	struct adapter *a = mem_open("mem.csv", &mem_schema, 1, ADAPTER_BAD_ROW_FAIL);
	struct mem_result r;

	if (!a)
		return;
	mem_wait_settled("mem.csv");
	for (int i = 0; i < 3; i++) {
		mem_scan_all(a, &r);
		CHECK(r.rc == 0 && r.s.rows == 43);
		CHECK(a->csv->clean == 1 && a->csv->copy == NULL && a->csv->from_memory == 0);
	}
	CHECK(a->csv->copy_nomem == 0);
	adapter_close(a);
}

/* A file whose mtime is the largest a time_t holds (tmpfs keeps it; ext4
 * clamps to 2446): whether it has settled is asked without overflowing, and
 * a file stamped in the future is not taken for settled. */
static void csv_memory_far_future_mtime(void)
{
	char shm[] = "/dev/shm/np-adapter-XXXXXX", *p;
	struct timespec ts[2] = { { 0, UTIME_OMIT }, { INT64_MAX, 0 } };
	struct stat sb;
	struct adapter *a = NULL;
	struct adapter_source src = { .kind = ADAPTER_CSV };
	struct mem_result r;
	char err[512];

	if (!mkdtemp(shm)) {
		printf("# no /dev/shm: skipped\n");
		return;
	}
	p = check_write(shm, "future.csv", "bsn,notes\n441205069,a\n");
	if (utimensat(AT_FDCWD, p, ts, 0) != 0 || stat(p, &sb) != 0 || sb.st_mtim.tv_sec != INT64_MAX) {
		printf("# this tmpfs does not keep the largest mtime: skipped\n");
		goto out;
	}
	src.path = p;
	CHECK(adapter_open(&src, &two_schema, &a, err, sizeof(err)) == 0);
	for (int i = 0; a && i < 2; i++) {
		mem_scan_all(a, &r);
		CHECK(r.rc == 0 && r.s.rows == 1);
		CHECK(a->csv->clean == 0 && a->csv->copy == NULL && a->csv->from_memory == 0);
	}
	adapter_close(a);
out:
	unlink(p);
	free(p);
	rmdir(shm);
}

/* The typed values of a row (a->vals, the scan's projection array) hold
 * BSNs too: wiped before they are freed, like the copy and the buffers,
 * whether the rows came from the file or from the copy. */
static void csv_values_wiped(void)
{
	struct adapter *a = mem_open("mem.csv", &mem_schema, 0, ADAPTER_BAD_ROW_FAIL);
	struct adapter_value bsn = v_bsn(586255771);
	struct adapter_filter flt = { M_BSN, &bsn, 1 };
	unsigned proj[] = { M_BSN };
	struct sink s;

	if (!a)
		return;
	mem_wait_settled("mem.csv");
	free_watch_bsn = 586255771;
	free_watch_hits = 0;
	for (int i = 0; i < 3; i++) { /* the file (the copy built), then the copy */
		sink_init(&s, &a->schema, proj);
		CHECK(adapter_scan(a, &flt, 1, proj, 1, collect, &s, NULL, NULL) == 0 && s.rows > 0);
		CHECK(a->csv->from_memory == (i > 0));
	}
	adapter_close(a);
	free_watch_bsn = 0;
	CHECK(free_watch_hits == 0);
}

/* Rows as a count and an FNV-1a hash of their text (too many for a sink). */
struct digest {
	struct sink s;
	uint64_t h;
	size_t rows;
};

static int digest_row(void *arg, const struct adapter_value *v, size_t n)
{
	struct digest *g = arg;
	int rc;

	g->s.len = 0;
	g->s.buf[0] = '\0';
	rc = collect(&g->s, v, n);
	for (size_t i = 0; i < g->s.len; i++)
		g->h = (g->h ^ (unsigned char)g->s.buf[i]) * 1099511628211u;
	g->rows++;
	return rc;
}

static int mem_digest(struct adapter *a, struct digest *g, struct adapter_stats *st)
{
	memset(g, 0, sizeof(*g));
	g->s.schema = &mem_schema;
	g->h = 14695981039346656037u;
	return adapter_scan(a, NULL, 0, NULL, 0, digest_row, g, st, NULL);
}

/* Each allocation of the copy failing in turn (the first ones, its growth
 * past 1024 rows and 4 KiB of strings a column, cutting it to size): the scan
 * still answers every row, from the file, and leaks nothing; the next one
 * is right too, from memory when the copy was kept. */
static void csv_memory_allocation_fails(void)
{
	struct adapter *disk = mem_open("mem_big.csv", &mem_schema, 1, ADAPTER_BAD_ROW_FAIL);
	struct digest want, got;
	struct adapter_stats st;
	long k, kept_from = -1, dropped = 0;

	if (!disk)
		return;
	mem_wait_settled("mem_big.csv");
	CHECK(mem_digest(disk, &want, &st) == 0 && want.rows == 3003);
	adapter_close(disk);
	for (k = 0; k < 400; k++) {
		long live = alloc_live, used;
		struct adapter *a = mem_open("mem_big.csv", &mem_schema, 0, ADAPTER_BAD_ROW_FAIL);
		int rc, kept;

		if (!a)
			return;
		alloc_count = 0;
		alloc_fail_at = k;
		rc = mem_digest(a, &got, &st);
		alloc_fail_at = -1;
		used = alloc_count;
		kept = a->csv->copy != NULL;
		if (k == 0) {
			CHECK(rc == ADAPTER_ERR_NOMEM); /* the scan's own array */
		} else {
			CHECK(rc == 0 && got.rows == want.rows && got.h == want.h && st.rows_read == 3003);
			CHECK(a->csv->clean == 1);
			if (!kept) {
				CHECK(a->csv->copy_nomem == 1);
				dropped++;
			} else if (kept_from < 0) {
				kept_from = k;
			}
		}
		CHECK(mem_digest(a, &got, &st) == 0 && got.rows == want.rows && got.h == want.h);
		CHECK(a->csv->from_memory == kept);
		adapter_close(a);
		CHECK(alloc_live == live);
		if (k > 0 && used <= k) /* no allocation failed any more */
			break;
	}
	printf("# copy of 3003 rows: each of %ld allocations failed in turn, %ld of them dropped the copy\n", k,
	       dropped);
	CHECK(k < 400 && dropped > 20 && kept_from > 0);
}

/* ---- CSV: the path names another file ------------------------------------------- */

/* Writes |text| to |name|.tmp and renames it over |name|, as an export job
 * replaces its file. */
static void replace_file(const char *name, const char *text)
{
	char tmp[256], *p, *q;

	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	q = check_write(dir, tmp, text);
	p = mem_path(name);
	CHECK(rename(q, p) == 0);
	free(p);
	free(q);
}

static struct adapter *follow_open(const char *name, int headerless, enum adapter_on_bad_row mode)
{
	char *p = mem_path(name);
	struct adapter_source src = { .kind = ADAPTER_CSV, .path = p, .on_bad_row = mode, .headerless = headerless };
	struct adapter *a = NULL;
	char err[512];

	if (adapter_open(&src, &two_schema, &a, err, sizeof(err)) != 0) {
		printf("#   open %s: %s\n", p, err);
		check_failures++;
	}
	free(p);
	return a;
}

/* One scan of every row of |a| (two_schema) into a fresh |s|, |st|, |d|. */
static int follow_scan(struct adapter *a, struct sink *s, struct adapter_stats *st, struct diag *d)
{
	sink_init(s, &two_schema, NULL);
	diag_clear(d);
	memset(st, 0xff, sizeof(*st)); /* reset by the scan */
	return scan_all(a, s, st, d);
}

/* Whether |a| has |name| open (its inode), not the file it had before. */
static int follow_has(const struct adapter *a, const char *name)
{
	char *p = mem_path(name);
	struct stat sb;
	int ok = stat(p, &sb) == 0 && a->csv->fd >= 0 && a->csv->open_st.st_ino == sb.st_ino &&
		 a->csv->open_st.st_dev == sb.st_dev;

	free(p);
	return ok;
}

/* Settled files with a copy in memory to lose (written with the other
 * fixtures, so that they have settled when their tests run). */
static void follow_fixtures(void)
{
	free(check_write(dir, "f_bad.csv", "bsn,notes\n441205069,a\n869479167,\"\"\n"));
	free(check_write(dir, "f_gone.csv", "bsn,notes\n441205069,a\n869479167,\"\"\n"));
	free(check_write(dir, "f_headerless.csv", "441205069,a\n869479167,\"\"\n"));
	free(check_write(dir, "f_denied.csv", "bsn,notes\n441205069,a\n869479167,\"\"\n"));
}

/* A new export renamed over the file is read from the next scan on, with
 * its own header: the values follow the column names wherever they moved.
 * Nothing is opened again while the path names the same file, and a
 * symbolic link turned to another file is followed the same way. */
static void csv_follows_rename(void)
{
	struct adapter *a = NULL, *skip = NULL, *link = NULL;
	struct adapter_stats st;
	struct diag d = { 0 };
	struct sink s;
	char *p, *q;
	void *rec;

	free(check_write(dir, "f_order.csv", "bsn,notes\n441205069,first\n869479167,\n"));
	if (!(a = follow_open("f_order.csv", 0, ADAPTER_BAD_ROW_FAIL)))
		goto out;
	CHECK(follow_scan(a, &s, &st, &d) == 0);
	CHECK_STR(s.buf, "441205069|first\n869479167|~\n");
	rec = a->csv->rec;
	CHECK(follow_scan(a, &s, &st, &d) == 0 && a->csv->rec == rec && follow_has(a, "f_order.csv"));

	/* other column order, a column more, a byte order mark, quotes */
	replace_file("f_order.csv", "\xef\xbb\xbfnotes,extra,bsn\n\"second, quoted\",x,073186545\n,y,441205069\n"
				    "\"\",z,869479167\n");
	CHECK(follow_scan(a, &s, &st, &d) == 0 && d.errors == 0 && d.warnings == 0);
	CHECK_STR(s.buf, "073186545|second, quoted\n441205069|~\n869479167|\n");
	CHECK(st.rows_read == 3 && st.rows_ok == 3 && st.rows_bad_skipped == 0);
	CHECK(follow_has(a, "f_order.csv") && a->csv->ncols == 3 && a->csv->copy == NULL);
	/* the order back, one row fewer; a filter and a projection on the new mapping */
	replace_file("f_order.csv", "bsn,notes\n586255771,third\n");
	{
		struct adapter_value want = v_bsn(586255771);
		struct adapter_filter flt = { 0, &want, 1 };
		unsigned proj[] = { 1, 0, 1 };

		sink_init(&s, &two_schema, proj);
		CHECK(adapter_scan(a, &flt, 1, proj, 3, collect, &s, &st, &d) == 0);
		CHECK_STR(s.buf, "third|586255771|third\n");
		CHECK(st.rows_read == 1 && st.rows_ok == 1);
	}

	/* the counts of a new file with a bad row, skipped */
	free(check_write(dir, "f_skip.csv", "bsn,notes\n441205069,a\n"));
	if (!(skip = follow_open("f_skip.csv", 0, ADAPTER_BAD_ROW_SKIP)))
		goto out;
	CHECK(follow_scan(skip, &s, &st, &d) == 0 && st.rows_read == 1 && st.rows_ok == 1);
	replace_file("f_skip.csv", "notes,bsn\nb,869479167\nbad,123456789\nc,441205069\n");
	CHECK(follow_scan(skip, &s, &st, &d) == 0);
	CHECK_STR(s.buf, "869479167|b\n441205069|c\n");
	CHECK(st.rows_read == 3 && st.rows_ok == 2 && st.rows_bad_skipped == 1);
	CHECK(d.errors == 0 && d.warnings == 1);
	CHECK_CONTAINS(diag_text(&d), "f_skip.csv:3:5: warning: field 'bsn': not a valid BSN");

	/* a symbolic link pointed at another file */
	free(check_write(dir, "f_link_a.csv", "bsn,notes\n441205069,from a\n"));
	free(check_write(dir, "f_link_b.csv", "notes,bsn\nfrom b,869479167\n"));
	p = mem_path("f_link.csv");
	q = mem_path("f_link.csv.tmp");
	CHECK(symlink("f_link_a.csv", p) == 0);
	if (!(link = follow_open("f_link.csv", 0, ADAPTER_BAD_ROW_FAIL)))
		goto out_link;
	CHECK(follow_scan(link, &s, &st, &d) == 0);
	CHECK_STR(s.buf, "441205069|from a\n");
	CHECK(symlink("f_link_b.csv", q) == 0 && rename(q, p) == 0);
	CHECK(follow_scan(link, &s, &st, &d) == 0);
	CHECK_STR(s.buf, "869479167|from b\n");
out_link:
	free(q);
	free(p);
out:
	diag_clear(&d);
	adapter_close(a);
	adapter_close(skip);
	adapter_close(link);
}

/* A new file whose header does not fit fails the scan, naming the path
 * and the reason, and drops (wipes) what the adapter held of the old
 * file; every scan tries again, and a good file renamed in is read. */
static void csv_rename_bad_header(void)
{
	static const struct {
		const char *text;
		int rc;
		const char *why;
	} bad[] = {
		{ "bsn,remarks\n441205069,x\n", ADAPTER_ERR_SCHEMA,
		  "f_bad.csv:1: header: no column for schema field 'notes' (the header has 'bsn', 'remarks')" },
		{ "notes,bsn,notes\na,441205069,b\n", ADAPTER_ERR_SCHEMA, "f_bad.csv:1: header: column 'notes' appears twice" },
		{ "", ADAPTER_ERR_FORMAT, "f_bad.csv: empty file: expected a header naming the columns" },
		{ "bsn,\"notes\n441205069,x\n", ADAPTER_ERR_FORMAT, "f_bad.csv:1:5: header: column 2: quoted field not closed" },
	};
	struct adapter *a = follow_open("f_bad.csv", 0, ADAPTER_BAD_ROW_FAIL);
	struct adapter_stats st;
	struct diag d = { 0 };
	struct sink s;
	char *p = mem_path("f_bad.csv"), head[300];

	if (!a)
		goto out;
	snprintf(head, sizeof(head), "%s: error: the file now at this path cannot be used: %s", p, p);
	mem_wait_settled("f_bad.csv");
	CHECK(follow_scan(a, &s, &st, &d) == 0 && a->csv->copy != NULL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		replace_file("f_bad.csv", bad[i].text);
		for (int again = 0; again < 2; again++) {
			int rc = follow_scan(a, &s, &st, &d);

			if (rc != bad[i].rc)
				printf("#   case %zu: rc %d: %s", i, rc, diag_text(&d));
			CHECK(rc == bad[i].rc && s.rows == 0 && d.errors == 1 && d.warnings == 0);
			CHECK(st.rows_read == 0 && st.rows_ok == 0 && st.rows_bad_skipped == 0);
			CHECK(strncmp(diag_text(&d), head, strlen(head)) == 0);
			CHECK_CONTAINS(diag_text(&d), bad[i].why + strlen("f_bad.csv"));
			CHECK(a->csv->copy == NULL && a->csv->clean == 0 && a->csv->fd == -1);
		}
	}
	replace_file("f_bad.csv", "notes,bsn\nfixed,869479167\n");
	CHECK(follow_scan(a, &s, &st, &d) == 0 && d.errors == 0 && st.rows_read == 1);
	CHECK_STR(s.buf, "869479167|fixed\n");
	/* settled, the good file gets its copy */
	mem_wait_settled("f_bad.csv");
	CHECK(follow_scan(a, &s, &st, &d) == 0 && a->csv->copy != NULL && a->csv->from_memory == 0);
	CHECK(follow_scan(a, &s, &st, &d) == 0 && a->csv->from_memory == 1);
	CHECK_STR(s.buf, "869479167|fixed\n");
out:
	diag_clear(&d);
	free(p);
	adapter_close(a);
}

/* The path naming no file (removed, or between an unlink and a rename),
 * or a directory, fails the scan instead of answering from the file that
 * was there, until a file is back; also the same file renamed away and
 * back, and a headerless source. */
static void csv_path_removed(void)
{
	static const char *const names[] = { "f_gone.csv", "f_headerless.csv" };

	for (int h = 0; h < 2; h++) {
		struct adapter *a = follow_open(names[h], h, ADAPTER_BAD_ROW_FAIL);
		struct adapter_stats st;
		struct diag d = { 0 };
		struct sink s;
		char *p = mem_path(names[h]), away[300];

		if (!a) {
			free(p);
			continue;
		}
		snprintf(away, sizeof(away), "%s.away", p);
		mem_wait_settled(names[h]);
		CHECK(follow_scan(a, &s, &st, &d) == 0 && a->csv->copy != NULL);
		CHECK_STR(s.buf, "441205069|a\n869479167|\n");
		/* removed */
		CHECK(rename(p, away) == 0);
		for (int again = 0; again < 2; again++) {
			CHECK(follow_scan(a, &s, &st, &d) == ADAPTER_ERR_IO && s.rows == 0 && d.errors == 1);
			CHECK(st.rows_read == 0 && st.rows_ok == 0);
			CHECK(strncmp(diag_text(&d), p, strlen(p)) == 0);
			CHECK_CONTAINS(diag_text(&d), ": error: no such file: removed, or not yet renamed into place");
			CHECK(a->csv->copy == NULL && a->csv->clean == 0 && a->csv->fd == -1);
		}
		/* the same file back */
		CHECK(rename(away, p) == 0);
		CHECK(follow_scan(a, &s, &st, &d) == 0 && d.errors == 0 && follow_has(a, names[h]));
		CHECK_STR(s.buf, "441205069|a\n869479167|\n");
		/* a directory */
		CHECK(rename(p, away) == 0 && mkdir(p, 0700) == 0);
		CHECK(follow_scan(a, &s, &st, &d) == ADAPTER_ERR_IO && s.rows == 0);
		CHECK_CONTAINS(diag_text(&d), ": error: the file now at this path cannot be used: ");
		CHECK_CONTAINS(diag_text(&d), ": not a regular file");
		CHECK(rmdir(p) == 0);
		CHECK(follow_scan(a, &s, &st, &d) == ADAPTER_ERR_IO && a->csv->fd == -1);
		/* another file, written in place of the removed one */
		free(check_write(dir, names[h], h ? "\xef\xbb\xbf" "073186545,new\n" : "notes,bsn\nnew,073186545\n"));
		CHECK(follow_scan(a, &s, &st, &d) == 0 && d.errors == 0 && st.rows_read == 1 && st.rows_ok == 1);
		CHECK_STR(s.buf, "073186545|new\n");
		/* and one renamed over it */
		replace_file(names[h], h ? "586255771,\"x\"\n441205069,\n" : "bsn,notes\n586255771,\"x\"\n441205069,\n");
		CHECK(follow_scan(a, &s, &st, &d) == 0 && st.rows_read == 2 && st.rows_ok == 2);
		CHECK_STR(s.buf, "586255771|x\n441205069|~\n");
		unlink(away);
		diag_clear(&d);
		free(p);
		adapter_close(a);
	}
}

/* A path the node may no longer look at (EACCES: it dropped its privileges
 * to a user who cannot search the dataset's folder, docs/security.md): the
 * open file is taken for the path's, as before the check existed, copy
 * and all; a file renamed over is not seen until the path can be looked at
 * again. With no file open, the scan fails. */
static void csv_path_not_searchable(void)
{
	struct adapter *a = follow_open("f_denied.csv", 0, ADAPTER_BAD_ROW_FAIL);
	struct adapter_stats st;
	struct diag d = { 0 };
	struct sink s;
	char *p = mem_path("f_denied.csv");

	if (!a)
		goto out;
	mem_wait_settled("f_denied.csv");
	CHECK(follow_scan(a, &s, &st, &d) == 0 && a->csv->copy != NULL);
	stat_denied = 1;
	CHECK(follow_scan(a, &s, &st, &d) == 0 && d.errors == 0 && a->csv->from_memory == 1);
	CHECK_STR(s.buf, "441205069|a\n869479167|\n");
	/* (the rename unlinks the old file: its ctime changes, so the copy goes
	 * and the old file is read again) */
	replace_file("f_denied.csv", "notes,bsn\nnew,073186545\n");
	CHECK(follow_scan(a, &s, &st, &d) == 0 && d.errors == 0);
	CHECK_STR(s.buf, "441205069|a\n869479167|\n");
	stat_denied = 0;
	CHECK(follow_scan(a, &s, &st, &d) == 0 && d.errors == 0 && a->csv->from_memory == 0);
	CHECK_STR(s.buf, "073186545|new\n");
	/* nothing open (the path was gone), then refused: fails, says why */
	CHECK(unlink(p) == 0);
	CHECK(follow_scan(a, &s, &st, &d) == ADAPTER_ERR_IO && a->csv->fd == -1);
	free(check_write(dir, "f_denied.csv", "bsn,notes\n586255771,back\n"));
	stat_denied = 1;
	CHECK(follow_scan(a, &s, &st, &d) == ADAPTER_ERR_IO && s.rows == 0);
	CHECK_CONTAINS(diag_text(&d), "f_denied.csv: error: cannot stat: Permission denied");
	stat_denied = 0;
	CHECK(follow_scan(a, &s, &st, &d) == 0);
	CHECK_STR(s.buf, "586255771|back\n");
out:
	stat_denied = 0;
	diag_clear(&d);
	free(p);
	adapter_close(a);
}

/* A file rewritten in place (the same inode) is read anew too once its
 * size, mtime or ctime changed: its header is read again, so swapped
 * columns of the same length are not read under each other's names, a
 * header that lost a field fails the scan, and a file emptied for rewriting
 * is an error rather than no rows. The path still names the file, so it
 * stays open through a failure, and it is read through the open fd: also
 * when the path cannot be looked at. */
static void csv_inplace_rewrite(void)
{
	struct adapter *a;
	struct adapter_stats st;
	struct diag d = { 0 };
	struct sink s;
	struct stat before, now;
	char *p = mem_path("f_inplace.csv");

	free(check_write(dir, "f_inplace.csv", "bsn,notes\n441205069,869479167\n"));
	{
		/* written long ago: a rewrite of the same size changes the mtime
		 * whatever the clock's tick */
		struct timespec ts[2] = { { 0, UTIME_OMIT }, { 1000000000, 0 } };

		CHECK(utimensat(AT_FDCWD, p, ts, 0) == 0);
	}
	if (!(a = follow_open("f_inplace.csv", 0, ADAPTER_BAD_ROW_FAIL))) {
		free(p);
		return;
	}
	CHECK(follow_scan(a, &s, &st, &d) == 0);
	CHECK_STR(s.buf, "441205069|869479167\n");
	CHECK(stat(p, &before) == 0);
	/* the same bytes but the header's two names swapped: both are BSNs */
	free(check_write(dir, "f_inplace.csv", "notes,bsn\n441205069,869479167\n"));
	CHECK(stat(p, &now) == 0 && now.st_ino == before.st_ino && now.st_size == before.st_size);
	CHECK(follow_scan(a, &s, &st, &d) == 0 && d.errors == 0);
	CHECK_STR(s.buf, "869479167|441205069\n");
	/* emptied, as a writer does before writing */
	free(check_write(dir, "f_inplace.csv", ""));
	CHECK(follow_scan(a, &s, &st, &d) == ADAPTER_ERR_FORMAT && s.rows == 0);
	CHECK_CONTAINS(diag_text(&d), "f_inplace.csv: empty file: expected a header naming the columns");
	CHECK(a->csv->fd >= 0 && a->csv->copy == NULL && a->csv->clean == 0);
	/* a header without the notes column */
	free(check_write(dir, "f_inplace.csv", "bsn\n441205069\n"));
	CHECK(follow_scan(a, &s, &st, &d) == ADAPTER_ERR_SCHEMA && s.rows == 0);
	CHECK_CONTAINS(diag_text(&d), "f_inplace.csv:1: header: no column for schema field 'notes' (the header has 'bsn')");
	/* written whole again */
	free(check_write(dir, "f_inplace.csv", "notes,extra,bsn\nback,,586255771\n"));
	CHECK(follow_scan(a, &s, &st, &d) == 0 && d.errors == 0 && st.rows_read == 1);
	CHECK_STR(s.buf, "586255771|back\n");
	/* the path cannot be looked at: the same, through the open file */
	stat_denied = 1;
	free(check_write(dir, "f_inplace.csv", "bsn,notes\n073186545,x\n"));
	CHECK(follow_scan(a, &s, &st, &d) == 0 && d.errors == 0);
	CHECK_STR(s.buf, "073186545|x\n");
	free(check_write(dir, "f_inplace.csv", "bsn\n441205069\n"));
	CHECK(follow_scan(a, &s, &st, &d) == ADAPTER_ERR_SCHEMA && s.rows == 0 && a->csv->fd >= 0);
	free(check_write(dir, "f_inplace.csv", "notes,bsn\ny,586255771\n"));
	CHECK(follow_scan(a, &s, &st, &d) == 0 && d.errors == 0);
	CHECK_STR(s.buf, "586255771|y\n");
	CHECK(follow_has(a, "f_inplace.csv"));
	stat_denied = 0;
	diag_clear(&d);
	free(p);
	adapter_close(a);
}

/* Open file descriptors of this process. */
static int count_fds(void)
{
	DIR *dp = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!dp)
		return -1;
	while ((e = readdir(dp)))
		if (e->d_name[0] != '.')
			n++;
	closedir(dp);
	return n - 1; /* the one opendir holds */
}

/* Each allocation of a scan that opens the renamed file (with a header,
 * headerless) or reads a file rewritten in place anew failing in turn: the
 * scan fails with "out of memory" and nothing leaks, memory or fd; the
 * adapter is still usable and the next scan reads the new file. */
static void csv_reopen_allocation_fails(void)
{
	static const struct {
		int headerless, inplace;
		const char *old, *new;
	} modes[] = {
		{ 0, 0, "bsn,notes\n441205069,a\n", "notes,bsn\nb,869479167\n" },
		{ 1, 0, "441205069,a\n", "869479167,b\n" },
		{ 0, 1, "bsn,notes\n441205069,a\n", "notes,bsn,x\nb,869479167,\n" },
	};

	for (size_t h = 0; h < sizeof(modes) / sizeof(modes[0]); h++) {
		long k, live = alloc_live;
		int fds = count_fds();

		for (k = 0; k < 50; k++) {
			struct adapter *a;
			struct adapter_stats st;
			struct diag d = { 0 };
			struct sink s;
			long used;
			int rc;

			free(check_write(dir, "f_oom.csv", modes[h].old));
			if (!(a = follow_open("f_oom.csv", modes[h].headerless, ADAPTER_BAD_ROW_FAIL)))
				return;
			CHECK(follow_scan(a, &s, &st, &d) == 0);
			if (modes[h].inplace)
				free(check_write(dir, "f_oom.csv", modes[h].new));
			else
				replace_file("f_oom.csv", modes[h].new);
			sink_init(&s, &two_schema, NULL);
			diag_clear(&d);
			alloc_count = 0;
			alloc_fail_at = k;
			rc = scan_all(a, &s, &st, &d);
			alloc_fail_at = -1;
			used = alloc_count;
			if (used > k) {
				CHECK(rc == ADAPTER_ERR_NOMEM && s.rows == 0 && d.errors == 1);
				CHECK_CONTAINS(diag_text(&d), "out of memory");
			} else {
				CHECK(rc == 0);
				CHECK_STR(s.buf, "869479167|b\n");
			}
			CHECK(follow_scan(a, &s, &st, &d) == 0 && d.errors == 0 && follow_has(a, "f_oom.csv"));
			CHECK_STR(s.buf, "869479167|b\n");
			diag_clear(&d);
			adapter_close(a);
			CHECK(alloc_live == live);
			CHECK(count_fds() == fds && fds > 0);
			if (used <= k)
				break;
		}
		CHECK(k > 5 && k < 50);
	}
}

/* ---- allocation failures ---------------------------------------------------- */

static void every_allocation_fails(void)
{
	char *db = make_db();
	char err[512];

	for (int kind = 0; kind < 2; kind++) {
		long i;
		for (i = 0; i < 100; i++) {
			struct adapter *a = NULL;
			struct adapter_source src = { .kind = kind ? ADAPTER_SQLITE : ADAPTER_CSV,
						      .path = kind ? db : DATA "valid.csv",
						      .table = kind ? "enrol_text" : NULL };
			int rc;

			alloc_count = 0;
			alloc_live = 0;
			alloc_fail_at = i;
			rc = adapter_open(&src, &enrol, &a, err, sizeof(err));
			alloc_fail_at = -1;
			if (rc == 0) {
				struct sink s;
				sink_init(&s, &enrol, NULL);
				/* and the scan's own allocations */
				for (long k = 0; k < 8; k++) {
					alloc_count = 0;
					alloc_fail_at = k;
					rc = scan_all(a, &s, NULL, NULL);
					alloc_fail_at = -1;
					CHECK(rc == 0 || rc == ADAPTER_ERR_NOMEM);
				}
				adapter_close(a);
				CHECK(alloc_live == 0);
				break;
			}
			CHECK(rc == ADAPTER_ERR_NOMEM && a == NULL);
			CHECK_CONTAINS(err, "out of memory");
			CHECK(alloc_live == 0);
		}
		CHECK(i > 3 && i < 100);
	}
}

/* ---- memory does not grow with the file ---------------------------------------- */

static long proc_status_kb(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, strlen(key)) == 0)
			v = atol(line + strlen(key));
	fclose(f);
	return v;
}

/*
 * Closing a reader wipes the bytes it read and the fields it copied, and
 * only those: a small file costs a small wipe, not the whole read buffer and
 * every 64 KiB field slot (issue 10: 522 KiB of memset per file made the
 * fuzzer crawl). The raw digits of a BSN, read through the read buffer and
 * through a field slot (quoted), a field of exactly ADAPTER_FIELD_MAX bytes
 * and one a byte longer, are in no block the reader frees.
 */
static void csv_wipes_what_it_wrote(void)
{
	static const char small[] = "bsn,notes\n586255771,\"586255771 in quotes\"\n441205069,plain\n";
	struct adapter_source src = { .kind = ADAPTER_CSV, .on_bad_row = ADAPTER_BAD_ROW_SKIP, .disk_only = 1 };
	size_t caps[] = { ADAPTER_FIELD_MAX, ADAPTER_FIELD_MAX + 1 };
	struct adapter *a = NULL;
	struct adapter_stats st;
	struct sink s;
	char err[512], *p;

	p = check_write(dir, "wipe.csv", small);
	src.path = p;
	CHECK(adapter_open(&src, &two_schema, &a, err, sizeof(err)) == 0);
	if (a) {
		sink_init(&s, &two_schema, NULL);
		CHECK(scan_all(a, &s, &st, NULL) == 0 && st.rows_read == 2);
		CHECK(a->csv->in_hw == sizeof(small) - 1);
		CHECK(a->csv->rec_hw[1] == strlen("586255771 in quotes") + 1);
		free_watch_text = "586255771";
		free_watch_hits = 0;
		wiped_bytes = 0;
		adapter_close(a);
		free_watch_text = NULL;
		CHECK(free_watch_hits == 0);
		/* what was read (the file) and copied (the header through the
		 * scratch slot, one quoted field), not 4 x 64 KiB */
		if (wiped_bytes > 1024) {
			printf("#   a %zu-byte file: %zu bytes wiped at close\n", sizeof(small) - 1, wiped_bytes);
			CHECK(0);
		}
	}
	unlink(p);
	free(p);
	/* a quoted field of the cap and of the cap + 1 (a bad row), BSN first */
	for (int i = 0; i < 2; i++) {
		size_t n = caps[i], o;
		char *text = malloc(n + 64);

		o = (size_t)snprintf(text, n + 64, "bsn,notes\n441205069,\"586255771");
		memset(text + o, 'x', n - 9);
		o += n - 9;
		memcpy(text + o, "\"\n", 3);
		p = check_write(dir, "wipe-long.csv", text);
		src.path = p;
		a = NULL;
		CHECK(adapter_open(&src, &two_schema, &a, err, sizeof(err)) == 0);
		if (a) {
			sink_init(&s, &two_schema, NULL);
			CHECK(scan_all(a, &s, &st, NULL) == 0 && st.rows_read == 1);
			CHECK(st.rows_bad_skipped == (uint64_t)i);
			CHECK(a->csv->rec_hw[1] == ADAPTER_FIELD_MAX + 1);
			free_watch_text = "586255771";
			free_watch_hits = 0;
			adapter_close(a);
			free_watch_text = NULL;
			CHECK(free_watch_hits == 0);
		}
		unlink(p);
		free(p);
		free(text);
	}
}

static void csv_memory_is_bounded(void)
{
	static const char *const bsns[] = { "441205069", "869479167", "073186545", "586255771", "289445760",
					    "103113010", "426538651", "553263730", "518511121", "888195060" };
	char path[256];
	FILE *f;
	struct adapter *a;
	struct adapter_stats st;
	struct adapter_value want = v_bsn(888195060);
	struct adapter_filter flt = { F_BSN, &want, 1 };
	size_t n = 0, rows = 0;
	long before, peak;
	void *rec, *in;
	struct stat sb;

	snprintf(path, sizeof(path), "%s/big.csv", dir);
	f = fopen(path, "w");
	if (!f)
		return;
	fputs("bsn,programme,sector,start_year,completed,birth_date,notes\n", f);
	while (ftell(f) < 50L * 1024 * 1024) {
		fprintf(f, "%s,kansrijk-verzilveren,%s,%zu,%s,19%02zu-0%zu-1%zu,\"row %zu, \"\"quoted\"\"\nline two\"\n",
			bsns[rows % 10], sectors[rows % 5], 2000 + rows % 25, rows % 2 ? "true" : "0", rows % 100,
			1 + rows % 9, rows % 10, rows);
		rows++;
	}
	fclose(f);
	CHECK(stat(path, &sb) == 0 && sb.st_size >= 50L * 1024 * 1024);

	{
		/* in_memory: false, the switch for a file this size; (a file
		 * just written gets no copy anyway: it has not settled) */
		struct adapter_source src = { .kind = ADAPTER_CSV, .path = path, .disk_only = 1 };
		char err[512];

		a = NULL;
		CHECK(adapter_open(&src, &enrol, &a, err, sizeof(err)) == 0);
	}
	if (!a)
		return;
	rec = a->csv->rec;
	in = a->csv->in;
	/* Reset the peak RSS (VmHWM) so it measures this scan only. */
	f = fopen("/proc/self/clear_refs", "w");
	if (f) {
		fputs("5", f);
		fclose(f);
	}
	before = proc_status_kb("VmRSS:");
	alloc_count = 0;
	CHECK(adapter_scan(a, &flt, 1, NULL, 0, count_rows, &n, &st, NULL) == 0);
	peak = proc_status_kb("VmHWM:");
	CHECK(st.rows_read == rows && n == rows / 10);
	CHECK(alloc_count == 1);                         /* the projection array, once per scan */
	CHECK(a->csv->rec == rec && a->csv->in == in);   /* buffers are never replaced */
	printf("# 50 MB CSV, %zu rows: RSS %ld kB before the scan, peak %ld kB during it\n", rows, before, peak);
	CHECK(before > 0 && peak > 0 && peak - before < 4096); /* < 4 MiB for 50 MiB read */
	adapter_close(a);
	unlink(path);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	scenarios_init();
	memory_fixtures(); /* first, so that they have settled when their tests run */
	follow_fixtures();
	RUN(value_parsing);
	RUN(schema_errors);
	RUN(csv_valid_variants);
	RUN(csv_header_errors);
	RUN(csv_blank_lines_and_headerless);
	RUN(csv_bad_rows_skip);
	RUN(csv_bad_rows_fail);
	RUN(csv_multiline_positions);
	RUN(csv_unterminated_quote);
	RUN(csv_damaged_records);
	RUN(csv_diag_is_capped);
	RUN(csv_random_inputs);
	RUN(csv_filters_and_projection);
	RUN(scan_argument_errors);
	RUN(sqlite_same_rows_as_csv);
	RUN(sqlite_query_validation);
	RUN(sqlite_injection_and_quoting);
	RUN(sqlite_bad_rows);
	RUN(sqlite_index_check);
	RUN(sqlite_read_only);
	RUN(csv_memory_same_as_file);
	RUN(csv_memory_sees_changes);
	RUN(csv_memory_not_for_bad_rows);
	RUN(csv_memory_disk_only);
	RUN(csv_memory_far_future_mtime);
	RUN(csv_values_wiped);
	RUN(csv_wipes_what_it_wrote);
	RUN(csv_memory_allocation_fails);
	RUN(csv_follows_rename);
	RUN(csv_rename_bad_header);
	RUN(csv_path_removed);
	RUN(csv_path_not_searchable);
	RUN(csv_inplace_rewrite);
	RUN(csv_reopen_allocation_fails);
	RUN(every_allocation_fails);
	RUN(csv_memory_is_bounded);
	{
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", dir);
	}
	return check_total_failed ? 1 : 0;
}
