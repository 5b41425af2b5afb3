/*
 * Read-only views of a loaded catalog and policy set, for the node's
 * adapters and GET /v1/catalog. Like decide.c these only read what the
 * parsers built; nothing here decides a request.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

size_t policy_catalog_count(const struct policy_catalog *c)
{
	return c ? c->n : 0;
}

const char *policy_catalog_dataset(const struct policy_catalog *c, size_t i)
{
	return c && i < c->n ? c->v[i].id : NULL;
}

static const struct pol_cat_dataset *cat_dataset_find(const struct policy_catalog *c, const char *id)
{
	for (size_t i = 0; c && id && i < c->n; i++)
		if (strcmp(c->v[i].id, id) == 0)
			return &c->v[i];
	return NULL;
}

const char *policy_catalog_description(const struct policy_catalog *c, const char *dataset)
{
	const struct pol_cat_dataset *d = cat_dataset_find(c, dataset);

	return d ? d->description : NULL;
}

int policy_catalog_fields(const struct policy_catalog *c, const char *dataset,
			  const struct policy_catalog_field **fields)
{
	const struct pol_cat_dataset *d = cat_dataset_find(c, dataset);

	if (!fields)
		return -1;
	*fields = NULL;
	if (!d)
		return -1;
	*fields = d->pub;
	return (int)d->nfields;
}

static int grant_lists(const char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return 1;
	return 0;
}

/*
 * A grant keeps each field's name and generalisation together (struct
 * pol_field); the view wants them as two arrays, built here per call so the
 * set stays immutable and shareable. Grants name few fields: the stack
 * covers POLICY_MAX_FIELDS, more (allowed, never seen) goes to the heap.
 */
int policy_grants_for(const struct policy_set *s, const char *requester, int64_t time,
		      void (*fn)(void *arg, const struct policy_grant_view *v), void *arg)
{
	const char *fname_buf[POLICY_MAX_FIELDS];
	enum policy_gen fgen_buf[POLICY_MAX_FIELDS];
	const char **fnames = fname_buf;
	enum policy_gen *fgens = fgen_buf;
	size_t cap = POLICY_MAX_FIELDS;
	int rc = 0;

	if (!s || !requester || !fn)
		return -1;
	for (size_t i = 0; i < s->npurposes && rc == 0; i++) {
		const struct pol_purpose *p = &s->purposes[i];

		/* valid from 00:00 UTC of the first day to the end of the last,
		 * exactly as policy_decide() reads it */
		if (time < p->from || time >= p->until_end)
			continue;
		for (size_t j = 0; j < p->ngrants && rc == 0; j++) {
			const struct pol_grant *g = &p->grants[j];

			if (!grant_lists(g->requesters, g->nrequesters, requester))
				continue;
			for (size_t k = 0; k < g->ndatasets; k++) {
				const struct pol_dataset *d = &g->datasets[k];
				struct policy_grant_view v = {
					.purpose = p->id, .purpose_description = p->description,
					.legal_basis = p->legal_basis, .rule = g->id, .operations = g->ops,
					.dataset = d->id, .nfields = d->nfields, .out = g->out,
				};

				if (d->inert)
					continue;
				if (d->nfields > cap) {
					const char **n2 = malloc(d->nfields * sizeof(*n2));
					enum policy_gen *g2 = malloc(d->nfields * sizeof(*g2));

					if (fnames != fname_buf) {
						free(fnames);
						free(fgens);
					}
					fnames = n2;
					fgens = g2;
					cap = d->nfields;
					if (!n2 || !g2) {
						rc = -1;
						break;
					}
				}
				for (size_t m = 0; m < d->nfields; m++) {
					fnames[m] = d->fields[m].name;
					fgens[m] = d->fields[m].gen;
				}
				v.field_names = fnames;
				v.field_gens = fgens;
				fn(arg, &v);
			}
		}
	}
	if (fnames != fname_buf) {
		free(fnames);
		free(fgens);
	}
	return rc;
}
