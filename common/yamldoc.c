/*
 * libyaml document loading plus the typed, position-aware getters every
 * YAML file of Noordpoort is read with. Values are read as text and parsed
 * strictly here: nothing is silently coerced.
 */
#include "yamldoc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * The document is built here from parser events rather than with
 * yaml_parser_load(), so anchors and aliases are refused where they are
 * read, before any node could be shared or walked twice: a few KB of nested
 * aliases otherwise make every walk over the tree exponential (an "alias
 * bomb"; docs/abuse.md). No file of ours needs them. The node and depth caps
 * bound what any other input can cost.
 */
struct build {
	yaml_node_item_t stack[YDOC_MAX_DEPTH];
	yaml_node_item_t key[YDOC_MAX_DEPTH]; /* a mapping's pending key; 0: none */
	int depth;
	size_t nodes;
	unsigned errors; /* refused anchors and aliases */
};

static void event_error(struct ydoc *y, struct build *b, const yaml_mark_t *m,
			const char *msg)
{
	b->errors++;
	diag_error(y->d, y->file, (unsigned)m->line + 1, (unsigned)m->column + 1, "%s", msg);
}

/* Adds a finished node to the open collection; 0 or -1 when out of memory. */
static int attach(struct ydoc *y, struct build *b, yaml_node_item_t id)
{
	yaml_node_item_t parent;
	yaml_node_t *pn;

	if (b->depth == 0)
		return 0; /* the root */
	parent = b->stack[b->depth - 1];
	pn = yaml_document_get_node(&y->doc, parent);
	if (pn->type == YAML_SEQUENCE_NODE)
		return yaml_document_append_sequence_item(&y->doc, parent, id) ? 0 : -1;
	if (!b->key[b->depth - 1]) {
		b->key[b->depth - 1] = id;
		return 0;
	}
	if (!yaml_document_append_mapping_pair(&y->doc, parent, b->key[b->depth - 1], id))
		return -1;
	b->key[b->depth - 1] = 0;
	return 0;
}

static const yaml_char_t *tag_of(const yaml_char_t *tag)
{
	return tag && strcmp((const char *)tag, "!") != 0 ? tag : NULL;
}

/* One event of the first document; 1 at its end, 0 to go on, -1 to stop. */
static int build_event(struct ydoc *y, struct build *b, yaml_event_t *e)
{
	const yaml_char_t *anchor = NULL;
	yaml_node_item_t id = 0;
	yaml_node_t *n;

	switch (e->type) {
	case YAML_ALIAS_EVENT:
		event_error(y, b, &e->start_mark, "YAML aliases are not allowed "
			    "(write the value out in full)");
		return b->errors >= YDOC_MAX_ERRORS ? -1 : 0;
	case YAML_SCALAR_EVENT: anchor = e->data.scalar.anchor; break;
	case YAML_SEQUENCE_START_EVENT: anchor = e->data.sequence_start.anchor; break;
	case YAML_MAPPING_START_EVENT: anchor = e->data.mapping_start.anchor; break;
	default: break;
	}
	if (anchor) {
		event_error(y, b, &e->start_mark, "YAML anchors are not allowed "
			    "(write the value out in full)");
		if (b->errors >= YDOC_MAX_ERRORS)
			return -1;
	}
	/* After a refusal nothing more is built: the events are only read on
	 * to report further anchors and aliases, up to YDOC_MAX_ERRORS. */
	if (b->errors)
		return e->type == YAML_DOCUMENT_END_EVENT ? 1 : 0;
	switch (e->type) {
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		if (b->depth == 0)
			return -1; /* the parser never does this */
		n = yaml_document_get_node(&y->doc, b->stack[b->depth - 1]);
		n->end_mark = e->end_mark;
		b->depth--;
		return 0;
	case YAML_DOCUMENT_END_EVENT:
		return 1;
	case YAML_SCALAR_EVENT:
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		break;
	default:
		return 0;
	}
	if (++b->nodes > YDOC_MAX_NODES) {
		event_error(y, b, &e->start_mark, "more than " YDOC_STR(YDOC_MAX_NODES)
			    " values in one file; not a Noordpoort file?");
		return -1;
	}
	if (e->type == YAML_SCALAR_EVENT) {
		if (e->data.scalar.length > INT_MAX)
			return -1;
		id = yaml_document_add_scalar(&y->doc, tag_of(e->data.scalar.tag),
					      e->data.scalar.value, (int)e->data.scalar.length,
					      e->data.scalar.style);
	} else if (b->depth == YDOC_MAX_DEPTH) {
		event_error(y, b, &e->start_mark, "nested more than " YDOC_STR(YDOC_MAX_DEPTH)
			    " levels deep; not a Noordpoort file?");
		return -1;
	} else if (e->type == YAML_SEQUENCE_START_EVENT) {
		id = yaml_document_add_sequence(&y->doc, tag_of(e->data.sequence_start.tag),
						e->data.sequence_start.style);
	} else {
		id = yaml_document_add_mapping(&y->doc, tag_of(e->data.mapping_start.tag),
					       e->data.mapping_start.style);
	}
	if (!id)
		goto nomem;
	n = yaml_document_get_node(&y->doc, id);
	n->start_mark = e->start_mark;
	n->end_mark = e->end_mark;
	if (attach(y, b, id) < 0)
		goto nomem;
	if (e->type != YAML_SCALAR_EVENT) {
		b->key[b->depth] = 0;
		b->stack[b->depth++] = id;
	}
	return 0;
nomem:
	diag_error(y->d, y->file, 0, 0, "out of memory");
	b->errors++;
	return -1;
}

static int load(struct ydoc *y, yaml_parser_t *p)
{
	struct build *b = calloc(1, sizeof(*b));
	int started = 0, rc = -1, r = 0;
	yaml_event_t e;

	if (!b) {
		diag_error(y->d, y->file, 0, 0, "out of memory");
		return -1;
	}
	while (r == 0) {
		if (!yaml_parser_parse(p, &e)) {
			diag_error(y->d, y->file, (unsigned)p->problem_mark.line + 1,
				   (unsigned)p->problem_mark.column + 1, "YAML syntax: %s%s%s",
				   p->problem ? p->problem : "unreadable document",
				   p->context ? " " : "", p->context ? p->context : "");
			goto out;
		}
		if (e.type == YAML_STREAM_END_EVENT) {
			r = 1; /* no document at all: an empty file */
		} else if (e.type == YAML_DOCUMENT_START_EVENT) {
			if (!yaml_document_initialize(&y->doc, NULL, NULL, NULL, 1, 1)) {
				yaml_event_delete(&e);
				diag_error(y->d, y->file, 0, 0, "out of memory");
				goto out;
			}
			y->loaded = started = 1;
			y->doc.start_mark = e.start_mark;
		} else if (started) {
			r = build_event(y, b, &e);
		}
		yaml_event_delete(&e);
	}
	if (r < 0 || b->errors)
		goto out;
	if (!started && !yaml_document_initialize(&y->doc, NULL, NULL, NULL, 1, 1)) {
		diag_error(y->d, y->file, 0, 0, "out of memory");
		goto out;
	}
	y->loaded = 1;
	if (!yaml_document_get_root_node(&y->doc)) {
		diag_error(y->d, y->file, 0, 0, "the file is empty");
		goto out;
	}
	rc = 0;
out:
	/* A document with refused parts is never handed out half-built. */
	if (rc < 0 && y->loaded) {
		yaml_document_delete(&y->doc);
		y->loaded = 0;
	}
	free(b);
	return rc;
}

/*
 * Reads at most YDOC_MAX_FILE_BYTES of a regular file. Opened non-blocking
 * and checked with fstat(), so a FIFO or a device put where a config or
 * policy file belongs is refused at once instead of blocking the thread
 * that loads it (at a reload: the main thread, which also handles SIGTERM).
 */
int ydoc_read_file(const char *path, unsigned char **out, size_t *len, struct diag *d)
{
	unsigned char *b = NULL, *nb;
	size_t n = 0, cap = 0;
	struct stat st;
	ssize_t r;
	int fd;

	*out = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		diag_error(d, path, 0, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		diag_error(d, path, 0, 0, "not a regular file");
		close(fd);
		return -1;
	}
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 8192;
			if (cap > (size_t)YDOC_MAX_FILE_BYTES + 1)
				cap = (size_t)YDOC_MAX_FILE_BYTES + 1;
			if (n == cap) {
				diag_error(d, path, 0, 0, "larger than %u MiB; not a Noordpoort file?",
					   YDOC_MAX_FILE_BYTES >> 20);
				goto fail;
			}
			if (!(nb = realloc(b, cap))) {
				diag_error(d, path, 0, 0, "out of memory");
				goto fail;
			}
			b = nb;
		}
		r = read(fd, b + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			diag_error(d, path, 0, 0, "read error: %s", strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	*out = b;
	*len = n;
	return 0;
fail:
	free(b);
	close(fd);
	return -1;
}

int ydoc_load_file(struct ydoc *y, const char *path, struct diag *d)
{
	unsigned char *buf;
	size_t len;
	int rc;

	memset(y, 0, sizeof(*y));
	y->file = path;
	y->d = d;
	if (ydoc_read_file(path, &buf, &len, d) < 0)
		return -1;
	rc = ydoc_load_mem(y, path, buf, len, d);
	free(buf);
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

size_t ydoc_edit_distance(const char *a, size_t alen, const char *b, size_t blen)
{
	/* Three rows of the optimal-string-alignment table: two back for the
	 * transposition, one back and the current one. */
	size_t rows[3][YDOC_SUGGEST_MAX_LEN + 1];
	size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];

	if (alen > YDOC_SUGGEST_MAX_LEN || blen > YDOC_SUGGEST_MAX_LEN)
		return SIZE_MAX;
	for (size_t j = 0; j <= blen; j++)
		prev[j] = j;
	for (size_t i = 1; i <= alen; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= blen; j++) {
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t best = prev[j - 1] + cost;

			if (prev[j] + 1 < best)
				best = prev[j] + 1;
			if (cur[j - 1] + 1 < best)
				best = cur[j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    prev2[j - 2] + 1 < best)
				best = prev2[j - 2] + 1;
			cur[j] = best;
		}
		size_t *t = prev2;
		prev2 = prev;
		prev = cur;
		cur = t;
	}
	return prev[blen];
}

const char *ydoc_suggest(const char *word, size_t len, const struct ykey *keys, size_t nkeys)
{
	const char *best = NULL;
	size_t best_d = SIZE_MAX;

	for (size_t i = 0; i < nkeys; i++) {
		size_t klen = strlen(keys[i].name);
		size_t limit = klen <= YDOC_SUGGEST_SHORT ? 1 : 2;
		size_t d = ydoc_edit_distance(word, len, keys[i].name, klen);

		if (d <= limit && d < best_d) {
			best = keys[i].name;
			best_d = d;
		}
	}
	return best;
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
			const char *near = ydoc_suggest((const char *)k->data.scalar.value,
							k->data.scalar.length, keys, nkeys);

			if (near)
				ydoc_error(y, k, "%s: unknown key '%s'; did you mean '%s'?", what,
					   (const char *)k->data.scalar.value, near);
			else
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
