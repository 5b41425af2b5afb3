/*
 * What every handler speaks: the request it is given, the response it fills
 * and the environment of the worker that runs it. A leaf: roles (node/, hub/)
 * and the route table include it; it includes nothing of theirs.
 */
#ifndef NOORDPOORT_RESPONSE_H
#define NOORDPOORT_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

enum gw_route {
	GW_ROUTE_HEALTHZ,
	GW_ROUTE_METRICS,
	GW_ROUTE_WHOAMI,
	GW_ROUTE_CATALOG,
	GW_ROUTE_LOOKUP,
	GW_ROUTE_AGGREGATE,
	GW_ROUTE_SUBQUERY,
	GW_ROUTE_OTHER, /* no route matched */
	GW_ROUTE__COUNT
};

const char *gw_route_name(enum gw_route r);

struct gw_peer;
struct gw_members;
struct gw_metrics;
struct gw_metrics_global;

/* What the engine needs from the server that runs it. */
struct policy_set;
struct policy_catalog;
struct audit_log;

struct gw_env {
	const struct gw_members *members; /* the set in force for this request */
	const struct policy_set *policies; /* NULL: no policies configured */
	const struct policy_catalog *catalog;
	struct gw_metrics *metrics;       /* this worker's */
	struct gw_metrics *const *all_metrics;
	size_t nworkers;
	const struct gw_metrics_global *global;
	void *worker;                       /* the serving role's per-worker state (the node's
					     * struct gw_node_worker); NULL without one */
	int hub;                            /* the hub role: aggregates are answered */
	struct audit_log *audit;            /* NULL: no audit log */
};

struct gw_request {
	const char *method; /* NUL-terminated, from the peer, bounded */
	const char *path;   /* without the query string */
	const unsigned char *body;
	size_t bodylen;
	const struct gw_peer *peer;
};

struct gw_member;

struct gw_response {
	int status;
	/* Set by a handler whose answer takes longer than an event-loop turn
	 * (a federated question): the server runs it on a job thread and
	 * answers the stream when it is done. The response then owns |job_body|
	 * and |job_caller| points into the state the job pins. */
	int deferred;
	struct cJSON *job_body;
	const struct gw_member *job_caller;
	enum gw_route route;
	const char *org;    /* member id for the log, or NULL */
	const char *allow;  /* Allow header for 405, or NULL */
	unsigned retry_after; /* Retry-After seconds for 429, or 0 */
	char *body;         /* malloc'd, owned by the response */
	size_t len;
	const char *content_type;
};

/* Fills |resp| with {"error":{"code","message"}}. Returns 0, or
 * NP_ERR_NOMEM when the body could not be allocated (|resp| then has no body
 * and the caller resets the stream). */
int gw_error(struct gw_response *resp, int status, const char *code, const char *message);

/* Gives |resp| the JSON |body| of |len| bytes (malloc'd; the response owns
 * it from here, NULL for out of memory) with |status|. Returns 0, or
 * NP_ERR_NOMEM when |body| is NULL. */
int gw_response_set(struct gw_response *resp, int status, char *body, size_t len);

/* Writes |s| as JSON string content (no quotes) into |out|; returns the
 * length, or (size_t)-1 when it does not fit. Control bytes are escaped;
 * UTF-8 passes. */
size_t gw_json_escape(const char *s, char *out, size_t outlen);

#endif
