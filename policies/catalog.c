/*
 * The dataset catalog: which datasets exist, their fields, each field's type
 * and role. Policies are checked against it; later the node uses it as the
 * schema its adapters must deliver. This file parses; query.c reads.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/yamldoc.h"

static const char *const field_type_names[] = {
	[POLICY_T_BSN] = "bsn", [POLICY_T_CATEGORY] = "category", [POLICY_T_INT] = "int",
	[POLICY_T_DATE] = "date", [POLICY_T_BOOL] = "bool", [POLICY_T_STRING] = "string",
};
#define CAT_NTYPES (sizeof(field_type_names) / sizeof(field_type_names[0]))

static const char *const field_role_names[] = {
	[POLICY_ROLE_IDENTIFIER] = "identifier",
	[POLICY_ROLE_QUASI_IDENTIFIER] = "quasi_identifier",
	[POLICY_ROLE_ATTRIBUTE] = "attribute",
};
#define CAT_NROLES (sizeof(field_role_names) / sizeof(field_role_names[0]))

const char *policy_field_type_name(enum policy_field_type t)
{
	return (unsigned)t < CAT_NTYPES ? field_type_names[t] : "?";
}

const char *policy_field_role_name(enum policy_field_role r)
{
	return (unsigned)r < CAT_NROLES ? field_role_names[r] : "?";
}

int pol_cat_type_is_date(enum policy_field_type type)
{
	return type == POLICY_T_DATE;
}

int pol_cat_type_is_string(enum policy_field_type type)
{
	return type == POLICY_T_STRING;
}

static const struct pol_cat_dataset *cat_find(const struct policy_catalog *c, const char *id)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->v[i].id, id) == 0)
			return &c->v[i];
	return NULL;
}

int pol_catalog_has_dataset(const struct policy_catalog *c, const char *dataset)
{
	return cat_find(c, dataset) != NULL;
}

const struct pol_cat_field *pol_catalog_field(const struct policy_catalog *c,
					      const char *dataset, const char *field)
{
	const struct pol_cat_dataset *d = cat_find(c, dataset);

	for (size_t i = 0; d && i < d->nfields; i++)
		if (strcmp(d->fields[i].name, field) == 0)
			return &d->fields[i];
	return NULL;
}

static char *cat_str(struct policy_catalog *c, struct ydoc *y, yaml_node_t *n, const char *what)
{
	const char *s = ydoc_str(y, n, what);
	char *p;

	if (!s)
		return NULL;
	if (!*s) {
		ydoc_error(y, n, "%s: empty", what);
		return NULL;
	}
	if (!(p = pol_strdup(&c->arena, s)))
		ydoc_error(y, n, "out of memory");
	return p;
}

/* The items of list |l| (|n| of them, at least |min|); NULL and an error
 * otherwise. */
static yaml_node_item_t *cat_list(struct ydoc *y, yaml_node_t *l, const char *what, const char *key,
				  size_t min, size_t max, const char *example, size_t *n)
{
	*n = l->type == YAML_SEQUENCE_NODE ? (size_t)(l->data.sequence.items.top - l->data.sequence.items.start)
					   : 0;
	if (l->type != YAML_SEQUENCE_NODE || *n < min || *n > max) {
		ydoc_error(y, l, "%s.%s: expected a list such as %s", what, key, example);
		return NULL;
	}
	return l->data.sequence.items.start;
}

/* A whole number in [lo, hi] from scalar |n|; 0 or -1 (reported). */
static int cat_int(struct ydoc *y, yaml_node_t *n, const char *what, const char *key, int64_t lo, int64_t hi,
		   int64_t *out)
{
	const char *s = ydoc_str(y, n, key);
	char *end;
	long long v;

	if (!s)
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (!*s || *end || errno || v < lo || v > hi) {
		ydoc_error(y, n, "%s.%s: '%s' is not a whole number from %lld to %lld", what, key, s,
			   (long long)lo, (long long)hi);
		return -1;
	}
	*out = v;
	return 0;
}

/*
 * The declared domain of a field (docs/disclosure.md, "Declared domains"):
 * 'bins' for ints, 'range' and 'ages' for dates. A group-by key is never
 * derived from data, so these are what a table's keys are made of.
 */
static int cat_domain(struct policy_catalog *c, struct ydoc *y, const char *what, int type, struct ykey *k,
		      struct pol_cat_field *f)
{
	yaml_node_item_t *it;
	size_t n;
	int bad = 0;

	if (k[4].value && type != POLICY_T_INT) {
		ydoc_error(y, k[4].value, "%s.bins: only int fields have bins", what);
		bad = 1;
	} else if (k[4].value) {
		if (!(it = cat_list(y, k[4].value, what, "bins", 2, 1000, "[0, 1000, 2500, 5000] (at least two edges)",
				    &n)))
			return -1;
		if (!(f->bins = pol_alloc(&c->arena, n * sizeof(*f->bins)))) {
			ydoc_error(y, k[4].value, "out of memory");
			return -1;
		}
		for (size_t i = 0; i < n; i++) {
			yaml_node_t *e = ydoc_item(y, it[i]);

			/* Bounded so that every label fits POLICY_DOMAIN_KEY_LEN. */
			if (cat_int(y, e, what, "bins", -1000000000000LL, 1000000000000LL, &f->bins[i]) < 0)
				return -1;
			if (i > 0 && f->bins[i] <= f->bins[i - 1]) {
				ydoc_error(y, e, "%s.bins: the edges must increase (%lld after %lld)", what,
					   (long long)f->bins[i], (long long)f->bins[i - 1]);
				return -1;
			}
		}
		f->nbins = n;
	}
	if (k[5].value && type != POLICY_T_DATE) {
		ydoc_error(y, k[5].value, "%s.range: only date fields have a range", what);
		bad = 1;
	} else if (k[5].value) {
		int32_t t[2];

		if (!(it = cat_list(y, k[5].value, what, "range", 2, 2, "[2015-01-01, 2026-12-31]", &n)))
			return -1;
		for (size_t i = 0; i < 2; i++) {
			yaml_node_t *e = ydoc_item(y, it[i]);
			const char *s = ydoc_str(y, e, "range");

			if (!s || pol_domain_day(s, &t[i]) < 0) {
				if (s)
					ydoc_error(y, e, "%s.range: '%s' is not a date like 2015-01-01 (1900 to 2199)",
						   what, s);
				return -1;
			}
		}
		if (t[1] < t[0]) {
			ydoc_error(y, k[5].value, "%s.range: the end is before the start", what);
			return -1;
		}
		f->has_range = 1;
		f->range_from = t[0];
		f->range_until = t[1];
	}
	if (k[6].value && type != POLICY_T_DATE) {
		ydoc_error(y, k[6].value, "%s.ages: only date fields (birth dates) have ages", what);
		bad = 1;
	} else if (k[6].value) {
		int64_t a[2];

		if (!(it = cat_list(y, k[6].value, what, "ages", 2, 2, "[20, 80] (from 20 up to, not including, 80)",
				    &n)))
			return -1;
		if (cat_int(y, ydoc_item(y, it[0]), what, "ages", 0, 150, &a[0]) < 0 ||
		    cat_int(y, ydoc_item(y, it[1]), what, "ages", 0, 150, &a[1]) < 0)
			return -1;
		if (a[1] <= a[0]) {
			ydoc_error(y, k[6].value, "%s.ages: the end must be above the start", what);
			return -1;
		}
		f->has_ages = 1;
		f->age_from = (int)a[0];
		f->age_until = (int)a[1];
	}
	return bad ? -1 : 0;
}

static int cat_field(struct policy_catalog *c, struct ydoc *y, const char *ds, yaml_node_t *kn,
		 yaml_node_t *vn, struct pol_cat_field *f)
{
	struct ykey k[] = {
		{ "type", 1, NULL }, { "role", 1, NULL }, { "categories", 0, NULL },
		{ "description", 0, NULL }, { "bins", 0, NULL }, { "range", 0, NULL },
		{ "ages", 0, NULL },
	};
	char what[200];
	const char *s;
	int bad = 0, type = -1, role = -1; /* -1: missing or unknown (already reported) */
	size_t i;

	if (!(f->name = cat_str(c, y, kn, ds)))
		return -1;
	snprintf(what, sizeof(what), "%s.%s", ds, f->name);
	if (ydoc_map(y, vn, what, k, 7) < 0)
		bad = 1;
	if (k[0].value && (s = ydoc_str(y, k[0].value, "type"))) {
		for (i = 0; i < CAT_NTYPES && strcmp(s, field_type_names[i]) != 0; i++)
			;
		if (i == CAT_NTYPES) {
			ydoc_error(y, k[0].value, "%s.type: unknown type '%s' (bsn, category, int, date, bool, string)",
				   what, s);
			bad = 1;
		} else {
			type = (int)i;
		}
	}
	if (k[1].value && (s = ydoc_str(y, k[1].value, "role"))) {
		for (i = 0; i < CAT_NROLES && strcmp(s, field_role_names[i]) != 0; i++)
			;
		if (i == CAT_NROLES) {
			ydoc_error(y, k[1].value, "%s.role: expected identifier, quasi_identifier or attribute", what);
			bad = 1;
		} else {
			role = (int)i;
		}
	}
	/* A field that failed above fails the load; until then it reads as an
	 * attribute string, which no check below or in load.c singles out. */
	f->type = type < 0 ? POLICY_T_STRING : (enum policy_field_type)type;
	f->role = role < 0 ? POLICY_ROLE_ATTRIBUTE : (enum policy_field_role)role;
	f->identifier = role == POLICY_ROLE_IDENTIFIER;
	if (type == POLICY_T_BSN && !f->identifier) {
		ydoc_error(y, vn, "%s: a bsn field must have role identifier", what);
		bad = 1;
	}
	if (type == POLICY_T_CATEGORY && !k[2].value) {
		ydoc_error(y, vn, "%s: a category field needs its list of categories", what);
		bad = 1;
	} else if (type != POLICY_T_CATEGORY && k[2].value) {
		ydoc_error(y, k[2].value, "%s.categories: only category fields have categories", what);
		bad = 1;
	} else if (k[2].value) {
		yaml_node_t *l = k[2].value;

		if (l->type != YAML_SEQUENCE_NODE || l->data.sequence.items.top == l->data.sequence.items.start) {
			ydoc_error(y, l, "%s.categories: expected a list such as [werk, ziekte]", what);
			return -1;
		}
		f->ncategories = (size_t)(l->data.sequence.items.top - l->data.sequence.items.start);
		if (!(f->categories = pol_alloc(&c->arena, f->ncategories * sizeof(*f->categories)))) {
			ydoc_error(y, l, "out of memory");
			return -1;
		}
		for (i = 0; i < f->ncategories; i++)
			if (!(f->categories[i] = cat_str(c, y, ydoc_item(y, l->data.sequence.items.start[i]), what)))
				bad = 1;
	}
	if (cat_domain(c, y, what, type, k, f) < 0)
		bad = 1;
	return bad ? -1 : 0;
}

void pol_cat_public(const struct pol_cat_field *f, struct policy_catalog_field *out)
{
	*out = (struct policy_catalog_field){ f->name, f->type, f->role, f->categories, f->ncategories,
					      f->bins, f->nbins, f->has_range, f->range_from, f->range_until,
					      f->has_ages, f->age_from, f->age_until };
}

/* The fields of |d| as policy_catalog_fields() hands them out; 0 or -1 (out
 * of memory). */
static int publish(struct policy_catalog *c, struct pol_cat_dataset *d)
{
	if (!d->nfields)
		return 0;
	if (!(d->pub = pol_alloc(&c->arena, d->nfields * sizeof(*d->pub))))
		return -1;
	for (size_t i = 0; i < d->nfields; i++) {
		const struct pol_cat_field *f = &d->fields[i];

		pol_cat_public(f, &d->pub[i]);
	}
	return 0;
}

/* Returns 0 or -1; every problem is in y->d. */
static int cat_parse(struct policy_catalog *c, struct ydoc *y)
{
	struct ykey k[] = { { "datasets", 1, NULL } };
	yaml_node_t *m;
	size_t n;
	int bad = 0;

	if (ydoc_map(y, ydoc_root(y), "catalog", k, 1) < 0)
		return -1;
	m = k[0].value;
	if (m->type != YAML_MAPPING_NODE) {
		ydoc_error(y, m, "datasets: expected a mapping of dataset ids to their fields");
		return -1;
	}
	n = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
	if (n && !(c->v = pol_alloc(&c->arena, n * sizeof(*c->v)))) {
		ydoc_error(y, m, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *kn = ydoc_item(y, m->data.mapping.pairs.start[i].key);
		yaml_node_t *vn = ydoc_item(y, m->data.mapping.pairs.start[i].value);
		struct ykey dk[] = { { "description", 0, NULL }, { "fields", 1, NULL } };
		struct pol_cat_dataset *d = &c->v[c->n];
		yaml_node_t *fm;

		d->description = "";
		if (!(d->id = cat_str(c, y, kn, "datasets"))) {
			bad = 1;
			continue;
		}
		if (!strchr(d->id, '/')) {
			ydoc_error(y, kn, "datasets: '%s' is not a dataset id like 'uwv/ww-uitkeringen'", d->id);
			bad = 1;
		}
		if (cat_find(c, d->id)) {
			ydoc_error(y, kn, "datasets: '%s' is listed twice", d->id);
			bad = 1;
		}
		c->n++;
		if (ydoc_map(y, vn, d->id, dk, 2) < 0) {
			bad = 1;
			continue;
		}
		if (dk[0].value) {
			char what[200];
			const char *s;

			snprintf(what, sizeof(what), "%s.description", d->id);
			if (!(s = ydoc_str(y, dk[0].value, what))) {
				bad = 1;
			} else if (!(d->description = pol_strdup(&c->arena, s))) {
				ydoc_error(y, dk[0].value, "out of memory");
				return -1;
			}
		}
		fm = dk[1].value;
		if (fm->type != YAML_MAPPING_NODE || fm->data.mapping.pairs.top == fm->data.mapping.pairs.start) {
			ydoc_error(y, fm, "%s.fields: expected a mapping of field names to {type, role}", d->id);
			bad = 1;
			continue;
		}
		size_t nf = (size_t)(fm->data.mapping.pairs.top - fm->data.mapping.pairs.start);

		if (!(d->fields = pol_alloc(&c->arena, nf * sizeof(*d->fields)))) {
			ydoc_error(y, fm, "out of memory");
			return -1;
		}
		for (size_t j = 0; j < nf; j++) {
			yaml_node_t *fk = ydoc_item(y, fm->data.mapping.pairs.start[j].key);

			if (cat_field(c, y, d->id, fk, ydoc_item(y, fm->data.mapping.pairs.start[j].value),
				  &d->fields[d->nfields]) < 0)
				bad = 1;
			if (d->fields[d->nfields].name) {
				if (pol_catalog_field(c, d->id, d->fields[d->nfields].name)) {
					ydoc_error(y, fk, "%s: field '%s' is listed twice", d->id,
						   d->fields[d->nfields].name);
					bad = 1;
				}
				d->nfields++;
			}
		}
		if (publish(c, d) < 0) {
			ydoc_error(y, fm, "out of memory");
			return -1;
		}
	}
	return bad ? -1 : 0;
}

/* Any error reported while loading fails the load, whoever reported it. */
static int cat_finish(struct policy_catalog *c, struct ydoc *y, struct diag *d, int errors,
		  struct policy_catalog **out)
{
	ydoc_fini(y);
	if (d->errors != errors) {
		policy_catalog_free(c);
		return -1;
	}
	*out = c;
	return 0;
}

int policy_catalog_load(const char *path, struct policy_catalog **out, struct diag *d)
{
	struct policy_catalog *c = calloc(1, sizeof(*c));
	struct ydoc y = { 0 };
	int errors = d->errors;

	*out = NULL;
	if (!c) {
		diag_error(d, path, 0, 0, "out of memory");
		return -1;
	}
	if (ydoc_load_file(&y, path, d) == 0)
		cat_parse(c, &y);
	return cat_finish(c, &y, d, errors, out);
}

int policy_catalog_load_mem(const char *name, const unsigned char *buf, size_t len,
			    struct policy_catalog **out, struct diag *d)
{
	struct policy_catalog *c = calloc(1, sizeof(*c));
	struct ydoc y = { 0 };
	int errors = d->errors;

	*out = NULL;
	if (!c) {
		diag_error(d, name, 0, 0, "out of memory");
		return -1;
	}
	if (ydoc_load_mem(&y, name, buf, len, d) == 0)
		cat_parse(c, &y);
	return cat_finish(c, &y, d, errors, out);
}

void policy_catalog_free(struct policy_catalog *c)
{
	if (!c)
		return;
	pol_arena_free(c->arena);
	free(c);
}
