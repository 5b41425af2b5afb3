/*
 * The request engine. It reads like the spec: match → authenticate →
 * parse → handle. Handlers for the data routes arrive with the node and hub
 * roles; until then they parse and refuse honestly with 501.
 */
#include "routes.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../policies/policy.h"
#include "../hub/hub.h"
#include "jsonbody.h"
#include "members.h"
#include "../node/node.h"
#include "metrics.h"
#include "tls.h"

struct route {
	const char *path;
	const char *method;
	int needs_member; /* caller must be a federation member */
	unsigned role;    /* enum gw_role: the caller must have it (0: any member) */
	int (*handle)(const struct gw_env *, const struct gw_request *,
		      const struct gw_member *, const cJSON *, struct gw_response *);
	/* Answers a member without |role|, before its body is read. */
	int (*refuse)(const struct gw_env *, const struct gw_member *, struct gw_response *);
};

static int h_healthz(const struct gw_env *, const struct gw_request *,
		     const struct gw_member *, const cJSON *, struct gw_response *);
static int h_metrics(const struct gw_env *, const struct gw_request *,
		     const struct gw_member *, const cJSON *, struct gw_response *);
static int h_whoami(const struct gw_env *, const struct gw_request *,
		    const struct gw_member *, const cJSON *, struct gw_response *);
static int h_not_yet(const struct gw_env *, const struct gw_request *,
		     const struct gw_member *, const cJSON *, struct gw_response *);
static int h_lookup(const struct gw_env *, const struct gw_request *,
		    const struct gw_member *, const cJSON *, struct gw_response *);
static int h_catalog(const struct gw_env *, const struct gw_request *,
		     const struct gw_member *, const cJSON *, struct gw_response *);
static int h_aggregate(const struct gw_env *, const struct gw_request *,
		       const struct gw_member *, const cJSON *, struct gw_response *);
static int h_subquery(const struct gw_env *, const struct gw_request *,
		      const struct gw_member *, const cJSON *, struct gw_response *);

static int refuse_metrics(const struct gw_env *, const struct gw_member *, struct gw_response *);
static int refuse_aggregate(const struct gw_env *, const struct gw_member *, struct gw_response *);
static int refuse_subquery(const struct gw_env *, const struct gw_member *, struct gw_response *);

/* Indexed by enum gw_route. /healthz answers any verified certificate, so a
 * monitoring system needs no membership; everything else needs a member.
 * The role each route needs is checked before a body is parsed (a caller
 * who may not ask costs no parsing), on a gateway that serves the route
 * (route_served()); the handlers check it again. /metrics shows every
 * partner's request counts by route and status, so only an operator reads
 * it (docs/config.md, "Members"). */
static const struct route routes[GW_ROUTE__COUNT] = {
	[GW_ROUTE_HEALTHZ] = { "/healthz", "GET", 0, 0, h_healthz, NULL },
	[GW_ROUTE_METRICS] = { "/metrics", "GET", 1, GW_ROLE_OPERATOR, h_metrics,
			       refuse_metrics },
	[GW_ROUTE_WHOAMI] = { "/v1/whoami", "GET", 1, 0, h_whoami, NULL },
	[GW_ROUTE_CATALOG] = { "/v1/catalog", "GET", 1, 0, h_catalog, NULL },
	[GW_ROUTE_LOOKUP] = { "/v1/lookup", "POST", 1, 0, h_lookup, NULL },
	[GW_ROUTE_AGGREGATE] = { "/v1/aggregate", "POST", 1, GW_ROLE_COORDINATOR, h_aggregate,
				 refuse_aggregate },
	[GW_ROUTE_SUBQUERY] = { "/v1/federation/subquery", "POST", 1, GW_ROLE_HUB, h_subquery,
				refuse_subquery },
	[GW_ROUTE_OTHER] = { "other", NULL, 0, 0, NULL, NULL },
};

const char *gw_route_name(enum gw_route r)
{
	return r < GW_ROUTE__COUNT ? routes[r].path : "other";
}

enum gw_route gw_route_match(const char *path, int *takes_body)
{
	for (int i = 0; i < GW_ROUTE_OTHER; i++) {
		if (strcmp(routes[i].path, path) == 0) {
			*takes_body = strcmp(routes[i].method, "POST") == 0;
			return (enum gw_route)i;
		}
	}
	*takes_body = 0;
	return GW_ROUTE_OTHER;
}

static int h_healthz(const struct gw_env *env, const struct gw_request *req,
		     const struct gw_member *m, const cJSON *json, struct gw_response *resp)
{
	static const char ok[] = "{\"status\":\"ok\"}";
	char *b = malloc(sizeof(ok));

	(void)env, (void)req, (void)m, (void)json;
	if (b)
		memcpy(b, ok, sizeof(ok));
	return gw_response_set(resp, 200, b, sizeof(ok) - 1);
}

static int h_metrics(const struct gw_env *env, const struct gw_request *req,
		     const struct gw_member *m, const cJSON *json, struct gw_response *resp)
{
	char *text;
	size_t len;

	(void)req, (void)m, (void)json;
	if (gw_metrics_render(env->all_metrics, env->nworkers, env->global,
			      env->policies ? policy_set_hash(env->policies) : NULL, &text, &len) < 0)
		return gw_error(resp, 500, "internal", "out of memory");
	gw_response_set(resp, 200, text, len);
	resp->content_type = "text/plain; version=0.0.4";
	return 0;
}

static int h_whoami(const struct gw_env *env, const struct gw_request *req,
		    const struct gw_member *m, const cJSON *json, struct gw_response *resp)
{
	char id[160], name[512], roles[64], policy[96] = "";
	char *b;
	int n;

	(void)json;
	if (gw_json_escape(m->id, id, sizeof(id)) == (size_t)-1 ||
	    gw_json_escape(m->name, name, sizeof(name)) == (size_t)-1)
		return gw_error(resp, 500, "internal", "member name too long");
	gw_roles_json(m->roles, roles, sizeof(roles));
	if (env->policies)
		snprintf(policy, sizeof(policy), ",\"policy_set\":{\"sha256\":\"%s\"}",
			 policy_set_hash(env->policies));
	b = malloc(1024);
	if (!b)
		return gw_error(resp, 500, "internal", "out of memory");
	n = snprintf(b, 1024,
		     "{\"organisation\":{\"id\":\"%s\",\"name\":\"%s\",\"oin\":\"%s\",\"roles\":%s},"
		     "\"certificate\":{\"fingerprint_sha256\":\"%s\",\"not_after\":\"%s\"}%s}",
		     id, name, m->oin, roles, req->peer->fingerprint, req->peer->not_after, policy);
	if (n < 0 || n >= 1024) {
		free(b);
		return gw_error(resp, 500, "internal", "answer too long");
	}
	return gw_response_set(resp, 200, b, (size_t)n);
}

static int h_not_yet(const struct gw_env *env, const struct gw_request *req,
		     const struct gw_member *m, const cJSON *json, struct gw_response *resp)
{
	(void)env, (void)req, (void)m, (void)json;
	return gw_error(resp, 501, "not_implemented",
			"this gateway has no data role configured for this route yet");
}

/* What one grant offers the caller on one dataset, as JSON. */
struct offers {
	const char *dataset;
	cJSON *list;
	int oom;
};

static void add_offer(void *arg, const struct policy_grant_view *v)
{
	struct offers *o = arg;
	static const enum policy_op ops[] = {
		POLICY_OP_LOOKUP, POLICY_OP_AGGREGATE, POLICY_OP_LINKED_AGGREGATE,
	};
	cJSON *g, *x;

	if (strcmp(v->dataset, o->dataset) != 0)
		return;
	if (!(g = cJSON_CreateObject()) || !cJSON_AddItemToArray(o->list, g)) {
		cJSON_Delete(g);
		o->oom = 1;
		return;
	}
	cJSON_AddStringToObject(g, "purpose", v->purpose);
	cJSON_AddStringToObject(g, "description", v->purpose_description);
	cJSON_AddStringToObject(g, "legal_basis", v->legal_basis);
	cJSON_AddStringToObject(g, "rule", v->rule);
	x = cJSON_AddArrayToObject(g, "operations");
	for (size_t i = 0; x && i < sizeof(ops) / sizeof(ops[0]); i++)
		if (v->operations & ops[i])
			cJSON_AddItemToArray(x, cJSON_CreateString(policy_op_name(ops[i])));
	x = cJSON_AddObjectToObject(g, "fields");
	for (size_t i = 0; x && i < v->nfields; i++)
		cJSON_AddStringToObject(x, v->field_names[i], policy_gen_name(v->field_gens[i]));
	x = cJSON_AddObjectToObject(g, "output");
	if (x) {
		cJSON_AddNumberToObject(x, "min_cell", v->out.min_cell);
		if (v->out.noise)
			cJSON_AddNumberToObject(x, "epsilon", v->out.epsilon);
		cJSON_AddNumberToObject(x, "round_to", v->out.round_to);
		cJSON_AddStringToObject(x, "identifiers", policy_ident_name(v->out.identifiers));
	}
}

/*
 * GET /v1/catalog: the datasets here (a node's own; otherwise the whole
 * catalog), their fields with type and role, and what the caller's grants
 * offer on each. Forbids still apply at request time: this is a map, the
 * decision is policy_decide()'s.
 */
static int h_catalog(const struct gw_env *env, const struct gw_request *req,
		     const struct gw_member *m, const cJSON *json, struct gw_response *resp)
{
	const char *const *ids = NULL;
	size_t n = 0;
	cJSON *o, *arr;
	char *text;
	int oom = 0;

	(void)req, (void)json;
	if (!env->catalog)
		return gw_error(resp, 404, "not_found", "this gateway has no dataset catalog");
	if (env->worker)
		n = gw_node_datasets(env->worker, &ids);
	else
		n = policy_catalog_count(env->catalog);
	o = cJSON_CreateObject();
	arr = cJSON_AddArrayToObject(o, "datasets");
	for (size_t i = 0; arr && i < n; i++) {
		const char *id = ids ? ids[i] : policy_catalog_dataset(env->catalog, i);
		const struct policy_catalog_field *f;
		int nf = policy_catalog_fields(env->catalog, id, &f);
		cJSON *d = cJSON_CreateObject(), *fields;
		struct offers offers = { id, NULL, 0 };

		if (!d || !cJSON_AddItemToArray(arr, d)) {
			cJSON_Delete(d);
			oom = 1;
			break;
		}
		cJSON_AddStringToObject(d, "id", id);
		cJSON_AddStringToObject(d, "description", policy_catalog_description(env->catalog, id));
		fields = cJSON_AddArrayToObject(d, "fields");
		for (int j = 0; fields && j < nf; j++) {
			cJSON *x = cJSON_CreateObject();
			if (!x || !cJSON_AddItemToArray(fields, x)) {
				cJSON_Delete(x);
				oom = 1;
				break;
			}
			cJSON_AddStringToObject(x, "name", f[j].name);
			cJSON_AddStringToObject(x, "type", policy_field_type_name(f[j].type));
			cJSON_AddStringToObject(x, "role", policy_field_role_name(f[j].role));
			if (f[j].ncategories)
				cJSON_AddItemToObject(x, "categories",
						      cJSON_CreateStringArray(f[j].categories, (int)f[j].ncategories));
		}
		offers.list = cJSON_AddArrayToObject(d, "your_grants");
		if (env->policies && offers.list)
			policy_grants_for(env->policies, m->id, (int64_t)time(NULL), add_offer, &offers);
		oom |= offers.oom;
	}
	if (env->policies)
		cJSON_AddStringToObject(o, "policy_set", policy_set_hash(env->policies));
	text = oom || !arr ? NULL : cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!text)
		return gw_error(resp, 500, "internal", "out of memory");
	return gw_response_set(resp, 200, text, strlen(text));
}

/* POST /v1/aggregate: the hub asks the nodes, which takes a while; the
 * server answers the stream from a job thread (hub/hub.c does the work). */
static int h_aggregate(const struct gw_env *env, const struct gw_request *req,
		       const struct gw_member *m, const cJSON *json, struct gw_response *resp)
{
	if (!env->hub)
		return h_not_yet(env, req, m, json, resp);
	resp->job_body = cJSON_Duplicate(json, 1);
	if (!resp->job_body)
		return gw_error(resp, 503, "overloaded", "out of memory");
	resp->job_caller = m;
	resp->deferred = 1;
	resp->route = GW_ROUTE_AGGREGATE;
	return 0;
}

/* POST /v1/federation/subquery: a hub asks this node its part of a question. */
static int h_subquery(const struct gw_env *env, const struct gw_request *req,
		      const struct gw_member *m, const cJSON *json, struct gw_response *resp)
{
	if (!env->worker)
		return h_not_yet(env, req, m, json, resp);
	return gw_node_subquery(env, m, json, resp);
}

static int h_lookup(const struct gw_env *env, const struct gw_request *req,
		    const struct gw_member *m, const cJSON *json, struct gw_response *resp)
{
	(void)req;
	if (!env->worker)
		return h_not_yet(env, req, m, json, resp);
	return gw_node_lookup(env, m, json, resp);
}

/* A member without the coordinator role asked the hub: refused and audited
 * by the hub's own refusal (gw_hub_aggregate() refuses such a caller before
 * it reads the question, which it is not given), here on the worker rather
 * than on a job thread, so such requests never queue before a coordinator's. */
static int refuse_aggregate(const struct gw_env *env, const struct gw_member *m,
			    struct gw_response *resp)
{
	struct gw_hub hub = { .policies = env->policies, .audit = env->audit };

	return gw_hub_aggregate(&hub, m, NULL, resp);
}

/* A member without the hub role asked a node: the node refuses and audits
 * it (gw_node_subquery() checks the role before it reads the body). */
static int refuse_subquery(const struct gw_env *env, const struct gw_member *m,
			   struct gw_response *resp)
{
	return gw_node_subquery(env, m, NULL, resp);
}

/* Whether this gateway answers |r| (elsewhere its handler says 501). */
static int route_served(const struct gw_env *env, enum gw_route r)
{
	switch (r) {
	case GW_ROUTE_AGGREGATE:
		return env->hub;
	case GW_ROUTE_SUBQUERY:
	case GW_ROUTE_LOOKUP:
		return env->worker != NULL;
	default:
		return 1;
	}
}

/* /metrics shows every partner's requests by route and status: an
 * operator's view, not a partner's. */
static int refuse_metrics(const struct gw_env *env, const struct gw_member *m,
			  struct gw_response *resp)
{
	(void)env, (void)m;
	return gw_error(resp, 403, "not_an_operator",
			"only members with the operator role may read /metrics");
}

int gw_handle(const struct gw_env *env, const struct gw_request *req,
	      struct gw_response *resp)
{
	const struct gw_member *m = NULL;
	const struct route *rt;
	cJSON *json = NULL;
	int takes_body, rc;

	/* Authenticate before saying anything about routes: a non-member
	 * learns only that it is not one (/healthz excepted, for monitoring). */
	if (req->peer->oin[0])
		m = gw_members_by_oin(env->members, req->peer->oin, GW_OIN_LEN);
	if (m)
		resp->org = m->id;
	resp->route = gw_route_match(req->path, &takes_body);
	rt = &routes[resp->route];
	if (!m && (resp->route == GW_ROUTE_OTHER || rt->needs_member)) {
		if (!req->peer->oin[0]) {
			gw_count(&env->metrics->authn_refused[GW_AUTHN_NO_OIN], 1);
			return gw_error(resp, 403, "no_oin",
					"the client certificate has no OIN (subject serialNumber of 20 digits)");
		}
		gw_count(&env->metrics->authn_refused[GW_AUTHN_UNKNOWN_ORG], 1);
		return gw_error(resp, 403, "unknown_organisation",
				"the certificate's OIN is not a member of this federation");
	}
	if (resp->route == GW_ROUTE_OTHER)
		return gw_error(resp, 404, "not_found", "no such route");
	/* HEAD is GET without the content (RFC 9110 9.3.2): the same status
	 * and headers; the server sends no body for it (gateway/h2.c). */
	if (strcmp(req->method, rt->method) != 0 &&
	    !(strcmp(req->method, "HEAD") == 0 && !takes_body)) {
		resp->allow = takes_body ? "POST" : "GET, HEAD";
		return gw_error(resp, 405, "method_not_allowed",
				takes_body ? "this route takes POST" : "this route takes GET or HEAD");
	}
	/* The caller's role before its body: who may not ask costs no parsing. */
	if (m && rt->role && !(m->roles & rt->role) && route_served(env, resp->route))
		return rt->refuse(env, m, resp);
	if (takes_body) {
		enum gw_json_refusal kind;
		const char *why;

		json = gw_json_body_parse(req->body, req->bodylen, &kind, &why);
		if (!json) {
			if (kind == GW_JSON_NOMEM)
				return gw_error(resp, 503, "overloaded", "out of memory");
			return gw_error(resp, 400, kind == GW_JSON_LIMIT ? "json_limit" : "invalid_json",
					why);
		}
	}
	rc = rt->handle(env, req, m, json, resp);
	cJSON_Delete(json);
	return rc;
}
