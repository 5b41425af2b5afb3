/*
 * Collects parser diagnostics in one growing buffer, so a config or policy
 * check can report every problem in one run rather than the first.
 */
#include "diag.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void append(struct diag *d, const char *kind, const char *file,
		   unsigned line, unsigned col, const char *fmt, va_list ap)
{
	char msg[1024];
	char head[512];
	int hl;

	if (d->lines > DIAG_MAX_LINES)
		return;
	if (d->lines++ == DIAG_MAX_LINES) {
		file = NULL;
		kind = "error";
		snprintf(msg, sizeof(msg), "too many problems; stopped reporting after %d", DIAG_MAX_LINES);
	} else {
		vsnprintf(msg, sizeof(msg), fmt, ap);
	}
	if (file && line)
		hl = snprintf(head, sizeof(head), "%s:%u:%u: %s: ", file, line, col, kind);
	else if (file)
		hl = snprintf(head, sizeof(head), "%s: %s: ", file, kind);
	else
		hl = snprintf(head, sizeof(head), "%s: ", kind);
	if (hl < 0)
		return;
	if ((size_t)hl >= sizeof(head))
		hl = sizeof(head) - 1;

	size_t need = (size_t)hl + strlen(msg) + 2;
	if (d->len + need > d->cap) {
		size_t ncap = d->cap ? d->cap * 2 : 256;
		while (ncap < d->len + need)
			ncap *= 2;
		char *nb = realloc(d->buf, ncap);
		if (!nb)
			return; /* keep what we have; the count still says there was a problem */
		d->buf = nb;
		d->cap = ncap;
	}
	d->len += (size_t)snprintf(d->buf + d->len, d->cap - d->len, "%s%s\n", head, msg);
}

void diag_error(struct diag *d, const char *file, unsigned line, unsigned col,
		const char *fmt, ...)
{
	va_list ap;

	d->errors++;
	va_start(ap, fmt);
	append(d, "error", file, line, col, fmt, ap);
	va_end(ap);
}

void diag_warn(struct diag *d, const char *file, unsigned line, unsigned col,
	       const char *fmt, ...)
{
	va_list ap;

	d->warnings++;
	va_start(ap, fmt);
	append(d, "warning", file, line, col, fmt, ap);
	va_end(ap);
}

const char *diag_text(const struct diag *d)
{
	return d->buf ? d->buf : "";
}

void diag_first(const struct diag *d, char *out, size_t outlen)
{
	const char *t = diag_text(d);
	size_t n = strcspn(t, "\n");

	if (outlen == 0)
		return;
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, t, n);
	out[n] = '\0';
}

void diag_clear(struct diag *d)
{
	free(d->buf);
	memset(d, 0, sizeof(*d));
}
