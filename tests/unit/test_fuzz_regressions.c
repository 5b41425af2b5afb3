/*
 * Reproducers for what the fuzzers (tests/fuzz/, docs/fuzzing.md) found and
 * what was fixed, one test per finding, each with the input that showed it.
 * The hub's are asked through gw_hub_aggregate() with the fuzz targets'
 * fixture (tests/fuzz/hub_fixture.h) and a fan-out that plays the input's
 * node answers.
 */
#define CHECK_FILE "test_fuzz_regressions"
#include "check.h"

#include "../fuzz/hub_fixture.h"

/* ---- The hub's fake nodes ------------------------------------------- */

#define DA "fonds-a/inschrijvingen"
#define DU "uwv/ww"

/* One node's answer: HTTP status, or a tokens answer built from records. */
struct node_rec {
	unsigned char person; /* the token's first byte */
	const char *v;        /* the one field's value, NULL = null */
};
struct node_script {
	const char *dataset;
	int status;              /* 0: timed out */
	int nfields;             /* fields of the built answer */
	struct node_rec recs[8];
	size_t nrecs;
};
static const struct node_script *script;
static size_t nscript;

static int scripted_fanout(void *arg, const struct gw_hub_subquery *q, size_t n, struct gw_hub_answer *a,
			   unsigned timeout_ms)
{
	(void)arg, (void)timeout_ms;
	for (size_t i = 0; i < n; i++) {
		const struct node_script *s = NULL;

		for (size_t k = 0; k < nscript; k++)
			if (strstr(q[i].body, script[k].dataset))
				s = &script[k];
		if (!s || s->status == 0) {
			a[i].timed_out = 1;
			continue;
		}
		{
			struct wire_builder *b;
			unsigned char tok[WIRE_TOKEN_BYTES] = { 0 }, *plain;
			size_t len;
			uint32_t nrec;

			if (wire_builder_new((uint32_t)s->nfields, &b) != 0)
				abort();
			for (size_t r = 0; r < s->nrecs; r++) {
				const char *v[1] = { s->recs[r].v };

				tok[0] = s->recs[r].person;
				wire_builder_add(b, tok, v);
			}
			wire_builder_finish(b, &plain, &len, &nrec);
			wire_builder_free(b);
			a[i].status = s->status;
			a[i].body = fx_tokens_body(s->dataset, plain, len, nrec, &a[i].len);
			sodium_memzero(plain, len);
			free(plain);
		}
	}
	return 0;
}

static struct gw_response resp;

static cJSON *ask(const char *question)
{
	cJSON *qj = cJSON_Parse(question), *a;

	free(resp.body);
	memset(&resp, 0, sizeof(resp));
	CHECK(gw_hub_aggregate(&fx_hub, gw_members_by_id(fx_mem, "amt"), qj, &resp) == 0);
	cJSON_Delete(qj);
	a = resp.body ? cJSON_ParseWithLength(resp.body, resp.len) : NULL;
	CHECK(a != NULL);
	return a;
}

static double persons_in(const cJSON *a, const char *k0, const char *k1)
{
	const cJSON *c;

	cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(a, "cells")) {
		const cJSON *key = cJSON_GetObjectItemCaseSensitive(c, "key");
		const char *v0 = cJSON_GetStringValue(cJSON_GetArrayItem(key, 0));
		const char *v1 = cJSON_GetStringValue(cJSON_GetArrayItem(key, 1));

		if (((!v0 && !k0) || (v0 && k0 && strcmp(v0, k0) == 0)) &&
		    ((!v1 && !k1) || (v1 && k1 && strcmp(v1, k1) == 0)))
			/* zero noise (fx_zero_rng), min_cell 1: suppressed is an empty cell */
			return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "suppressed"))
				       ? 0 : cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "persons"));
	}
	return -1;
}

/*
 * fuzz_answer, crash-05f435bf (UBSan: "applying zero offset to null
 * pointer", hub/hub.c join()): a linked question where a node did not
 * answer and the policy allows a partial answer. The missing dataset has no
 * tokens (NULL) and the join formed tokens + 0 from it. The input:
 *   \003 \002\001\016\001\017\002\020\003\000 \n==\n \003\000
 * question 3 (partial, fonds-a start_year x uwv end_reason); fonds-a
 * answers persons 1, 2, 3 with 2022, 2023, 2024; uwv times out.
 * GCC's UBSan (this build) does not flag a zero offset on NULL, clang's
 * does: the input itself is tests/fuzz/corpus/answer/crash-join-missing-node,
 * which `make test` replays through the clang-built fuzz_answer. Here the
 * answer it must give.
 */
static void join_with_a_missing_node(void)
{
	static const struct node_script s[] = {
		{ DA, 200, 1, { { 1, "2022" }, { 2, "2023" }, { 3, "2024" } }, 3 },
		{ DU, 0, 1, { { 0, NULL } }, 0 },
	};
	cJSON *a;

	script = s;
	nscript = 2;
	a = ask("{\"purpose\":\"partial\",\"population\":\"" DA "\",\"link\":[\"" DU "\"],"
		"\"group_by\":[\"" DA ".start_year\",\"" DU ".end_reason\"]}");
	CHECK(resp.status == 200);
	CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "partial")));
	CHECK(persons_in(a, "2022", NULL) == 1);
	CHECK(persons_in(a, "2023", NULL) == 1);
	CHECK(persons_in(a, "2024", NULL) == 1);
	cJSON_Delete(a);
}

/* The same join when a node answers, with no records at all (its tokens
 * are NULL too): everyone in the population is absent from it. */
static void join_with_an_empty_answer(void)
{
	static const struct node_script s[] = {
		{ DA, 200, 1, { { 1, "kv" }, { 2, "kv" }, { 3, "nld-1" } }, 3 },
		{ DU, 200, 1, { { 0, NULL } }, 0 },
	};
	cJSON *a;

	script = s;
	nscript = 2;
	a = ask("{\"purpose\":\"exact\",\"population\":\"" DA "\",\"link\":[\"" DU "\"],"
		"\"group_by\":[\"" DA ".programme\",\"" DU ".end_reason\"]}");
	if (resp.status != 200)
		printf("#   %d %s\n", resp.status, resp.body);
	CHECK(resp.status == 200);
	CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(a, "partial")));
	CHECK(persons_in(a, "kv", NULL) == 2);
	CHECK(persons_in(a, "nld-1", NULL) == 1);
	CHECK(persons_in(a, "kv", "werk") == 0);
	cJSON_Delete(a);
}

int main(void)
{
	fx_setup(scripted_fanout);
	RUN(join_with_a_missing_node);
	RUN(join_with_an_empty_answer);
	free(resp.body);
	policy_set_free(fx_pol);
	policy_catalog_free(fx_cat);
	gw_members_free(fx_mem);
	return check_total_failed ? 1 : 0;
}
