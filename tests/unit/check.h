/*
 * A minimal test harness: each check prints "ok - name" or "not ok - name"
 * (the lines tests/run.sh counts); main() returns non-zero on any failure.
 */
#ifndef NOORDPOORT_CHECK_H
#define NOORDPOORT_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int check_failures;
static const char *check_current = "";

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			check_failures++;                                             \
			printf("#   %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                     \
	} while (0)

#define CHECK_STR(a, b)                                                               \
	do {                                                                          \
		const char *a_ = (a), *b_ = (b);                                      \
		if (!a_ || !b_ || strcmp(a_, b_) != 0) {                              \
			check_failures++;                                             \
			printf("#   %s:%d: '%s' != '%s'\n", __FILE__, __LINE__,           \
			       a_ ? a_ : "(null)", b_ ? b_ : "(null)");              \
		}                                                                     \
	} while (0)

#define CHECK_CONTAINS(hay, needle)                                                   \
	do {                                                                          \
		const char *h_ = (hay);                                               \
		if (!h_ || !strstr(h_, (needle))) {                                   \
			check_failures++;                                             \
			printf("#   %s:%d: '%s' does not contain '%s'\n", __FILE__,       \
			       __LINE__, h_ ? h_ : "(null)", (needle));               \
		}                                                                     \
	} while (0)

static int check_total_failed;

static inline void check_run(const char *file, const char *name, void (*fn)(void))
{
	check_failures = 0;
	check_current = name;
	fn();
	printf("%s - %s: %s\n", check_failures ? "not ok" : "ok", file, name);
	if (check_failures)
		check_total_failed++;
}

#define RUN(fn) check_run(CHECK_FILE, #fn, fn)

/* Writes |text| to a new file in |dir| named |name|; returns the malloc'd path. */
static inline char *check_write(const char *dir, const char *name, const char *text)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	FILE *f;

	snprintf(p, n, "%s/%s", dir, name);
	f = fopen(p, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
	return p;
}

#endif
