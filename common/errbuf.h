/*
 * The one way library code reports a reason: a sentence written into the
 * caller's |err| buffer (STYLE.md: library modules never log).
 */
#ifndef NOORDPOORT_ERRBUF_H
#define NOORDPOORT_ERRBUF_H

#include <stddef.h>

/* printf into |err| (truncated to |errlen|); a NULL or empty buffer is fine. */
void err_set(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
