/*
 * libFuzzer target: the coordinator's question, POST /v1/aggregate, from
 * the request body on. The bytes go through gw_handle() (gateway/routes.c:
 * the body checks, UTF-8 and NUL, the JSON parse, trailing bytes, duplicate
 * keys) as the hub's coordinator; what the engine defers goes to
 * gw_hub_aggregate() (hub/hub.c: the question parser, the decision, the
 * budget, the categories, the subqueries) with a fan-out whose nodes answer
 * well-formed answers to whatever they were asked (counts: one cell of
 * nulls; tokens: three persons shared by every dataset, values null or the
 * first filter value), so questions that pass run to the end: join, count,
 * disclosure, audit, answer. Every answer must be JSON of its status's
 * shape, never a 500.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../gateway/metrics.h"
#include "../../gateway/routes.h"
#include "../../gateway/tls.h"
#include "hub_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *node_answer(const struct gw_hub_subquery *q, size_t *bodylen)
{
	cJSON *req = cJSON_ParseWithLength(q->body, q->len), *o, *arr;
	const char *ds = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "dataset"));
	const char *mode = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "mode"));
	const cJSON *fields = cJSON_GetObjectItemCaseSensitive(req, "fields"), *f;
	const cJSON *filters = cJSON_GetObjectItemCaseSensitive(req, "filters");
	int nf = cJSON_GetArraySize(fields);
	char *body;

	if (!req || !ds || !mode || nf > WIRE_MAX_FIELDS)
		abort(); /* the hub asked something no node could read */
	if (strcmp(mode, "tokens") == 0) {
		struct wire_builder *b;
		const char *vals[WIRE_MAX_FIELDS];
		unsigned char tok[WIRE_TOKEN_BYTES] = { 0 }, *plain;
		size_t len;
		uint32_t n;

		/* A field the hub filters on gets the first filter value. */
		for (int i = 0; i < nf; i++) {
			const char *name = cJSON_GetStringValue(
				cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(fields, i), "field"));

			vals[i] = NULL;
			cJSON_ArrayForEach(f, filters)
				if (name && strcmp(name, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
							       f, "field")) ?: "") == 0)
					vals[i] = cJSON_GetStringValue(cJSON_GetArrayItem(
						cJSON_GetObjectItemCaseSensitive(f, "values"), 0));
		}
		if (wire_builder_new((uint32_t)nf, &b) != 0)
			abort();
		for (unsigned p = 1; p <= 3; p++) {
			tok[0] = (unsigned char)p;
			if (wire_builder_add(b, tok, vals) != 0)
				abort();
		}
		if (wire_builder_finish(b, &plain, &len, &n) != 0)
			abort();
		wire_builder_free(b);
		body = fx_tokens_body(ds, plain, len, n, bodylen);
		free(plain);
	} else {
		cJSON *cell, *key;

		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "dataset", ds);
		cJSON_AddStringToObject(o, "policy_hash", "ab00");
		arr = cJSON_AddArrayToObject(o, "fields");
		cJSON_ArrayForEach(f, fields)
			cJSON_AddItemToArray(arr, cJSON_CreateString(
				cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "field"))));
		cell = cJSON_CreateObject();
		key = cJSON_AddArrayToObject(cell, "key");
		for (int i = 0; i < nf; i++)
			cJSON_AddItemToArray(key, cJSON_CreateNull());
		cJSON_AddNumberToObject(cell, "persons", 7);
		cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "cells"), cell);
		body = cJSON_PrintUnformatted(o);
		*bodylen = body ? strlen(body) : 0;
		cJSON_Delete(o);
	}
	cJSON_Delete(req);
	return body;
}

static int fanout(void *arg, const struct gw_hub_subquery *q, size_t n, struct gw_hub_answer *a,
		  unsigned timeout_ms)
{
	(void)arg, (void)timeout_ms;
	for (size_t i = 0; i < n; i++) {
		a[i].status = 200;
		a[i].body = node_answer(&q[i], &a[i].len);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct gw_metrics metrics;
	static struct gw_peer peer = { .oin = "00000001000000000001" };
	struct gw_env env = { 0 };
	struct gw_request req = { 0 };
	struct gw_response resp = { 0 }, ans = { 0 };

	if (!fx_hub.fanout)
		fx_setup(fanout);
	fx_tick();
	env.members = fx_mem;
	env.policies = fx_pol;
	env.catalog = fx_cat;
	env.metrics = &metrics;
	env.hub = 1;
	env.audit = fx_audit;
	req.method = "POST";
	req.path = "/v1/aggregate";
	req.body = data;
	req.bodylen = size;
	req.peer = &peer;
	if (gw_handle(&env, &req, &resp) != 0)
		abort();
	if (resp.deferred) {
		if (!resp.job_body || !resp.job_caller)
			abort();
		if (gw_hub_aggregate(&fx_hub, resp.job_caller, resp.job_body, &ans) != 0)
			abort();
		fx_check_response(&ans);
		free(ans.body);
		cJSON_Delete(resp.job_body);
	} else if (resp.status != 400 || !resp.body) {
		abort();
	}
	free(resp.body);
	return 0;
}
