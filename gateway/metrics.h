/*
 * Prometheus metrics. Each worker owns one struct gw_metrics and is its only
 * writer, so counting is a relaxed load and store with no lock and no shared
 * cache line; /metrics sums the workers' copies when asked.
 */
#ifndef NOORDPOORT_METRICS_H
#define NOORDPOORT_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "routes.h"
#include "tls.h"

enum gw_status_idx {
	GW_ST_200, GW_ST_400, GW_ST_403, GW_ST_404, GW_ST_405, GW_ST_408,
	GW_ST_413, GW_ST_414, GW_ST_429, GW_ST_431, GW_ST_500, GW_ST_501,
	GW_ST_502, GW_ST_503, GW_ST_504, GW_ST_OTHER, GW_ST__COUNT
};

enum gw_authn_refusal { GW_AUTHN_NO_OIN, GW_AUTHN_UNKNOWN_ORG, GW_AUTHN__COUNT };

enum gw_goaway_reason {
	GW_GOAWAY_CALM,     /* ENHANCE_YOUR_CALM: abuse budget spent */
	GW_GOAWAY_SHUTDOWN, /* draining on SIGTERM */
	GW_GOAWAY_PROTOCOL, /* peer broke the protocol */
	GW_GOAWAY_TIMEOUT,  /* idle */
	GW_GOAWAY_REVOKED,  /* the peer no longer passes after a reload, or its certificate expired */
	GW_GOAWAY__COUNT
};

#define GW_LAT_BUCKETS 12

typedef _Atomic uint64_t gw_counter;

struct gw_metrics {
	gw_counter requests[GW_ROUTE__COUNT][GW_ST__COUNT];
	gw_counter latency[GW_LAT_BUCKETS + 1]; /* last one is +Inf */
	gw_counter latency_sum_us;
	gw_counter hs_fail[GW_HS__COUNT];
	gw_counter authn_refused[GW_AUTHN__COUNT];
	gw_counter goaway[GW_GOAWAY__COUNT];
	gw_counter connections_total;
	gw_counter connections_refused; /* over max_connections or out of fds */
	gw_counter connections_active;  /* gauge, but only this worker writes it */
	gw_counter streams_active;
};

/* Process-wide figures written by the main thread. */
struct gw_metrics_global {
	gw_counter reload_ok;
	gw_counter reload_failed;
	gw_counter policy_reload_failed; /* reloads that failed on a policy file */
};

static inline void gw_count(gw_counter *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static inline void gw_uncount(gw_counter *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - n,
			      memory_order_relaxed);
}

void gw_metrics_request(struct gw_metrics *m, enum gw_route r, int status,
			uint64_t duration_us);

/*
 * Renders the Prometheus text of |n| workers plus |g| into a malloc'd buffer.
 * Returns 0 with |*out|/|*outlen| set (caller frees), or -1 on out of memory.
 */
int gw_metrics_render(struct gw_metrics *const *workers, size_t n,
		      const struct gw_metrics_global *g, const char *policy_hash,
		      char **out, size_t *outlen);

#endif
