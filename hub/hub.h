/*
 * The hub: answers a coordinator's federated aggregate question
 * (POST /v1/aggregate) by asking one subquery per dataset of the nodes that
 * hold them, joining their per-query tokens in memory, counting distinct
 * persons per cell and releasing only what disclosure control lets through.
 * The design, step by step and with every reason: docs/federation.md.
 */
#ifndef NOORDPOORT_HUB_H
#define NOORDPOORT_HUB_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "../gateway/response.h"

struct policy_set;
struct policy_catalog;
struct gw_members;
struct gw_member;
struct ledger;
struct audit_log;
struct agg_rng;

/* Limits of one question (docs/federation.md, "The coordinator's question"). */
#define GW_HUB_MAX_DATASETS 8    /* population + link datasets */
#define GW_HUB_MAX_GROUP_BY 3
#define GW_HUB_MAX_FILTERS 16
#define GW_HUB_MAX_FILTER_VALUES 256 /* values of one filter */
#define GW_HUB_MAX_CELLS 100000  /* every combination of the group-by categories */
#define GW_HUB_MAX_CELLS_PER_PERSON 64 /* the hub never counts a person in more cells */
#define GW_HUB_NODE_TIMEOUT_MS 10000 /* hub.node_timeout default */

/* One subquery, hub -> node. |body| is the JSON of docs/federation.md,
 * "The subquery"; the hub owns it. */
struct gw_hub_subquery {
	const char *node;     /* the owner's member id */
	const char *endpoint; /* the owner's node endpoint, "https://host:port" */
	char *body;
	size_t len;
};

/* The answer to one subquery, filled by the fan-out. The hub sets |node|
 * and zeroes the rest before the call; the fan-out sets |body| to a malloc'd
 * buffer (the hub frees it, whatever the status). */
struct gw_hub_answer {
	const char *node;
	int status;    /* HTTP status; 0 = no answer */
	int timed_out; /* with status 0: the node did not answer within the timeout */
	int too_big;   /* with status 0: the answer was larger than the fan-out accepts */
	char *body;
	size_t len;
};

/*
 * Sends the |n| subqueries concurrently and waits for all of them, each at
 * most |timeout_ms|; fills a[i] for q[i]. Returns 0, or -1 when it could
 * not send at all (the hub answers 503). hub/fanout.c in production,
 * fakes in tests.
 */
typedef int (*gw_hub_fanout_fn)(void *arg, const struct gw_hub_subquery *q, size_t n,
				struct gw_hub_answer *a, unsigned timeout_ms);

/* What the hub needs; filled by the caller, everything borrowed. */
struct gw_hub {
	const struct policy_set *policies;    /* the partners' signed policies */
	const struct policy_catalog *catalog; /* the group-by categories */
	const struct gw_members *members;     /* dataset owner -> node endpoint */
	struct ledger *ledger;                /* NULL: a budgeted purpose gets 503 */
	struct audit_log *audit;              /* NULL: every question gets 503 */
	const unsigned char *box_pk, *box_sk; /* 32 bytes each: crypto_box keys */
	gw_hub_fanout_fn fanout;
	void *fanout_arg;
	unsigned node_timeout_ms;             /* 0: GW_HUB_NODE_TIMEOUT_MS */
	int64_t (*now)(void);                 /* unix seconds; NULL = time(NULL) */
	const struct agg_rng *rng;            /* NULL = libsodium */
	const char *ledger_problem;           /* non-NULL: the ledger is missing, replaced or
					       * rolled back; every question gets 503 */
};

/*
 * Answers POST /v1/aggregate for |caller| (from its certificate; NULL or
 * without the coordinator role: 403 not_a_coordinator), blocking, in the
 * order of docs/federation.md: validate (400) -> decide per dataset (403) ->
 * budget check (429) -> fan out -> open and decode the answers (502/504
 * naming the node, or a partial answer where every policy allows it) ->
 * join -> count -> disclose -> debit (429/503) -> audit (503) -> answer ->
 * wipe the tokens and exact counts. Every outcome after authentication is
 * audited; an outcome that cannot be audited becomes 503.
 * Always fills |resp| (gw_error-style bodies for errors). Returns 0, or -1
 * when even the error body could not be allocated.
 */
int gw_hub_aggregate(const struct gw_hub *hub, const struct gw_member *caller, const cJSON *question,
		     struct gw_response *resp);

#endif
