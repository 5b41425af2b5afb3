/*
 * `noordpoort query`: the coordinator's client. Sends a question to the
 * hub's POST /v1/aggregate over mutual-TLS HTTP/2 (gateway/h2client.c) and prints
 * the answer as an aligned table, CSV or JSON (docs/query.md). Everything the
 * hub sends is peer data: printed only after control characters are masked.
 */
#include "usage.h"
#include "../common/errbuf.h"
#include "../hub/fanout.h"
#include "../gateway/h2client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#define AGGREGATE_PATH "/v1/aggregate"
#define MAX_QUESTION_BYTES (1u << 20)      /* the gateway's default max_body_bytes */
#define MAX_ANSWER_BYTES ((size_t)64 << 20) /* a table of at most 3 group-by fields */
#define DEFAULT_TIMEOUT_S 300L             /* a linked question over millions of persons takes a while */
#define CONNECT_TIMEOUT_S 15L              /* TCP and TLS; a hub that takes longer is not there */
#define MAX_GROUP_BY 16                    /* the design allows 3; be lenient when reading */

/* Defaults for the client certificate: the development PKI's coordinator,
 * used only when the files exist (run from the repository root). */
#define DEFAULT_CERT "certs/dev/arbeidsmarkttafel.crt"
#define DEFAULT_KEY "certs/dev/arbeidsmarkttafel.key"
#define DEFAULT_CACERT "certs/dev/ca.crt"

static const char usage_query[] =
	"Usage: noordpoort query --hub https://HOST:PORT -f QUESTION.json [OPTIONS]\n"
	"\n"
	"Asks the hub a federated aggregate question (POST /v1/aggregate) as the\n"
	"organisation of the client certificate (a member with the coordinator\n"
	"role) and prints the answer. The question's format: docs/federation.md;\n"
	"the output: docs/query.md.\n"
	"\n"
	"Options:\n"
	"  --hub URL             the hub, https://HOST:PORT (required)\n"
	"  -f, --file FILE       the question, JSON (required; - reads stdin)\n"
	"  --format FMT          table (default), csv or json\n"
	"  --cert FILE           client certificate, PEM\n"
	"                        (default " DEFAULT_CERT " if it exists)\n"
	"  --key FILE            its private key (default " DEFAULT_KEY ")\n"
	"  --cacert FILE         the federation CA that the hub's certificate must\n"
	"                        chain to (default " DEFAULT_CACERT ")\n"
	"  --timeout SECONDS     give up after this long (default 300)\n"
	"  -h, --help            show this help\n"
	"\n"
	"In the table, <10 marks a suppressed cell (its noisy count was below\n"
	"the policy's minimum; zeros get noise too) and ~145 \xc2\xb1" "6 a count with\n"
	"noise added and the 95% margin of that noise; a legend under the table\n"
	"says so. Exit status: 0 answered,\n"
	"1 refused or failed (one line on stderr says why), 2 bad usage.\n";

static int query_usage_error(const char *fmt, const char *arg)
{
	return cli_usage_error("noordpoort", "query", fmt, arg);
}

/* ---- formatting the answer ----------------------------------------------- */

/* Peer text made printable: control bytes (terminal escapes, newlines that
 * would forge table rows) become '?'. Returns a malloc'd copy. */
static char *printable(const char *s)
{
	size_t n = strlen(s);
	char *p = malloc(n + 1);

	if (!p)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		p[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	p[n] = '\0';
	return p;
}

/* Columns a string takes on a terminal: UTF-8 code points (not bytes). */
static size_t width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

static void pad(FILE *out, size_t n)
{
	while (n--)
		fputc(' ', out);
}

/* A JSON number as the integer it should be, or as %g when it is not. */
static void fmt_num(char *buf, size_t len, double v)
{
	if (v >= -9.0e15 && v <= 9.0e15 && v == (double)(long long)v)
		snprintf(buf, len, "%lld", (long long)v);
	else
		snprintf(buf, len, "%g", v);
}

/* What the parsed answer says, checked once, before anything is printed. */
struct answer {
	cJSON *root;
	const cJSON *group_by, *cells, *total, *disclosure, *budget, *missing;
	size_t ncols, nrows;
	char *head[MAX_GROUP_BY];
	char ***keys;     /* nrows × ncols printable strings; NULL for null */
	char **persons;   /* nrows: "120", "~120", "<10" (table form) */
	char **raw;       /* nrows: "120" or "" when suppressed (CSV form) */
	int *suppressed, *noisy;
	char *total_txt;
	int total_hidden; /* the total was withheld (secondary suppression) */
	char min_cell[32];
	int any_noisy, any_suppressed, any_null;
};

static void answer_free(struct answer *an)
{
	for (size_t c = 0; c < MAX_GROUP_BY; c++)
		free(an->head[c]);
	for (size_t r = 0; an->keys && r < an->nrows; r++) {
		for (size_t c = 0; an->keys[r] && c < an->ncols; c++)
			free(an->keys[r][c]);
		free(an->keys[r]);
	}
	for (size_t r = 0; an->persons && r < an->nrows; r++)
		free(an->persons[r]);
	for (size_t r = 0; an->raw && r < an->nrows; r++)
		free(an->raw[r]);
	free(an->keys);
	free(an->persons);
	free(an->raw);
	free(an->suppressed);
	free(an->noisy);
	free(an->total_txt);
	cJSON_Delete(an->root);
}

/* "owner/dataset.field:gen" → "field:gen"; "present_in.owner/dataset" stays
 * whole (it names a dataset, not a field of one). |full| picks
 * "dataset.field:gen" instead, to tell apart equal field names of two
 * datasets. */
static char *header_name(const char *s, int full)
{
	const char *slash, *dot;

	if (strncmp(s, "present_in.", 11) == 0)
		return printable(s);
	slash = strrchr(s, '/');
	dot = strchr(slash ? slash : s, '.');
	if (!dot)
		return printable(s);
	return printable(full ? (slash ? slash + 1 : s) : dot + 1);
}

/* The persons of a cell or of the total: |*txt| as shown in the table,
 * |*csv| as in the CSV ("" when suppressed). */
static int cell_count(const cJSON *o, const char *min_cell, char **txt, char **csv, int *supp,
		      int *noisy, char *err, size_t errlen, const char *what)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "persons");
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "margin_95");
	char num[64], mnum[64], buf[160];

	*supp = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "suppressed"));
	*noisy = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "noisy"));
	if (*supp && !csv) {
		/* A total is withheld so that it cannot give a suppressed cell
		 * back, not because it is small: "<10" would say the wrong thing. */
		snprintf(buf, sizeof(buf), "(hidden)");
		num[0] = '\0';
	} else if (*supp) {
		snprintf(buf, sizeof(buf), "<%s", min_cell);
		num[0] = '\0';
	} else if (cJSON_IsNumber(p)) {
		fmt_num(num, sizeof(num), p->valuedouble);
		if (*noisy && cJSON_IsNumber(m) && m->valuedouble >= 0) {
			/* "~145 ±6": the 95% margin of the noise, before rounding */
			fmt_num(mnum, sizeof(mnum), m->valuedouble);
			snprintf(buf, sizeof(buf), "~%s \xc2\xb1%s", num, mnum);
		} else {
			snprintf(buf, sizeof(buf), "%s%s", *noisy ? "~" : "", num);
		}
	} else {
		err_set(err, errlen, "%s has neither persons nor suppressed", what);
		return -1;
	}
	*txt = strdup(buf);
	if (csv)
		*csv = strdup(num);
	if (!*txt || (csv && !*csv)) {
		err_set(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int answer_parse(struct answer *an, const char *json, size_t len, char *err, size_t errlen)
{
	const cJSON *d, *c;
	size_t r = 0;

	if (!(an->root = cJSON_ParseWithLength(json, len)) || !cJSON_IsObject(an->root)) {
		err_set(err, errlen, "not a JSON object");
		return -1;
	}
	an->group_by = cJSON_GetObjectItemCaseSensitive(an->root, "group_by");
	an->cells = cJSON_GetObjectItemCaseSensitive(an->root, "cells");
	an->total = cJSON_GetObjectItemCaseSensitive(an->root, "total");
	an->disclosure = cJSON_GetObjectItemCaseSensitive(an->root, "disclosure");
	an->budget = cJSON_GetObjectItemCaseSensitive(an->root, "budget");
	an->missing = cJSON_GetObjectItemCaseSensitive(an->root, "missing_nodes");
	if (!cJSON_IsArray(an->group_by) || !cJSON_IsArray(an->cells)) {
		err_set(err, errlen, "no group_by or cells array");
		return -1;
	}
	an->ncols = (size_t)cJSON_GetArraySize(an->group_by);
	an->nrows = (size_t)cJSON_GetArraySize(an->cells);
	if (an->ncols > MAX_GROUP_BY) {
		err_set(err, errlen, "%zu group_by fields (at most %d)", an->ncols, MAX_GROUP_BY);
		return -1;
	}
	d = cJSON_GetObjectItemCaseSensitive(an->disclosure, "min_cell");
	if (cJSON_IsNumber(d))
		fmt_num(an->min_cell, sizeof(an->min_cell), d->valuedouble);
	else
		snprintf(an->min_cell, sizeof(an->min_cell), "min");
	for (size_t i = 0; i < an->ncols; i++) {
		const cJSON *g = cJSON_GetArrayItem(an->group_by, (int)i);

		if (!cJSON_IsString(g)) {
			err_set(err, errlen, "group_by[%zu] is not a string", i);
			return -1;
		}
		if (!(an->head[i] = header_name(g->valuestring, 0)))
			goto nomem;
	}
	for (size_t i = 0; i < an->ncols; i++) {
		for (size_t j = i + 1; j < an->ncols; j++) {
			if (strcmp(an->head[i], an->head[j]) != 0)
				continue;
			free(an->head[i]);
			free(an->head[j]);
			an->head[i] = header_name(cJSON_GetArrayItem(an->group_by, (int)i)->valuestring, 1);
			an->head[j] = header_name(cJSON_GetArrayItem(an->group_by, (int)j)->valuestring, 1);
			if (!an->head[i] || !an->head[j])
				goto nomem;
		}
	}
	if (an->nrows) {
		an->keys = calloc(an->nrows, sizeof(*an->keys));
		an->persons = calloc(an->nrows, sizeof(*an->persons));
		an->raw = calloc(an->nrows, sizeof(*an->raw));
		an->suppressed = calloc(an->nrows, sizeof(*an->suppressed));
		an->noisy = calloc(an->nrows, sizeof(*an->noisy));
		if (!an->keys || !an->persons || !an->raw || !an->suppressed || !an->noisy)
			goto nomem;
	}
	cJSON_ArrayForEach(c, an->cells) {
		const cJSON *key = cJSON_GetObjectItemCaseSensitive(c, "key");
		char what[48];

		snprintf(what, sizeof(what), "cells[%zu]", r);
		if (!cJSON_IsObject(c) || !cJSON_IsArray(key) ||
		    (size_t)cJSON_GetArraySize(key) != an->ncols) {
			err_set(err, errlen, "%s: key is not an array of %zu values (one per group_by field)",
				what, an->ncols);
			return -1;
		}
		if (an->ncols && !(an->keys[r] = calloc(an->ncols, sizeof(char *))))
			goto nomem;
		for (size_t i = 0; i < an->ncols; i++) {
			const cJSON *v = cJSON_GetArrayItem(key, (int)i);
			char num[64];

			if (cJSON_IsNull(v)) {
				an->any_null = 1;
				continue;
			}
			if (cJSON_IsString(v)) {
				an->keys[r][i] = printable(v->valuestring);
			} else if (cJSON_IsBool(v)) {
				an->keys[r][i] = strdup(cJSON_IsTrue(v) ? "true" : "false");
			} else if (cJSON_IsNumber(v)) {
				fmt_num(num, sizeof(num), v->valuedouble);
				an->keys[r][i] = strdup(num);
			} else {
				err_set(err, errlen, "%s: key[%zu] is not a string, bool, number or null", what, i);
				return -1;
			}
			if (!an->keys[r][i])
				goto nomem;
		}
		if (cell_count(c, an->min_cell, &an->persons[r], &an->raw[r], &an->suppressed[r],
			       &an->noisy[r], err, errlen, what) < 0)
			return -1;
		an->any_noisy |= an->noisy[r];
		an->any_suppressed |= an->suppressed[r];
		r++;
	}
	if (cJSON_IsObject(an->total)) {
		int s, nz;

		if (cell_count(an->total, an->min_cell, &an->total_txt, NULL, &s, &nz, err, errlen,
			       "total") < 0)
			return -1;
		an->any_noisy |= nz;
		an->total_hidden = s;
	}
	return 0;
nomem:
	err_set(err, errlen, "out of memory");
	return -1;
}

static const char *str_field(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* "<label>  <value>" where value is peer text (masked). */
static void meta_line(FILE *out, const char *label, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void meta_line(FILE *out, const char *label, const char *fmt, ...)
{
	char buf[1024];
	char *p;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	p = printable(buf);
	fputs(label, out);
	pad(out, width(label) < 10 ? 11 - width(label) : 1);
	fprintf(out, "%s\n", p ? p : "");
	free(p);
}

static void write_table(const struct answer *an, FILE *out)
{
	size_t w[MAX_GROUP_BY + 1];
	const size_t pc = an->ncols; /* index of the persons column */
	const cJSON *v;
	char num[64];

	for (size_t i = 0; i < an->ncols; i++)
		w[i] = width(an->head[i]);
	w[pc] = width("persons");
	if (an->ncols && w[0] < width("total") && an->total_txt)
		w[0] = width("total");
	for (size_t r = 0; r < an->nrows; r++) {
		for (size_t i = 0; i < an->ncols; i++) {
			size_t k = an->keys[r][i] ? width(an->keys[r][i]) : width("(none)");

			if (k > w[i])
				w[i] = k;
		}
		if (width(an->persons[r]) > w[pc])
			w[pc] = width(an->persons[r]);
	}
	if (an->total_txt && width(an->total_txt) > w[pc])
		w[pc] = width(an->total_txt);

	for (size_t i = 0; i < an->ncols; i++) {
		fputs(an->head[i], out);
		pad(out, w[i] - width(an->head[i]) + 2);
	}
	pad(out, w[pc] - width("persons"));
	fputs("persons\n", out);
	for (size_t r = 0; r < an->nrows; r++) {
		for (size_t i = 0; i < an->ncols; i++) {
			const char *k = an->keys[r][i] ? an->keys[r][i] : "(none)";

			fputs(k, out);
			pad(out, w[i] - width(k) + 2);
		}
		pad(out, w[pc] - width(an->persons[r]));
		fprintf(out, "%s\n", an->persons[r]);
	}
	if (an->total_txt) {
		size_t left = 0, used = width("total") + width(an->total_txt);

		for (size_t i = 0; i < an->ncols; i++)
			left += w[i] + 2;
		fputs("total", out);
		pad(out, left + w[pc] > used + 2 ? left + w[pc] - used : 2);
		fprintf(out, "%s\n", an->total_txt);
	}

	/* The legend: only the marks the table uses, and the bound. */
	v = cJSON_GetObjectItemCaseSensitive(an->disclosure, "max_cells_per_person");
	if (an->any_noisy || an->any_suppressed || an->any_null || cJSON_IsNumber(v))
		fputc('\n', out);
	if (an->any_noisy) {
		const cJSON *rt = cJSON_GetObjectItemCaseSensitive(an->disclosure, "round_to");

		fprintf(out, "~N \xc2\xb1M   noisy: random noise was added to the count; with 95%% probability\n"
			"        the noise is at most M either way");
		if (cJSON_IsNumber(rt) && rt->valuedouble > 1) {
			fmt_num(num, sizeof(num), rt->valuedouble);
			fprintf(out, ", before the count was rounded to a\n        multiple of %s", num);
		}
		fputs("\n", out);
	}
	if (an->any_suppressed)
		fprintf(out, "<%-6s suppressed: the noisy count was below %s. Every cell gets noise, zeros\n"
			"        too, so an empty cell usually shows <%s and a cell of %s or a few more\n"
			"        sometimes does\n", an->min_cell, an->min_cell, an->min_cell, an->min_cell);
	if (an->total_hidden)
		fputs("(hidden) the total is withheld: a cell is suppressed, so the shown cells do not add\n"
		      "        up to it\n", out);
	if (an->any_null)
		fputs("(none)  no value: the person is not in that dataset, or the field is empty\n", out);
	/* The contribution bound (docs/disclosure.md): a person with more rows
	 * counts in a random choice of them, so no count is biased by file order
	 * but a person's other rows are not in the table. */
	if (cJSON_IsNumber(v) && v->valuedouble >= 1) {
		fmt_num(num, sizeof(num), v->valuedouble);
		fprintf(out, "each person is counted in at most %s cell%s; a person with more rows counts\n"
			"        in a random choice of them, drawn afresh for each question\n", num,
			v->valuedouble == 1 ? "" : "s");
	}

	fputc('\n', out);
	v = cJSON_GetObjectItemCaseSensitive(an->disclosure, "epsilon");
	if (cJSON_IsNumber(v)) {
		const char *mech = str_field(an->disclosure, "noise");

		meta_line(out, "\xce\xb5", "%g (%s noise)", v->valuedouble, mech ? mech : "unnamed");
	} else {
		meta_line(out, "\xce\xb5", "none: no noise was added");
	}
	v = cJSON_GetObjectItemCaseSensitive(an->disclosure, "round_to");
	if (cJSON_IsNumber(v) && v->valuedouble > 1) {
		fmt_num(num, sizeof(num), v->valuedouble);
		meta_line(out, "rounding", "to multiples of %s", num);
	} else {
		meta_line(out, "rounding", "none");
	}
	if (cJSON_IsObject(an->budget)) {
		const cJSON *sp = cJSON_GetObjectItemCaseSensitive(an->budget, "spent");
		const cJSON *re = cJSON_GetObjectItemCaseSensitive(an->budget, "remaining");
		const char *per = str_field(an->budget, "per");
		const char *resets = str_field(an->budget, "resets");

		meta_line(out, "budget", "%g spent, %g remaining%s%s%s%s",
			  cJSON_IsNumber(sp) ? sp->valuedouble : 0.0,
			  cJSON_IsNumber(re) ? re->valuedouble : 0.0,
			  per ? " this " : "", per ? per : "",
			  resets ? "; resets " : "", resets ? resets : "");
	} else {
		meta_line(out, "budget", "none applies");
	}
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(an->root, "partial"))) {
		char list[768] = "";
		size_t used = 0;

		cJSON_ArrayForEach(v, an->missing) {
			if (cJSON_IsString(v) && used < sizeof(list))
				used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s",
							 used ? ", " : "", v->valuestring);
		}
		meta_line(out, "nodes", "PARTIAL: no answer from %s; their persons are not counted",
			  *list ? list : "(not named)");
	} else {
		meta_line(out, "nodes", "all answered");
	}
	v = cJSON_GetObjectItemCaseSensitive(an->root, "policy_hashes");
	if (cJSON_IsObject(v)) {
		const cJSON *h;
		char list[768] = "";
		size_t used = 0;

		/* The first 12 hex digits name a policy version well enough to
		 * compare two answers; the json format has them whole. */
		cJSON_ArrayForEach(h, v) {
			if (cJSON_IsString(h) && h->string && used < sizeof(list))
				used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s %.12s",
							 used ? ", " : "", h->string, h->valuestring);
		}
		if (*list)
			meta_line(out, "policies", "%s", list);
	}
	meta_line(out, "audit id", "%s", str_field(an->root, "audit_id") ? str_field(an->root, "audit_id") : "(none)");
}

/* One CSV field, RFC 4180: quoted when it holds a comma, quote, CR or LF. */
static void csv_field(FILE *out, const char *s)
{
	if (!strpbrk(s, ",\"\r\n")) {
		fputs(s, out);
		return;
	}
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

static void write_csv(const struct answer *an, FILE *out)
{
	for (size_t i = 0; i < an->ncols; i++) {
		csv_field(out, an->head[i]);
		fputc(',', out);
	}
	fputs("persons,suppressed,noisy\n", out);
	for (size_t r = 0; r < an->nrows; r++) {
		for (size_t i = 0; i < an->ncols; i++) {
			csv_field(out, an->keys[r][i] ? an->keys[r][i] : "");
			fputc(',', out);
		}
		fprintf(out, "%s,%s,%s\n", an->raw[r], an->suppressed[r] ? "true" : "false",
			an->noisy[r] ? "true" : "false");
	}
}

int query_format(const char *answer_json, size_t len, enum query_fmt fmt, FILE *out, char *err,
		 size_t errlen)
{
	struct answer an = { 0 };
	char *buf = NULL, *text = NULL;
	size_t blen = 0;
	FILE *mem = NULL;
	int rc = -1;

	if (!answer_json || !out) {
		err_set(err, errlen, "no answer");
		return -1;
	}
	if (answer_parse(&an, answer_json, len, err, errlen) < 0)
		goto done;
	/* Built in memory first: a malformed answer prints nothing at all. */
	if (fmt == QUERY_FMT_JSON) {
		if (!(text = cJSON_Print(an.root))) {
			err_set(err, errlen, "out of memory");
			goto done;
		}
		rc = (fputs(text, out) < 0 || fputc('\n', out) == EOF || fflush(out) != 0) ? -2 : 0;
		goto done;
	}
	if (!(mem = open_memstream(&buf, &blen))) {
		err_set(err, errlen, "out of memory");
		goto done;
	}
	if (fmt == QUERY_FMT_CSV)
		write_csv(&an, mem);
	else
		write_table(&an, mem);
	if (fclose(mem) != 0) {
		mem = NULL;
		err_set(err, errlen, "out of memory");
		goto done;
	}
	mem = NULL;
	rc = (fwrite(buf, 1, blen, out) != blen || fflush(out) != 0) ? -2 : 0;
done:
	if (rc == -2)
		err_set(err, errlen, "cannot write the answer: %s", strerror(errno));
	if (mem)
		fclose(mem);
	free(buf);
	cJSON_free(text);
	answer_free(&an);
	return rc;
}

/* ---- talking to the hub -------------------------------------------------- */

/* The hub's answer: |len| bytes, NUL-terminated beyond. */
struct body {
	const char *p;
	size_t len;
};

/* Reads the question (at most MAX_QUESTION_BYTES) and checks it is JSON, so
 * a typo is reported with its place, not as the hub's 400. */
static char *read_question(const char *path, size_t *len, char *err, size_t errlen)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0;
	cJSON *j;

	if (!f) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (!(buf = malloc(MAX_QUESTION_BYTES + 1))) {
		err_set(err, errlen, "out of memory");
		goto fail;
	}
	n = fread(buf, 1, MAX_QUESTION_BYTES + 1, f);
	if (ferror(f)) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (n > MAX_QUESTION_BYTES) {
		err_set(err, errlen, "%s: larger than 1 MiB; a question is a few lines of JSON", path);
		goto fail;
	}
	buf[n] = '\0';
	if (!(j = cJSON_ParseWithLength(buf, n)) || !cJSON_IsObject(j)) {
		const char *at = cJSON_GetErrorPtr();
		size_t line = 1, col = 1;

		if (j || !at || at < buf || at > buf + n)
			at = buf;
		for (const char *p = buf; p < at; p++, col++)
			if (*p == '\n')
				line++, col = 0;
		err_set(err, errlen, "%s:%zu:%zu: not a JSON object (the question: docs/federation.md)",
			path, line, col);
		cJSON_Delete(j);
		goto fail;
	}
	cJSON_Delete(j);
	if (f != stdin)
		fclose(f);
	*len = n;
	return buf;
fail:
	free(buf);
	if (f != stdin)
		fclose(f);
	return NULL;
}

/* The hub said no, or could not answer: one line in words. */
static void report_hub_error(long status, const struct body *b)
{
	cJSON *root = b->p ? cJSON_ParseWithLength(b->p, b->len) : NULL;
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
	const char *code = str_field(e, "code"), *msg = str_field(e, "message");
	const char *rule = str_field(e, "rule");
	const char *verb = status >= 500 ? "could not answer" : "refused";
	char extra[256] = "";
	char *pcode, *pmsg, *prule;
	/* On 429 the hub puts what is left in a top-level "budget" object. */
	const cJSON *budget = cJSON_GetObjectItemCaseSensitive(root, "budget");
	const cJSON *rem = cJSON_GetObjectItemCaseSensitive(budget ? budget : e, "remaining");
	const char *resets = str_field(budget ? budget : e, "resets");

	if (!code || !msg) {
		fprintf(stderr, "noordpoort query: the hub answered HTTP %ld without an error "
			"message (%zu bytes)\n", status, b->len);
		cJSON_Delete(root);
		return;
	}
	if (cJSON_IsNumber(rem))
		snprintf(extra, sizeof(extra), "; budget remaining %g%s%s", rem->valuedouble,
			 resets ? ", resets " : "", resets ? resets : "");
	pcode = printable(code);
	pmsg = printable(msg);
	prule = rule && *rule ? printable(rule) : NULL;
	fprintf(stderr, "noordpoort query: hub %s the question (%ld %s): %.600s%s%s%s\n", verb,
		status, pcode ? pcode : "", pmsg ? pmsg : "", prule ? " [rule " : "",
		prule ? prule : "", prule ? "]" : "");
	if (*extra) {
		char *pe = printable(extra + 2);

		fprintf(stderr, "noordpoort query: %s\n", pe ? pe : "");
		free(pe);
	}
	free(prule);
	free(pmsg);
	free(pcode);
	cJSON_Delete(root);
}

/* A partial answer leaves persons out: say so where CSV cannot. */
static void warn_partial(const struct body *b)
{
	cJSON *root = cJSON_ParseWithLength(b->p, b->len);
	const cJSON *v;
	size_t n = 0;

	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "partial"))) {
		fputs("noordpoort query: warning: partial answer, no answer from", stderr);
		cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(root, "missing_nodes")) {
			char *p = cJSON_IsString(v) ? printable(v->valuestring) : NULL;

			if (p)
				fprintf(stderr, "%s %s", n++ ? "," : "", p);
			free(p);
		}
		fputs(n ? "; their persons are not counted\n" : " some nodes\n", stderr);
	}
	cJSON_Delete(root);
}

static int file_exists(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* An environment variable by either spelling, lower case first (as curl). */
static const char *env_either(const char *lower, const char *upper)
{
	const char *v = getenv(lower);

	return v && *v ? v : getenv(upper);
}

/* Sends the question to |hub| and prints the answer; returns the exit
 * status (0 or 1), having said why on stderr when it is 1. */
static int ask_hub(const char *hub, const char *cert, const char *key, const char *cacert,
		   const char *question, size_t qlen, long timeout_s, enum query_fmt fmt)
{
	struct h2c_tls *tls = NULL;
	struct h2c_conn *conn = NULL;
	struct h2c_request r = { .path = AGGREGATE_PATH, .body = question, .len = qlen,
				 .max_body = MAX_ANSWER_BYTES };
	long connect_s = timeout_s < CONNECT_TIMEOUT_S ? timeout_s : CONNECT_TIMEOUT_S;
	struct body b;
	char err[512];
	const char *detail;
	uint64_t now;
	int rc = 1;

	/* The hub must prove it is the federation's: always verified, against
	 * the federation CA only (h2client.c has no switch to turn that off). */
	if (h2c_tls_new(cert, key, cacert, &tls, err, sizeof(err)) < 0) {
		fprintf(stderr, "noordpoort query: %s\n", err);
		return 1;
	}
	if (h2c_conn_new(tls, hub, &conn) < 0) {
		fputs("noordpoort query: out of memory\n", stderr);
		goto done;
	}
	/* Through the proxy the environment names, as curl did (docs/query.md);
	 * never around it when it is of a kind we cannot use. Its value is not
	 * printed: it may hold credentials. */
	if (h2c_conn_set_proxy(conn, env_either("https_proxy", "HTTPS_PROXY"),
			       env_either("no_proxy", "NO_PROXY")) < 0) {
		fputs("noordpoort query: https_proxy: only an http://HOST:PORT proxy is supported "
		      "(no https:// or socks proxy, no credentials)\n", stderr);
		goto done;
	}
	h2c_conn_add(conn, &r);
	now = h2c_now_ms();
	if (h2c_run(&conn, 1, now + (uint64_t)connect_s * 1000u, now + (uint64_t)timeout_s * 1000u) < 0) {
		fputs("noordpoort query: out of memory\n", stderr);
		goto done;
	}
	detail = h2c_conn_detail(conn);
	if (r.fail == H2C_FAIL_TOO_BIG) {
		fprintf(stderr, "noordpoort query: the hub's answer is larger than %zu MiB; refused\n",
			MAX_ANSWER_BYTES >> 20);
		goto done;
	}
	if (r.fail != H2C_FAIL_NONE) {
		fprintf(stderr, "noordpoort query: no answer from the hub at %s: %s%s%s%s\n", hub,
			h2c_fail_phrase(r.fail), *detail ? " (" : "", detail, *detail ? ")" : "");
		goto done;
	}
	b = (struct body){ r.answer, r.answer_len };
	if (r.status != 200) {
		report_hub_error(r.status, &b);
		goto done;
	}
	if (query_format(b.p, b.len, fmt, stdout, err, sizeof(err)) < 0) {
		fprintf(stderr, "noordpoort query: the hub's answer: %s\n", err);
		goto done;
	}
	if (fmt == QUERY_FMT_CSV)
		warn_partial(&b); /* the table says so itself; CSV has no room for it */
	rc = 0;
done:
	free(r.answer);
	h2c_conn_free(conn);
	h2c_tls_free(tls);
	return rc;
}

int query_cli(int argc, char **argv)
{
	const char *hub = NULL, *file = NULL, *cert = NULL, *key = NULL, *cacert = NULL;
	enum query_fmt fmt = QUERY_FMT_TABLE;
	long timeout = DEFAULT_TIMEOUT_S;
	char err[512];
	char *question = NULL;
	size_t qlen = 0;
	int rc;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **slot = NULL;
		const char *val;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(usage_query, stdout);
			return 0;
		}
		if (strcmp(a, "--hub") == 0)
			slot = &hub;
		else if (strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0)
			slot = &file;
		else if (strcmp(a, "--cert") == 0)
			slot = &cert;
		else if (strcmp(a, "--key") == 0)
			slot = &key;
		else if (strcmp(a, "--cacert") == 0)
			slot = &cacert;
		else if (strcmp(a, "--format") != 0 && strcmp(a, "--timeout") != 0)
			return query_usage_error("unexpected argument '%s'", a);
		if (i + 1 >= argc)
			return query_usage_error("%s needs a value", a);
		val = argv[++i];
		if (slot) {
			if (*slot)
				return query_usage_error("%s given twice", a);
			*slot = val;
		} else if (strcmp(a, "--format") == 0) {
			if (strcmp(val, "table") == 0)
				fmt = QUERY_FMT_TABLE;
			else if (strcmp(val, "csv") == 0)
				fmt = QUERY_FMT_CSV;
			else if (strcmp(val, "json") == 0)
				fmt = QUERY_FMT_JSON;
			else
				return query_usage_error("--format '%s': use table, csv or json", val);
		} else {
			char *end;

			errno = 0;
			timeout = strtol(val, &end, 10);
			if (errno || end == val || *end || timeout < 1 || timeout > 86400)
				return query_usage_error("--timeout '%s': seconds, 1 to 86400", val);
		}
	}
	if (!hub)
		return query_usage_error("%s", "missing --hub https://HOST:PORT");
	if (h2c_url_check(hub) < 0)
		return query_usage_error("--hub '%s': must be https://HOST:PORT", hub);
	if (!file)
		return query_usage_error("%s", "missing -f QUESTION.json");
	if (!cert && file_exists(DEFAULT_CERT))
		cert = DEFAULT_CERT;
	if (!key && file_exists(DEFAULT_KEY))
		key = DEFAULT_KEY;
	if (!cacert && file_exists(DEFAULT_CACERT))
		cacert = DEFAULT_CACERT;
	if (!cert)
		return query_usage_error("%s", "missing --cert FILE (no " DEFAULT_CERT " here)");
	if (!key)
		return query_usage_error("%s", "missing --key FILE (no " DEFAULT_KEY " here)");
	if (!cacert)
		return query_usage_error("%s", "missing --cacert FILE (no " DEFAULT_CACERT " here)");

	if (!(question = read_question(file, &qlen, err, sizeof(err)))) {
		fprintf(stderr, "noordpoort query: %s\n", err);
		return 1;
	}
	rc = ask_hub(hub, cert, key, cacert, question, qlen, timeout, fmt);
	free(question);
	return rc;
}
