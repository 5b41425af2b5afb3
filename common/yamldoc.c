/*
 * libyaml document loading plus the typed, position-aware getters every
 * YAML file of Noordpoort is read with. Values are read as text and parsed
 * strictly here: nothing is silently coerced.
 */
#include "yamldoc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int load(struct ydoc *y, yaml_parser_t *p)
{
	if (!yaml_parser_load(p, &y->doc)) {
		diag_error(y->d, y->file, (unsigned)p->problem_mark.line + 1,
			   (unsigned)p->problem_mark.column + 1, "YAML syntax: %s%s%s",
			   p->problem ? p->problem : "unreadable document",
			   p->context ? " " : "", p->context ? p->context : "");
		return -1;
	}
	y->loaded = 1;
	if (!yaml_document_get_root_node(&y->doc)) {
		diag_error(y->d, y->file, 0, 0, "the file is empty");
		return -1;
	}
	return 0;
}

int ydoc_load_file(struct ydoc *y, const char *path, struct diag *d)
{
	yaml_parser_t p;
	FILE *f;
	int rc;

	memset(y, 0, sizeof(*y));
	y->file = path;
	y->d = d;
	f = fopen(path, "rb");
	if (!f) {
		diag_error(d, path, 0, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (!yaml_parser_initialize(&p)) {
		fclose(f);
		diag_error(d, path, 0, 0, "out of memory");
		return -1;
	}
	yaml_parser_set_input_file(&p, f);
	rc = load(y, &p);
	yaml_parser_delete(&p);
	fclose(f);
	return rc;
}

int ydoc_load_mem(struct ydoc *y, const char *name, const unsigned char *buf,
		  size_t len, struct diag *d)
{
	yaml_parser_t p;
	int rc;

	memset(y, 0, sizeof(*y));
	y->file = name;
	y->d = d;
	if (!yaml_parser_initialize(&p)) {
		diag_error(d, name, 0, 0, "out of memory");
		return -1;
	}
	yaml_parser_set_input_string(&p, buf, len);
	rc = load(y, &p);
	yaml_parser_delete(&p);
	return rc;
}

void ydoc_fini(struct ydoc *y)
{
	if (y->loaded)
		yaml_document_delete(&y->doc);
	y->loaded = 0;
}

yaml_node_t *ydoc_root(struct ydoc *y)
{
	return y->loaded ? yaml_document_get_root_node(&y->doc) : NULL;
}

yaml_node_t *ydoc_item(struct ydoc *y, yaml_node_item_t idx)
{
	return yaml_document_get_node(&y->doc, idx);
}

static void vreport(struct ydoc *y, int warn, const yaml_node_t *n,
		    const char *fmt, va_list ap)
{
	char msg[900];
	unsigned line = n ? (unsigned)n->start_mark.line + 1 : 0;
	unsigned col = n ? (unsigned)n->start_mark.column + 1 : 0;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (warn)
		diag_warn(y->d, y->file, line, col, "%s", msg);
	else
		diag_error(y->d, y->file, line, col, "%s", msg);
}

void ydoc_error(struct ydoc *y, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(y, 0, n, fmt, ap);
	va_end(ap);
}

void ydoc_warn(struct ydoc *y, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(y, 1, n, fmt, ap);
	va_end(ap);
}

static const char *kind_name(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE: return "a single value";
	case YAML_SEQUENCE_NODE: return "a list";
	case YAML_MAPPING_NODE: return "a mapping";
	default: return "nothing";
	}
}

int ydoc_map(struct ydoc *y, yaml_node_t *map, const char *what,
	     struct ykey *keys, size_t nkeys)
{
	yaml_node_pair_t *pair;
	int bad = 0;

	for (size_t i = 0; i < nkeys; i++)
		keys[i].value = NULL;
	if (!map || map->type != YAML_MAPPING_NODE) {
		ydoc_error(y, map, "%s: expected a mapping (key: value lines), found %s",
			   what, map ? kind_name(map) : "nothing");
		return -1;
	}
	for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = ydoc_item(y, pair->key);
		yaml_node_t *v = ydoc_item(y, pair->value);
		size_t i;

		if (!k || k->type != YAML_SCALAR_NODE) {
			ydoc_error(y, k, "%s: keys must be plain words", what);
			bad = 1;
			continue;
		}
		for (i = 0; i < nkeys; i++)
			if (strcmp((const char *)k->data.scalar.value, keys[i].name) == 0)
				break;
		if (i == nkeys) {
			ydoc_error(y, k, "%s: unknown key '%s'", what,
				   (const char *)k->data.scalar.value);
			bad = 1;
		} else if (keys[i].value) {
			ydoc_error(y, k, "%s: key '%s' appears twice", what, keys[i].name);
			bad = 1;
		} else {
			keys[i].value = v;
		}
	}
	for (size_t i = 0; i < nkeys; i++) {
		if (keys[i].required && !keys[i].value) {
			ydoc_error(y, map, "%s: missing required key '%s'", what, keys[i].name);
			bad = 1;
		}
	}
	return bad ? -1 : 0;
}

yaml_node_t *ydoc_get(struct ykey *keys, size_t nkeys, const char *name)
{
	for (size_t i = 0; i < nkeys; i++)
		if (strcmp(keys[i].name, name) == 0)
			return keys[i].value;
	return NULL;
}

const char *ydoc_str(struct ydoc *y, yaml_node_t *n, const char *field)
{
	if (!n || n->type != YAML_SCALAR_NODE) {
		ydoc_error(y, n, "%s: expected a single value, found %s", field,
			   n ? kind_name(n) : "nothing");
		return NULL;
	}
	if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length) {
		ydoc_error(y, n, "%s: contains a NUL byte", field);
		return NULL;
	}
	return (const char *)n->data.scalar.value;
}

/* Parses a whole decimal number with an optional suffix; -1 on overflow or junk. */
static int parse_scaled(const char *s, const char *const *suffix,
			const uint64_t *scale, size_t nsuffix, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '\0') {
		*out = v * scale[0];
		return v && scale[0] && *out / scale[0] != v ? -1 : 0;
	}
	for (size_t i = 1; i < nsuffix; i++) {
		if (strcmp(p, suffix[i]) == 0) {
			if (v && v > UINT64_MAX / scale[i])
				return -1;
			*out = v * scale[i];
			return 0;
		}
	}
	return -1;
}

int ydoc_parse_duration_ms(const char *s, uint64_t *out)
{
	static const char *const sfx[] = { "", "ms", "s", "m", "h" };
	static const uint64_t scale[] = { 1000, 1, 1000, 60000, 3600000 };

	return parse_scaled(s, sfx, scale, 5, out);
}

int ydoc_parse_bytes(const char *s, uint64_t *out)
{
	static const char *const sfx[] = { "", "B", "KiB", "MiB", "GiB" };
	static const uint64_t scale[] = { 1, 1, 1024, 1024 * 1024, 1024ull * 1024 * 1024 };

	return parse_scaled(s, sfx, scale, 5, out);
}

int ydoc_uint(struct ydoc *y, yaml_node_t *n, const char *field,
	      uint64_t min, uint64_t max, uint64_t *out)
{
	static const char *const sfx[] = { "" };
	static const uint64_t scale[] = { 1 };
	const char *s = ydoc_str(y, n, field);
	uint64_t v;

	if (!s)
		return -1;
	if (parse_scaled(s, sfx, scale, 1, &v) < 0) {
		ydoc_error(y, n, "%s: '%s' is not a whole number", field, s);
		return -1;
	}
	if (v < min || v > max) {
		ydoc_error(y, n, "%s: %llu is out of range (%llu to %llu)", field,
			   (unsigned long long)v, (unsigned long long)min,
			   (unsigned long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

int ydoc_bool(struct ydoc *y, yaml_node_t *n, const char *field, int *out)
{
	static const char *const yes[] = { "true", "yes", "on" };
	static const char *const no[] = { "false", "no", "off" };
	const char *s = ydoc_str(y, n, field);

	if (!s)
		return -1;
	for (size_t i = 0; i < 3; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	ydoc_error(y, n, "%s: expected true or false, found '%s'", field, s);
	return -1;
}

int ydoc_duration_ms(struct ydoc *y, yaml_node_t *n, const char *field,
		     uint64_t min_ms, uint64_t max_ms, uint64_t *out)
{
	const char *s = ydoc_str(y, n, field);
	uint64_t v;

	if (!s)
		return -1;
	if (ydoc_parse_duration_ms(s, &v) < 0) {
		ydoc_error(y, n, "%s: '%s' is not a duration (like 500ms, 10s, 2m, 1h)", field, s);
		return -1;
	}
	if (v < min_ms || v > max_ms) {
		ydoc_error(y, n, "%s: %s is out of range (%llums to %llums)", field, s,
			   (unsigned long long)min_ms, (unsigned long long)max_ms);
		return -1;
	}
	*out = v;
	return 0;
}

int ydoc_bytes(struct ydoc *y, yaml_node_t *n, const char *field,
	       uint64_t min, uint64_t max, uint64_t *out)
{
	const char *s = ydoc_str(y, n, field);
	uint64_t v;

	if (!s)
		return -1;
	if (ydoc_parse_bytes(s, &v) < 0) {
		ydoc_error(y, n, "%s: '%s' is not a size (like 4096, 64KiB, 1MiB)", field, s);
		return -1;
	}
	if (v < min || v > max) {
		ydoc_error(y, n, "%s: %s is out of range (%llu to %llu bytes)", field, s,
			   (unsigned long long)min, (unsigned long long)max);
		return -1;
	}
	*out = v;
	return 0;
}
