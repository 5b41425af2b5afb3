/*
 * libFuzzer target: the CSV reader (adapters/csv.c) on arbitrary bytes.
 *
 * The first input byte picks the source options (header or headerless,
 * ',' or ';', skip or fail on bad rows) and which filter/projection the
 * second scan uses; the rest is the file (a memfd named through
 * /proc/self/fd). Every row handed to the callback must keep adapter.h's
 * promises (strings NUL-terminated UTF-8 without NUL and at most
 * ADAPTER_FIELD_MAX bytes, categories in range, dates that format and parse
 * back, BSNs that parse). When the first, full scan finds no bad row, the
 * file is marked clean as a scan of a settled file would mark it (csv.c's
 * "clean" fast path: later scans type only filter and projection fields),
 * and a second scan with a filter and a projection must give exactly the
 * rows the first scan gave, filtered and projected here.
 *
 * csv.c is #included (as the unit tests do) to reach struct adapter_csv.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../adapters/csv.c"
#include "../../crypto/pseudo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const cats[] = { "a", "bb", "ccc" };
static const struct adapter_field fields[] = {
	{ "bsn", ADAPTER_BSN, 0, NULL, 0 },
	{ "cat", ADAPTER_CATEGORY, 1, cats, 3 },
	{ "n", ADAPTER_INT, 1, NULL, 0 },
	{ "d", ADAPTER_DATE, 1, NULL, 0 },
	{ "b", ADAPTER_BOOL, 1, NULL, 0 },
	{ "s", ADAPTER_STRING, 1, NULL, 0 },
};
#define NF (sizeof(fields) / sizeof(fields[0]))

/* What the scans produced, one text line per row. */
struct out {
	char *buf;
	size_t len, cap;
};

static void out_add(struct out *o, const char *s, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		o->cap = (o->len + n + 1) * 2;
		if (!(o->buf = realloc(o->buf, o->cap)))
			abort();
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

/* One value as text, after checking adapter.h's promises for it. */
static void value_text(const struct adapter_value *v, enum adapter_type t, struct out *o)
{
	char buf[64];
	int n = 0;

	if (v->type != t)
		abort();
	if (v->null) {
		out_add(o, "~|", 2);
		return;
	}
	switch (t) {
	case ADAPTER_BSN: {
		char s[10];
		uint32_t back;

		if (v->bsn < 1 || v->bsn > 999999999)
			abort();
		snprintf(s, sizeof(s), "%09u", v->bsn);
		if (bsn_parse(s, 9, &back) != 0 || back != v->bsn)
			abort();
		n = snprintf(buf, sizeof(buf), "%u|", v->bsn);
		break;
	}
	case ADAPTER_CATEGORY:
		if (v->category >= 3)
			abort();
		n = snprintf(buf, sizeof(buf), "c%u|", v->category);
		break;
	case ADAPTER_INT:
		n = snprintf(buf, sizeof(buf), "%lld|", (long long)v->i);
		break;
	case ADAPTER_DATE: {
		char s[11];
		int32_t back;

		adapter_date_format(v->date, s);
		if (adapter_date_parse(s, 10, &back) != 0 || back != v->date)
			abort();
		n = snprintf(buf, sizeof(buf), "%s|", s);
		break;
	}
	case ADAPTER_BOOL:
		if (v->b != 0 && v->b != 1)
			abort();
		n = snprintf(buf, sizeof(buf), "%d|", v->b);
		break;
	case ADAPTER_STRING:
		if (!v->str.ptr || v->str.len > ADAPTER_FIELD_MAX || v->str.ptr[v->str.len] != '\0' ||
		    memchr(v->str.ptr, 0, v->str.len) || !adapter_utf8_ok(v->str.ptr, v->str.len))
			abort();
		n = snprintf(buf, sizeof(buf), "%zu:", v->str.len);
		out_add(o, buf, (size_t)n);
		out_add(o, v->str.ptr, v->str.len);
		out_add(o, "|", 1);
		return;
	}
	out_add(o, buf, (size_t)n);
}

struct scan_arg {
	const unsigned *proj;
	size_t nproj;
	struct out out;
};

static int row(void *arg, const struct adapter_value *v, size_t n)
{
	struct scan_arg *s = arg;

	if (n != s->nproj)
		abort();
	for (size_t i = 0; i < n; i++)
		value_text(&v[i], fields[s->proj[i]].type, &s->out);
	out_add(&s->out, "\n", 1);
	return 0;
}

/* The second scan's filter and projection, by the first input byte. */
static const unsigned proj_sets[4][NF] = {
	{ 5, 1 }, { 1 }, { 3, 3, 0 }, { 4, 2, 5 },
};
static const size_t proj_n[4] = { 2, 1, 3, 3 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	static const unsigned all[NF] = { 0, 1, 2, 3, 4, 5 };
	const struct adapter_schema schema = { fields, NF };
	struct adapter_source src = { 0 };
	struct adapter *a = NULL;
	struct adapter_stats st;
	struct diag d = { 0 };
	struct scan_arg first = { all, NF, { 0 } }, second = { 0 };
	struct adapter_value fv[2];
	struct adapter_filter filt;
	struct stat sb;
	char err[512];
	uint8_t opt;
	int rc;

	if (size < 1)
		return 0;
	opt = data[0];
	data++, size--;
	if (fd < 0) {
		fd = memfd_create("fuzz.csv", 0);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		return 0;
	src.kind = ADAPTER_CSV;
	src.path = path;
	src.headerless = opt & 1;
	src.delimiter = opt & 2 ? ';' : 0;
	src.on_bad_row = opt & 4 ? ADAPTER_BAD_ROW_SKIP : ADAPTER_BAD_ROW_FAIL;
	if (adapter_open(&src, &schema, &a, err, sizeof(err)) != 0) {
		if (a || !err[0] || !memchr(err, 0, sizeof(err)))
			abort();
		return 0;
	}
	rc = adapter_scan(a, NULL, 0, NULL, 0, row, &first, &st, &d);
	diag_clear(&d);
	if (rc != 0 && rc != ADAPTER_ERR_BAD_ROW)
		abort();
	if (st.rows_ok + st.rows_bad_skipped > st.rows_read)
		abort();
	if (rc == 0 && st.rows_bad_skipped == 0 && a->csv->clean == 0 && fstat(a->csv->fd, &sb) == 0) {
		/* What a scan of a settled file would have concluded. */
		struct out want = { 0 };
		unsigned p = (opt >> 3) & 3, fsel = (opt >> 5) & 3;
		const char *line = first.out.buf;

		a->csv->clean = 1;
		a->csv->clean_st = sb;
		second.proj = proj_sets[p];
		second.nproj = proj_n[p];
		/* filters: none; cat IN (a, ccc); b = true; n = 0 */
		memset(fv, 0, sizeof(fv));
		if (fsel == 1) {
			fv[0].type = fv[1].type = ADAPTER_CATEGORY;
			fv[1].category = 2;
			filt = (struct adapter_filter){ 1, fv, 2 };
		} else if (fsel == 2) {
			fv[0].type = ADAPTER_BOOL;
			fv[0].b = 1;
			filt = (struct adapter_filter){ 4, fv, 1 };
		} else if (fsel == 3) {
			fv[0].type = ADAPTER_INT;
			filt = (struct adapter_filter){ 2, fv, 1 };
		}
		rc = adapter_scan(a, &filt, fsel ? 1 : 0, second.proj, second.nproj, row, &second, &st, &d);
		diag_clear(&d);
		if (rc != 0 || st.rows_bad_skipped != 0)
			abort();
		/* The same rows, filtered and projected from the first scan's text. */
		while (line && *line) {
			const char *f[NF], *p2 = line;
			size_t flen[NF];
			int keep = 1;

			for (size_t i = 0; i < NF; i++) {
				const char *bar;

				f[i] = p2;
				if (i == 5 && *p2 != '~') { /* a string: "len:bytes|" */
					size_t len = strtoul(p2, (char **)&bar, 10);
					bar += 1 + len;
				} else {
					bar = strchr(p2, '|');
				}
				flen[i] = (size_t)(bar - p2) + 1;
				p2 = bar + 1;
			}
			if (fsel == 1)
				keep = strncmp(f[1], "c0|", 3) == 0 || strncmp(f[1], "c2|", 3) == 0;
			else if (fsel == 2)
				keep = strncmp(f[4], "1|", 2) == 0;
			else if (fsel == 3)
				keep = strncmp(f[2], "0|", 2) == 0;
			if (keep) {
				for (size_t i = 0; i < second.nproj; i++)
					out_add(&want, f[second.proj[i]], flen[second.proj[i]]);
				out_add(&want, "\n", 1);
			}
			if (*p2 != '\n')
				abort();
			line = p2 + 1;
		}
		if (want.len != second.out.len || (want.len && memcmp(want.buf, second.out.buf, want.len) != 0))
			abort();
		free(want.buf);
	}
	free(first.out.buf);
	free(second.out.buf);
	adapter_close(a);
	return 0;
}
