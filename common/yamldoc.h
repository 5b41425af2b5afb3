/*
 * A thin layer over libyaml's document API for our config, members and
 * policy files: typed getters that report "file:line:col: field: reason"
 * into a struct diag, and mapping walks in which unknown keys are errors.
 */
#ifndef NOORDPOORT_YAMLDOC_H
#define NOORDPOORT_YAMLDOC_H

#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "diag.h"

/*
 * Limits on every YAML file Noordpoort reads (docs/config.md, "YAML"):
 * a regular file of at most YDOC_MAX_FILE_BYTES; anchors and aliases are
 * refused outright; a document may hold at most
 * YDOC_MAX_NODES values (a large policy or catalog has a few thousand) nested
 * at most YDOC_MAX_DEPTH deep (ours nest six); reading stops after
 * YDOC_MAX_ERRORS refused anchors or aliases.
 */
#define YDOC_MAX_FILE_BYTES (4u << 20)
#define YDOC_MAX_NODES 20000
#define YDOC_MAX_DEPTH 64
#define YDOC_MAX_ERRORS 10
#define YDOC_STR_(x) #x
#define YDOC_STR(x) YDOC_STR_(x)

struct ydoc {
	yaml_document_t doc;
	const char *file; /* borrowed; used in messages */
	struct diag *d;   /* borrowed */
	int loaded;
};

/* A key a mapping may hold; ydoc_map() fills |value| (NULL when absent). */
struct ykey {
	const char *name;
	int required;
	yaml_node_t *value;
};

/*
 * Loads the first YAML document of a file. Returns 0, or -1 with the reason
 * in |d| (a syntax error, an anchor or an alias names its line and column;
 * an empty file and a file past the limits above are errors). Anchors and
 * aliases are refused while the events are read, before any node exists
 * that an alias could share. ydoc_fini() is safe after either.
 */
int ydoc_load_file(struct ydoc *y, const char *path, struct diag *d);
int ydoc_load_mem(struct ydoc *y, const char *name, const unsigned char *buf,
		  size_t len, struct diag *d);
void ydoc_fini(struct ydoc *y);

/*
 * Reads a whole regular file of at most YDOC_MAX_FILE_BYTES into |*out|
 * (caller frees). FIFOs, devices and folders are refused without blocking.
 * 0, or -1 with the reason in |d|.
 */
int ydoc_read_file(const char *path, unsigned char **out, size_t *len, struct diag *d);

yaml_node_t *ydoc_root(struct ydoc *y);
yaml_node_t *ydoc_item(struct ydoc *y, yaml_node_item_t idx);

void ydoc_error(struct ydoc *y, const yaml_node_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void ydoc_warn(struct ydoc *y, const yaml_node_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Checks that |map| is a mapping whose keys are all among |keys| (each at most
 * once) and fills their values. An unknown key near a known one (see
 * ydoc_suggest() below) is reported with "; did you mean 'KEY'?" appended.
 * Returns 0, or -1 after reporting every problem. |what| names the mapping in messages ("tls", "members[2]").
 */
int ydoc_map(struct ydoc *y, yaml_node_t *map, const char *what,
	     struct ykey *keys, size_t nkeys);

/*
 * A typo'd key gets a suggestion: the first of |keys| within Damerau-
 * Levenshtein distance 2 of |word| (optimal string alignment: an insertion,
 * deletion, substitution or swap of two neighbours each count 1), or within
 * 1 for keys of at most YDOC_SUGGEST_SHORT characters, where 2 edits would
 * turn almost any word into them. Words or keys longer than
 * YDOC_SUGGEST_MAX_LEN are not compared (the table lives on the stack).
 */
#define YDOC_SUGGEST_SHORT 4
#define YDOC_SUGGEST_MAX_LEN 64
/* The distance, or SIZE_MAX when either is longer than YDOC_SUGGEST_MAX_LEN. */
size_t ydoc_edit_distance(const char *a, size_t alen, const char *b, size_t blen);
/* The nearest key's name (borrowed from |keys|), or NULL when none is near. */
const char *ydoc_suggest(const char *word, size_t len, const struct ykey *keys, size_t nkeys);

/* The value of a key filled by ydoc_map(), by name; NULL when absent. */
yaml_node_t *ydoc_get(struct ykey *keys, size_t nkeys, const char *name);

/* A scalar's text (NUL-terminated, no embedded NUL), or NULL after an error. */
const char *ydoc_str(struct ydoc *y, yaml_node_t *n, const char *field);
/* Whole numbers in [min, max]; returns 0 or -1 after an error. */
int ydoc_uint(struct ydoc *y, yaml_node_t *n, const char *field,
	      uint64_t min, uint64_t max, uint64_t *out);
/* "true"/"false" (also yes/no, on/off, as YAML 1.1 allows). */
int ydoc_bool(struct ydoc *y, yaml_node_t *n, const char *field, int *out);
/* "250ms", "10s", "2m", "1h", or a whole number of seconds; result in ms. */
int ydoc_duration_ms(struct ydoc *y, yaml_node_t *n, const char *field,
		     uint64_t min_ms, uint64_t max_ms, uint64_t *out);
/* "4096", "64KiB", "1MiB", "1GiB"; result in bytes. */
int ydoc_bytes(struct ydoc *y, yaml_node_t *n, const char *field,
	       uint64_t min, uint64_t max, uint64_t *out);

/* Parses the text forms above; pure helpers, 0 or -1. Exposed for tests. */
int ydoc_parse_duration_ms(const char *s, uint64_t *out);
int ydoc_parse_bytes(const char *s, uint64_t *out);

#endif
