/*
 * libFuzzer target: the policy loader and the dataset catalog loader on
 * arbitrary bytes (through the in-memory variants), then a few decisions
 * and a diff of the set against itself, so whatever the loader accepts is
 * also evaluated.
 */
#include <stdint.h>
#include <string.h>

#include "../../policies/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void decide_some(const struct policy_set *s)
{
	static const char *const ds[] = { "uwv/ww-uitkeringen", "opleidingsfonds-zorg/inschrijvingen" };
	struct policy_field f[] = {
		{ "uwv/ww-uitkeringen", "end_reason", POLICY_GEN_NONE },
		{ "opleidingsfonds-zorg/inschrijvingen", "birth_date", POLICY_GEN_AGE_BAND_10 },
	};
	struct policy_decision dec;

	for (size_t p = 0; p < s->npurposes; p++) {
		const struct pol_purpose *pp = &s->purposes[p];

		for (size_t g = 0; g < pp->ngrants; g++) {
			const struct pol_grant *gr = &pp->grants[g];
			struct policy_request r = {
				.requester = gr->nrequesters ? gr->requesters[0] : "x",
				.purpose = pp->id,
				.operation = POLICY_OP_LINKED_AGGREGATE,
				.datasets = ds,
				.ndatasets = 2,
				.fields = f,
				.nfields = 2,
				.time = pp->from,
			};

			policy_decide(s, &r, &dec);
			r.operation = POLICY_OP_LOOKUP;
			r.identifiers = POLICY_IDENT_PSEUDONYM;
			r.time = pp->until_end - 1;
			policy_decide(s, &r, &dec);
		}
	}
}

/* A fixed catalog and member list, so inputs that parse also meet the
 * validation against them (every other input: without). */
static const char catalog[] =
	"datasets:\n"
	"  uwv/ww-uitkeringen:\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      end_date: {type: date, role: attribute}\n"
	"      end_reason: {type: category, role: attribute, categories: [werk, ziekte]}\n"
	"  opleidingsfonds-zorg/inschrijvingen:\n"
	"    fields:\n"
	"      birth_date: {type: date, role: quasi_identifier}\n"
	"      postcode: {type: string, role: quasi_identifier}\n"
	"      programme: {type: category, role: attribute, categories: [a, b]}\n";
static const char *const members[] = {
	"uwv", "opleidingsfonds-zorg", "arbeidsmarkttafel", "gemeente-emmen",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct policy_catalog *fixed;
	struct policy_set *s = NULL;
	struct policy_catalog *c = NULL;
	struct policy_refs refs = { 0 };
	struct pol_text a = { 0 }, b = { 0 }, o = { 0 };
	struct diag d = { 0 };

	if (!fixed) {
		policy_catalog_load_mem("catalog", (const unsigned char *)catalog, sizeof(catalog) - 1,
					&fixed, &d);
		diag_clear(&d);
	}
	refs.now = 1750000000;
	if (policy_catalog_load_mem("fuzz.yaml", data, size, &c, &d) == 0)
		refs.catalog = c;
	else if (size % 2)
		refs.catalog = fixed;
	if (size % 2) {
		refs.members = members;
		refs.nmembers = 4;
	}
	diag_clear(&d);
	if (policy_set_load_mem("fuzz.yaml", data, size, &refs, &s, &d) == 0) {
		decide_some(s);
		pol_diff(s, s, &a, &b, &o);
	}
	pol_text_free(&a);
	pol_text_free(&b);
	pol_text_free(&o);
	policy_set_free(s);
	policy_catalog_free(c);
	diag_clear(&d);
	return 0;
}
