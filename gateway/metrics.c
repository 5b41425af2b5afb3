/*
 * Counting and the Prometheus text exposition format (version 0.0.4).
 */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int status_codes[GW_ST__COUNT] = {
	200, 400, 403, 404, 405, 408, 413, 414, 429, 431, 500, 501, 502, 503, 504, 0,
};

/* Seconds; our own routes answer in microseconds, federated ones in tenths. */
static const uint64_t bucket_us[GW_LAT_BUCKETS] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 250000, 1000000, 5000000,
};

static const char *const goaway_names[GW_GOAWAY__COUNT] = {
	"enhance_your_calm", "shutdown", "protocol_error", "timeout", "revoked",
};

static const char *const authn_names[GW_AUTHN__COUNT] = { "no_oin", "unknown_organisation" };

static enum gw_status_idx status_idx(int status)
{
	for (int i = 0; i < GW_ST_OTHER; i++)
		if (status_codes[i] == status)
			return (enum gw_status_idx)i;
	return GW_ST_OTHER;
}

void gw_metrics_request(struct gw_metrics *m, enum gw_route r, int status,
			uint64_t duration_us)
{
	int b = 0;

	gw_count(&m->requests[r][status_idx(status)], 1);
	while (b < GW_LAT_BUCKETS && duration_us > bucket_us[b])
		b++;
	gw_count(&m->latency[b], 1);
	gw_count(&m->latency_sum_us, duration_us);
}

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void put(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = 1;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t ncap = b->cap * 2 + (size_t)n;
		char *np = realloc(b->p, ncap);
		if (!np) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

static uint64_t sum(struct gw_metrics *const *w, size_t n, size_t offset)
{
	uint64_t s = 0;

	for (size_t i = 0; i < n; i++)
		s += atomic_load_explicit((gw_counter *)((char *)w[i] + offset), memory_order_relaxed);
	return s;
}

#define SUM(field) sum(workers, n, offsetof(struct gw_metrics, field))

int gw_metrics_render(struct gw_metrics *const *workers, size_t n,
		      const struct gw_metrics_global *g, const char *policy_hash,
		      char **out, size_t *outlen)
{
	struct sbuf b = { malloc(8192), 0, 8192, 0 };
	uint64_t cum = 0;

	if (!b.p)
		return -1;
	put(&b, "# HELP noordpoort_requests_total Requests answered, by route and status.\n"
		"# TYPE noordpoort_requests_total counter\n");
	for (int r = 0; r < GW_ROUTE__COUNT; r++) {
		for (int s = 0; s < GW_ST__COUNT; s++) {
			uint64_t v = SUM(requests[r][s]);
			if (!v)
				continue;
			if (status_codes[s])
				put(&b, "noordpoort_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
				    gw_route_name((enum gw_route)r), status_codes[s], (unsigned long long)v);
			else
				put(&b, "noordpoort_requests_total{route=\"%s\",status=\"other\"} %llu\n",
				    gw_route_name((enum gw_route)r), (unsigned long long)v);
		}
	}
	put(&b, "# HELP noordpoort_request_duration_seconds Time from request complete to response queued.\n"
		"# TYPE noordpoort_request_duration_seconds histogram\n");
	for (int i = 0; i <= GW_LAT_BUCKETS; i++) {
		cum += SUM(latency[i]);
		if (i < GW_LAT_BUCKETS)
			put(&b, "noordpoort_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
			    (double)bucket_us[i] / 1e6, (unsigned long long)cum);
		else
			put(&b, "noordpoort_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
			    (unsigned long long)cum);
	}
	put(&b, "noordpoort_request_duration_seconds_sum %.6f\n"
		"noordpoort_request_duration_seconds_count %llu\n",
	    (double)SUM(latency_sum_us) / 1e6, (unsigned long long)cum);

	put(&b, "# HELP noordpoort_tls_handshake_failures_total TLS handshakes refused, by reason.\n"
		"# TYPE noordpoort_tls_handshake_failures_total counter\n");
	for (int r = 0; r < GW_HS__COUNT; r++)
		put(&b, "noordpoort_tls_handshake_failures_total{reason=\"%s\"} %llu\n",
		    gw_hs_fail_name((enum gw_hs_fail)r), (unsigned long long)SUM(hs_fail[r]));
	put(&b, "# HELP noordpoort_authn_refusals_total Verified certificates refused as callers, by reason.\n"
		"# TYPE noordpoort_authn_refusals_total counter\n");
	for (int r = 0; r < GW_AUTHN__COUNT; r++)
		put(&b, "noordpoort_authn_refusals_total{reason=\"%s\"} %llu\n", authn_names[r],
		    (unsigned long long)SUM(authn_refused[r]));
	put(&b, "# HELP noordpoort_goaway_sent_total GOAWAY frames sent, by reason.\n"
		"# TYPE noordpoort_goaway_sent_total counter\n");
	for (int r = 0; r < GW_GOAWAY__COUNT; r++)
		put(&b, "noordpoort_goaway_sent_total{reason=\"%s\"} %llu\n", goaway_names[r],
		    (unsigned long long)SUM(goaway[r]));
	put(&b, "# HELP noordpoort_connections_total Connections accepted.\n"
		"# TYPE noordpoort_connections_total counter\n"
		"noordpoort_connections_total %llu\n"
		"# HELP noordpoort_connections_refused_total Connections closed at accept (limit or no file descriptors).\n"
		"# TYPE noordpoort_connections_refused_total counter\n"
		"noordpoort_connections_refused_total %llu\n"
		"# HELP noordpoort_connections_active Open connections.\n"
		"# TYPE noordpoort_connections_active gauge\n"
		"noordpoort_connections_active %llu\n"
		"# HELP noordpoort_streams_active Open HTTP/2 streams.\n"
		"# TYPE noordpoort_streams_active gauge\n"
		"noordpoort_streams_active %llu\n",
	    (unsigned long long)SUM(connections_total), (unsigned long long)SUM(connections_refused),
	    (unsigned long long)SUM(connections_active), (unsigned long long)SUM(streams_active));
	put(&b, "# HELP noordpoort_reloads_total Reloads on SIGHUP, by result.\n"
		"# TYPE noordpoort_reloads_total counter\n"
		"noordpoort_reloads_total{result=\"ok\"} %llu\n"
		"noordpoort_reloads_total{result=\"failed\"} %llu\n",
	    (unsigned long long)atomic_load(&g->reload_ok),
	    (unsigned long long)atomic_load(&g->reload_failed));
	put(&b, "# HELP noordpoort_policy_reload_failures_total Reloads refused because a policy file was broken, unsigned or badly signed.\n"
		"# TYPE noordpoort_policy_reload_failures_total counter\n"
		"noordpoort_policy_reload_failures_total %llu\n",
	    (unsigned long long)atomic_load(&g->policy_reload_failed));
	if (policy_hash)
		put(&b, "# HELP noordpoort_policy_set_info The policy set in force (SHA-256 of its files).\n"
			"# TYPE noordpoort_policy_set_info gauge\n"
			"noordpoort_policy_set_info{sha256=\"%s\"} 1\n", policy_hash);
	if (b.oom) {
		free(b.p);
		return -1;
	}
	*out = b.p;
	*outlen = b.len;
	return 0;
}
