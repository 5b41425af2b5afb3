/*
 * Diagnostics that parsers collect instead of logging: every message is one
 * line "file:line:col: severity: text". Library modules fill a struct diag;
 * only gateway/ and the CLI decide where the lines go.
 */
#ifndef NOORDPOORT_DIAG_H
#define NOORDPOORT_DIAG_H

#include <stddef.h>

/*
 * At most DIAG_MAX_LINES lines are kept: a hostile file with a million
 * problems costs a bounded amount of memory and output. The counts below
 * still count every problem.
 */
#define DIAG_MAX_LINES 100

struct diag {
	char *buf;      /* NUL-terminated, newline-separated lines; may be NULL */
	size_t len;
	size_t cap;
	int errors;
	int warnings;
	int lines;      /* lines kept in |buf| */
};

/* Appends one line. |file| may be NULL, |line|/|col| 0 when unknown. */
void diag_error(struct diag *d, const char *file, unsigned line, unsigned col,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void diag_warn(struct diag *d, const char *file, unsigned line, unsigned col,
	       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The collected text, "" when empty. */
const char *diag_text(const struct diag *d);
/* The first line only, without its newline, copied into |out|. */
void diag_first(const struct diag *d, char *out, size_t outlen);
void diag_clear(struct diag *d);

#endif
