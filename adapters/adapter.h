/*
 * Adapters: how a node reads its partner's own data. One interface (open a
 * source against a schema, scan rows with filters and a projection, close),
 * two implementations (CSV files, SQLite databases); a PostgreSQL adapter
 * follows the same interface (docs/adapters.md, "Writing the next adapter").
 *
 * Words: BSN = burgerservicenummer (see crypto/pseudo.h); the schema comes
 * from the dataset catalog (policies/examples/catalog.yaml), which the node
 * parses; adapters never read the catalog themselves.
 *
 * Typing is strict and the same for every adapter, so the same data gives the
 * same rows whatever it is stored in:
 *   bsn       9 digits, or 8 digits (left-padded with 0), elfproef-valid
 *             (bsn_parse); SQLite may also store it as an INTEGER
 *   category  exactly one of the field's categories (case-sensitive);
 *             the value is the index into that list
 *   int       -?(0|[1-9][0-9]*) within int64 (no '+', no leading zeros, no
 *             spaces); SQLite: INTEGER, or a REAL that is exactly whole
 *   date      YYYY-MM-DD, a real calendar date, years 0001..9999; the value
 *             is days since 1970-01-01
 *   bool      true, false, TRUE, FALSE, 1, 0; SQLite: also INTEGER 0/1
 *   string    any UTF-8 without NUL bytes, at most ADAPTER_FIELD_MAX bytes
 * Nothing is trimmed or converted beyond this list. An empty field is NULL
 * (CSV: an unquoted empty field; SQLite: NULL, or '' for a non-string
 * field); for a string field a quoted "" (CSV) or '' (SQLite) is the empty
 * string. NULL in a field that is not nullable makes the row bad.
 *
 * A bad row (a value that does not type, a damaged CSV record) is reported
 * as "file:line:col: ..." and then either skipped and counted, or it ends
 * the scan with ADAPTER_ERR_BAD_ROW, as the source's on_bad_row says.
 *
 * Threads: a struct adapter is used by one thread at a time (SQLite is opened
 * with SQLITE_OPEN_NOMUTEX); open one per worker. The callback must not scan
 * the same adapter again.
 */
#ifndef NOORDPOORT_ADAPTER_H
#define NOORDPOORT_ADAPTER_H

#include "../common/err.h"

#include <stddef.h>
#include <stdint.h>

#include "../common/diag.h"

/* Longest field, in bytes. A longer field makes its row bad (not a crash, not
 * a truncated value). It also bounds the CSV reader's memory: about
 * (number of schema fields + 1) x 64 KiB + a 64 KiB read buffer. */
#ifndef ADAPTER_FIELD_MAX /* a fuzz build shrinks it with -D (Makefile, FUZZ_DEFS) */
#define ADAPTER_FIELD_MAX 65536
#endif
/* Most fields in a schema, and most columns in a CSV header. */
#define ADAPTER_MAX_FIELDS 256
#define ADAPTER_CSV_MAX_COLUMNS 4096
/* Bad rows listed in the diag per scan when they are skipped; the rest are
 * counted in one closing line, so a broken file cannot fill memory. */
#define ADAPTER_DIAG_MAX_ROWS 20

enum adapter_type { ADAPTER_BSN, ADAPTER_CATEGORY, ADAPTER_INT, ADAPTER_DATE, ADAPTER_BOOL, ADAPTER_STRING };

/* What the functions return (0 on success). */
enum adapter_error {
	ADAPTER_OK = 0,
	ADAPTER_ERR_ARG = NP_ERR_ARG,     /* NULL argument, bad schema, bad filter/projection */
	ADAPTER_ERR_NOMEM = NP_ERR_NOMEM,
	ADAPTER_ERR_IO = NP_ERR_IO,      /* the file cannot be opened or read */
	ADAPTER_ERR_SCHEMA = -600,  /* a schema field is not in the source, or twice (open; CSV: also a
	                           * scan that finds another file at the path, see adapter_scan) */
	ADAPTER_ERR_SQL = -601,     /* SQLite: not one read-only SELECT, no such table, or an SQLite error */
	ADAPTER_ERR_FORMAT = NP_ERR_FORMAT,  /* CSV: the header cannot be read (open, or a scan as above) */
	ADAPTER_ERR_BAD_ROW = -602, /* scan: a bad row, and on_bad_row is FAIL */
};

/* One field of a dataset. The strings are only read during adapter_open,
 * which copies the schema. */
struct adapter_field {
	const char *name;                /* CSV header name / SQL column name */
	enum adapter_type type;
	int nullable;                    /* 0: an empty field makes the row bad */
	const char *const *categories;   /* ADAPTER_CATEGORY only: the allowed values */
	size_t ncategories;
};

struct adapter_schema {
	const struct adapter_field *fields;
	size_t nfields;                  /* 1..ADAPTER_MAX_FIELDS */
};

/* A typed value. Strings point into the adapter's row buffer, are followed
 * by a NUL byte, and are valid until the callback returns. */
struct adapter_value {
	enum adapter_type type;
	int null;                        /* 1: empty/NULL; the union is unset */
	union {
		uint32_t bsn;            /* 1..999999999 */
		unsigned category;       /* index into the field's categories */
		int64_t i;
		int32_t date;            /* days since 1970-01-01 */
		int b;                   /* 0 or 1 */
		struct {
			const char *ptr;
			size_t len;
		} str;
	};
};

enum adapter_kind { ADAPTER_CSV = 1, ADAPTER_SQLITE = 2 };

/* The zero value is FAIL on purpose: a broken export must be noticed, so
 * skipping bad rows is something the config has to ask for. */
enum adapter_on_bad_row { ADAPTER_BAD_ROW_FAIL = 0, ADAPTER_BAD_ROW_SKIP = 1 };

/*
 * Where a dataset lives: the node config's `source:` block. Strings are only
 * read during adapter_open.
 *   csv:    path; headerless = 0 (default): the first record names the
 *           columns, matched to schema fields by exact name, extra columns
 *           ignored; 1: no header, the columns are the schema fields in
 *           order. delimiter 0 means ','; ';' reads Dutch Excel exports.
 *           disk_only = 0 (default): once a full scan found the settled
 *           file clean, the adapter keeps its rows typed in memory and
 *           answers later scans of the unchanged file from them (1 to 8
 *           bytes per field per row, a string 9 plus its length, one bit
 *           more if nullable: docs/adapters.md);
 *           1: never, every scan reads the file (a file too big to hold
 *           once per node worker).
 *   sqlite: path; exactly one of table (a table or view name) or query
 *           (one SELECT statement). disk_only is ignored: SQLite has its
 *           own page cache.
 */
struct adapter_source {
	enum adapter_kind kind;
	const char *path;
	enum adapter_on_bad_row on_bad_row;
	int headerless;                  /* csv */
	char delimiter;                  /* csv */
	int disk_only;                   /* csv: no copy of the rows in memory */
	const char *table;               /* sqlite */
	const char *query;               /* sqlite */
};

/* Equality (nvalues 1) or IN (nvalues > 1) on one field. Values have the
 * field's type, are not NULL, and are only read during adapter_scan. A row
 * whose field is NULL or does not type never matches. */
struct adapter_filter {
	unsigned field;                  /* index into the schema */
	const struct adapter_value *values;
	size_t nvalues;
};

struct adapter_stats {
	uint64_t rows_read;              /* CSV: every record; SQLite: rows the pushed-down query returned */
	uint64_t rows_ok;                /* rows handed to the callback */
	uint64_t rows_bad_skipped;       /* bad rows skipped (on_bad_row SKIP) */
};

/* Called once per matching row with the projected values, in projection
 * order. Return 0 to go on, 1 to stop (adapter_scan then returns 0), or a
 * negative value to abort (adapter_scan returns that value unchanged). */
typedef int (*adapter_row_fn)(void *arg, const struct adapter_value *values, size_t nvalues);

struct adapter;

/*
 * Opens |src| for |schema| (copied; the caller keeps its own). Checks the
 * schema (names unique and non-empty, categories for category fields only),
 * that every schema field is a column of the source (ADAPTER_ERR_SCHEMA
 * names the file and the field), and for SQLite that the query is one
 * read-only SELECT without parameters (ADAPTER_ERR_SQL). Reads the CSV
 * header, not the rows.
 * Returns 0 and sets |*out| (free with adapter_close), or ADAPTER_ERR_ARG,
 * _NOMEM, _IO, _SCHEMA, _SQL, _FORMAT with |*out| = NULL and one line in
 * |err| ("path: reason", or "path:line:col: reason" for the CSV header).
 */
int adapter_open(const struct adapter_source *src, const struct adapter_schema *schema,
		 struct adapter **out, char *err, size_t errlen);

/*
 * Reads the dataset from the start and calls |fn| for every row that
 * matches all |filters|. |projection| lists the schema fields to pass, in
 * order (repeats allowed); NULL with nproj 0 means every field in schema
 * order. Every schema field of a row is typed, projected or not, so whether
 * a row is bad does not depend on the projection; a row that does not match
 * the filters is not checked further (it is not the caller's business).
 * (CSV: once a scan of this adapter typed the whole unchanged file and found
 * no bad row, later scans type only filter and projection fields while
 * stat() shows the same file, or are answered from the rows that scan kept
 * in memory unless the source is disk_only; docs/adapters.md. The rows and
 * the order are the same either way.)
 * CSV: every scan first stats the path. When it names another file than
 * the one open (a rename put a new export in place), or the open file
 * changed since it was opened (rewritten in place), the scan opens and
 * reads it anew, header included; when it names no file, or one that
 * cannot be opened or whose header does not fit the schema, the scan fails
 * (_IO, _SCHEMA, _FORMAT, _NOMEM; one line in |d| naming the path) rather
 * than answer from the old file, and the next scan tries again. Only when
 * stat() is refused (EACCES) is the open file taken for the path's.
 * SQLite: filters become "WHERE f IN (?, ...)" with bound values (an
 * equality filter on the bsn field is a lookup: index the column; see
 * adapter_field_indexed). CSV: the file (or its copy in memory) is read
 * start to end.
 * |stats| (may be NULL) is reset and filled; |d| (may be NULL) gets one line
 * per bad row: a warning when skipped (at most ADAPTER_DIAG_MAX_ROWS, then
 * one line with the count), an error when it ends the scan.
 * Returns 0 (also when |fn| returned 1), |fn|'s negative value, or
 * ADAPTER_ERR_ARG (bad filter/projection/fn), _NOMEM, _IO, _SQL, _BAD_ROW,
 * and for CSV _SCHEMA, _FORMAT (the path names a new file, see above).
 * On an error, rows before it have already been passed to |fn|: discard
 * what was built from them.
 */
int adapter_scan(struct adapter *a, const struct adapter_filter *filters, size_t nfilters,
		 const unsigned *projection, size_t nproj, adapter_row_fn fn, void *arg,
		 struct adapter_stats *stats, struct diag *d);

/* Closes files and connections and frees |a|; NULL is a no-op. */
void adapter_close(struct adapter *a);

/* The index of the schema field called |name| (|len| bytes), or -1. */
int adapter_field_index(const struct adapter *a, const char *name, size_t len);

/*
 * Whether an equality filter on |field| is answered through an index rather
 * than by reading everything: SQLite asks EXPLAIN QUERY PLAN (1 when no step
 * of the plan is a full SCAN); CSV is always 0. Indexing the bsn column is
 * the partner's job; the node can check it at start-up and warn.
 * Returns 0 with |*indexed| set, or ADAPTER_ERR_ARG / _SQL with |err|.
 */
int adapter_field_indexed(struct adapter *a, unsigned field, int *indexed, char *err, size_t errlen);

/*
 * Types |len| bytes of text (peer data: never strlen'd) as |field| says,
 * by the rules at the top of this file, e.g. to build filter values from a
 * request. len 0 gives NULL (an error if the field is not nullable).
 * Returns 0 with |*out| set (a string points into |s|), or -1 with the
 * reason in |why| ("'abc' is not a whole number"; a BSN is never echoed).
 */
int adapter_value_parse(const struct adapter_field *field, const char *s, size_t len,
			struct adapter_value *out, char *why, size_t whylen);

/* "bsn", "category", "int", "date", "bool", "string" and back; parse
 * returns 0 or -1 for an unknown name. */
const char *adapter_type_name(enum adapter_type t);
int adapter_type_parse(const char *name, size_t len, enum adapter_type *out);

/* Dates: days since 1970-01-01 <-> "YYYY-MM-DD" (11 bytes with the NUL).
 * parse returns 0, or -1 if |s| is not a calendar date in years 0001..9999. */
int adapter_date_parse(const char *s, size_t len, int32_t *days);
void adapter_date_format(int32_t days, char out[11]);

#endif
