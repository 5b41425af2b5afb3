/*
 * The node role: the partner's own datasets behind adapters, its
 * pseudonymisation master key, and the purpose-bound lookup of one person
 * (POST /v1/lookup), and the hub's subquery over a whole dataset
 * (POST /v1/federation/subquery). A node is the only thing that touches
 * personal data.
 */
#ifndef NOORDPOORT_NODE_H
#define NOORDPOORT_NODE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

struct gw_config;
struct diag;
struct gw_env;
struct gw_member;
struct gw_response;
struct audit_log;

/* Per process: key, schemas, sources. Immutable once open. */
struct gw_node;
/* Per worker: its own open adapters (adapters are not thread-safe) and the
 * lookup rate buckets of that worker. */
struct gw_node_worker;

/*
 * Opens the node described by |cfg|: loads the master key (refused unless
 * mode 0600) and its own copy of the catalog, builds every dataset's schema
 * from it, and reads every dataset once (the load: on_bad_row: fail refuses
 * a bad row, skip reports it as a warning in |d|; a SQLite source without an
 * index on bsn gets a warning). With node.hub_public_key set it reads the
 * hub's X25519 public key (one line of 64 hex) that linked answers are sealed
 * to; without it, subqueries in mode tokens answer 501 no_hub_key. Dataset,
 * catalog and key changes need a restart; policies reload on SIGHUP.
 * Returns 0, or -1 with the reasons in |d|.
 */
int gw_node_open(const struct gw_config *cfg, struct gw_node **out, struct diag *d);
void gw_node_free(struct gw_node *n);

/* Opens every dataset for one worker; 0, or -1 with the reason in |err|. */
int gw_node_worker_open(const struct gw_node *n, struct gw_node_worker **out,
			char *err, size_t errlen);
void gw_node_worker_free(struct gw_node_worker *w);

/* The ids of the datasets this node serves; returns their number and
 * points |*ids| at them (valid while the node lives). */
size_t gw_node_datasets(const struct gw_node_worker *w, const char *const **ids);

/*
 * POST /v1/lookup for |caller| with the parsed body |body|: rate limit →
 * validate → decide → fetch → generalise → pseudonymise → audit → answer.
 * Every answer and refusal is audited first, one line with operation
 * "lookup"; one that cannot be audited is a 503 and releases nothing. Out
 * of memory is a 500 internal that releases nothing and leaves no line.
 * Always fills |resp|; returns 0, or -1 when even an error body could not
 * be allocated.
 */
int gw_node_lookup(const struct gw_env *env, const struct gw_member *caller,
		   const cJSON *body, struct gw_response *resp);

/*
 * POST /v1/federation/subquery for |caller| (docs/federation.md, "The
 * subquery"): hub role → validate → decide (this node's own policy, for the
 * body's requester and purpose) → read the dataset with the filters,
 * generalised as decided, contribution-bounded per person → audit → answer
 * counts per cell (mode counts) or per-query tokens sealed to the hub's key
 * (mode tokens). Statuses: 403 not_a_hub or the policy's reason, 400
 * bad_request naming the part, 404 not_found (dataset not here), 501
 * no_hub_key / generalisation_unavailable, 503 audit_unavailable /
 * source_unavailable, 500 internal. Every answer and refusal (the non-hub's
 * too) is audited first, one line with operation "subquery"; one that
 * cannot be audited is a 503 and releases nothing; out of memory is a 500
 * internal that releases nothing and leaves no line. Contribution bound: the
 * smaller of the decision's max_cells_per_person (default 1) and the body's.
 * Always fills |resp|; returns 0, or -1 when even an error body could not be
 * allocated.
 */
int gw_node_subquery(const struct gw_env *env, const struct gw_member *caller,
		     const cJSON *body, struct gw_response *resp);

#endif
