/*
 * What adapter.c (the interface, typing, filters, bad rows) shares with the
 * backends (csv.c, sqlite.c; later pg.c). Nothing outside adapters/ includes
 * this: the public view is adapter.h.
 */
#ifndef NOORDPOORT_ADAPTER_INTERNAL_H
#define NOORDPOORT_ADAPTER_INTERNAL_H

#include <stdarg.h>

#include "adapter.h"

struct adapter_csv;
struct adapter_sqlite;

struct adapter {
	enum adapter_kind kind;
	char *path;                      /* for messages */
	enum adapter_on_bad_row on_bad_row;
	struct adapter_schema schema;    /* points into schema_mem */
	void *schema_mem;                /* one block: fields, category arrays, strings */
	/* One row, filled by the backend before adapter_emit_row: */
	struct adapter_value *vals;      /* nfields */
	unsigned char *bad;              /* nfields: 1 if the field did not type */
	size_t nbad;
	char why[512];                   /* the first bad field: "field 'x': reason" */
	struct adapter_csv *csv;
	struct adapter_sqlite *sql;
};

/* One call of adapter_scan. */
struct adapter_scan_ctx {
	struct adapter *a;
	const struct adapter_filter *filters;
	size_t nfilters;
	const unsigned *proj;
	size_t nproj;
	adapter_row_fn fn;
	void *arg;
	struct adapter_stats *st;
	struct diag *d;
	struct adapter_value *out;       /* nproj */
	uint64_t reported;               /* bad rows listed in d */
};

/* Backends. open: everything but the common part of |a| (path, schema,
 * buffers are set); on failure the backend frees what it allocated itself.
 * scan: reads every row, calls adapter_emit_row or adapter_bad_row. */
int adapter_csv_open(struct adapter *a, const struct adapter_source *src, char *err, size_t errlen);
int adapter_csv_scan(struct adapter_scan_ctx *sc);
void adapter_csv_close(struct adapter *a);
int adapter_sqlite_open(struct adapter *a, const struct adapter_source *src, char *err, size_t errlen);
int adapter_sqlite_scan(struct adapter_scan_ctx *sc);
int adapter_sqlite_indexed(struct adapter *a, unsigned field, int *indexed, char *err, size_t errlen);
void adapter_sqlite_close(struct adapter *a);

/*
 * A row whose fields are in a->vals / a->bad / a->why: applies the filters,
 * reports it as bad (at |line|:|col|, 0 when the source has no lines) if a
 * field did not type, else projects and calls the callback. Returns 0 to go
 * on, 1 to stop, or a negative value to end the scan with.
 */
int adapter_emit_row(struct adapter_scan_ctx *sc, unsigned line, unsigned col);

/* The two halves of adapter_emit_row, for a backend whose rows are known
 * to be good (the CSV adapter's in-memory copy): 1 if a->vals matches
 * every filter (a NULL or bad field never does), else 0; and projecting
 * a->vals and calling the callback (0 go on, 1 stop, or its negative
 * value). */
int adapter_row_matches(const struct adapter_scan_ctx *sc);
int adapter_row_deliver(struct adapter_scan_ctx *sc);

/* Reports a bad row: counted and listed (SKIP, returns 0) or an error in
 * the diag (FAIL, returns ADAPTER_ERR_BAD_ROW). */
int adapter_bad_row(struct adapter_scan_ctx *sc, unsigned line, unsigned col,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Records the first bad field of the row in a->why. */
void adapter_field_bad(struct adapter *a, unsigned f, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Writes |s| for a message: quoted, at most 40 bytes, control bytes and
 * invalid UTF-8 escaped as \xNN, so a value cannot forge a log line. */
void adapter_quote(const char *s, size_t len, char *out, size_t outlen);

/* 1 if |s| is UTF-8 without NUL bytes. */
int adapter_utf8_ok(const char *s, size_t len);

/* "x: a, b, c" listing of a category field's values, for messages. */
void adapter_categories_text(const struct adapter_field *f, char *out, size_t outlen);

/* snprintf into |err| (may be NULL / 0). */
void adapter_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
