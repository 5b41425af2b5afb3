/*
 * A request body as JSON: checked on the bytes (UTF-8, no NUL, caps on
 * members, values and depth) before cJSON builds a tree, then refused when
 * an object names a key twice. Work is linear in the body's length (the
 * duplicate check O(n log n) per object), so no body holds a worker's event
 * loop for more than a few milliseconds per MiB (bench/parse measures it).
 */
#ifndef NOORDPOORT_JSONBODY_H
#define NOORDPOORT_JSONBODY_H

#include <stddef.h>

/*
 * The caps, with their reasons. The largest body the protocol needs is a
 * hub question or subquery: 16 filters of 256 values, a few dozen other
 * members (docs/federation.md) -- about 4 200 values. 1 000 members per
 * object and 10 000 values per body leave room for that and bound what a
 * body costs to build, check and free however its bytes are arranged.
 * Depth: cJSON's own nesting limit (CJSON_NESTING_LIMIT), checked here first
 * so the duplicate check's recursion is bounded by the same figure.
 */
#define GW_JSON_MAX_MEMBERS 1000 /* members of one object */
#define GW_JSON_MAX_VALUES 10000 /* values in one body: members, elements, the root */
#define GW_JSON_MAX_DEPTH 1000   /* objects and arrays nested */

struct cJSON;

enum gw_json_refusal {
	GW_JSON_OK,
	GW_JSON_INVALID,   /* not UTF-8, a NUL, not JSON, not an object, a duplicate key */
	GW_JSON_LIMIT,     /* over one of the caps above */
	GW_JSON_NOMEM,
};

/*
 * Parses |n| bytes of |p| as one JSON object with the checks above. Returns
 * the tree (the caller frees it with cJSON_Delete) and sets |*why| to NULL;
 * or NULL, with |*why| a sentence for the error message (static storage,
 * naming the cap when one was passed) and |*kind| what went wrong.
 */
struct cJSON *gw_json_body_parse(const unsigned char *p, size_t n, enum gw_json_refusal *kind,
				 const char **why);

#endif
