/*
 * The SQLite adapter: a read-only connection to the partner's database; a
 * dataset is a table, a view or one SELECT written by the partner's data
 * steward. Filters are pushed down as "WHERE f IN (?, ...)" with bound
 * values; identifiers are quoted; nothing from a request is spliced into SQL.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "internal.h"

/* A writer (the partner's own ETL) may hold the lock for a moment. */
#define SQL_BUSY_MS 5000

struct adapter_sqlite {
	sqlite3 *db;
	char *from;                /* "\"table\"" or "(\n<query>\n)" */
	char *label;               /* "table 'x'" or "query", for messages */
	int has_rowid;             /* table sources: rowid names the row in messages */
};

/* ---- a small string builder ------------------------------------------------ */

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t ncap = b->cap ? b->cap : 128;
		char *np;

		while (ncap < b->len + n + 1)
			ncap *= 2;
		np = realloc(b->p, ncap);
		if (!np) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* An identifier in double quotes, inner double quotes doubled. */
static void sb_ident(struct sbuf *b, const char *name)
{
	sb_add(b, "\"", 1);
	for (const char *p = name; *p; p++) {
		if (*p == '"')
			sb_add(b, "\"", 1);
		sb_add(b, p, 1);
	}
	sb_add(b, "\"", 1);
}

/* ---- the steward's query -------------------------------------------------- */

/* Skips white space, comments and semicolons. */
static const char *skip_space(const char *p)
{
	for (;;) {
		if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == ';') {
			p++;
		} else if (p[0] == '-' && p[1] == '-') {
			while (*p && *p != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			const char *e = strstr(p + 2, "*/");
			if (!e)
				return p + strlen(p);
			p = e + 2;
		} else {
			return p;
		}
	}
}

static int starts_word(const char *p, const char *w)
{
	size_t n = strlen(w);

	return strncasecmp(p, w, n) == 0 &&
	       !((p[n] >= 'a' && p[n] <= 'z') || (p[n] >= 'A' && p[n] <= 'Z') || (p[n] >= '0' && p[n] <= '9') || p[n] == '_');
}

/*
 * Checks that |q| is exactly one read-only SELECT without parameters and
 * returns its length without the trailing semicolon in |*qlen|.
 */
static int query_check(sqlite3 *db, const char *q, const struct adapter_schema *schema, size_t *qlen,
		       char *why, size_t whylen)
{
	sqlite3_stmt *st = NULL;
	const char *tail = NULL, *head;
	int rc;

	if (strlen(q) > 1000000) {
		adapter_errf(why, whylen, "longer than 1000000 bytes");
		return -1;
	}
	rc = sqlite3_prepare_v2(db, q, (int)strlen(q), &st, &tail);
	if (rc != SQLITE_OK) {
		adapter_errf(why, whylen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	if (!st) {
		adapter_errf(why, whylen, "empty");
		return -1;
	}
	head = skip_space(q);
	if (*skip_space(tail)) {
		adapter_errf(why, whylen, "more than one statement (only one SELECT is allowed)");
		goto fail;
	}
	if (!sqlite3_stmt_readonly(st)) {
		adapter_errf(why, whylen, "not read-only (only one SELECT is allowed)");
		goto fail;
	}
	if (!starts_word(head, "SELECT") && !starts_word(head, "WITH") && !starts_word(head, "VALUES")) {
		adapter_errf(why, whylen, "not a SELECT");
		goto fail;
	}
	if (sqlite3_bind_parameter_count(st) > 0) {
		adapter_errf(why, whylen, "contains parameters (?, :name); write the values into the query");
		goto fail;
	}
	/* Wrapped in a subquery, SQLite would rename a second "bsn" to
	 * "bsn:1" and the first would silently win. */
	for (size_t f = 0; f < schema->nfields; f++) {
		int n = 0;

		for (int i = 0; i < sqlite3_column_count(st); i++) {
			const char *cn = sqlite3_column_name(st, i);
			n += cn && sqlite3_stricmp(cn, schema->fields[f].name) == 0;
		}
		if (n > 1) {
			adapter_errf(why, whylen, "%d columns named '%s'", n, schema->fields[f].name);
			goto fail;
		}
	}
	sqlite3_finalize(st);
	*qlen = (size_t)(tail - q);
	while (*qlen && (q[*qlen - 1] == ';' || q[*qlen - 1] == ' ' || q[*qlen - 1] == '\n' ||
			 q[*qlen - 1] == '\t' || q[*qlen - 1] == '\r'))
		(*qlen)--;
	return 0;
fail:
	sqlite3_finalize(st);
	return -1;
}

/*
 * After the checks, the connection may only read: anything but SELECT,
 * reading columns, calling functions and recursive CTEs is refused, on top
 * of the read-only open and query_only. A view in the partner's database
 * cannot reach further than the steward's query could.
 */
static int authorizer(void *arg, int action, const char *a1, const char *a2, const char *a3, const char *a4)
{
	(void)arg, (void)a1, (void)a2, (void)a3, (void)a4;
	switch (action) {
	case SQLITE_SELECT:
	case SQLITE_READ:
	case SQLITE_FUNCTION:
	case SQLITE_RECURSIVE:
		return SQLITE_OK;
	}
	return SQLITE_DENY;
}

/* ---- open -------------------------------------------------------------------- */

int adapter_sqlite_open(struct adapter *a, const struct adapter_source *src, char *err, size_t errlen)
{
	struct adapter_sqlite *s;
	struct sbuf b = { 0 };
	sqlite3_stmt *st = NULL;
	struct stat sb;
	char why[512];
	int rc, ncol;

	if (!!src->table == !!src->query || (src->table && !src->table[0])) {
		adapter_errf(err, errlen, "%s: give exactly one of 'table' and 'query'", a->path);
		return ADAPTER_ERR_ARG;
	}
	if (src->headerless || src->delimiter) {
		adapter_errf(err, errlen, "%s: 'header' and 'delimiter' are for CSV sources", a->path);
		return ADAPTER_ERR_ARG;
	}
	/* SQLite would say "unable to open database file" for all of these. */
	if (stat(a->path, &sb) < 0) {
		adapter_errf(err, errlen, "%s: cannot open: %s", a->path, strerror(errno));
		return ADAPTER_ERR_IO;
	}
	if (!S_ISREG(sb.st_mode)) {
		adapter_errf(err, errlen, "%s: not a regular file", a->path);
		return ADAPTER_ERR_IO;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		goto nomem;
	a->sql = s;
	/* Not SQLITE_OPEN_URI: a path is a path, never "file:...?mode=rw". */
	rc = sqlite3_open_v2(a->path, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		if (!s->db)
			goto nomem;
		adapter_errf(err, errlen, "%s: cannot open: %s", a->path, sqlite3_errmsg(s->db));
		return ADAPTER_ERR_IO;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, SQL_BUSY_MS);
	/* Defence in depth against a hostile database file: no writes even to
	 * a writable file, no ATTACH, no functions from the schema that are not
	 * innocuous, no "double-quoted string" misfeature (a misspelt column
	 * would otherwise compare as a string). */
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_DQS_DML, 0, (int *)NULL);
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, (int *)NULL);
	sqlite3_limit(s->db, SQLITE_LIMIT_ATTACHED, 0);
	if (sqlite3_exec(s->db, "PRAGMA query_only=1", NULL, NULL, NULL) != SQLITE_OK) {
		adapter_errf(err, errlen, "%s: %s", a->path, sqlite3_errmsg(s->db));
		return ADAPTER_ERR_SQL;
	}
	/* Reading the schema here tells a non-database file from a database. */
	if (sqlite3_exec(s->db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL) != SQLITE_OK) {
		adapter_errf(err, errlen, "%s: not a readable SQLite database: %s", a->path, sqlite3_errmsg(s->db));
		return ADAPTER_ERR_IO;
	}
	if (src->query) {
		size_t qlen;

		if (query_check(s->db, src->query, &a->schema, &qlen, why, sizeof(why)) < 0) {
			adapter_errf(err, errlen, "%s: query: %s", a->path, why);
			return ADAPTER_ERR_SQL;
		}
		/* The newline before ")" ends a trailing "-- comment". */
		sb_str(&b, "(\n");
		sb_add(&b, src->query, qlen);
		sb_str(&b, "\n)");
		s->label = malloc(sizeof("query"));
		if (s->label)
			memcpy(s->label, "query", sizeof("query"));
	} else {
		size_t n = strlen(src->table) + sizeof("table ''");

		sb_ident(&b, src->table);
		s->label = malloc(n);
		if (s->label)
			snprintf(s->label, n, "table '%s'", src->table);
	}
	if (b.oom || !s->label) {
		free(b.p);
		goto nomem;
	}
	s->from = b.p;
	sqlite3_set_authorizer(s->db, authorizer, NULL);

	/* Map the schema to the source's columns. SQL names are not case
	 * sensitive, so neither is the match; two candidates are an error. */
	memset(&b, 0, sizeof(b));
	sb_str(&b, "SELECT * FROM ");
	sb_str(&b, s->from);
	if (b.oom)
		goto nomem;
	rc = sqlite3_prepare_v2(s->db, b.p, -1, &st, NULL);
	free(b.p);
	if (rc != SQLITE_OK) {
		adapter_errf(err, errlen, "%s: %s: %s", a->path, s->label, sqlite3_errmsg(s->db));
		return ADAPTER_ERR_SQL;
	}
	ncol = sqlite3_column_count(st);
	for (size_t f = 0; f < a->schema.nfields; f++) {
		const char *name = a->schema.fields[f].name;
		int found = 0;

		for (int i = 0; i < ncol; i++) {
			const char *cn = sqlite3_column_name(st, i);
			if (cn && sqlite3_stricmp(cn, name) == 0)
				found++;
		}
		if (found == 1)
			continue;
		if (found == 0) {
			struct sbuf cols = { 0 };

			for (int i = 0; i < ncol && cols.len < 200; i++) {
				const char *cn = sqlite3_column_name(st, i);
				if (i)
					sb_str(&cols, ", ");
				sb_str(&cols, cn ? cn : "?");
			}
			adapter_errf(err, errlen, "%s: %s has no column for schema field '%s' (it has %s)", a->path,
				     s->label, name, cols.p && !cols.oom ? cols.p : "no columns");
			free(cols.p);
		} else {
			adapter_errf(err, errlen, "%s: %s has %d columns named '%s'", a->path, s->label, found, name);
		}
		sqlite3_finalize(st);
		return ADAPTER_ERR_SCHEMA;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (src->table) {
		memset(&b, 0, sizeof(b));
		sb_str(&b, "SELECT rowid FROM ");
		sb_str(&b, s->from);
		if (b.oom)
			goto nomem;
		/* Views and WITHOUT ROWID tables have none: messages then count rows. */
		if (sqlite3_prepare_v2(s->db, b.p, -1, &st, NULL) == SQLITE_OK)
			s->has_rowid = 1;
		sqlite3_finalize(st);
		free(b.p);
	}
	return 0;
nomem:
	adapter_errf(err, errlen, "%s: out of memory", a->path);
	return ADAPTER_ERR_NOMEM;
}

void adapter_sqlite_close(struct adapter *a)
{
	struct adapter_sqlite *s = a->sql;

	if (!s)
		return;
	sqlite3_close(s->db); /* every statement is finalised by now */
	free(s->from);
	free(s->label);
	free(s);
	a->sql = NULL;
}

/* ---- filters ------------------------------------------------------------------ */

/*
 * SQLite is dynamically typed, and the typing rules accept several stored
 * forms of one value (a BSN as INTEGER, 9-digit or 8-digit TEXT). A pushed
 * down filter binds every form, so it finds what the typing accepts whatever
 * the column's affinity; the exact comparison is repeated on the typed value.
 */
static int nforms(enum adapter_type t)
{
	switch (t) {
	case ADAPTER_BSN: return 3;   /* INTEGER, 'ddddddddd', 'dddddddd' */
	case ADAPTER_INT: return 2;   /* INTEGER, TEXT */
	case ADAPTER_BOOL: return 4;  /* INTEGER, 'true', 'TRUE', '1' */
	default: return 1;            /* TEXT */
	}
}

static int bind_forms(sqlite3_stmt *st, int idx, const struct adapter_field *f, const struct adapter_value *v)
{
	char buf[32];
	int rc = SQLITE_OK;

	switch (f->type) {
	case ADAPTER_BSN:
		rc |= sqlite3_bind_int64(st, idx, v->bsn);
		snprintf(buf, sizeof(buf), "%09u", (unsigned)v->bsn);
		rc |= sqlite3_bind_text(st, idx + 1, buf, 9, SQLITE_TRANSIENT);
		/* 8 digits only when the first of 9 is 0; else 9 again */
		rc |= sqlite3_bind_text(st, idx + 2, buf[0] == '0' ? buf + 1 : buf, buf[0] == '0' ? 8 : 9,
					SQLITE_TRANSIENT);
		break;
	case ADAPTER_CATEGORY:
		rc |= sqlite3_bind_text(st, idx, f->categories[v->category], -1, SQLITE_STATIC);
		break;
	case ADAPTER_INT:
		rc |= sqlite3_bind_int64(st, idx, v->i);
		snprintf(buf, sizeof(buf), "%lld", (long long)v->i);
		rc |= sqlite3_bind_text(st, idx + 1, buf, -1, SQLITE_TRANSIENT);
		break;
	case ADAPTER_DATE:
		adapter_date_format(v->date, buf);
		rc |= sqlite3_bind_text(st, idx, buf, 10, SQLITE_TRANSIENT);
		break;
	case ADAPTER_BOOL:
		rc |= sqlite3_bind_int64(st, idx, v->b);
		rc |= sqlite3_bind_text(st, idx + 1, v->b ? "true" : "false", -1, SQLITE_STATIC);
		rc |= sqlite3_bind_text(st, idx + 2, v->b ? "TRUE" : "FALSE", -1, SQLITE_STATIC);
		rc |= sqlite3_bind_text(st, idx + 3, v->b ? "1" : "0", -1, SQLITE_STATIC);
		break;
	case ADAPTER_STRING:
		rc |= sqlite3_bind_text64(st, idx, v->str.len ? v->str.ptr : "", v->str.len, SQLITE_TRANSIENT,
					  SQLITE_UTF8);
		break;
	}
	return rc;
}

/* "SELECT [rowid,] "f1", ... FROM <from> [WHERE "f" IN (?1, ...) AND ...]";
 * with |nfilters| 0 and |explain_field| >= 0, a plan query for an equality
 * filter on that field. */
static char *scan_sql(const struct adapter *a, const struct adapter_filter *filters, size_t nfilters,
		      int explain_field)
{
	const struct adapter_sqlite *s = a->sql;
	struct sbuf b = { 0 };
	int param = 1;
	char num[32];

	sb_str(&b, explain_field >= 0 ? "EXPLAIN QUERY PLAN SELECT " : "SELECT ");
	if (s->has_rowid)
		sb_str(&b, "rowid, ");
	for (size_t f = 0; f < a->schema.nfields; f++) {
		if (f)
			sb_str(&b, ", ");
		sb_ident(&b, a->schema.fields[f].name);
	}
	sb_str(&b, " FROM ");
	sb_str(&b, s->from);
	for (size_t i = 0; i < nfilters || (i == 0 && explain_field >= 0); i++) {
		unsigned field = explain_field >= 0 ? (unsigned)explain_field : filters[i].field;
		size_t nv = explain_field >= 0 ? 1 : filters[i].nvalues;
		int k = nforms(a->schema.fields[field].type);

		sb_str(&b, i ? " AND " : " WHERE ");
		sb_ident(&b, a->schema.fields[field].name);
		sb_str(&b, " IN (");
		for (size_t v = 0; v < nv * (size_t)k; v++) {
			snprintf(num, sizeof(num), "%s?%d", v ? ", " : "", param++);
			sb_str(&b, num);
		}
		sb_str(&b, ")");
	}
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* ---- typing a column ------------------------------------------------------------ */

static int type_column(const struct adapter_field *f, sqlite3_stmt *st, int col, struct adapter_value *v,
		       char *why, size_t whylen)
{
	int t = sqlite3_column_type(st, col);
	char num[64];

	memset(v, 0, sizeof(*v));
	v->type = f->type;
	if (t == SQLITE_TEXT) {
		const char *p = (const char *)sqlite3_column_text(st, col);
		int n = sqlite3_column_bytes(st, col);

		if (!p)
			goto nomem;
		if (f->type == ADAPTER_STRING && n == 0) {
			v->str.ptr = p; /* '' is the empty string, as a quoted "" in CSV */
			return 0;
		}
		return adapter_value_parse(f, p, (size_t)n, v, why, whylen);
	}
	if (t == SQLITE_NULL)
		return adapter_value_parse(f, "", 0, v, why, whylen);
	if (t == SQLITE_INTEGER) {
		sqlite3_int64 x = sqlite3_column_int64(st, col);

		switch (f->type) {
		case ADAPTER_INT:
			v->i = x;
			return 0;
		case ADAPTER_BOOL:
			if (x == 0 || x == 1) {
				v->b = (int)x;
				return 0;
			}
			adapter_errf(why, whylen, "%lld is not a boolean (true, false, 1, 0)", (long long)x);
			return -1;
		case ADAPTER_BSN:
			if (x < 1 || x > 999999999) {
				adapter_errf(why, whylen, "not a valid BSN (invalid_bsn_length)");
				return -1;
			}
			snprintf(num, sizeof(num), "%09lld", (long long)x);
			return adapter_value_parse(f, num, 9, v, why, whylen);
		default:
			adapter_errf(why, whylen, "%lld is a number where %s is expected", (long long)x,
				     f->type == ADAPTER_DATE ? "a date (YYYY-MM-DD text)" :
				     f->type == ADAPTER_CATEGORY ? "a category (text)" : "text");
			return -1;
		}
	}
	if (t == SQLITE_FLOAT) {
		double x = sqlite3_column_double(st, col);

		/* A REAL-affinity column stores 12 as 12.0; only an exact whole
		 * number is taken. */
		if (f->type == ADAPTER_INT && x >= -9223372036854775808.0 && x < 9223372036854775808.0 &&
		    (double)(int64_t)x == x) { /* NaN fails the range test */
			v->i = (int64_t)x;
			return 0;
		}
		if (f->type == ADAPTER_BSN)
			adapter_errf(why, whylen, "not a valid BSN (stored as a real number)");
		else
			adapter_errf(why, whylen, "%.17g is a real number where %s is expected", x,
				     f->type == ADAPTER_INT ? "a whole number" : adapter_type_name(f->type));
		return -1;
	}
	adapter_errf(why, whylen, "a BLOB where %s is expected", adapter_type_name(f->type));
	return -1;
nomem:
	adapter_errf(why, whylen, "out of memory");
	return -1;
}

/* ---- scan ----------------------------------------------------------------------- */

int adapter_sqlite_scan(struct adapter_scan_ctx *sc)
{
	struct adapter *a = sc->a;
	struct adapter_sqlite *s = a->sql;
	sqlite3_stmt *st = NULL;
	char *sql;
	char why[400];
	int rc, param = 1, off = s->has_rowid ? 1 : 0, ret = 0;
	uint64_t rowno = 0;

	sql = scan_sql(a, sc->filters, sc->nfilters, -1);
	if (!sql) {
		if (sc->d)
			diag_error(sc->d, a->path, 0, 0, "out of memory");
		return ADAPTER_ERR_NOMEM;
	}
	rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	free(sql);
	if (rc != SQLITE_OK) {
		if (sc->d)
			diag_error(sc->d, a->path, 0, 0, "%s: %s", s->label, sqlite3_errmsg(s->db));
		return rc == SQLITE_NOMEM ? ADAPTER_ERR_NOMEM : ADAPTER_ERR_SQL;
	}
	for (size_t i = 0; i < sc->nfilters; i++) {
		const struct adapter_field *f = &a->schema.fields[sc->filters[i].field];

		for (size_t k = 0; k < sc->filters[i].nvalues; k++) {
			if (bind_forms(st, param, f, &sc->filters[i].values[k]) != SQLITE_OK) {
				if (sc->d)
					diag_error(sc->d, a->path, 0, 0, "%s: binding a filter value: %s", s->label,
						   sqlite3_errmsg(s->db));
				ret = ADAPTER_ERR_SQL;
				goto out;
			}
			param += nforms(f->type);
		}
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		rowno++;
		sc->st->rows_read++;
		a->nbad = 0;
		for (size_t f = 0; f < a->schema.nfields; f++) {
			const struct adapter_field *fd = &a->schema.fields[f];

			a->bad[f] = 0;
			if (type_column(fd, st, (int)f + off, &a->vals[f], why, sizeof(why)) == 0)
				continue;
			if (a->nbad)
				adapter_field_bad(a, (unsigned)f, "%s", "");
			else if (s->has_rowid)
				adapter_field_bad(a, (unsigned)f, "%s rowid %lld: field '%s': %s", s->label,
						  (long long)sqlite3_column_int64(st, 0), fd->name, why);
			else
				adapter_field_bad(a, (unsigned)f, "%s row %llu (in scan order): field '%s': %s", s->label,
						  (unsigned long long)rowno, fd->name, why);
		}
		ret = adapter_emit_row(sc, 0, 0);
		if (ret < 0)
			goto out;
		if (ret == 1) {
			ret = 0;
			goto out;
		}
	}
	if (rc != SQLITE_DONE) {
		if (sc->d)
			diag_error(sc->d, a->path, 0, 0, "%s: %s", s->label, sqlite3_errmsg(s->db));
		ret = (rc & 0xff) == SQLITE_NOMEM ? ADAPTER_ERR_NOMEM : ADAPTER_ERR_SQL;
	}
out:
	sqlite3_finalize(st);
	return ret;
}

int adapter_sqlite_indexed(struct adapter *a, unsigned field, int *indexed, char *err, size_t errlen)
{
	struct adapter_sqlite *s = a->sql;
	sqlite3_stmt *st = NULL;
	char *sql = scan_sql(a, NULL, 0, (int)field);
	int rc, full = 0;

	if (!sql) {
		adapter_errf(err, errlen, "%s: out of memory", a->path);
		return ADAPTER_ERR_NOMEM;
	}
	rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	free(sql);
	if (rc != SQLITE_OK) {
		adapter_errf(err, errlen, "%s: %s: %s", a->path, s->label, sqlite3_errmsg(s->db));
		return ADAPTER_ERR_SQL;
	}
	/* Rows are (id, parent, notused, detail); "SCAN x" reads all of x,
	 * "SEARCH x USING INDEX ..." does not. */
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *detail = (const char *)sqlite3_column_text(st, 3);

		if (detail && strncmp(detail, "SCAN ", 5) == 0)
			full = 1;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		adapter_errf(err, errlen, "%s: %s: %s", a->path, s->label, sqlite3_errmsg(s->db));
		return ADAPTER_ERR_SQL;
	}
	*indexed = !full;
	return 0;
}
