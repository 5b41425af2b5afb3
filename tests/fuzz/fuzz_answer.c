/*
 * libFuzzer target: the hub's handling of the nodes' answers
 * (hub/hub.c: take_answer, check_counts, open_tokens, the categories,
 * the join and the count) through gw_hub_aggregate() with a fake fan-out
 * that answers from the input.
 *
 * Input: one byte picks one of the questions below; the rest is split at
 * "\n==\n" into one chunk per subquery (missing chunks: the node could not
 * be reached). A chunk's first byte k says what the node does:
 *   k%4 == 0  HTTP 200 with the rest as the body, as is (counts JSON, or
 *             whatever a broken node sends);
 *   k%4 == 1  the rest is a tokens plaintext (aggregate/wire.c's format),
 *             sealed here to the hub's key and wrapped as a node does
 *             (wire.h: "NPS1", the box, then the JSON head {"dataset",
 *             "policy_hash", "records"}); "records" is
 *             what wire_decode counts in it, plus 1 when k&4, and the
 *             dataset another one when k&8;
 *   k%4 == 2  the rest describes records that wire_builder turns into a
 *             valid plaintext (so the hub's own checks are reached, not
 *             only the decoder's): per record one byte for the person
 *             (token) and one per field, 0 = null, else a value from |vocab|
 *             (catalog categories, years, and values no category has);
 *             k&4: one field more than asked; k&8: "records" off by one;
 *   k%4 == 3  the next byte picks a failure (timeout, unreachable, 403 with
 *             the rest as the error body, 500, 429, 200 with no body).
 * wire_decode itself is fuzz_wire's; this target is about what the hub does
 * with decoded answers: codes against categories, records per person,
 * the k-way join, the cross product of a person's records, partial answers.
 * Every answer must be JSON of its status's shape, never a 500, and a
 * linked answer's cells must add up to no more than the persons the nodes
 * sent times max_cells_per_person.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define A "fonds-a/inschrijvingen"
#define B "fonds-b/inschrijvingen"
#define U "uwv/ww"
static const char *const questions[] = {
	"{\"purpose\":\"exact\",\"population\":\"" A "\",\"group_by\":[\"" A ".programme\",\"" A
	".start_year\"]}",
	"{\"purpose\":\"exact\",\"population\":\"" A "\",\"group_by\":[\"" A ".start_year\",\"" A
	".completed\"],\"filters\":{\"" A ".start_year\":[2023,\"2024\"]}}",
	"{\"purpose\":\"exact\",\"population\":\"" A "\",\"link\":[\"" U "\"],\"group_by\":[\"" A
	".programme\",\"" U ".end_reason\",\"present_in." U "\"]}",
	"{\"purpose\":\"partial\",\"population\":\"" A "\",\"link\":[\"" U "\"],\"group_by\":[\"" A
	".start_year\",\"" U ".end_reason\"]}",
	"{\"purpose\":\"exact\",\"population\":[\"" A "\",\"" B "\"],\"group_by\":[\"" A
	".birth_date:year\",\"" B ".completed\"]}",
	"{\"purpose\":\"partial\",\"population\":[\"" A "\",\"" B "\"],\"link\":[\"" U "\"],\"group_by\":[\"" A
	".programme\",\"" B ".start_year\",\"" U ".arbeidsmarktregio\"],\"filters\":{\"" B
	".start_year\":[2022,2023,2024]}}",
	"{\"purpose\":\"cells\",\"population\":\"fonds-c/cohort\",\"group_by\":[\"fonds-c/cohort.group\","
	"\"fonds-c/cohort.wave\"]}",
	"{\"purpose\":\"partial\",\"population\":[\"" A "\",\"" B "\"],\"group_by\":[\"present_in." B
	"\"]}",
};
#define NQ (sizeof(questions) / sizeof(questions[0]))
static cJSON *parsed[NQ];

static const char *const vocab[] = {
	"nld-1", "nld-2", "kv", "werk", "ziekte", "lopend", "groningen", "friesland", "g1", "g2", "w1",
	"true", "false", "2022", "2023", "2024", "1990", "1985", "02023", "onbekend", "", "5-9", "10-14",
};
#define NV (sizeof(vocab) / sizeof(vocab[0]))

static const uint8_t *in;
static size_t in_len;
static uint64_t sent_persons; /* distinct tokens over the answers, an upper bound on persons */

/* The next chunk of the input; NULL when there is none. */
static const uint8_t *next_chunk(size_t *len)
{
	static const char sep[] = "\n==\n";
	const uint8_t *p, *s;

	if (!in)
		return NULL;
	p = in;
	s = memmem(in, in_len, sep, 4);
	if (s) {
		*len = (size_t)(s - in);
		in_len -= *len + 4;
		in = s + 4;
	} else {
		*len = in_len;
		in = NULL;
	}
	return p;
}

static char *dup_bytes(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);

	if (!s)
		abort();
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static void answer(const struct gw_hub_subquery *q, struct gw_hub_answer *a, const uint8_t *c, size_t n)
{
	cJSON *req = cJSON_ParseWithLength(q->body, q->len);
	const char *ds = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "dataset"));
	int asked = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(req, "fields"));
	uint8_t k = c[0];
	const char *other = strcmp(ds, A) == 0 ? B : A;
	struct wire_tokens t;
	char err[256];

	c++, n--;
	a->status = 200;
	switch (k % 4) {
	case 0:
		a->body = dup_bytes(c, n);
		a->len = n;
		break;
	case 1: {
		double records = 0;

		if (wire_decode(c, n, &t, err, sizeof(err)) == 0) {
			records = t.nrecords;
			sent_persons += t.nrecords;
			wire_tokens_free(&t);
		}
		a->body = fx_tokens_body(k & 8 ? other : ds, c, n, records + (k & 4 ? 1 : 0), &a->len);
		break;
	}
	case 2: {
		uint32_t nf = (uint32_t)asked + (k & 4 ? 1 : 0), nrec;
		struct wire_builder *b;
		unsigned char tok[WIRE_TOKEN_BYTES] = { 0 }, *plain;
		const char *vals[WIRE_MAX_FIELDS];
		size_t len;

		if (nf > WIRE_MAX_FIELDS || wire_builder_new(nf, &b) != 0)
			abort();
		for (size_t i = 0; i + 1 + nf <= n; i += 1 + nf) {
			tok[0] = c[i];
			for (uint32_t f = 0; f < nf; f++)
				vals[f] = c[i + 1 + f] ? vocab[(c[i + 1 + f] - 1) % NV] : NULL;
			if (wire_builder_add(b, tok, vals) != 0)
				abort();
		}
		if (wire_builder_finish(b, &plain, &len, &nrec) != 0)
			abort();
		wire_builder_free(b);
		sent_persons += nrec;
		a->body = fx_tokens_body(ds, plain, len, (double)nrec + (k & 8 ? 1 : 0), &a->len);
		sodium_memzero(plain, len);
		free(plain);
		break;
	}
	default: {
		static const int st[] = { 0, 0, 403, 500, 429, 200 };
		uint8_t w = n ? c[0] % 6 : 0;

		a->status = st[w];
		a->timed_out = w == 0;
		if (w == 2 || w == 3) {
			a->body = dup_bytes(c + 1, n - 1);
			a->len = n - 1;
		}
	}
	}
	cJSON_Delete(req);
}

static int fanout(void *arg, const struct gw_hub_subquery *q, size_t n, struct gw_hub_answer *a,
		  unsigned timeout_ms)
{
	(void)arg, (void)timeout_ms;
	for (size_t i = 0; i < n; i++) {
		size_t len;
		const uint8_t *c = next_chunk(&len);

		if (c && len > 0)
			answer(&q[i], &a[i], c, len);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_response resp = { 0 };
	const struct gw_member *amt;
	unsigned qi;

	if (!fx_hub.fanout) {
		fx_setup(fanout);
		for (size_t i = 0; i < NQ; i++)
			if (!(parsed[i] = cJSON_Parse(questions[i])))
				abort();
	}
	if (size < 1)
		return 0;
	fx_tick();
	qi = data[0] % NQ;
	in = data + 1;
	in_len = size - 1;
	sent_persons = 0;
	amt = gw_members_by_id(fx_mem, "amt");
	if (gw_hub_aggregate(&fx_hub, amt, parsed[qi], &resp) != 0)
		abort();
	fx_check_response(&resp);
	if (resp.status == 200 && qi != 6) {
		/* Zero noise (fx_zero_rng), min_cell 1: released cells are exact counts. */
		cJSON *j = cJSON_ParseWithLength(resp.body, resp.len), *c;
		double sum = 0;
		unsigned per = (qi == 3 || qi == 5 || qi == 7) ? 3 : 1;
		int linked = qi >= 2;

		cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "cells"))
			sum += cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "persons")) > 0
				       ? cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "persons"))
				       : 0;
		if (linked && sum > (double)sent_persons * per)
			abort();
		cJSON_Delete(j);
	}
	free(resp.body);
	return 0;
}
