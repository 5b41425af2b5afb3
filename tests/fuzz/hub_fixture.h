/*
 * What fuzz_question.c and fuzz_answer.c share: a hub (hub/hub.h) with a
 * fixed catalog, signed-policy stand-in, members file, audit log and budget
 * ledger (both in /dev/shm, started afresh every 1024 runs so they
 * do not grow, and removed at exit), and a crypto_box key pair that the fake nodes seal to.
 * The catalog and policies are those of tests/unit/test_hub.c, plus a grant
 * that lets a person count in up to 3 cells.
 */
#ifndef FUZZ_HUB_FIXTURE_H
#define FUZZ_HUB_FIXTURE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "../../aggregate/disclose.h"
#include "../../aggregate/ledger.h"
#include "../../aggregate/wire.h"
#include "../../common/diag.h"
#include "../../audit/audit.h"
#include "../../hub/hub.h"
#include "../../gateway/members.h"
#include "../../policies/policy.h"

static const char fx_catalog[] =
	"datasets:\n"
	"  fonds-a/inschrijvingen:\n"
	"    description: test\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      programme: {type: category, role: attribute, categories: [nld-1, nld-2, kv]}\n"
	"      completed: {type: bool, role: attribute}\n"
	"      start_year: {type: int, role: attribute, bins: [2020, 2021, 2022, 2023, 2024, 2025, 2026]}\n"
	"      birth_date: {type: date, role: quasi_identifier, range: [1940-01-01, 2010-12-31]}\n"
	"  fonds-b/inschrijvingen:\n"
	"    description: test\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      programme: {type: category, role: attribute, categories: [nld-1, nld-2, kv]}\n"
	"      completed: {type: bool, role: attribute}\n"
	"      start_year: {type: int, role: attribute, bins: [2020, 2021, 2022, 2023, 2024, 2025, 2026]}\n"
	"      birth_date: {type: date, role: quasi_identifier, range: [1940-01-01, 2010-12-31]}\n"
	"  uwv/ww:\n"
	"    description: test\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      end_reason: {type: category, role: attribute, categories: [werk, ziekte, lopend]}\n"
	"      arbeidsmarktregio: {type: category, role: attribute, categories: [groningen, friesland]}\n"
	"  fonds-c/cohort:\n"
	"    description: test\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      group: {type: category, role: attribute, categories: [g1, g2, g3]}\n"
	"      wave: {type: category, role: attribute, categories: [w1, w2]}\n"
	"  geen-node/x:\n"
	"    description: test\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      kind: {type: category, role: attribute, categories: [a, b]}\n";

static const char fx_policy[] =
	"purposes:\n"
	"  - id: exact\n"
	"    description: test only\n"
	"    legal_basis: {text: test}\n"
	"    valid: {from: 2020-01-01, until: 2099-12-31}\n"
	"    grants:\n"
	"      - id: exact-grant\n"
	"        requesters: [amt]\n"
	"        operations: [aggregate, linked_aggregate]\n"
	"        datasets:\n"
	"          fonds-a/inschrijvingen:\n"
	"            programme: exact\n"
	"            completed: exact\n"
	"            start_year: exact\n"
	"            birth_date: year\n"
	"          fonds-b/inschrijvingen:\n"
	"            programme: exact\n"
	"            completed: exact\n"
	"            start_year: exact\n"
	"            birth_date: year\n"
	"          uwv/ww:\n"
	"            end_reason: exact\n"
	"            arbeidsmarktregio: exact\n"
	"          geen-node/x:\n"
	"            kind: exact\n"
	"        min_cell: 1\n"
	"        noise: {mechanism: discrete_laplace, epsilon: 1}\n"
	"        acknowledge: [{risk: min_cell_below_5, reason: fuzzing}]\n"
	"  - id: cells\n"
	"    description: test, min_cell 10\n"
	"    legal_basis: {text: test}\n"
	"    valid: {from: 2020-01-01, until: 2099-12-31}\n"
	"    grants:\n"
	"      - id: cells-grant\n"
	"        requesters: [amt]\n"
	"        operations: [aggregate]\n"
	"        datasets:\n"
	"          fonds-c/cohort: {group: exact, wave: exact}\n"
	"        min_cell: 10\n"
	"        noise: {mechanism: discrete_laplace, epsilon: 1}\n"
	"  - id: budget\n"
	"    description: test, noise and a budget\n"
	"    legal_basis: {text: test}\n"
	"    valid: {from: 2020-01-01, until: 2099-12-31}\n"
	"    grants:\n"
	"      - id: budget-grant\n"
	"        requesters: [amt]\n"
	"        operations: [aggregate]\n"
	"        datasets:\n"
	"          fonds-c/cohort: {group: exact, wave: exact}\n"
	"        noise: {mechanism: discrete_laplace, epsilon: 1}\n"
	"        round_to: 5\n"
	"        budget: {epsilon: 10, per: year}\n"
	"  - id: partial\n"
	"    description: test, partial answers allowed, three cells a person\n"
	"    legal_basis: {text: test}\n"
	"    valid: {from: 2020-01-01, until: 2099-12-31}\n"
	"    grants:\n"
	"      - id: partial-grant\n"
	"        requesters: [amt]\n"
	"        operations: [linked_aggregate]\n"
	"        datasets:\n"
	"          fonds-a/inschrijvingen:\n"
	"            programme: exact\n"
	"            completed: exact\n"
	"            start_year: exact\n"
	"            birth_date: year\n"
	"          fonds-b/inschrijvingen:\n"
	"            programme: exact\n"
	"            completed: exact\n"
	"            start_year: exact\n"
	"            birth_date: year\n"
	"          uwv/ww:\n"
	"            end_reason: exact\n"
	"            arbeidsmarktregio: exact\n"
	"        min_cell: 1\n"
	"        max_cells_per_person: 3\n"
	"        noise: {mechanism: discrete_laplace, epsilon: 1}\n"
	"        acknowledge: [{risk: min_cell_below_5, reason: fuzzing}]\n"
	"        on_node_failure: partial\n";

static const char fx_members[] =
	"members:\n"
	"  - {id: amt, name: AMT, oin: \"00000001000000000001\", roles: [coordinator]}\n"
	"  - {id: gemeente-x, name: X, oin: \"00000001000000000002\", roles: [node]}\n"
	"  - {id: fonds-a, name: A, oin: \"00000001000000000003\", roles: [node], endpoint: \"https://127.0.0.1:9101\"}\n"
	"  - {id: fonds-b, name: B, oin: \"00000001000000000004\", roles: [node], endpoint: \"https://127.0.0.1:9102\"}\n"
	"  - {id: uwv, name: UWV, oin: \"00000001000000000005\", roles: [node], endpoint: \"https://127.0.0.1:9103\"}\n"
	"  - {id: fonds-c, name: C, oin: \"00000001000000000006\", roles: [node], endpoint: \"https://127.0.0.1:9104\"}\n"
	"  - {id: geen-node, name: G, oin: \"00000001000000000007\", roles: [node]}\n";

static struct policy_catalog *fx_cat;
static struct policy_set *fx_pol;
static struct gw_members *fx_mem;
static struct audit_log *fx_audit;
static struct ledger *fx_ledger;
static unsigned char fx_pk[32], fx_sk[32];
static char fx_dir[64];
static unsigned fx_runs;
static struct gw_hub fx_hub;

/*
 * Zero noise, so the fuzzer can check counts against what the nodes sent:
 * each discrete Laplace draw (t = den of eps/m: 1 or 3 here) asks U
 * (bound t: 0; no draw when t = 1), V's Bernoulli(exp(-1)) (bound 2: 1,
 * stop at once) and the sign (bound 2: 0). t must not be 2 (eps/m = 1/2):
 * U's draw would then take a bound-2 answer meant for V, and the sampler
 * would never stop. Production passes NULL (libsodium); policies always
 * have noise.
 */
static unsigned fx_zero_phase;
static inline uint32_t fx_zero_uniform(void *arg, uint32_t bound)
{
	(void)arg;
	if (bound != 2)
		return 0;
	fx_zero_phase ^= 1;
	return fx_zero_phase ? 1 : 0;
}
static const struct agg_rng fx_zero_rng = { fx_zero_uniform, NULL };

static inline int64_t fx_now(void)
{
	return 1781524800; /* 2026-06-15 12:00 UTC */
}

static inline void fx_die(const char *what, const char *why)
{
	fprintf(stderr, "fuzz hub fixture: %s: %s\n", what, why);
	abort();
}

/* The audit log and the ledger, afresh. */
static inline void fx_logs(void)
{
	char path[128], err[512];

	if (fx_audit)
		audit_close(fx_audit);
	if (fx_ledger)
		ledger_close(fx_ledger);
	fx_audit = NULL;
	fx_ledger = NULL;
	snprintf(path, sizeof(path), "%s/audit.log", fx_dir);
	unlink(path);
	if (audit_open(path, NULL, NULL, &fx_audit, err, sizeof(err)) < 0)
		fx_die("audit", err);
	snprintf(path, sizeof(path), "%s/ledger.db", fx_dir);
	unlink(path);
	if (ledger_create(path, err, sizeof(err)) < 0 || ledger_open(path, &fx_ledger, err, sizeof(err)) < 0)
		fx_die("ledger", err);
	fx_hub.audit = fx_audit;
	fx_hub.ledger = fx_ledger;
}

/* Removes the audit log, the ledger and their folder (at exit). */
static inline void fx_cleanup(void)
{
	char path[128];

	if (fx_audit)
		audit_close(fx_audit);
	if (fx_ledger)
		ledger_close(fx_ledger);
	fx_audit = NULL;
	fx_ledger = NULL;
	snprintf(path, sizeof(path), "%s/audit.log", fx_dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/ledger.db", fx_dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/ledger.db-wal", fx_dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/ledger.db-shm", fx_dir);
	unlink(path);
	rmdir(fx_dir);
}

static inline void fx_setup(gw_hub_fanout_fn fanout)
{
	struct policy_refs refs = { 0 };
	struct diag d = { 0 };
	char path[128], err[512];
	FILE *f;

	if (sodium_init() < 0)
		abort();
	snprintf(fx_dir, sizeof(fx_dir), "/dev/shm/fuzz-hub-%ld", (long)getpid());
	if (access("/dev/shm", W_OK) != 0)
		snprintf(fx_dir, sizeof(fx_dir), "/tmp/fuzz-hub-%ld", (long)getpid());
	if (mkdir(fx_dir, 0700) != 0 && errno != EEXIST)
		fx_die("mkdir", fx_dir);
	if (policy_catalog_load_mem("catalog.yaml", (const unsigned char *)fx_catalog, sizeof(fx_catalog) - 1,
				    &fx_cat, &d) < 0) {
		diag_first(&d, err, sizeof(err));
		fx_die("catalog", err);
	}
	refs.catalog = fx_cat;
	if (policy_set_load_mem("policy.yaml", (const unsigned char *)fx_policy, sizeof(fx_policy) - 1, &refs,
				&fx_pol, &d) < 0) {
		diag_first(&d, err, sizeof(err));
		fx_die("policy", err);
	}
	diag_clear(&d);
	snprintf(path, sizeof(path), "%s/members.yaml", fx_dir);
	if (!(f = fopen(path, "w")) || fputs(fx_members, f) < 0 || fclose(f) != 0)
		fx_die("members", path);
	if (gw_members_load(path, &fx_mem, &d) < 0)
		fx_die("members", diag_text(&d));
	diag_clear(&d);
	unlink(path);
	crypto_box_keypair(fx_pk, fx_sk);
	fx_hub = (struct gw_hub){ .policies = fx_pol, .catalog = fx_cat, .members = fx_mem, .box_pk = fx_pk,
				  .box_sk = fx_sk, .fanout = fanout, .node_timeout_ms = 250, .now = fx_now,
				  .rng = &fx_zero_rng };
	fx_logs();
	atexit(fx_cleanup);
}

/* Called once per run: a fresh audit log and ledger every 1024 runs. */
static inline void fx_tick(void)
{
	if (++fx_runs % 1024 == 0)
		fx_logs();
}

/* Seals |plain| to the hub and wraps it as a node's tokens answer. */
static inline char *fx_tokens_body(const char *dataset, const unsigned char *plain, size_t len, double records,
				   size_t *bodylen)
{
	unsigned char *body;
	char *head;
	cJSON *o;

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "dataset", dataset);
	cJSON_AddStringToObject(o, "policy_hash", "ab00000000000000000000000000000000000000000000000000000000000000");
	cJSON_AddNumberToObject(o, "records", records);
	head = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!head || wire_seal(plain, len, fx_pk, strlen(head), &body, bodylen) != 0)
		abort();
	memcpy(body + *bodylen, head, strlen(head));
	*bodylen += strlen(head);
	free(head);
	return (char *)body;
}

/* What every answer must be: JSON with the status's shape (an answer has
 * cells and a total, an error an error object), and never a 500. */
static inline void fx_check_response(const struct gw_response *r)
{
	cJSON *j;

	if (!r->body || r->len != strlen(r->body))
		abort();
	if (!(j = cJSON_ParseWithLength(r->body, r->len)))
		abort();
	if (r->status == 200) {
		if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "cells")) ||
		    !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "total")))
			abort();
	} else if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "error"))) {
		abort();
	}
	/* 500 is a bug in the hub (nothing here runs out of memory). */
	if (r->status == 500)
		abort();
	cJSON_Delete(j);
}

#endif
