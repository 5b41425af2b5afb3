/*
 * Reads the federation members file. The set is immutable once loaded and
 * sorted by OIN, so lookups on the request path are a binary search with no
 * locking; a reload builds a new set and swaps it in.
 */
#include "members.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/yamldoc.h"

struct gw_members {
	struct gw_member *v;
	size_t n;
};

static const struct {
	const char *name;
	unsigned bit;
} role_names[] = {
	{ "node", GW_ROLE_NODE },
	{ "hub", GW_ROLE_HUB },
	{ "coordinator", GW_ROLE_COORDINATOR },
	{ "operator", GW_ROLE_OPERATOR },
};

static int valid_id(const char *s)
{
	if (!*s || strlen(s) > 64)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
			return 0;
	return 1;
}

static int valid_oin(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return i == GW_OIN_LEN;
}

static int parse_roles(struct ydoc *y, yaml_node_t *n, const char *what, unsigned *out)
{
	yaml_node_item_t *it;
	int bad = 0;

	*out = 0;
	if (!n || n->type != YAML_SEQUENCE_NODE) {
		ydoc_error(y, n, "%s.roles: expected a list such as [node]", what);
		return -1;
	}
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
		yaml_node_t *r = ydoc_item(y, *it);
		const char *s = ydoc_str(y, r, "roles");
		size_t i;

		if (!s) {
			bad = 1;
			continue;
		}
		for (i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++)
			if (strcmp(s, role_names[i].name) == 0)
				break;
		if (i == sizeof(role_names) / sizeof(role_names[0])) {
			ydoc_error(y, r, "%s.roles: unknown role '%s' (node, hub, coordinator or operator)", what, s);
			bad = 1;
		} else {
			*out |= role_names[i].bit;
		}
	}
	return bad ? -1 : 0;
}

static int parse_member(struct ydoc *y, yaml_node_t *n, size_t idx, struct gw_member *m)
{
	struct ykey k[] = {
		{ "id", 1, NULL }, { "name", 1, NULL }, { "oin", 1, NULL }, { "roles", 1, NULL },
		{ "endpoint", 0, NULL },
	};
	char what[32];
	const char *s;
	int bad;

	snprintf(what, sizeof(what), "members[%zu]", idx);
	bad = ydoc_map(y, n, what, k, 5) < 0;
	if (k[0].value && (s = ydoc_str(y, k[0].value, "id"))) {
		if (!valid_id(s)) {
			ydoc_error(y, k[0].value, "%s.id: '%s' must be lower-case letters, digits and '-'", what, s);
			bad = 1;
		} else if (!(m->id = strdup(s))) {
			bad = 1;
		}
	} else if (k[0].value) {
		bad = 1;
	}
	if (k[1].value && (s = ydoc_str(y, k[1].value, "name"))) {
		if (!*s) {
			ydoc_error(y, k[1].value, "%s.name: empty", what);
			bad = 1;
		} else if (!(m->name = strdup(s))) {
			bad = 1;
		}
	} else if (k[1].value) {
		bad = 1;
	}
	if (k[2].value && (s = ydoc_str(y, k[2].value, "oin"))) {
		if (!valid_oin(s)) {
			ydoc_error(y, k[2].value, "%s.oin: '%s' is not a 20-digit OIN", what, s);
			bad = 1;
		} else {
			memcpy(m->oin, s, GW_OIN_LEN + 1);
		}
	} else if (k[2].value) {
		bad = 1;
	}
	if (k[3].value && parse_roles(y, k[3].value, what, &m->roles) < 0)
		bad = 1;
	if (k[4].value && (s = ydoc_str(y, k[4].value, "endpoint"))) {
		/* The hub talks to nodes over mTLS only. */
		if (strncmp(s, "https://", 8) != 0 || strlen(s) < 10 || strlen(s) > 255 ||
		    s[strlen(s) - 1] == '/') {
			ydoc_error(y, k[4].value, "%s.endpoint: '%s' must be https://HOST:PORT", what, s);
			bad = 1;
		} else if (!(m->endpoint = strdup(s))) {
			bad = 1;
		}
	} else if (k[4].value) {
		bad = 1;
	}
	return bad ? -1 : 0;
}

static int by_oin(const void *a, const void *b)
{
	return memcmp(((const struct gw_member *)a)->oin, ((const struct gw_member *)b)->oin, GW_OIN_LEN);
}

int gw_members_load(const char *path, struct gw_members **out, struct diag *d)
{
	struct ykey k[] = { { "members", 1, NULL } };
	struct gw_members *m = calloc(1, sizeof(*m));
	yaml_node_t *seq;
	yaml_node_item_t *it;
	struct ydoc y;
	int bad = 0;

	*out = NULL;
	if (!m) {
		diag_error(d, path, 0, 0, "out of memory");
		return -1;
	}
	if (ydoc_load_file(&y, path, d) < 0 || ydoc_map(&y, ydoc_root(&y), "members file", k, 1) < 0) {
		bad = 1;
		goto out;
	}
	seq = k[0].value;
	if (seq->type != YAML_SEQUENCE_NODE) {
		ydoc_error(&y, seq, "members: expected a list of organisations");
		bad = 1;
		goto out;
	}
	m->v = calloc((size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start) + 1,
		      sizeof(*m->v));
	if (!m->v) {
		diag_error(d, path, 0, 0, "out of memory");
		bad = 1;
		goto out;
	}
	for (it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
		yaml_node_t *n = ydoc_item(&y, *it);
		struct gw_member *cur = &m->v[m->n];

		if (parse_member(&y, n, m->n, cur) < 0)
			bad = 1;
		m->n++;
		for (size_t j = 0; !bad && j + 1 < m->n; j++) {
			if (strcmp(m->v[j].id, cur->id) == 0) {
				ydoc_error(&y, n, "members[%zu]: id '%s' is listed twice", m->n - 1, cur->id);
				bad = 1;
			} else if (memcmp(m->v[j].oin, cur->oin, GW_OIN_LEN) == 0) {
				ydoc_error(&y, n, "members[%zu]: OIN %s is listed twice", m->n - 1, cur->oin);
				bad = 1;
			}
		}
	}
	if (!bad && m->n == 0) {
		ydoc_error(&y, seq, "members: the list is empty");
		bad = 1;
	}
	if (!bad)
		qsort(m->v, m->n, sizeof(*m->v), by_oin);
out:
	ydoc_fini(&y);
	if (bad) {
		gw_members_free(m);
		return -1;
	}
	*out = m;
	return 0;
}

void gw_members_free(struct gw_members *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++) {
		free(m->v[i].id);
		free(m->v[i].name);
		free(m->v[i].endpoint);
	}
	free(m->v);
	free(m);
}

const struct gw_member *gw_members_by_oin(const struct gw_members *m,
					  const char *oin, size_t len)
{
	size_t lo = 0, hi = m->n;

	if (len != GW_OIN_LEN)
		return NULL;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = memcmp(m->v[mid].oin, oin, GW_OIN_LEN);

		if (c == 0)
			return &m->v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const struct gw_member *gw_members_by_id(const struct gw_members *m, const char *id)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->v[i].id, id) == 0)
			return &m->v[i];
	return NULL;
}

size_t gw_members_count(const struct gw_members *m)
{
	return m->n;
}

const struct gw_member *gw_members_at(const struct gw_members *m, size_t i)
{
	return i < m->n ? &m->v[i] : NULL;
}

size_t gw_roles_json(unsigned roles, char *out, size_t outlen)
{
	size_t len = 0;
	int first = 1;

	if (outlen < 3)
		return 0;
	out[len++] = '[';
	for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++) {
		if (!(roles & role_names[i].bit))
			continue;
		int w = snprintf(out + len, outlen - len, "%s\"%s\"", first ? "" : ",", role_names[i].name);
		if (w < 0 || (size_t)w >= outlen - len - 1)
			break;
		len += (size_t)w;
		first = 0;
	}
	out[len++] = ']';
	out[len] = '\0';
	return len;
}
