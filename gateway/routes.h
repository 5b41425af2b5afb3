/*
 * The API's routes and what happens to one complete request: match the
 * route, authenticate the caller's organisation, parse the JSON body, run the
 * handler. Everything here answers with a struct gw_response; nothing writes
 * to the network.
 */
#ifndef NOORDPOORT_ROUTES_H
#define NOORDPOORT_ROUTES_H

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
struct gw_node_worker;
struct audit_log;

struct gw_env {
	const struct gw_members *members; /* the set in force for this request */
	const struct policy_set *policies; /* NULL: no policies configured */
	const struct policy_catalog *catalog;
	struct gw_metrics *metrics;       /* this worker's */
	struct gw_metrics *const *all_metrics;
	size_t nworkers;
	const struct gw_metrics_global *global;
	struct gw_node_worker *node_worker; /* this worker's datasets; NULL without the node role */
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

/*
 * Answers |req|. Always fills |resp| (an error answer is still an answer);
 * returns 0, or -1 when even the error body could not be allocated (the
 * caller then resets the stream).
 */
int gw_handle(const struct gw_env *env, const struct gw_request *req,
	      struct gw_response *resp);

/* Fills |resp| with {"error":{"code","message"}}; 0 or -1 (out of memory). */
int gw_error(struct gw_response *resp, int status, const char *code, const char *message);

/* Looks up a route by path; sets |*takes_body| when it is a POST route. */
enum gw_route gw_route_match(const char *path, int *takes_body);

#endif
