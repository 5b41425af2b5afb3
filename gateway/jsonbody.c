/*
 * A request body as JSON (see jsonbody.h): the text check and the shape
 * pre-scan run on the bytes in one linear pass each, before cJSON
 * allocates anything; duplicate keys are found by sorting each object's keys.
 */
#include "jsonbody.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define STR_(x) #x
#define STR(x) STR_(x)

/*
 * JSON text must be UTF-8 (RFC 8259 8.1) and, for us, free of NUL: cJSON
 * would end a string at an escaped \u0000, so "purpose\u0000junk" would be
 * read as "purpose". Refusing both here keeps every handler's strings whole
 * and every error message that quotes them valid JSON. Returns NULL when
 * the body is acceptable, else what is wrong.
 */
static const char *text_problem(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = p[i];
		size_t len;
		uint32_t cp;

		if (c < 0x80) {
			if (c == 0)
				return "the request body contains a NUL byte";
			if (c == '\\' && i + 5 < n && p[i + 1] == 'u' && p[i + 2] == '0' &&
			    p[i + 3] == '0' && p[i + 4] == '0' && p[i + 5] == '0')
				return "JSON strings must not contain \\u0000";
			i += c == '\\' && i + 1 < n ? 2 : 1; /* an escaped backslash is not an escape */
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else {
			return "the request body is not valid UTF-8";
		}
		if (i + len > n)
			return "the request body is not valid UTF-8";
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return "the request body is not valid UTF-8";
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		/* overlong forms, surrogates, beyond U+10FFFF */
		if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return "the request body is not valid UTF-8";
		i += len;
	}
	return NULL;
}

/*
 * Counts what cJSON would build, on the bytes: an item begins at the first
 * token after '{', '[' or ',' (a member at its key, an element at its
 * value). Members per object, values per body and depth are checked as they
 * are counted, so a body of 120 000 keys is refused after the 1 001st, in
 * microseconds. Malformed text is left to cJSON, except brackets closed
 * that were never opened.
 */
static const char *shape_problem(const unsigned char *p, size_t n, enum gw_json_refusal *kind)
{
	static const char too_many_members[] =
		"a JSON object has more than " STR(GW_JSON_MAX_MEMBERS) " members (the limit)";
	static const char too_many_values[] =
		"the request body has more than " STR(GW_JSON_MAX_VALUES) " JSON values (the limit)";
	static const char too_deep[] =
		"the request body nests objects and arrays more than " STR(GW_JSON_MAX_DEPTH) " deep (the limit)";
	/* items[d]: items so far in the container at depth d (1-based) */
	uint32_t items[GW_JSON_MAX_DEPTH + 1];
	unsigned char is_object[GW_JSON_MAX_DEPTH + 1];
	size_t depth = 0, values = 1; /* the root */
	int expect_item = 0;

	items[0] = 0;
	is_object[0] = 0;
	*kind = GW_JSON_LIMIT;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];

		if (c <= ' ') /* white space to cJSON, as every control byte is */
			continue;
		if (expect_item && c != '}' && c != ']') {
			expect_item = 0;
			if (++values > GW_JSON_MAX_VALUES)
				return too_many_values;
			if (++items[depth] > GW_JSON_MAX_MEMBERS && is_object[depth])
				return too_many_members;
		}
		switch (c) {
		case '"':
			/* to the closing quote; text_problem() saw every byte */
			for (i++; i < n && p[i] != '"'; i++)
				if (p[i] == '\\')
					i++;
			break;
		case '{':
		case '[':
			if (depth == GW_JSON_MAX_DEPTH)
				return too_deep;
			depth++;
			items[depth] = 0;
			is_object[depth] = c == '{';
			expect_item = 1;
			break;
		case '}':
		case ']':
			if (depth == 0) {
				*kind = GW_JSON_INVALID;
				return "the request body is not valid JSON";
			}
			depth--;
			expect_item = 0;
			break;
		case ',':
			expect_item = 1;
			break;
		default:
			break;
		}
	}
	return NULL;
}

static int by_key(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Duplicate keys are refused: cJSON keeps the first, a proxy in front may
 * keep the last, and the purpose a node decides on must be the one every
 * party in between saw. Each object's keys are sorted and neighbours
 * compared: O(m log m) for m members, never pairwise (120 000 keys took 33 s
 * pairwise). |keys| has room for GW_JSON_MAX_MEMBERS; each object is done
 * before its children, so one array serves the whole tree. Recursion depth
 * is bounded by GW_JSON_MAX_DEPTH.
 */
static int has_duplicate_key(const cJSON *o, const char **keys)
{
	size_t m = 0;

	if (cJSON_IsObject(o)) {
		for (const cJSON *a = o->child; a; a = a->next)
			if (a->string && m < GW_JSON_MAX_MEMBERS)
				keys[m++] = a->string;
		if (m > 1) {
			qsort(keys, m, sizeof(*keys), by_key);
			for (size_t i = 1; i < m; i++)
				if (strcmp(keys[i - 1], keys[i]) == 0)
					return 1;
		}
	}
	for (const cJSON *a = o->child; a; a = a->next)
		if ((cJSON_IsObject(a) || cJSON_IsArray(a)) && has_duplicate_key(a, keys))
			return 1;
	return 0;
}

cJSON *gw_json_body_parse(const unsigned char *p, size_t n, enum gw_json_refusal *kind,
			  const char **why)
{
	/* An empty body may come as NULL: no arithmetic on a null pointer. */
	const char *end = NULL, *stop = p ? (const char *)p + n : NULL;
	const char **keys;
	cJSON *json;
	int dup;

	*kind = GW_JSON_INVALID;
	if ((*why = text_problem(p, n)) != NULL || (*why = shape_problem(p, n, kind)) != NULL)
		return NULL;
	*kind = GW_JSON_INVALID;
	json = cJSON_ParseWithLengthOpts((const char *)p, n, &end, 0);
	if (json) {
		/* cJSON stops after the first value; anything but white space
		 * after it makes the body invalid, not ignored. */
		while (end < stop && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
			end++;
		if (end != stop) {
			cJSON_Delete(json);
			json = NULL;
		}
	}
	if (!json) {
		*why = "the request body is not valid JSON";
		return NULL;
	}
	if (!cJSON_IsObject(json)) {
		cJSON_Delete(json);
		*why = "the request body must be a JSON object";
		return NULL;
	}
	if (!(keys = malloc(GW_JSON_MAX_MEMBERS * sizeof(*keys)))) {
		cJSON_Delete(json);
		*kind = GW_JSON_NOMEM;
		*why = "out of memory";
		return NULL;
	}
	dup = has_duplicate_key(json, keys);
	free(keys);
	if (dup) {
		cJSON_Delete(json);
		*why = "a JSON object names the same key twice";
		return NULL;
	}
	*kind = GW_JSON_OK;
	return json;
}
