/*
 * The CSV adapter: RFC 4180 records (quotes, doubled quotes, commas and
 * newlines inside quotes, CRLF or LF, a UTF-8 BOM) read in a stream. All
 * buffers are allocated at open and never grow, so memory does not depend on
 * the size of the file; a scan makes no allocation per row. A record without
 * quotes is split with memchr in the read buffer; anything else (quotes, a
 * stray CR, the wrong number of fields, a record longer than the buffer)
 * goes through the byte-at-a-time parser, which also words the errors.
 * The one exception to "memory does not grow with the file": a settled file
 * found clean is kept as a typed, columnar copy, and later scans of the
 * unchanged file are answered from it (struct csv_copy).
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* The read buffer. A fuzz build shrinks it (and ADAPTER_FIELD_MAX, in
 * adapter.h) with -D, so small inputs reach refills, records longer than the
 * buffer and fields longer than the cap (Makefile, FUZZ_DEFS). */
#ifndef CSV_READ_BUF
#define CSV_READ_BUF 65536
#endif
#define CSV_SLOT (ADAPTER_FIELD_MAX + 1) /* a field and its NUL */

/* The current record's value of one schema field. */
struct csv_field {
	size_t len;                /* may exceed ADAPTER_FIELD_MAX: then too long */
	unsigned line, col;        /* where the field starts */
	unsigned char quoted;
};

struct adapter_csv {
	int fd;
	char delim;
	int headerless;
	unsigned char *in;         /* CSV_READ_BUF bytes read ahead */
	size_t in_len, in_pos;
	size_t in_hw;              /* bytes of |in| ever written: what csv_free wipes */
	off_t in_off;              /* file offset of in[0] */
	unsigned line, col;        /* position of the next byte */
	char *rec;                 /* (nfields + 1) slots; the last is scratch */
	size_t rec_len;            /* its size in bytes */
	size_t *rec_hw;            /* nfields + 1: bytes of each slot ever written, wiped by csv_free
	                            * (wiping all of rec, (nfields + 1) x 64 KiB, per reader cost
	                            * more than reading a small file) */
	struct csv_field *fv;      /* nfields */
	int *colmap;               /* column -> schema field, -1: ignored */
	size_t ncols, colcap;
	off_t data_off;            /* where the first data record starts */
	unsigned data_line;
	struct stat open_st;       /* the file when it was opened */
	char header_text[256];     /* the header's names, for "missing field" */
	const char **text;         /* nfields: the current record's fields, NUL-terminated
	                            * (in rec's slots, or in place in |in|) */
	char **cut;                /* ncols: where each field of a fast-path record ends */
	/* Set when a scan has typed every field of every row of this very file
	 * (device, inode, size, mtime, ctime) and found none bad: later scans
	 * of the unchanged file type only the fields they filter on or pass. */
	int clean;
	struct stat clean_st;
	/* The rows of that clean file, typed, when the source allows a copy
	 * (not disk_only) and it could be built: then scans read no file. */
	struct csv_copy *copy;
	int disk_only;
	int from_memory;           /* the last scan was answered from copy (tests) */
	uint64_t copy_nomem;       /* copies given up for lack of memory (tests) */
};

/*
 * One schema field of the in-memory copy: |nrows| values of |width| bytes
 * (bsn uint32_t, category uint16_t, int int64_t, date int32_t, bool
 * unsigned char), and for a nullable field one bit per row, set when the
 * value is NULL. A string field keeps its strings in its own arena, each
 * followed by a NUL, and size_t offsets into it, nrows + 1 of them: row r
 * is arena[off[r]] .. arena[off[r + 1] - 2] (off[r + 1] == off[r]: NULL).
 */
struct csv_col {
	void *v;
	size_t width;
	int string;                /* v holds offsets, one more than rows */
	unsigned char *null;       /* NULL when the field is not nullable */
	char *arena;               /* string fields */
	size_t arena_len, arena_cap;
};

/*
 * A clean file's rows, in file order, typed by the same rules as the scan
 * that built it. Row line numbers are not kept: a clean file has no bad row,
 * and nothing else reports a position. The data is personal (BSNs, dates
 * of birth, free text): every block is wiped before it is freed, also the
 * old one when a column grows.
 */
struct csv_copy {
	size_t nrows, cap;         /* rows held; rows the columns have room for */
	size_t nfields;
	struct csv_col *col;       /* nfields */
};

/* A file whose mtime or ctime is this recent when a scan starts is not
 * marked clean: timestamps are coarser than a write, so a change in the
 * same tick could go unseen. */
#define CSV_CLEAN_SETTLE_S 2

/* One record as the parser saw it. */
struct csv_rec {
	unsigned line;             /* where it starts */
	size_t ncols;              /* fields seen */
	int bad;                   /* a damaged record: why + where */
	unsigned bad_line, bad_col;
	char why[512];
};

enum { ST_START, ST_UNQ, ST_QUO, ST_QQ, ST_CR, ST_SKIP };
enum { BYTE_EOF = -1, BYTE_ERR = -2 };

static int csv_byte(struct adapter_csv *c)
{
	int ch;

	if (c->in_pos == c->in_len) {
		ssize_t n;

		do
			n = read(c->fd, c->in, CSV_READ_BUF);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return BYTE_ERR;
		if (n == 0)
			return BYTE_EOF;
		c->in_off += (off_t)c->in_len;
		c->in_len = (size_t)n;
		c->in_pos = 0;
		if (c->in_len > c->in_hw)
			c->in_hw = c->in_len;
	}
	ch = c->in[c->in_pos++];
	if (ch == '\n') {
		c->line++;
		c->col = 1;
	} else {
		c->col++;
	}
	return ch;
}

static int csv_rewind(struct adapter_csv *c, off_t off, unsigned line)
{
	if (lseek(c->fd, off, SEEK_SET) != off)
		return -1;
	c->in_off = off;
	c->in_len = c->in_pos = 0;
	c->line = line;
	c->col = 1;
	return 0;
}

/* "field 'x'" for a mapped column, "column N" otherwise. */
static void col_name(const struct adapter *a, const struct adapter_csv *c, size_t col, char *out, size_t outlen)
{
	if (col < c->ncols && c->colmap[col] >= 0)
		snprintf(out, outlen, "field '%s'", a->schema.fields[c->colmap[col]].name);
	else
		snprintf(out, outlen, "column %zu", col + 1);
}

static void rec_bad(struct csv_rec *r, unsigned line, unsigned col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void rec_bad(struct csv_rec *r, unsigned line, unsigned col, const char *fmt, ...)
{
	va_list ap;

	if (r->bad)
		return;
	r->bad = 1;
	r->bad_line = line;
	r->bad_col = col;
	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
}

/* The header maps column |col| named |name| (NUL-terminated, |len| bytes). */
static int header_column(const struct adapter *a, struct adapter_csv *c, unsigned line, size_t col,
			 const char *name, size_t len, char *err, size_t errlen)
{
	int f = adapter_field_index(a, name, len);
	size_t o = strlen(c->header_text);

	if (col >= ADAPTER_CSV_MAX_COLUMNS) {
		adapter_errf(err, errlen, "%s:%u: header: more than %d columns", a->path, line,
			     ADAPTER_CSV_MAX_COLUMNS);
		return ADAPTER_ERR_FORMAT;
	}
	if (col >= c->colcap) {
		size_t ncap = c->colcap ? c->colcap * 2 : 16;
		int *m = realloc(c->colmap, ncap * sizeof(*m));

		if (!m) {
			adapter_errf(err, errlen, "%s: out of memory", a->path);
			return ADAPTER_ERR_NOMEM;
		}
		c->colmap = m;
		c->colcap = ncap;
	}
	if (f >= 0)
		for (size_t i = 0; i < col; i++)
			if (c->colmap[i] == f) {
				adapter_errf(err, errlen, "%s:%u: header: column '%s' appears twice", a->path,
					     line, a->schema.fields[f].name);
				return ADAPTER_ERR_SCHEMA;
			}
	c->colmap[col] = f;
	c->ncols = col + 1;
	if (o + 4 < sizeof(c->header_text)) {
		char q[128];

		adapter_quote(name, len, q, sizeof(q));
		snprintf(c->header_text + o, sizeof(c->header_text) - o, "%s%s", col ? ", " : "", q);
	}
	return 0;
}

/* Field bytes went into |dst| (a slot of c->rec, or NULL) up to |len| and
 * its NUL: csv_free wipes that much of the slot. */
static void rec_mark(struct adapter_csv *c, const char *dst, size_t len)
{
	size_t slot, used;

	if (!dst)
		return;
	slot = (size_t)(dst - c->rec) / CSV_SLOT;
	used = (len > ADAPTER_FIELD_MAX ? ADAPTER_FIELD_MAX : len) + 1;
	if (used > c->rec_hw[slot])
		c->rec_hw[slot] = used;
}

/*
 * Reads one record of |c| (a reader of |a|'s file). Returns 1 (a record in
 * |r|; r->bad if it is damaged), 0 at the end of the file, BYTE_ERR on a
 * read error. Blank lines are no record. In header mode every field goes
 * through the scratch slot to header_column (whose error ends the read with
 * |*hdr_rc|).
 */
static int csv_record(const struct adapter *a, struct adapter_csv *c, struct csv_rec *r, int header, int *hdr_rc,
		      char *err, size_t errlen)
{
	int st, ch = 0;
	size_t col, len;
	char *dst;
	unsigned fline, fcol;
	unsigned char quoted;
	char what[300];

restart:
	st = ST_START;
	col = 0;
	r->line = c->line;
	r->ncols = 0;
	r->bad = 0;
	goto field_begin;

field_begin:
	len = 0;
	quoted = 0;
	fline = c->line;
	fcol = c->col;
	if (header)
		dst = c->rec + a->schema.nfields * CSV_SLOT;
	else if (col < c->ncols && c->colmap[col] >= 0)
		dst = c->rec + (size_t)c->colmap[col] * CSV_SLOT;
	else
		dst = NULL;

	for (;;) {
		ch = csv_byte(c);
		if (ch == BYTE_ERR) {
			rec_mark(c, dst, len);
			return BYTE_ERR;
		}
		if (ch == BYTE_EOF) {
			if (st == ST_START && col == 0)
				return 0; /* nothing after the last line break */
			if (st == ST_QUO) {
				col_name(a, c, col, what, sizeof(what));
				rec_bad(r, fline, fcol, "%s: quoted field not closed before the end of the file", what);
			} else if (st == ST_CR) {
				col_name(a, c, col, what, sizeof(what));
				rec_bad(r, fline, fcol, "%s: carriage return not followed by a line feed", what);
			}
			goto field_end_record;
		}
		switch (st) {
		case ST_START:
			if (ch == '"') {
				quoted = 1;
				st = ST_QUO;
			} else if (ch == c->delim) {
				goto field_end_next;
			} else if (ch == '\n') {
				goto field_end_record;
			} else if (ch == '\r') {
				st = ST_CR;
			} else {
				goto put_unq;
			}
			continue;
		case ST_UNQ:
			if (ch == c->delim)
				goto field_end_next;
			if (ch == '\n')
				goto field_end_record;
			if (ch == '\r') {
				st = ST_CR;
				continue;
			}
			if (ch == '"') {
				col_name(a, c, col, what, sizeof(what));
				rec_bad(r, fline, fcol, "%s: '\"' inside an unquoted field (quote the whole field)", what);
				st = ST_SKIP;
				continue;
			}
			goto put_unq;
		case ST_QUO:
			if (ch == '"')
				st = ST_QQ;
			else
				goto put;
			continue;
		case ST_QQ:
			if (ch == '"') {
				st = ST_QUO;
				goto put;
			}
			if (ch == c->delim)
				goto field_end_next;
			if (ch == '\n')
				goto field_end_record;
			if (ch == '\r') {
				st = ST_CR;
				continue;
			}
			col_name(a, c, col, what, sizeof(what));
			rec_bad(r, fline, fcol, "%s: text after the closing quote", what);
			st = ST_SKIP;
			continue;
		case ST_CR:
			if (ch == '\n')
				goto field_end_record;
			col_name(a, c, col, what, sizeof(what));
			rec_bad(r, fline, fcol, "%s: carriage return not followed by a line feed", what);
			st = ST_SKIP;
			continue;
		case ST_SKIP:
			if (ch == '\n') {
				rec_mark(c, dst, len);
				r->ncols = col + 1;
				return 1;
			}
			continue;
		}
put_unq:
		st = ST_UNQ;
put:
		/* Keep counting past the cap, so quoting stays in step and the
		 * row is reported as too long rather than cut. */
		if (dst && len < ADAPTER_FIELD_MAX)
			dst[len] = (char)ch;
		if (len <= ADAPTER_FIELD_MAX)
			len++;
	}

field_end_next:
	if (len > ADAPTER_FIELD_MAX) {
		col_name(a, c, col, what, sizeof(what));
		rec_bad(r, fline, fcol, "%s: longer than %d bytes", what, ADAPTER_FIELD_MAX);
	}
	if (dst) {
		dst[len > ADAPTER_FIELD_MAX ? ADAPTER_FIELD_MAX : len] = '\0';
		rec_mark(c, dst, len);
	}
	if (header && !r->bad) {
		*hdr_rc = header_column(a, c, r->line, col, dst, len, err, errlen);
		if (*hdr_rc < 0)
			return 1;
	} else if (dst && !header) {
		struct csv_field *fv = &c->fv[c->colmap[col]];

		fv->len = len;
		fv->line = fline;
		fv->col = fcol;
		fv->quoted = quoted;
	}
	col++;
	if (col > ADAPTER_CSV_MAX_COLUMNS && !r->bad)
		rec_bad(r, fline, fcol, "more than %d columns", ADAPTER_CSV_MAX_COLUMNS);
	st = ST_START;
	goto field_begin;

field_end_record:
	if (col == 0 && len == 0 && !quoted && !r->bad && ch != BYTE_EOF)
		goto restart; /* a blank line */
	if (len > ADAPTER_FIELD_MAX) {
		col_name(a, c, col, what, sizeof(what));
		rec_bad(r, fline, fcol, "%s: longer than %d bytes", what, ADAPTER_FIELD_MAX);
	}
	if (dst) {
		dst[len > ADAPTER_FIELD_MAX ? ADAPTER_FIELD_MAX : len] = '\0';
		rec_mark(c, dst, len);
	}
	if (header && !r->bad) {
		*hdr_rc = header_column(a, c, r->line, col, dst, len, err, errlen);
	} else if (dst && !header) {
		struct csv_field *fv = &c->fv[c->colmap[col]];

		fv->len = len;
		fv->line = fline;
		fv->col = fcol;
		fv->quoted = quoted;
	}
	r->ncols = col + 1;
	return 1;
}

enum { FAST_FALLBACK = 2 };

/*
 * The fast path: the next record when it is one line of unquoted fields,
 * split with memchr in the read buffer (the fields are NUL-terminated in
 * place). Returns 1 (a record in |r| and c->text), 0 at the end of the
 * file, BYTE_ERR, or FAST_FALLBACK with nothing consumed but blank lines:
 * csv_record then reads the record from the same place.
 */
static int csv_fast_record(struct adapter *a, struct csv_rec *r)
{
	struct adapter_csv *c = a->csv;
	char *p, *nl, *end, *s;
	size_t len, col = 0;

	for (;;) {
		size_t avail = c->in_len - c->in_pos;
		ssize_t n;

		p = (char *)c->in + c->in_pos;
		if ((nl = memchr(p, '\n', avail)) != NULL) {
			len = (size_t)(nl - p);
			if (len && p[len - 1] == '\r')
				len--;
			if (len == 0) { /* a blank line is no record */
				c->in_pos += (size_t)(nl - p) + 1;
				c->line++;
				c->col = 1;
				continue;
			}
			break;
		}
		if (c->in_pos == 0 && avail == CSV_READ_BUF)
			return FAST_FALLBACK; /* longer than the buffer */
		memmove(c->in, p, avail);
		c->in_off += (off_t)c->in_pos;
		c->in_pos = 0;
		c->in_len = avail;
		do
			n = read(c->fd, c->in + avail, CSV_READ_BUF - avail);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return BYTE_ERR;
		if (n == 0)
			return avail ? FAST_FALLBACK : 0; /* a last line without a line break */
		c->in_len += (size_t)n;
		if (c->in_len > c->in_hw)
			c->in_hw = c->in_len;
	}
	/* One pass over the line: the field boundaries, or a reason to fall
	 * back (a quote, a stray CR, too many fields) before anything changed. */
	end = p + len;
	for (s = p;; col++) {
		char *e = s;
		int f;

		while (e < end && *e != c->delim) {
			if (*e == '"' || *e == '\r')
				return FAST_FALLBACK;
			e++;
		}
		if (col >= c->ncols)
			return FAST_FALLBACK; /* too many fields: the parser says so */
		c->cut[col] = e;
		if ((f = c->colmap[col]) >= 0) {
			c->text[f] = s;
			c->fv[f].len = (size_t)(e - s);
			c->fv[f].line = c->line;
			c->fv[f].col = (unsigned)(s - p) + 1;
			c->fv[f].quoted = 0;
		}
		if (e == end)
			break;
		s = e + 1;
	}
	if (col + 1 != c->ncols)
		return FAST_FALLBACK;
	/* only now, when nothing can fall back any more */
	for (size_t i = 0; i <= col; i++)
		*c->cut[i] = '\0';
	r->line = c->line;
	r->ncols = col + 1;
	r->bad = 0;
	c->in_pos += (size_t)(nl - p) + 1;
	c->line++;
	c->col = 1;
	return 1;
}

static int same_file(const struct stat *x, const struct stat *y)
{
	return x->st_dev == y->st_dev && x->st_ino == y->st_ino && x->st_size == y->st_size &&
	       x->st_mtim.tv_sec == y->st_mtim.tv_sec && x->st_mtim.tv_nsec == y->st_mtim.tv_nsec &&
	       x->st_ctim.tv_sec == y->st_ctim.tv_sec && x->st_ctim.tv_nsec == y->st_ctim.tv_nsec;
}

/* Whether a file that looked like |st| when a scan began at |now| had
 * settled: see CSV_CLEAN_SETTLE_S. The file's times are the partner's to
 * set (tmpfs keeps an mtime of INT64_MAX), so the sum is on the clock's
 * side, which cannot overflow. */
static int settled(const struct stat *st, const struct timespec *now)
{
	return st->st_mtim.tv_sec < now->tv_sec - CSV_CLEAN_SETTLE_S &&
	       st->st_ctim.tv_sec < now->tv_sec - CSV_CLEAN_SETTLE_S;
}

/* ---- the in-memory copy of a clean file ---------------------------------- */

/* Rows the columns have room for at first; they double from there, and
 * are cut to size when the copy is complete. */
#define COPY_FIRST_ROWS 1024
#define COPY_FIRST_ARENA 4096
/* Category codes are kept in 16 bits. A field with more categories than
 * that gets no copy (its scans read the file, as before). */
#define COPY_MAX_CATEGORIES 65536

static size_t copy_width(enum adapter_type t)
{
	switch (t) {
	case ADAPTER_BSN: return sizeof(uint32_t);
	case ADAPTER_CATEGORY: return sizeof(uint16_t);
	case ADAPTER_INT: return sizeof(int64_t);
	case ADAPTER_DATE: return sizeof(int32_t);
	case ADAPTER_BOOL: return 1;
	case ADAPTER_STRING: return sizeof(size_t);
	}
	return 0;
}

/* Bytes of |col| that hold data when the copy has |rows| rows. */
static size_t col_used(const struct csv_col *col, size_t rows)
{
	return (rows + (col->string ? 1 : 0)) * col->width;
}

/* Frees |p| after wiping its first |used| bytes (where the data is). */
static void block_free(void *p, size_t used)
{
	if (p && used)
		sodium_memzero(p, used);
	free(p);
}

/* A new block of |size| bytes (> 0) holding the first |used| bytes of |old|,
 * which is wiped and freed; or NULL with |old| untouched. realloc would
 * leave the old block's personal data behind in the heap. */
static void *block_move(void *old, size_t used, size_t size)
{
	void *p = malloc(size);

	if (!p)
		return NULL;
	if (used) {
		memcpy(p, old, used);
		sodium_memzero(old, used);
	}
	free(old);
	return p;
}

static void copy_free(struct csv_copy *m)
{
	if (!m)
		return;
	for (size_t f = 0; m->col && f < m->nfields; f++) {
		block_free(m->col[f].v, col_used(&m->col[f], m->nrows));
		block_free(m->col[f].null, (m->nrows + 7) / 8);
		block_free(m->col[f].arena, m->col[f].arena_len);
	}
	free(m->col);
	free(m);
}

/* Frees the copy being built, for a scan that can no longer end clean. */
static void copy_drop(struct csv_copy **m)
{
	copy_free(*m);
	*m = NULL;
}

/* Whether |a| may keep a copy at all (the source did not say disk_only,
 * and every category code fits). */
static int copy_allowed(const struct adapter *a)
{
	if (a->csv->disk_only)
		return 0;
	for (size_t f = 0; f < a->schema.nfields; f++)
		if (a->schema.fields[f].type == ADAPTER_CATEGORY &&
		    a->schema.fields[f].ncategories > COPY_MAX_CATEGORIES)
			return 0;
	return 1;
}

/* An empty copy for |a|'s schema, or NULL when out of memory. */
static struct csv_copy *copy_new(const struct adapter *a)
{
	struct csv_copy *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->nfields = a->schema.nfields;
	m->cap = COPY_FIRST_ROWS;
	m->col = calloc(m->nfields, sizeof(*m->col));
	if (!m->col)
		goto fail;
	for (size_t f = 0; f < m->nfields; f++) {
		const struct adapter_field *fd = &a->schema.fields[f];
		struct csv_col *col = &m->col[f];

		col->width = copy_width(fd->type);
		col->string = fd->type == ADAPTER_STRING;
		col->v = malloc(col_used(col, m->cap));
		if (!col->v)
			goto fail;
		if (col->string)
			((size_t *)col->v)[0] = 0;
		if (fd->nullable && !(col->null = malloc((m->cap + 7) / 8)))
			goto fail;
	}
	return m;
fail:
	copy_free(m);
	return NULL;
}

/* Doubles the room for rows. Returns 0 or -1 (out of memory; the copy is
 * still whole and can be freed). */
static int copy_grow(struct csv_copy *m)
{
	size_t cap = m->cap * 2;

	if (cap > SIZE_MAX / 16)
		return -1;
	for (size_t f = 0; f < m->nfields; f++) {
		struct csv_col *col = &m->col[f];
		void *p = block_move(col->v, col_used(col, m->nrows), col_used(col, cap));

		if (!p)
			return -1;
		col->v = p;
		if (col->null) {
			if (!(p = block_move(col->null, (m->nrows + 7) / 8, (cap + 7) / 8)))
				return -1;
			col->null = p;
		}
	}
	m->cap = cap;
	return 0;
}

/* Makes room for |need| more bytes of strings in |col|. Returns 0 or -1. */
static int arena_reserve(struct csv_col *col, size_t need)
{
	size_t cap = col->arena_cap ? col->arena_cap : COPY_FIRST_ARENA;
	char *p;

	if (col->arena_cap - col->arena_len >= need)
		return 0;
	while (cap - col->arena_len < need) {
		if (cap > SIZE_MAX / 2)
			return -1;
		cap *= 2;
	}
	if (!(p = block_move(col->arena, col->arena_len, cap)))
		return -1;
	col->arena = p;
	col->arena_cap = cap;
	return 0;
}

/*
 * Appends the row whose fields are typed in a->vals, none bad. All room is
 * made first, so a row is either added whole or not at all. Returns 0 or
 * -1 (out of memory).
 */
static int copy_add_row(struct csv_copy *m, const struct adapter *a)
{
	size_t r = m->nrows;

	if (r == m->cap && copy_grow(m) < 0)
		return -1;
	for (size_t f = 0; f < m->nfields; f++)
		if (m->col[f].string && !a->vals[f].null && arena_reserve(&m->col[f], a->vals[f].str.len + 1) < 0)
			return -1;
	for (size_t f = 0; f < m->nfields; f++) {
		const struct adapter_value *v = &a->vals[f];
		struct csv_col *col = &m->col[f];
		unsigned char bit = (unsigned char)(1u << (r % 8));

		if (col->null)
			col->null[r / 8] = (unsigned char)(v->null ? col->null[r / 8] | bit : col->null[r / 8] & ~bit);
		/* a NULL value's union is zero (adapter_value_parse) */
		switch (v->type) {
		case ADAPTER_BSN: ((uint32_t *)col->v)[r] = v->bsn; break;
		case ADAPTER_CATEGORY: ((uint16_t *)col->v)[r] = (uint16_t)v->category; break;
		case ADAPTER_INT: ((int64_t *)col->v)[r] = v->i; break;
		case ADAPTER_DATE: ((int32_t *)col->v)[r] = v->date; break;
		case ADAPTER_BOOL: ((unsigned char *)col->v)[r] = (unsigned char)v->b; break;
		case ADAPTER_STRING:
			if (!v->null) {
				memcpy(col->arena + col->arena_len, v->str.ptr, v->str.len);
				col->arena[col->arena_len + v->str.len] = '\0';
				col->arena_len += v->str.len + 1;
			}
			((size_t *)col->v)[r + 1] = col->arena_len;
			break;
		}
	}
	m->nrows++;
	return 0;
}

/* Cuts every block of a complete copy to its rows (doubling leaves up to
 * half of it empty). A block that cannot be moved stays as it is. */
static void copy_trim(struct csv_copy *m)
{
	void *p;

	for (size_t f = 0; f < m->nfields; f++) {
		struct csv_col *col = &m->col[f];
		size_t used = col_used(col, m->nrows);

		if ((p = block_move(col->v, used, used ? used : 1)))
			col->v = p;
		if (col->null && (p = block_move(col->null, (m->nrows + 7) / 8, m->nrows / 8 + 1)))
			col->null = p;
		if (col->arena && (p = block_move(col->arena, col->arena_len, col->arena_len ? col->arena_len : 1))) {
			col->arena = p;
			col->arena_cap = col->arena_len;
		}
	}
	m->cap = m->nrows; /* nothing is appended to a complete copy */
}

/* Row |r| of field |f| as a typed value, as the file scan typed it. */
static void copy_value(const struct csv_copy *m, const struct adapter_field *fd, unsigned f, size_t r,
		       struct adapter_value *v)
{
	const struct csv_col *col = &m->col[f];

	memset(v, 0, sizeof(*v));
	v->type = fd->type;
	if (col->null && (col->null[r / 8] >> (r % 8) & 1)) {
		v->null = 1;
		return;
	}
	switch (fd->type) {
	case ADAPTER_BSN: v->bsn = ((const uint32_t *)col->v)[r]; break;
	case ADAPTER_CATEGORY: v->category = ((const uint16_t *)col->v)[r]; break;
	case ADAPTER_INT: v->i = ((const int64_t *)col->v)[r]; break;
	case ADAPTER_DATE: v->date = ((const int32_t *)col->v)[r]; break;
	case ADAPTER_BOOL: v->b = ((const unsigned char *)col->v)[r]; break;
	case ADAPTER_STRING: {
		const size_t *off = col->v;

		v->str.ptr = col->arena + off[r];
		v->str.len = off[r + 1] - off[r] - 1;
		break;
	}
	}
}

/*
 * A scan answered from the copy: the filters are the file scan's own
 * (adapter_row_matches on typed values), then the same projection,
 * callback and counts, row by row in file order. Only the fields a filter
 * or the projection names are looked at.
 */
static int copy_scan(struct adapter_scan_ctx *sc)
{
	struct adapter *a = sc->a;
	const struct csv_copy *m = a->csv->copy;
	const struct adapter_field *fields = a->schema.fields;
	int rc;

	memset(a->bad, 0, a->schema.nfields);
	a->nbad = 0;
	for (size_t r = 0; r < m->nrows; r++) {
		sc->st->rows_read++;
		for (size_t i = 0; i < sc->nfilters; i++) {
			unsigned f = sc->filters[i].field;

			copy_value(m, &fields[f], f, r, &a->vals[f]);
		}
		if (!adapter_row_matches(sc))
			continue;
		for (size_t i = 0; i < sc->nproj; i++) {
			unsigned f = sc->proj ? sc->proj[i] : (unsigned)i;

			copy_value(m, &fields[f], f, r, &a->vals[f]);
		}
		rc = adapter_row_deliver(sc);
		if (rc != 0)
			return rc < 0 ? rc : 0;
	}
	return 0;
}

static void csv_free(struct adapter_csv *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	copy_free(c->copy);
	free(c->colmap);
	free(c->cut);
	free(c->text);
	free(c->fv);
	/* Raw rows, BSNs included: wiped, as serving processes keep freed
	 * memory for reuse (docs/architecture.md). */
	if (c->rec && c->rec_hw)
		for (size_t i = 0; i < c->rec_len / CSV_SLOT; i++)
			sodium_memzero(c->rec + i * CSV_SLOT, c->rec_hw[i]);
	free(c->rec);
	free(c->rec_hw);
	if (c->in)
		sodium_memzero(c->in, c->in_hw);
	free(c->in);
	free(c);
}

/* The header's check: every schema field has a column (header_column has
 * already refused a column twice). */
static int header_complete(const struct adapter *a, const struct adapter_csv *c, unsigned line, char *err,
			   size_t errlen)
{
	char missing[300] = "";
	size_t o = 0, nmissing = 0;

	for (size_t f = 0; f < a->schema.nfields; f++) {
		size_t i;

		for (i = 0; i < c->ncols && c->colmap[i] != (int)f; i++)
			;
		if (i < c->ncols)
			continue;
		nmissing++;
		if (o + 8 < sizeof(missing))
			o += (size_t)snprintf(missing + o, sizeof(missing) - o, "%s'%s'", o ? ", " : "",
					      a->schema.fields[f].name);
	}
	if (nmissing) {
		adapter_errf(err, errlen, "%s:%u: header: no column for schema field%s %s (the header has %s)",
			     a->path, line, nmissing > 1 ? "s" : "", missing, c->header_text);
		return ADAPTER_ERR_SCHEMA;
	}
	return 0;
}

/*
 * Opens |c|'s file, a->path (a regular file), unless c->fd is already open
 * on it, and reads from its start up to the first data record: the byte
 * order mark, and the header unless the source is headerless. |c| has its
 * buffers; the caller frees it on any outcome.
 * Returns 0, or ADAPTER_ERR_NOMEM, _IO, _SCHEMA, _FORMAT with one line in
 * |err| as adapter_open words it.
 */
static int csv_start(const struct adapter *a, struct adapter_csv *c, char *err, size_t errlen)
{
	struct csv_rec r;
	int rc, hdr_rc = 0;
	size_t nf = a->schema.nfields;

	/* O_NONBLOCK: opening a FIFO would otherwise wait for a writer, and the
	 * node would hang at start instead of saying what is wrong. */
	if (c->fd < 0)
		c->fd = open(a->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (c->fd < 0 || fstat(c->fd, &c->open_st) < 0) {
		adapter_errf(err, errlen, "%s: cannot open: %s", a->path, strerror(errno));
		return ADAPTER_ERR_IO;
	}
	if (!S_ISREG(c->open_st.st_mode)) {
		adapter_errf(err, errlen, "%s: not a regular file", a->path);
		return ADAPTER_ERR_IO;
	}
	if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) & ~O_NONBLOCK) < 0 || lseek(c->fd, 0, SEEK_SET) != 0) {
		adapter_errf(err, errlen, "%s: cannot open: %s", a->path, strerror(errno));
		return ADAPTER_ERR_IO;
	}
	c->line = 1;
	c->col = 1;
	/* A UTF-8 byte order mark (Excel writes one) is not part of the first name. */
	rc = csv_byte(c);
	if (rc == BYTE_ERR)
		goto ioerr;
	if (c->in_len >= 3 && memcmp(c->in, "\xef\xbb\xbf", 3) == 0)
		c->in_pos = 3;
	else
		c->in_pos = 0;
	c->col = 1;
	c->line = 1;
	c->data_line = 1;
	c->data_off = (off_t)c->in_pos;
	if (c->headerless) {
		c->ncols = c->colcap = nf;
		c->colmap = malloc(nf * sizeof(*c->colmap));
		if (!c->colmap)
			goto nomem;
		for (size_t i = 0; i < nf; i++)
			c->colmap[i] = (int)i;
		if (!(c->cut = calloc(c->ncols, sizeof(*c->cut))))
			goto nomem;
		return 0;
	}
	rc = csv_record(a, c, &r, 1, &hdr_rc, err, errlen);
	if (rc == BYTE_ERR)
		goto ioerr;
	if (hdr_rc < 0)
		return hdr_rc;
	if (rc == 0) {
		adapter_errf(err, errlen, "%s: empty file: expected a header naming the columns", a->path);
		return ADAPTER_ERR_FORMAT;
	}
	if (r.bad) {
		adapter_errf(err, errlen, "%s:%u:%u: header: %s", a->path, r.bad_line, r.bad_col, r.why);
		return ADAPTER_ERR_FORMAT;
	}
	if ((rc = header_complete(a, c, r.line, err, errlen)) < 0)
		return rc;
	c->data_off = c->in_off + (off_t)c->in_pos;
	c->data_line = c->line;
	if (!(c->cut = calloc(c->ncols, sizeof(*c->cut))))
		goto nomem;
	return 0;
ioerr:
	adapter_errf(err, errlen, "%s: read error: %s", a->path, strerror(errno));
	return ADAPTER_ERR_IO;
nomem:
	adapter_errf(err, errlen, "%s: out of memory", a->path);
	return ADAPTER_ERR_NOMEM;
}

/*
 * A new reader of a->path with the source's |delim|, |headerless| and
 * |disk_only|: its buffers allocated, the file open, the header read
 * (csv_start). |fd| is the file already open (it is read from its start;
 * taken over, also on failure), or -1 to open a->path. Used at open and
 * again whenever the file at the path is another or changed (csv_follow).
 * Returns 0 with |*out| (free with csv_free), or an error as csv_start with
 * |*out| = NULL and nothing left allocated or open.
 */
static int csv_new(const struct adapter *a, int fd, char delim, int headerless, int disk_only,
		   struct adapter_csv **out, char *err, size_t errlen)
{
	struct adapter_csv *c;
	size_t nf = a->schema.nfields;
	int rc;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c) {
		if (fd >= 0)
			close(fd);
		goto nomem;
	}
	c->fd = fd;
	c->delim = delim;
	c->headerless = headerless;
	c->disk_only = disk_only;
	c->in = malloc(CSV_READ_BUF);
	c->rec_len = (nf + 1) * CSV_SLOT;
	c->rec = malloc(c->rec_len);
	c->rec_hw = calloc(nf + 1, sizeof(*c->rec_hw));
	c->fv = calloc(nf, sizeof(*c->fv));
	c->text = calloc(nf, sizeof(*c->text));
	if (!c->in || !c->rec || !c->rec_hw || !c->fv || !c->text)
		goto nomem;
	rc = csv_start(a, c, err, errlen);
	if (rc < 0) {
		csv_free(c);
		return rc;
	}
	*out = c;
	return 0;
nomem:
	csv_free(c);
	adapter_errf(err, errlen, "%s: out of memory", a->path);
	return ADAPTER_ERR_NOMEM;
}

int adapter_csv_open(struct adapter *a, const struct adapter_source *src, char *err, size_t errlen)
{
	if (src->table || src->query) {
		adapter_errf(err, errlen, "%s: 'table' and 'query' are for SQLite sources", a->path);
		return ADAPTER_ERR_ARG;
	}
	if (src->delimiter == '"' || src->delimiter == '\r' || src->delimiter == '\n' ||
	    (unsigned char)src->delimiter >= 0x80) {
		adapter_errf(err, errlen, "%s: the delimiter cannot be a quote, a line break or a non-ASCII byte", a->path);
		return ADAPTER_ERR_ARG;
	}
	return csv_new(a, -1, src->delimiter ? src->delimiter : ',', src->headerless, src->disk_only, &a->csv,
		       err, errlen);
}

enum { SCAN_STOPPED = 1 };

/*
 * Reads the records from where the file is positioned to its end, types
 * the |need|ed fields and emits each row. Clears |*clean| at any bad row;
 * appends each good row to |*build| (when building), and drops it when the
 * scan can no longer end clean or memory runs out.
 * Returns 0 at the end of the file, SCAN_STOPPED when the callback asked
 * to stop, or a negative value to end the scan with.
 */
static int csv_read_rows(struct adapter_scan_ctx *sc, const unsigned char *need, struct csv_copy **build,
			 int *clean)
{
	struct adapter *a = sc->a;
	struct adapter_csv *c = a->csv;
	struct csv_rec r;
	char why[400];
	int rc;

	for (;;) {
		rc = csv_fast_record(a, &r);
		if (rc == FAST_FALLBACK) {
			rc = csv_record(a, c, &r, 0, NULL, NULL, 0);
			for (size_t f = 0; f < a->schema.nfields; f++)
				c->text[f] = c->rec + f * CSV_SLOT;
		}
		if (rc == BYTE_ERR) {
			if (sc->d)
				diag_error(sc->d, a->path, c->line, 0, "read error: %s", strerror(errno));
			return ADAPTER_ERR_IO;
		}
		if (rc == 0)
			return 0;
		sc->st->rows_read++;
		/* A damaged record is bad whatever the filters say: the
		 * person asked for may be the one in it. */
		if (r.bad) {
			*clean = 0;
			copy_drop(build);
			rc = adapter_bad_row(sc, r.line, r.bad_line == r.line ? r.bad_col : 1, "%s%s", r.why,
					     r.bad_line == r.line ? "" : " (further down the record)");
			if (rc < 0)
				return rc;
			continue;
		}
		if (r.ncols != c->ncols) {
			*clean = 0;
			copy_drop(build);
			rc = adapter_bad_row(sc, r.line, 1, "%zu fields, expected %zu%s", r.ncols, c->ncols,
					     c->headerless ? " (one per schema field)" : " (as in the header)");
			if (rc < 0)
				return rc;
			continue;
		}
		a->nbad = 0;
		unsigned bline = r.line, bcol = 1;
		for (size_t f = 0; f < a->schema.nfields; f++) {
			const struct adapter_field *fd = &a->schema.fields[f];
			const struct csv_field *fv = &c->fv[f];
			const char *text = c->text[f];

			a->bad[f] = 0;
			if (!need[f])
				continue;
			if (fd->type == ADAPTER_STRING && fv->quoted && fv->len == 0) {
				/* "" is the empty string; an unquoted empty field is NULL */
				memset(&a->vals[f], 0, sizeof(a->vals[f]));
				a->vals[f].type = ADAPTER_STRING;
				a->vals[f].str.ptr = text;
				continue;
			}
			if (adapter_value_parse(fd, text, fv->len, &a->vals[f], why, sizeof(why)) == 0)
				continue;
			if (a->nbad == 0) {
				if (fv->line == r.line) {
					bcol = fv->col;
					adapter_field_bad(a, (unsigned)f, "field '%s': %s", fd->name, why);
				} else {
					adapter_field_bad(a, (unsigned)f, "field '%s' (on line %u): %s", fd->name,
							  fv->line, why);
				}
			} else {
				adapter_field_bad(a, (unsigned)f, "%s", "");
			}
		}
		if (a->nbad) {
			*clean = 0;
			copy_drop(build);
		} else if (*build && copy_add_row(*build, a) < 0) {
			/* Not worth failing the scan over: it reads the file. */
			c->copy_nomem++;
			copy_drop(build);
		}
		rc = adapter_emit_row(sc, bline, bcol);
		if (rc < 0)
			return rc;
		if (rc == 1)
			return SCAN_STOPPED;
	}
}

/* Drops what |c| knows of its file's rows: the clean state and the copy
 * (wiped). */
static void csv_unclean(struct adapter_csv *c)
{
	c->clean = 0;
	copy_free(c->copy);
	c->copy = NULL;
}

/*
 * ... and lets go of the file |c| had open, which the path no longer
 * names: the next scan opens the path again (csv_follow).
 */
static void csv_forget(struct adapter_csv *c)
{
	csv_unclean(c);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/*
 * Makes the adapter read the file its path names now, as it is now. A
 * partner's export replaces the file the usual atomic way (write
 * x.csv.tmp, rename it over x.csv), and the fd opened earlier goes on
 * reading the old, unlinked file: yesterday's data, answered without a
 * word. A file rewritten in place keeps its inode, but its header may have
 * changed, and rows read with the old mapping from the old header's end
 * would be misread (two columns of the same length swapped would put
 * values under each other's names).
 * So every scan stats the path (the one system call this costs) and
 * compares it with the open file as it was when opened (same_file). When
 * the path names another file, or none is open, csv_new opens the path;
 * when it is the open file but changed, csv_new reads it again through a
 * duplicate of the fd (no permission on the path needed). Either way the
 * header is read anew, and on success the new reader replaces the old one,
 * whose copy and clean state go with it.
 * When the path names no file (removed, or between an unlink and a
 * rename), cannot be looked at for another reason than permission (EACCES:
 * below), or the file cannot be used (a schema field without a column, no
 * header, out of memory), the scan fails: what the adapter had read is no
 * longer what the path holds, and answering from it is the very thing to
 * avoid (a node answers 503 source_unavailable instead). The copy goes,
 * and the old fd unless the path still names its file (rewritten in
 * place): every later scan tries again until the path holds a good file.
 * Returns 0 with |st| the open file's stat, or an error for the scan with
 * one line in the diag naming the path.
 */
static int csv_follow(struct adapter_scan_ctx *sc, struct stat *st)
{
	struct adapter *a = sc->a;
	struct adapter_csv *c = a->csv, *fresh = NULL;
	char err[512];
	int rc, fd = -1, same_inode;

	if (stat(a->path, st) < 0) {
		int e = errno;

		/* Not allowed to look: a node that dropped its privileges to a
		 * user who may not search the dataset's folder (docs/security.md
		 * lets dataset files stay root's). Replacements cannot be seen
		 * then, and the open file is taken for the path's, as before
		 * this check existed (a change in place is still seen through
		 * it); failing every scan would not make them visible either. */
		if (e != EACCES || c->fd < 0 || fstat(c->fd, st) < 0) {
			csv_forget(c);
			if (sc->d && (e == ENOENT || e == ENOTDIR))
				diag_error(sc->d, a->path, 0, 0, "no such file: removed, or not yet renamed into "
					   "place (the file that was there is no longer read)");
			else if (sc->d)
				diag_error(sc->d, a->path, 0, 0, "cannot stat: %s", strerror(e));
			return ADAPTER_ERR_IO;
		}
	}
	if (c->fd >= 0 && same_file(st, &c->open_st))
		return 0;
	same_inode = c->fd >= 0 && st->st_dev == c->open_st.st_dev && st->st_ino == c->open_st.st_ino;
	/* checked first: opening a FIFO would wait for a writer */
	if (!S_ISREG(st->st_mode)) {
		adapter_errf(err, sizeof(err), "%s: not a regular file", a->path);
		rc = ADAPTER_ERR_IO;
	} else if (same_inode && (fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		adapter_errf(err, sizeof(err), "%s: cannot open: %s", a->path, strerror(errno));
		rc = ADAPTER_ERR_IO;
	} else {
		rc = csv_new(a, fd, c->delim, c->headerless, c->disk_only, &fresh, err, sizeof(err));
	}
	if (rc < 0) {
		if (same_inode)
			csv_unclean(c);
		else
			csv_forget(c);
		if (sc->d)
			diag_error(sc->d, a->path, 0, 0, "the file now at this path cannot be used: %s", err);
		return rc;
	}
	csv_free(c);
	a->csv = fresh;
	*st = fresh->open_st;
	return 0;
}

/*
 * First csv_follow: the scan reads the file the path names now, or fails.
 * Whether a row is bad never depends on the projection: a scan types every
 * field of every row, unless an earlier scan of this adapter already typed
 * every field of every row of the unchanged file and found all good
 * (c->clean); then typing the fields nobody looks at would find nothing,
 * and only the filter and projection fields are typed. A file that changed
 * is typed in full again.
 * The full scan of a settled file also keeps the typed rows (struct
 * csv_copy) if it ends clean; while stat() shows that same file, later
 * scans are answered from them and read nothing.
 */
int adapter_csv_scan(struct adapter_scan_ctx *sc)
{
	struct adapter *a = sc->a;
	struct adapter_csv *c = a->csv;
	struct csv_copy *build = NULL;
	struct stat before, after;
	struct timespec now;
	unsigned char need[ADAPTER_MAX_FIELDS];
	int all, clean = 1, now_ok;
	int rc;

	c->from_memory = 0;
	rc = csv_follow(sc, &before);
	if (rc < 0)
		return rc;
	c = a->csv;
	now_ok = clock_gettime(CLOCK_REALTIME, &now) == 0;
	all = !(c->clean && now_ok && same_file(&before, &c->clean_st));
	if (all) {
		csv_unclean(c);
	} else if (c->copy) {
		c->from_memory = 1;
		return copy_scan(sc);
	}
	memset(need, all, a->schema.nfields);
	for (size_t i = 0; i < sc->nfilters; i++)
		need[sc->filters[i].field] = 1;
	for (size_t i = 0; i < sc->nproj; i++)
		need[sc->proj ? sc->proj[i] : i] = 1;
	if (csv_rewind(c, c->data_off, c->data_line) < 0) {
		if (sc->d)
			diag_error(sc->d, a->path, 0, 0, "cannot seek: %s", strerror(errno));
		return ADAPTER_ERR_IO;
	}
	/* Only a scan that can end clean builds a copy. */
	if (all && now_ok && settled(&before, &now) && copy_allowed(a) && !(build = copy_new(a)))
		c->copy_nomem++;
	rc = csv_read_rows(sc, need, &build, &clean);
	/* The whole file typed in full and nothing bad: remember which file
	 * that was, if it had settled before the scan began and did not change
	 * while it ran. */
	if (rc == 0 && all && clean && now_ok && fstat(c->fd, &after) == 0 && same_file(&before, &after) &&
	    settled(&before, &now)) {
		c->clean = 1;
		c->clean_st = before;
		if (build) {
			copy_trim(build);
			c->copy = build;
			build = NULL;
		}
	}
	copy_free(build);
	return rc == SCAN_STOPPED ? 0 : rc;
}

void adapter_csv_close(struct adapter *a)
{
	csv_free(a->csv);
	a->csv = NULL;
}
