/*
 * Out of memory, one allocation at a time (as nghttp2's failmalloc and
 * SQLite's malloc tests): a test #includes the module under test with
 * malloc, calloc, realloc, strdup and strndup defined to the fa_ wrappers
 * below, installs fa_cjson_on() for cJSON's allocations, and runs the call
 * with fa_arm(k) for k = 0, 1, 2, ... until a run fails nothing.
 */
#ifndef NOORDPOORT_FAILALLOC_H
#define NOORDPOORT_FAILALLOC_H

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

/* Where the failed allocation was made: nowhere yet, in the module's own
 * code, or in cJSON (on the module's behalf or another's: the audit log
 * prints its line with cJSON too). */
enum fa_where { FA_NONE, FA_MODULE, FA_CJSON };

static long fa_countdown = -1; /* -1: never fail; n: fail the allocation after n more */
static enum fa_where fa_failed;

static inline int fa_fails(enum fa_where where)
{
	if (fa_countdown < 0 || fa_countdown-- > 0)
		return 0;
	fa_failed = where;
	return 1;
}

/* The next |n| allocations succeed, the one after fails; then all succeed. */
static inline void fa_arm(long n)
{
	fa_failed = FA_NONE;
	fa_countdown = n;
}

static inline void fa_disarm(void)
{
	fa_countdown = -1;
}

static inline void *fa_malloc(size_t n)
{
	return fa_fails(FA_MODULE) ? NULL : malloc(n);
}

static inline void *fa_calloc(size_t a, size_t b)
{
	return fa_fails(FA_MODULE) ? NULL : calloc(a, b);
}

static inline void *fa_realloc(void *p, size_t n)
{
	return fa_fails(FA_MODULE) ? NULL : realloc(p, n);
}

static inline char *fa_strdup(const char *s)
{
	return fa_fails(FA_MODULE) ? NULL : strdup(s);
}

static inline char *fa_strndup(const char *s, size_t n)
{
	return fa_fails(FA_MODULE) ? NULL : strndup(s, n);
}

static inline void *fa_cjson_malloc(size_t n)
{
	return fa_fails(FA_CJSON) ? NULL : malloc(n);
}

/* cJSON allocates through fa_cjson_malloc (and frees with free, so what it
 * allocated before or after stays compatible) until fa_cjson_off(). */
static inline void fa_cjson_on(void)
{
	cJSON_Hooks hooks = { fa_cjson_malloc, free };

	cJSON_InitHooks(&hooks);
}

static inline void fa_cjson_off(void)
{
	cJSON_InitHooks(NULL);
}

#endif
