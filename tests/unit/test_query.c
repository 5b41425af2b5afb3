/*
 * Unit tests for the coordinator's client (cli/query_cli.c): the three
 * output formats on canned answers of the hub (docs/federation.md "The
 * answer"), compared exactly; malformed answers; peer text masking; the
 * hub's refusals in words; bad usage.
 */
#define CHECK_FILE "test_query"
#include "check.h"
#include "../../cli/query_cli.c"

#include <fcntl.h>

/* The example answer of docs/federation.md, plus a null key and a larger
 * count; partial, with one missing node. */
static const char answer[] =
	"{\"purpose\": \"hnld-kv-monitoring\",\n"
	" \"group_by\": [\"opleidingsfonds-techniek/inschrijvingen.programme\", "
	"\"uwv/ww-uitkeringen.end_reason\"],\n"
	" \"cells\": [{\"key\": [\"noorden-leert-door-1\", \"werk\"], \"persons\": 120, \"noisy\": true,"
	" \"margin_95\": 6},\n"
	"           {\"key\": [\"noorden-leert-door-1\", \"ziekte\"], \"suppressed\": true},\n"
	"           {\"key\": [\"kv\", null], \"persons\": 0, \"noisy\": true},\n"
	"           {\"key\": [\"kv\", \"werk\"], \"persons\": 1045, \"noisy\": true, \"margin_95\": 6}],\n"
	" \"total\": {\"persons\": 640, \"noisy\": true},\n"
	" \"disclosure\": {\"min_cell\": 10, \"noise\": \"discrete_laplace\", \"epsilon\": 0.5, \"round_to\": 5,"
	" \"max_cells_per_person\": 1},\n"
	" \"budget\": {\"spent\": 1.5, \"remaining\": 1.5, \"per\": \"year\", \"resets\": \"2027-01-01T00:00:00Z\"},\n"
	" \"partial\": true, \"missing_nodes\": [\"uwv\"],\n"
	" \"policy_hashes\": {\"hub\": \"ab12cd34ef56ab12cd34\", \"uwv\": \"0011223344556677\"},\n"
	" \"audit_id\": \"2026-11-27T21:00:00Z-000042\"}\n";

static const char answer_table[] =
	"programme             end_reason   persons\n"
	"noorden-leert-door-1  werk         ~120 \xc2\xb1" "6\n"
	"noorden-leert-door-1  ziekte           <10\n"
	"kv                    (none)            ~0\n"
	"kv                    werk        ~1045 \xc2\xb1" "6\n"
	"total                                 ~640\n"
	"\n"
	"~N \xc2\xb1M   noisy: random noise was added to the count; with 95% probability\n"
	"        the noise is at most M either way, before the count was rounded to a\n"
	"        multiple of 5\n"
	"<10     suppressed: the noisy count was below 10. Every cell gets noise, zeros\n"
	"        too, so an empty cell usually shows <10 and a cell of 10 or a few more\n"
	"        sometimes does\n"
	"(none)  no value: the person is not in that dataset, or the field is empty\n"
	"each person is counted in at most 1 cell; a person with more rows counts\n"
	"        in a random choice of them, drawn afresh for each question\n"
	"\n"
	"\xce\xb5          0.5 (discrete_laplace noise)\n"
	"rounding   to multiples of 5\n"
	"budget     1.5 spent, 1.5 remaining this year; resets 2027-01-01T00:00:00Z\n"
	"nodes      PARTIAL: no answer from uwv; their persons are not counted\n"
	"policies   hub ab12cd34ef56, uwv 001122334455\n"
	"audit id   2026-11-27T21:00:00Z-000042\n";

static const char answer_csv[] =
	"programme,end_reason,persons,suppressed,noisy\n"
	"noorden-leert-door-1,werk,120,false,true\n"
	"noorden-leert-door-1,ziekte,,true,false\n"
	"kv,,0,false,true\n"
	"kv,werk,1045,false,true\n";

/* Runs query_format into memory; returns the malloc'd output. */
static char *fmt(const char *json, enum query_fmt f, int *rc, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);

	*rc = query_format(json, strlen(json), f, m, err, errlen);
	fclose(m);
	return buf;
}

static void test_table_exact(void)
{
	char err[256] = "";
	int rc;
	char *out = fmt(answer, QUERY_FMT_TABLE, &rc, err, sizeof(err));

	CHECK(rc == 0);
	CHECK_STR(out, answer_table);
	free(out);
}

static void test_csv_exact(void)
{
	char err[256] = "";
	int rc;
	char *out = fmt(answer, QUERY_FMT_CSV, &rc, err, sizeof(err));

	CHECK(rc == 0);
	CHECK_STR(out, answer_csv);
	free(out);
}

static void test_json_as_received(void)
{
	char err[256] = "";
	int rc;
	char *out = fmt(answer, QUERY_FMT_JSON, &rc, err, sizeof(err));
	cJSON *a = cJSON_Parse(answer), *b = cJSON_Parse(out ? out : "");

	CHECK(rc == 0);
	CHECK(a && b && cJSON_Compare(a, b, 1));
	CHECK(out && strchr(out, '\n') && out[strlen(out) - 1] == '\n'); /* pretty, ends in a newline */
	cJSON_Delete(a);
	cJSON_Delete(b);
	free(out);
}

/* An exact answer with nothing noisy, suppressed or null: no legend; a
 * complete answer; no budget; min_cell at the edges of a width. */
static void test_plain_answer(void)
{
	static const char plain[] =
		"{\"group_by\":[\"uwv/ww-uitkeringen.end_reason\"],"
		"\"cells\":[{\"key\":[\"werk\"],\"persons\":10},{\"key\":[\"ziekte\"],\"persons\":9}],"
		"\"total\":{\"persons\":19},\"disclosure\":{\"min_cell\":1},"
		"\"partial\":false,\"missing_nodes\":[],\"audit_id\":\"x\"}";
	static const char want[] =
		"end_reason  persons\n"
		"werk             10\n"
		"ziekte            9\n"
		"total            19\n"
		"\n"
		"\xce\xb5          none: no noise was added\n"
		"rounding   none\n"
		"budget     none applies\n"
		"nodes      all answered\n"
		"audit id   x\n";
	char err[256] = "";
	int rc;
	char *out = fmt(plain, QUERY_FMT_TABLE, &rc, err, sizeof(err));

	CHECK(rc == 0);
	CHECK_STR(out, want);
	free(out);
}

/* Equal field names of two datasets are told apart by their dataset;
 * present_in columns keep their whole name; generalisations stay. */
static void test_headers(void)
{
	static const char a[] =
		"{\"group_by\":[\"uwv/ww.gemeente\",\"gemeente-emmen/bijstand.gemeente\","
		"\"present_in.uwv/ww\",\"uwv/ww.start_date:year\"],"
		"\"cells\":[{\"key\":[\"Emmen\",\"Emmen\",\"true\",\"2023\"],\"persons\":42}],"
		"\"disclosure\":{\"min_cell\":10}}";
	char err[256] = "";
	int rc;
	char *out = fmt(a, QUERY_FMT_CSV, &rc, err, sizeof(err));

	CHECK(rc == 0);
	CHECK_STR(out, "ww.gemeente,bijstand.gemeente,present_in.uwv/ww,start_date:year,"
		       "persons,suppressed,noisy\nEmmen,Emmen,true,2023,42,false,false\n");
	free(out);
}

/* Peer text cannot move the cursor or forge rows: control bytes become '?'
 * in the table; CSV quotes what needs quoting; UTF-8 aligns by character. */
static void test_peer_text(void)
{
	static const char a[] =
		"{\"group_by\":[\"x/y.regio\"],"
		"\"cells\":[{\"key\":[\"Frysl\xc3\xa2n\"],\"persons\":11},"
		"{\"key\":[\"a\\u001b[31mred\\nrow\"],\"persons\":12},"
		"{\"key\":[\"komma, \\\"quote\\\"\"],\"persons\":13}],"
		"\"disclosure\":{\"min_cell\":10}}";
	static const char want[] = "regio           persons\n"
				   "Frysl\xc3\xa2n              11\n"
				   "a?[31mred?row        12\n"
				   "komma, \"quote\"       13\n\n";
	char err[256] = "";
	int rc;
	char *out = fmt(a, QUERY_FMT_TABLE, &rc, err, sizeof(err));

	CHECK(rc == 0);
	CHECK(out && strncmp(out, want, sizeof(want) - 1) == 0);
	CHECK(out && !strchr(out, '\x1b'));
	free(out);
	out = fmt(a, QUERY_FMT_CSV, &rc, err, sizeof(err));
	CHECK(rc == 0);
	CHECK_CONTAINS(out, "\n\"komma, \"\"quote\"\"\",13,false,false\n");
	free(out);
}

static void test_no_group_by(void)
{
	static const char a[] =
		"{\"group_by\":[],\"cells\":[{\"key\":[],\"persons\":1200,\"noisy\":true}],"
		"\"total\":{\"persons\":1200,\"noisy\":true},"
		"\"disclosure\":{\"min_cell\":10,\"noise\":\"discrete_laplace\",\"epsilon\":1}}";
	char err[256] = "";
	int rc;
	char *out = fmt(a, QUERY_FMT_TABLE, &rc, err, sizeof(err));

	CHECK(rc == 0);
	CHECK(out && strncmp(out, "persons\n  ~1200\ntotal  ~1200\n", 29) == 0);
	CHECK_CONTAINS(out, "~N \xc2\xb1M   noisy: random noise was added to the count; with 95% probability\n"
		       "        the noise is at most M either way\n");
	free(out);
}

/* Malformed answers: an error naming the part, and nothing printed. */
static void test_malformed(void)
{
	static const char *bad[][2] = {
		{ "not json", "not a JSON object" },
		{ "[1,2]", "not a JSON object" },
		{ "{\"cells\":[]}", "no group_by or cells array" },
		{ "{\"group_by\":[\"a/b.c\"],\"cells\":[{\"key\":[\"x\",\"y\"],\"persons\":1}]}",
		  "cells[0]: key is not an array of 1 values" },
		{ "{\"group_by\":[\"a/b.c\"],\"cells\":[{\"key\":[\"x\"]}]}",
		  "cells[0] has neither persons nor suppressed" },
		{ "{\"group_by\":[\"a/b.c\"],\"cells\":[{\"key\":[\"x\"],\"persons\":1},{\"key\":[{}],\"persons\":2}]}",
		  "cells[1]: key[0] is not a string" },
		{ "{\"group_by\":[1],\"cells\":[]}", "group_by[0] is not a string" },
		{ "{\"group_by\":[],\"cells\":[],\"total\":{}}", "total has neither" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		for (int f = QUERY_FMT_TABLE; f <= QUERY_FMT_JSON; f++) {
			char err[256] = "";
			int rc;
			char *out = fmt(bad[i][0], (enum query_fmt)f, &rc, err, sizeof(err));

			CHECK(rc == -1);
			CHECK_CONTAINS(err, bad[i][1]);
			CHECK(out && *out == '\0');
			free(out);
		}
	}
}

/* The hub's refusals in words, one line each. */
static char *hub_error(long status, const char *body)
{
	struct body b = { body, body ? strlen(body) : 0 };
	char path[] = "/tmp/np-query-err-XXXXXX";
	int fd = mkstemp(path), saved = dup(2);
	char *out = calloc(1, 4096);

	fflush(stderr);
	dup2(fd, 2);
	report_hub_error(status, &b);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	if (out && read(fd, out, 4095) < 0)
		out[0] = '\0';
	close(fd);
	unlink(path);
	return out;
}

static void test_hub_errors(void)
{
	char *s;

	s = hub_error(403, "{\"error\":{\"code\":\"field_not_granted\",\"message\":"
			   "\"uwv/ww-uitkeringen.end_reason is not granted for this purpose\","
			   "\"rule\":\"hnld-kv-monitoring/uwv\"}}");
	CHECK_STR(s, "noordpoort query: hub refused the question (403 field_not_granted): "
		     "uwv/ww-uitkeringen.end_reason is not granted for this purpose "
		     "[rule hnld-kv-monitoring/uwv]\n");
	free(s);
	s = hub_error(429, "{\"error\":{\"code\":\"budget_exhausted\",\"message\":\"no budget left\","
			   "\"remaining\":0.25,\"resets\":\"2027-01-01T00:00:00Z\"}}");
	CHECK_STR(s, "noordpoort query: hub refused the question (429 budget_exhausted): no budget left\n"
		     "noordpoort query: budget remaining 0.25, resets 2027-01-01T00:00:00Z\n");
	free(s);
	/* What the hub really sends on 429: the budget beside the error. */
	s = hub_error(429, "{\"error\":{\"code\":\"budget_exhausted\",\"message\":\"no budget left\"},"
			   "\"budget\":{\"remaining\":0,\"resets\":\"2027-01-01T00:00:00Z\"}}");
	CHECK_STR(s, "noordpoort query: hub refused the question (429 budget_exhausted): no budget left\n"
		     "noordpoort query: budget remaining 0, resets 2027-01-01T00:00:00Z\n");
	free(s);
	/* A refusal with no deciding rule (nothing granted) shows no "[rule ]". */
	s = hub_error(403, "{\"error\":{\"code\":\"generalisation_too_fine\",\"message\":\"no\","
			   "\"rule\":\"\"}}");
	CHECK_STR(s, "noordpoort query: hub refused the question (403 generalisation_too_fine): no\n");
	free(s);
	s = hub_error(504, "{\"error\":{\"code\":\"node_timeout\",\"message\":\"uwv did not answer "
			   "within 10 s\\n\\u001b[2J\"}}");
	CHECK_STR(s, "noordpoort query: hub could not answer the question (504 node_timeout): "
		     "uwv did not answer within 10 s??[2J\n");
	free(s);
	s = hub_error(502, "<html>bad gateway</html>");
	CHECK_STR(s, "noordpoort query: the hub answered HTTP 502 without an error message (24 bytes)\n");
	free(s);
	s = hub_error(500, NULL);
	CHECK_STR(s, "noordpoort query: the hub answered HTTP 500 without an error message (0 bytes)\n");
	free(s);
}

/* A total withheld because a cell of its line is suppressed reads "(hidden)", not "<10". */
static void test_hidden_total(void)
{
	static const char a[] =
		"{\"group_by\":[\"uwv/ww-uitkeringen.end_reason\"],"
		"\"cells\":[{\"key\":[\"werk\"],\"persons\":20},{\"key\":[\"ziekte\"],\"suppressed\":true}],"
		"\"total\":{\"suppressed\":true},\"disclosure\":{\"min_cell\":10},"
		"\"partial\":false,\"missing_nodes\":[],\"audit_id\":\"x\"}";
	char err[256] = "";
	int rc;
	char *out = fmt(a, QUERY_FMT_TABLE, &rc, err, sizeof(err));

	CHECK(rc == 0);
	CHECK_CONTAINS(out, "ziekte           <10\n");
	CHECK_CONTAINS(out, "total       (hidden)\n");
	CHECK_CONTAINS(out, "(hidden) the total is withheld: a cell is suppressed, so the shown cells do not add\n");
	free(out);
}

/* The contribution bound under the table (issue 11): the hub's
 * max_cells_per_person in words, 1 and 2 (the plural); none when the
 * answer does not give one. */
static void test_bound_legend(void)
{
	static const char two[] =
		"{\"group_by\":[],\"cells\":[{\"key\":[],\"persons\":1200,\"noisy\":true}],"
		"\"total\":{\"persons\":1200,\"noisy\":true},"
		"\"disclosure\":{\"min_cell\":10,\"noise\":\"discrete_laplace\",\"epsilon\":1,"
		"\"max_cells_per_person\":2}}";
	static const char none[] =
		"{\"group_by\":[],\"cells\":[{\"key\":[],\"persons\":1200}],"
		"\"total\":{\"persons\":1200},\"disclosure\":{\"min_cell\":10}}";
	char err[256] = "";
	int rc;
	char *out = fmt(two, QUERY_FMT_TABLE, &rc, err, sizeof(err));

	CHECK(rc == 0);
	CHECK_CONTAINS(out, "\neach person is counted in at most 2 cells; a person with more rows counts\n"
		       "        in a random choice of them, drawn afresh for each question\n\n");
	free(out);
	out = fmt(none, QUERY_FMT_TABLE, &rc, err, sizeof(err));
	CHECK(rc == 0);
	CHECK(out && !strstr(out, "at most"));
	free(out);
	/* not in the CSV: the table's legend only */
	out = fmt(answer, QUERY_FMT_CSV, &rc, err, sizeof(err));
	CHECK(rc == 0);
	CHECK(out && !strstr(out, "at most"));
	free(out);
}

/* query_cli's usage errors (exit 2) and --help (0), quietly. */
static int cli(int argc, char **argv)
{
	int null = open("/dev/null", O_WRONLY), o = dup(1), e = dup(2), rc;

	fflush(stdout);
	fflush(stderr);
	dup2(null, 1);
	dup2(null, 2);
	rc = query_cli(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(o, 1);
	dup2(e, 2);
	close(o);
	close(e);
	close(null);
	return rc;
}

static void test_cli_usage(void)
{
	char *help[] = { "query", "--help" };
	char *none[] = { "query" };
	char *fmtbad[] = { "query", "--hub", "https://h:1", "-f", "q.json", "--format", "xls" };
	char *http[] = { "query", "--hub", "http://h:1", "-f", "q.json" };
	char *nofile[] = { "query", "--hub", "https://h:1" };
	char *dangling[] = { "query", "--hub" };
	char *twice[] = { "query", "-f", "a", "--file", "b" };
	char *timeout[] = { "query", "--hub", "https://h:1", "-f", "q", "--timeout", "86401" };

	CHECK(cli(2, help) == 0);
	CHECK(cli(1, none) == 2);
	CHECK(cli(7, fmtbad) == 2);
	CHECK(cli(5, http) == 2);
	CHECK(cli(3, nofile) == 2);
	CHECK(cli(2, dangling) == 2);
	CHECK(cli(5, twice) == 2);
	CHECK(cli(7, timeout) == 2);
}

int main(void)
{
	RUN(test_table_exact);
	RUN(test_csv_exact);
	RUN(test_json_as_received);
	RUN(test_plain_answer);
	RUN(test_headers);
	RUN(test_peer_text);
	RUN(test_no_group_by);
	RUN(test_malformed);
	RUN(test_hub_errors);
	RUN(test_hidden_total);
	RUN(test_bound_legend);
	RUN(test_cli_usage);
	return check_total_failed ? 1 : 0;
}
