/*
 * The node role: the partner's own datasets behind adapters, its
 * pseudonymisation master key, and the purpose-bound lookup of one person
 * (POST /v1/lookup). A node is the only thing that touches personal data.
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
 * index on bsn gets a warning). Dataset and catalog changes need a restart;
 * policies reload on SIGHUP. Returns 0, or -1 with the reasons in |d|.
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
 * validate → decide → audit → fetch → generalise → pseudonymise → answer.
 * Always fills |resp|; returns 0, or -1 when even an error body could not
 * be allocated.
 */
int gw_node_lookup(const struct gw_env *env, const struct gw_member *caller,
		   const cJSON *body, struct gw_response *resp);

#endif
