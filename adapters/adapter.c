/*
 * The adapter interface: schema checks, the typing rules every backend
 * shares, filters, projection and bad-row accounting. Backends (csv.c,
 * sqlite.c) only turn their storage into typed fields and call
 * adapter_emit_row / adapter_bad_row.
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../crypto/pseudo.h"
#include "internal.h"

void adapter_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- names and dates ---------------------------------------------------- */

static const char *const type_names[] = { "bsn", "category", "int", "date", "bool", "string" };

const char *adapter_type_name(enum adapter_type t)
{
	if ((unsigned)t < sizeof(type_names) / sizeof(type_names[0]))
		return type_names[t];
	return "unknown";
}

int adapter_type_parse(const char *name, size_t len, enum adapter_type *out)
{
	for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
		if (strlen(type_names[i]) == len && memcmp(type_names[i], name, len) == 0) {
			*out = (enum adapter_type)i;
			return 0;
		}
	return -1;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (H. Hinnant's days_from_civil). */
static int32_t days_from_civil(int y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + (int32_t)doe - 719468;
}

static int is_leap(unsigned y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

#define DATE_MIN (-719162)  /* 0001-01-01 */
#define DATE_MAX 2932896    /* 9999-12-31 */

int adapter_date_parse(const char *s, size_t len, int32_t *days)
{
	static const unsigned char mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	unsigned y = 0, m = 0, d = 0;

	if (len != 10 || s[4] != '-' || s[7] != '-')
		return -1;
	for (size_t i = 0; i < 10; i++) {
		if (i == 4 || i == 7)
			continue;
		if (s[i] < '0' || s[i] > '9')
			return -1;
		unsigned v = (unsigned)(s[i] - '0');
		if (i < 4)
			y = y * 10 + v;
		else if (i < 7)
			m = m * 10 + v;
		else
			d = d * 10 + v;
	}
	if (y < 1 || m < 1 || m > 12 || d < 1)
		return -1;
	if (d > (unsigned)mdays[m - 1] + (m == 2 && is_leap(y)))
		return -1;
	*days = days_from_civil((int)y, m, d);
	return 0;
}

void adapter_date_format(int32_t days, char out[11])
{
	/* H. Hinnant's civil_from_days */
	int64_t z = (int64_t)days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = (int64_t)yoe + era * 400;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	unsigned d = doy - (153 * mp + 2) / 5 + 1;
	unsigned m = mp < 10 ? mp + 3 : mp - 9;

	y += m <= 2;
	if (y < 0 || y > 9999) {
		memcpy(out, "0000-00-00", 11);
		return;
	}
	/* digits by hand: m <= 12, d <= 31, but the compiler cannot know */
	unsigned yy = (unsigned)y;
	out[0] = (char)('0' + yy / 1000);
	out[1] = (char)('0' + yy / 100 % 10);
	out[2] = (char)('0' + yy / 10 % 10);
	out[3] = (char)('0' + yy % 10);
	out[4] = '-';
	out[5] = (char)('0' + m / 10 % 10);
	out[6] = (char)('0' + m % 10);
	out[7] = '-';
	out[8] = (char)('0' + d / 10 % 10);
	out[9] = (char)('0' + d % 10);
	out[10] = '\0';
}

/* ---- text for messages --------------------------------------------------- */

/* Length of the valid UTF-8 sequence at |s| (1..4), or 0. Overlongs,
 * surrogates and code points above U+10FFFF are invalid. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
	unsigned c = s[0];
	size_t n;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, cp = c & 0x07;
	else
		return 0;
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

int adapter_utf8_ok(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;

	for (size_t i = 0; i < len;) {
		size_t n;

		if (p[i] == 0)
			return 0;
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		n = utf8_seq(p + i, len - i);
		if (n == 0)
			return 0;
		i += n;
	}
	return 1;
}

void adapter_quote(const char *s, size_t len, char *out, size_t outlen)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0, i = 0, shown = 0;

	if (outlen < 8) {
		if (outlen)
			out[0] = '\0';
		return;
	}
	out[o++] = '\'';
	while (i < len && shown < 40 && o + 8 < outlen) {
		size_t n = p[i] >= 0x80 ? utf8_seq(p + i, len - i) : 1;

		if (p[i] < 0x20 || p[i] == 0x7f || n == 0 || p[i] == '\\' || p[i] == '\'') {
			if (p[i] == '\\' || p[i] == '\'') {
				out[o++] = '\\';
				out[o++] = (char)p[i];
			} else {
				o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", p[i]);
			}
			i++;
		} else {
			if (o + n + 8 >= outlen)
				break;
			memcpy(out + o, p + i, n);
			o += n;
			i += n;
		}
		shown++;
	}
	out[o++] = '\'';
	if (i < len && o + 4 < outlen) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

void adapter_categories_text(const struct adapter_field *f, char *out, size_t outlen)
{
	size_t o = 0;

	if (outlen == 0)
		return;
	out[0] = '\0';
	for (size_t i = 0; i < f->ncategories; i++) {
		size_t n = strlen(f->categories[i]);

		if (o + n + 6 >= outlen) {
			snprintf(out + o, outlen - o, "%s...", i ? ", " : "");
			return;
		}
		o += (size_t)snprintf(out + o, outlen - o, "%s%s", i ? ", " : "", f->categories[i]);
	}
}

/* ---- typing --------------------------------------------------------------- */

static int parse_int(const char *s, size_t len, int64_t *out)
{
	size_t i = 0;
	int neg = 0;
	uint64_t v = 0, lim;

	if (len > 0 && s[0] == '-')
		neg = 1, i = 1;
	if (i == len)
		return -1;
	if (s[i] == '0' && len - i > 1)
		return -1; /* leading zero: "007" is not silently 7 */
	if (neg && len == 2 && s[1] == '0')
		return -1; /* "-0" */
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		unsigned dgt = (unsigned)(s[i] - '0');
		if (v > (lim - dgt) / 10)
			return -2;
		v = v * 10 + dgt;
	}
	*out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
	return 0;
}

int adapter_value_parse(const struct adapter_field *f, const char *s, size_t len,
			struct adapter_value *out, char *why, size_t whylen)
{
	char q[200], cats[300];
	int rc;

	memset(out, 0, sizeof(*out));
	out->type = f->type;
	if (len == 0) {
		out->null = 1;
		if (!f->nullable) {
			adapter_errf(why, whylen, "empty, and the field is not nullable");
			return -1;
		}
		return 0;
	}
	if (len > ADAPTER_FIELD_MAX) {
		adapter_errf(why, whylen, "longer than %d bytes", ADAPTER_FIELD_MAX);
		return -1;
	}
	switch (f->type) {
	case ADAPTER_BSN:
		/* Never echoed: an invalid BSN is usually someone's BSN with a typo. */
		rc = bsn_parse(s, len, &out->bsn);
		if (rc != BSN_OK) {
			adapter_errf(why, whylen, "not a valid BSN (%s)", bsn_error_name(rc));
			return -1;
		}
		return 0;
	case ADAPTER_CATEGORY:
		for (size_t i = 0; i < f->ncategories; i++)
			if (f->categories[i][0] == s[0] && strlen(f->categories[i]) == len &&
			    memcmp(f->categories[i], s, len) == 0) {
				out->category = (unsigned)i;
				return 0;
			}
		adapter_quote(s, len, q, sizeof(q));
		adapter_categories_text(f, cats, sizeof(cats));
		adapter_errf(why, whylen, "%s is not one of: %s", q, cats);
		return -1;
	case ADAPTER_INT:
		rc = parse_int(s, len, &out->i);
		if (rc == 0)
			return 0;
		adapter_quote(s, len, q, sizeof(q));
		adapter_errf(why, whylen, rc == -2 ? "%s is out of range for a whole number"
						   : "%s is not a whole number", q);
		return -1;
	case ADAPTER_DATE:
		if (adapter_date_parse(s, len, &out->date) == 0)
			return 0;
		adapter_quote(s, len, q, sizeof(q));
		{
			int shape = len == 10 && s[4] == '-' && s[7] == '-';
			for (size_t i = 0; shape && i < 10; i++)
				if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
					shape = 0;
			adapter_errf(why, whylen, shape ? "%s is not a calendar date"
							: "%s is not a date (YYYY-MM-DD)", q);
		}
		return -1;
	case ADAPTER_BOOL:
		if ((len == 4 && (memcmp(s, "true", 4) == 0 || memcmp(s, "TRUE", 4) == 0)) ||
		    (len == 1 && s[0] == '1')) {
			out->b = 1;
			return 0;
		}
		if ((len == 5 && (memcmp(s, "false", 5) == 0 || memcmp(s, "FALSE", 5) == 0)) ||
		    (len == 1 && s[0] == '0')) {
			out->b = 0;
			return 0;
		}
		adapter_quote(s, len, q, sizeof(q));
		adapter_errf(why, whylen, "%s is not a boolean (true, false, 1, 0)", q);
		return -1;
	case ADAPTER_STRING:
		if (memchr(s, 0, len)) {
			adapter_errf(why, whylen, "contains a NUL byte");
			return -1;
		}
		if (!adapter_utf8_ok(s, len)) {
			adapter_errf(why, whylen, "not valid UTF-8");
			return -1;
		}
		out->str.ptr = s;
		out->str.len = len;
		return 0;
	}
	adapter_errf(why, whylen, "unknown type");
	return -1;
}

/* ---- rows ------------------------------------------------------------------ */

void adapter_field_bad(struct adapter *a, unsigned f, const char *fmt, ...)
{
	va_list ap;

	a->bad[f] = 1;
	if (a->nbad++ > 0)
		return;
	va_start(ap, fmt);
	vsnprintf(a->why, sizeof(a->why), fmt, ap);
	va_end(ap);
}

int adapter_bad_row(struct adapter_scan_ctx *sc, unsigned line, unsigned col, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (sc->a->on_bad_row == ADAPTER_BAD_ROW_FAIL) {
		if (sc->d)
			diag_error(sc->d, sc->a->path, line, col, "%s", msg);
		return ADAPTER_ERR_BAD_ROW;
	}
	sc->st->rows_bad_skipped++;
	if (sc->d && sc->reported < ADAPTER_DIAG_MAX_ROWS) {
		diag_warn(sc->d, sc->a->path, line, col, "%s (row skipped)", msg);
		sc->reported++;
	}
	return 0;
}

static int value_equal(const struct adapter_value *x, const struct adapter_value *y)
{
	switch (x->type) {
	case ADAPTER_BSN: return x->bsn == y->bsn;
	case ADAPTER_CATEGORY: return x->category == y->category;
	case ADAPTER_INT: return x->i == y->i;
	case ADAPTER_DATE: return x->date == y->date;
	case ADAPTER_BOOL: return x->b == y->b;
	case ADAPTER_STRING:
		return x->str.len == y->str.len && (x->str.len == 0 || memcmp(x->str.ptr, y->str.ptr, x->str.len) == 0);
	}
	return 0;
}

int adapter_row_matches(const struct adapter_scan_ctx *sc)
{
	const struct adapter *a = sc->a;

	for (size_t i = 0; i < sc->nfilters; i++) {
		const struct adapter_filter *flt = &sc->filters[i];
		const struct adapter_value *v = &a->vals[flt->field];
		size_t k;

		if (a->bad[flt->field] || v->null)
			return 0;
		for (k = 0; k < flt->nvalues; k++)
			if (value_equal(v, &flt->values[k]))
				break;
		if (k == flt->nvalues)
			return 0;
	}
	return 1;
}

int adapter_row_deliver(struct adapter_scan_ctx *sc)
{
	int rc;

	for (size_t i = 0; i < sc->nproj; i++)
		sc->out[i] = sc->a->vals[sc->proj ? sc->proj[i] : i];
	sc->st->rows_ok++;
	rc = sc->fn(sc->arg, sc->out, sc->nproj);
	if (rc < 0)
		return rc;
	return rc > 0 ? 1 : 0;
}

int adapter_emit_row(struct adapter_scan_ctx *sc, unsigned line, unsigned col)
{
	/* Filters first: a row that is not asked for is not the caller's
	 * business, and SQLite never returns it either, so both adapters agree. */
	if (!adapter_row_matches(sc))
		return 0;
	if (sc->a->nbad)
		return adapter_bad_row(sc, line, col, "%s", sc->a->why);
	return adapter_row_deliver(sc);
}

/* ---- schema ---------------------------------------------------------------- */

static int schema_check(const struct adapter_schema *s, char *err, size_t errlen)
{
	if (!s || !s->fields || s->nfields == 0 || s->nfields > ADAPTER_MAX_FIELDS) {
		adapter_errf(err, errlen, "schema: needs 1 to %d fields", ADAPTER_MAX_FIELDS);
		return -1;
	}
	for (size_t i = 0; i < s->nfields; i++) {
		const struct adapter_field *f = &s->fields[i];

		if (!f->name || !f->name[0]) {
			adapter_errf(err, errlen, "schema: field %zu has no name", i);
			return -1;
		}
		if ((unsigned)f->type > ADAPTER_STRING) {
			adapter_errf(err, errlen, "schema: field '%s': unknown type", f->name);
			return -1;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(s->fields[j].name, f->name) == 0) {
				adapter_errf(err, errlen, "schema: field '%s' appears twice", f->name);
				return -1;
			}
		if (f->type == ADAPTER_CATEGORY) {
			if (!f->categories || f->ncategories == 0) {
				adapter_errf(err, errlen, "schema: field '%s': a category field needs categories", f->name);
				return -1;
			}
			for (size_t k = 0; k < f->ncategories; k++) {
				if (!f->categories[k] || !f->categories[k][0]) {
					adapter_errf(err, errlen, "schema: field '%s': empty category", f->name);
					return -1;
				}
				for (size_t j = 0; j < k; j++)
					if (strcmp(f->categories[j], f->categories[k]) == 0) {
						adapter_errf(err, errlen, "schema: field '%s': category '%s' appears twice",
							     f->name, f->categories[k]);
						return -1;
					}
			}
		} else if (f->ncategories) {
			adapter_errf(err, errlen, "schema: field '%s': only category fields have categories", f->name);
			return -1;
		}
	}
	return 0;
}

/* Copies |s| into one block: fields, then category pointer arrays, then strings. */
static int schema_copy(struct adapter *a, const struct adapter_schema *s)
{
	size_t nptr = 0, nstr = 0;
	struct adapter_field *fields;
	const char **ptrs;
	char *strs;

	for (size_t i = 0; i < s->nfields; i++) {
		nstr += strlen(s->fields[i].name) + 1;
		nptr += s->fields[i].ncategories;
		for (size_t k = 0; k < s->fields[i].ncategories; k++)
			nstr += strlen(s->fields[i].categories[k]) + 1;
	}
	a->schema_mem = malloc(s->nfields * sizeof(*fields) + nptr * sizeof(*ptrs) + nstr);
	if (!a->schema_mem)
		return -1;
	fields = a->schema_mem;
	ptrs = (const char **)(fields + s->nfields);
	strs = (char *)(ptrs + nptr);
	for (size_t i = 0; i < s->nfields; i++) {
		const struct adapter_field *in = &s->fields[i];
		size_t n = strlen(in->name) + 1;

		fields[i] = *in;
		memcpy(strs, in->name, n);
		fields[i].name = strs;
		strs += n;
		if (in->type != ADAPTER_CATEGORY) {
			fields[i].categories = NULL;
			continue;
		}
		fields[i].categories = ptrs;
		for (size_t k = 0; k < in->ncategories; k++) {
			n = strlen(in->categories[k]) + 1;
			memcpy(strs, in->categories[k], n);
			*ptrs++ = strs;
			strs += n;
		}
	}
	a->schema.fields = fields;
	a->schema.nfields = s->nfields;
	return 0;
}

/* ---- the interface ---------------------------------------------------------- */

int adapter_open(const struct adapter_source *src, const struct adapter_schema *schema,
		 struct adapter **out, char *err, size_t errlen)
{
	struct adapter *a = NULL;
	int rc;

	if (out)
		*out = NULL;
	adapter_errf(err, errlen, "%s", "");
	if (!src || !out || !src->path || !src->path[0]) {
		adapter_errf(err, errlen, "adapter: no source path");
		return ADAPTER_ERR_ARG;
	}
	if (src->kind != ADAPTER_CSV && src->kind != ADAPTER_SQLITE) {
		adapter_errf(err, errlen, "%s: unknown source type", src->path);
		return ADAPTER_ERR_ARG;
	}
	if (src->on_bad_row != ADAPTER_BAD_ROW_FAIL && src->on_bad_row != ADAPTER_BAD_ROW_SKIP) {
		adapter_errf(err, errlen, "%s: on_bad_row must be skip or fail", src->path);
		return ADAPTER_ERR_ARG;
	}
	if (schema_check(schema, err, errlen) < 0)
		return ADAPTER_ERR_ARG;
	a = calloc(1, sizeof(*a));
	if (!a)
		goto nomem;
	a->kind = src->kind;
	a->on_bad_row = src->on_bad_row;
	a->path = strdup(src->path);
	a->vals = calloc(schema->nfields, sizeof(*a->vals));
	a->bad = calloc(schema->nfields, 1);
	if (!a->path || !a->vals || !a->bad || schema_copy(a, schema) < 0)
		goto nomem;
	if (a->kind == ADAPTER_CSV)
		rc = adapter_csv_open(a, src, err, errlen);
	else
		rc = adapter_sqlite_open(a, src, err, errlen);
	if (rc < 0) {
		adapter_close(a);
		return rc;
	}
	*out = a;
	return 0;
nomem:
	adapter_close(a);
	adapter_errf(err, errlen, "%s: out of memory", src->path);
	return ADAPTER_ERR_NOMEM;
}

void adapter_close(struct adapter *a)
{
	if (!a)
		return;
	adapter_csv_close(a);
	adapter_sqlite_close(a);
	free(a->schema_mem);
	free(a->bad);
	/* the last row's values: BSNs, dates of birth (the strings they point
	 * to are wiped with the backend's buffers) */
	if (a->vals)
		sodium_memzero(a->vals, a->schema.nfields * sizeof(*a->vals));
	free(a->vals);
	free(a->path);
	free(a);
}

int adapter_field_index(const struct adapter *a, const char *name, size_t len)
{
	if (!a || !name)
		return -1;
	for (size_t i = 0; i < a->schema.nfields; i++)
		if (strlen(a->schema.fields[i].name) == len && memcmp(a->schema.fields[i].name, name, len) == 0)
			return (int)i;
	return -1;
}

int adapter_field_indexed(struct adapter *a, unsigned field, int *indexed, char *err, size_t errlen)
{
	if (!a || !indexed || field >= a->schema.nfields) {
		adapter_errf(err, errlen, "adapter_field_indexed: bad argument");
		return ADAPTER_ERR_ARG;
	}
	*indexed = 0;
	if (a->kind == ADAPTER_SQLITE)
		return adapter_sqlite_indexed(a, field, indexed, err, errlen);
	return 0;
}

/* A filter value must be a value the field could hold, else it could never
 * match and a typo in the caller would look like "not found". */
static int filter_value_check(const struct adapter_field *f, const struct adapter_value *v,
			      char *why, size_t whylen)
{
	uint32_t b;
	char digits[10];

	if (v->type != f->type) {
		adapter_errf(why, whylen, "a %s value for a %s field", adapter_type_name(v->type),
			     adapter_type_name(f->type));
		return -1;
	}
	if (v->null) {
		adapter_errf(why, whylen, "NULL never matches; leave the filter out");
		return -1;
	}
	switch (f->type) {
	case ADAPTER_BSN:
		bsn_format(v->bsn, digits);
		if (v->bsn > 999999999 || bsn_parse(digits, 9, &b) != BSN_OK) {
			adapter_errf(why, whylen, "not a valid BSN");
			return -1;
		}
		break;
	case ADAPTER_CATEGORY:
		if (v->category >= f->ncategories) {
			adapter_errf(why, whylen, "category index %u out of range", v->category);
			return -1;
		}
		break;
	case ADAPTER_DATE:
		if (v->date < DATE_MIN || v->date > DATE_MAX) {
			adapter_errf(why, whylen, "date out of range");
			return -1;
		}
		break;
	case ADAPTER_BOOL:
		if (v->b != 0 && v->b != 1) {
			adapter_errf(why, whylen, "a boolean is 0 or 1");
			return -1;
		}
		break;
	case ADAPTER_STRING:
		if ((v->str.len && !v->str.ptr) || v->str.len > ADAPTER_FIELD_MAX) {
			adapter_errf(why, whylen, "bad string");
			return -1;
		}
		break;
	case ADAPTER_INT:
		break;
	}
	return 0;
}

int adapter_scan(struct adapter *a, const struct adapter_filter *filters, size_t nfilters,
		 const unsigned *projection, size_t nproj, adapter_row_fn fn, void *arg,
		 struct adapter_stats *stats, struct diag *d)
{
	struct adapter_scan_ctx sc;
	struct adapter_stats local;
	char why[256];
	int rc;

	if (!a)
		return ADAPTER_ERR_ARG;
	memset(&sc, 0, sizeof(sc));
	memset(&local, 0, sizeof(local));
	sc.a = a;
	sc.st = stats ? stats : &local;
	memset(sc.st, 0, sizeof(*sc.st));
	sc.d = d;
	if (!fn || (nfilters && !filters) || (nproj && !projection) || (!nproj && projection)) {
		if (d)
			diag_error(d, a->path, 0, 0, "adapter_scan: bad argument");
		return ADAPTER_ERR_ARG;
	}
	for (size_t i = 0; i < nfilters; i++) {
		const struct adapter_filter *flt = &filters[i];

		if (flt->field >= a->schema.nfields || flt->nvalues == 0 || !flt->values) {
			if (d)
				diag_error(d, a->path, 0, 0, "adapter_scan: filter %zu: no such field or no values", i);
			return ADAPTER_ERR_ARG;
		}
		for (size_t k = 0; k < flt->nvalues; k++)
			if (filter_value_check(&a->schema.fields[flt->field], &flt->values[k], why, sizeof(why)) < 0) {
				if (d)
					diag_error(d, a->path, 0, 0, "adapter_scan: filter on '%s', value %zu: %s",
						   a->schema.fields[flt->field].name, k, why);
				return ADAPTER_ERR_ARG;
			}
	}
	for (size_t i = 0; i < nproj; i++)
		if (projection[i] >= a->schema.nfields) {
			if (d)
				diag_error(d, a->path, 0, 0, "adapter_scan: projection %zu: no field %u", i, projection[i]);
			return ADAPTER_ERR_ARG;
		}
	sc.filters = filters;
	sc.nfilters = nfilters;
	sc.proj = projection;
	sc.nproj = nproj ? nproj : a->schema.nfields;
	sc.fn = fn;
	sc.arg = arg;
	sc.out = calloc(sc.nproj, sizeof(*sc.out));
	if (!sc.out) {
		if (d)
			diag_error(d, a->path, 0, 0, "out of memory");
		return ADAPTER_ERR_NOMEM;
	}
	if (a->kind == ADAPTER_CSV)
		rc = adapter_csv_scan(&sc);
	else
		rc = adapter_sqlite_scan(&sc);
	if (d && sc.st->rows_bad_skipped > sc.reported)
		diag_warn(d, a->path, 0, 0, "%" PRIu64 " more bad rows skipped, not listed",
			  sc.st->rows_bad_skipped - sc.reported);
	sodium_memzero(sc.out, sc.nproj * sizeof(*sc.out)); /* the last row passed */
	free(sc.out);
	return rc;
}
