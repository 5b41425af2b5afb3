/*
 * HTTP/2 on one connection: the nghttp2 callbacks that turn frames into
 * requests, enforce the header, body and abuse limits as the bytes arrive
 * (nothing beyond a limit is buffered), and queue the engine's answers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "conn.h"
#include "routes.h"

uint64_t gw_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void gw_stream_free(struct gw_stream *s)
{
	if (!s)
		return;
	free(s->body);
	free(s->resp.body);
	cJSON_Delete(s->resp.job_body);
	free(s);
}

void gw_h2_abuse(struct gw_conn *c, uint32_t n)
{
	c->abuse += n;
	if (c->calmed || c->abuse <= c->w->srv->cfg->limits.abuse_budget)
		return;
	c->calmed = 1;
	c->goaway = 1;
	c->closing_ms = c->w->now_ms;
	nghttp2_session_terminate_session(c->h2, NGHTTP2_ENHANCE_YOUR_CALM);
}

static ssize_t read_body(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
			 uint32_t *flags, nghttp2_data_source *src, void *user)
{
	struct gw_stream *s = src->ptr;
	size_t left = s->resp.len - s->resp_off;

	(void)h2, (void)id, (void)user;
	if (len > left)
		len = left;
	memcpy(buf, s->resp.body + s->resp_off, len);
	s->resp_off += len;
	if (s->resp_off == s->resp.len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)len;
}

/* Queues |s->resp| and records it in the metrics and the log. */
void gw_h2_respond(struct gw_conn *c, struct gw_stream *s)
{
	char status[4], length[24], retry[16];
	nghttp2_nv nv[5];
	size_t n = 0;
	nghttp2_data_provider prd;
	uint64_t dur = gw_now_us() - s->start_us;

#define NV(k, v) \
	nv[n++] = (nghttp2_nv){ (uint8_t *)(uintptr_t)(k), (uint8_t *)(uintptr_t)(v), sizeof(k) - 1, strlen(v), \
				NGHTTP2_NV_FLAG_NO_COPY_NAME }
	snprintf(status, sizeof(status), "%03d", s->resp.status);
	snprintf(length, sizeof(length), "%zu", s->resp.len);
	NV(":status", status);
	NV("content-type", s->resp.content_type ? s->resp.content_type : "application/json");
	NV("content-length", length);
	if (s->resp.allow)
		NV("allow", s->resp.allow);
	if (s->resp.retry_after) {
		snprintf(retry, sizeof(retry), "%u", s->resp.retry_after);
		NV("retry-after", retry);
	}
#undef NV
	s->responded = 1;
	prd.source.ptr = s;
	prd.read_callback = read_body;
	/* A response to HEAD has no content (RFC 9110 9.3.2), whatever its
	 * status; content-length says what a GET would have carried. */
	if (strcmp(s->method, "HEAD") == 0)
		s->resp_off = s->resp.len;
	if (nghttp2_submit_response(c->h2, s->id, nv, n, s->resp_off < s->resp.len ? &prd : NULL) != 0)
		nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
	gw_metrics_request(&c->w->metrics, s->resp.route, s->resp.status, dur);
	gw_log_request(&c->w->log, s->resp.org, c->peer.oin, s->method,
		       gw_route_name(s->resp.route), s->resp.status, dur, s->resp.len);
}

/* Answers with an error before the engine saw the request (limits). */
static void refuse(struct gw_conn *c, struct gw_stream *s, int status,
		   const char *code, const char *msg)
{
	int takes_body;

	s->resp.route = gw_route_match(s->path, &takes_body);
	if (gw_error(&s->resp, status, code, msg) < 0) {
		s->responded = 1;
		nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
		return;
	}
	gw_h2_respond(c, s);
}

void gw_h2_refuse_cut(struct gw_conn *c, struct gw_stream *s)
{
	static const struct {
		const char *code, *msg;
	} why[] = {
		[GW_CUT_NONE] = { "revoked", "this connection was cut off" },
		[GW_CUT_REVOKED] = { "revoked", "the client certificate has been revoked" },
		[GW_CUT_EXPIRED] = { "certificate_expired", "the client certificate has expired" },
		[GW_CUT_CERTIFICATE] = { "revoked", "the client certificate no longer verifies" },
		[GW_CUT_MEMBER] = { "unknown_organisation",
				    "the certificate's OIN is no longer a member of this federation" },
		[GW_CUT_ROLES] = { "membership_changed",
				   "this organisation's membership changed; connect again" },
	};
	unsigned i = (unsigned)c->cut < sizeof(why) / sizeof(why[0]) ? (unsigned)c->cut : 0;

	/* A hub question in progress is answered here and now; its job's
	 * answer, when it comes, finds the stream no longer deferred and is
	 * dropped. */
	s->deferred = 0;
	s->responded = 0;
	refuse(c, s, 403, why[i].code, why[i].msg);
}

void gw_h2_timeout_stream(struct gw_conn *c, struct gw_stream *s)
{
	if (!s->responded)
		refuse(c, s, 408, "request_timeout", "the request was not complete in time");
}

static void dispatch(struct gw_conn *c, struct gw_stream *s)
{
	struct gw_worker *w = c->w;
	struct gw_env env = {
		.members = w->state->members,
		.policies = w->state->policies,
		.catalog = w->state->catalog,
		.metrics = &w->metrics,
		.all_metrics = w->srv->metrics,
		.nworkers = w->srv->nworkers,
		.global = &w->srv->global,
		.worker = w->node,
		.audit = w->srv->audit,
		.hub = w->srv->hub != NULL,
	};
	struct gw_request req = {
		.method = s->method,
		.path = s->path,
		.body = s->body,
		.bodylen = s->bodylen,
		.peer = &c->peer,
	};

	if (s->responded)
		return;
	/* Before anything else: a peer revoked or removed by a reload, or
	 * whose certificate expired since the handshake, gets no answer but
	 * 403 (gw_conn_check() answered this stream already then). */
	if (gw_conn_check(c) < 0) {
		if (!s->responded)
			gw_h2_refuse_cut(c, s);
		return;
	}
	if (s->path_too_long) {
		refuse(c, s, 414, "uri_too_long", "the path is longer than any route");
		return;
	}
	if (gw_handle(&env, &req, &s->resp) < 0) {
		s->responded = 1;
		nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
		return;
	}
	if (s->resp.deferred) {
		/* Answered later by gw_h2_respond() on this worker; the request
		 * timeout no longer applies (the hub has its own per node). */
		s->responded = 1;
		s->deferred = 1;
		if (gw_job_submit(c, s) < 0) {
			s->deferred = 0;
			s->resp.deferred = 0;
			gw_error(&s->resp, 503, "overloaded", "too many questions in progress; retry later");
			gw_h2_respond(c, s);
		}
		return;
	}
	gw_h2_respond(c, s);
}

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
	struct gw_conn *c = user;
	struct gw_stream *s;

	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets this stream only */
	s->id = f->hd.stream_id;
	s->start_us = gw_now_us();
	s->content_length = -1;
	s->route = GW_ROUTE_OTHER;
	if (nghttp2_session_set_stream_user_data(h2, s->id, s) != 0) {
		free(s);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	s->next = c->streams;
	if (c->streams)
		c->streams->prev = s;
	c->streams = s;
	c->nstreams++;
	gw_count(&c->w->metrics.streams_active, 1);
	return 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user)
{
	struct gw_conn *c = user;
	struct gw_stream *s;
	const struct gw_config *cfg = c->w->srv->cfg;

	(void)flags;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	s = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
	if (!s || s->headers_too_large)
		return 0;
	/* RFC 7541 sizing, so the limit matches SETTINGS_MAX_HEADER_LIST_SIZE. */
	s->header_bytes += (uint32_t)(namelen + valuelen + 32);
	s->header_fields++;
	if (s->header_bytes > cfg->limits.max_header_list_bytes ||
	    s->header_fields > cfg->limits.max_header_fields) {
		s->headers_too_large = 1;
		return 0;
	}
	if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
		size_t n = valuelen < sizeof(s->method) - 1 ? valuelen : sizeof(s->method) - 1;
		memcpy(s->method, value, n);
		s->method[n] = '\0';
	} else if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
		const uint8_t *q = memchr(value, '?', valuelen);
		size_t n = q ? (size_t)(q - value) : valuelen;

		if (n >= sizeof(s->path) || memchr(value, '\0', n)) {
			s->path_too_long = 1;
			n = 0;
		}
		memcpy(s->path, value, n);
		s->path[n] = '\0';
	} else if (namelen == 14 && memcmp(name, "content-length", 14) == 0) {
		int64_t v = 0;
		for (size_t i = 0; i < valuelen && v <= INT64_MAX / 10 - 10; i++)
			v = v * 10 + (value[i] - '0'); /* nghttp2 checked it is digits */
		s->content_length = v;
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
	struct gw_conn *c = user;
	const struct gw_config *cfg = c->w->srv->cfg;
	struct gw_stream *s;

	switch (f->hd.type) {
	case NGHTTP2_SETTINGS:
		/* The preface is complete with the client's first SETTINGS;
		 * until then the handshake timeout still runs (slowloris). */
		c->preface_done = 1;
		return 0;
	case NGHTTP2_RST_STREAM:
		/* Rapid Reset: a client cancelling streams faster than it
		 * completes them spends its budget. */
		gw_h2_abuse(c, 1);
		return 0;
	case NGHTTP2_HEADERS:
		if (f->headers.cat != NGHTTP2_HCAT_REQUEST)
			return 0;
		s = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
		if (!s)
			return 0;
		s->route = gw_route_match(s->path, &s->takes_body);
		if (s->headers_too_large) {
			refuse(c, s, 431, "headers_too_large",
			       "the request headers exceed the limit");
			return 0;
		}
		if (s->content_length > (int64_t)cfg->limits.max_body_bytes) {
			refuse(c, s, 413, "body_too_large", "the request body exceeds the limit");
			return 0;
		}
		break;
	case NGHTTP2_DATA:
		s = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
		if (!s)
			return 0;
		break;
	default:
		return 0;
	}
	if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
		dispatch(c, s);
	return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id,
			 const uint8_t *data, size_t len, void *user)
{
	struct gw_conn *c = user;
	struct gw_stream *s = nghttp2_session_get_stream_user_data(h2, id);
	size_t max = c->w->srv->cfg->limits.max_body_bytes;

	(void)flags;
	if (!s || s->responded)
		return 0;
	if (!s->takes_body) {
		/* A body on a GET route is read and dropped, never kept. */
		return 0;
	}
	if (len > max - s->bodylen) {
		s->body_too_large = 1;
		refuse(c, s, 413, "body_too_large", "the request body exceeds the limit");
		return 0;
	}
	if (s->bodylen + len > s->bodycap) {
		size_t ncap = s->bodycap ? s->bodycap * 2 : 4096;
		unsigned char *nb;

		while (ncap < s->bodylen + len)
			ncap *= 2;
		if (ncap > max)
			ncap = max;
		nb = realloc(s->body, ncap);
		if (!nb) {
			refuse(c, s, 503, "overloaded", "out of memory");
			return 0;
		}
		s->body = nb;
		s->bodycap = ncap;
	}
	memcpy(s->body + s->bodylen, data, len);
	s->bodylen += len;
	return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t id, uint32_t err, void *user)
{
	struct gw_conn *c = user;
	struct gw_stream *s = nghttp2_session_get_stream_user_data(h2, id);

	(void)err;
	if (!s)
		return 0;
	if (s->prev)
		s->prev->next = s->next;
	else
		c->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	c->nstreams--;
	gw_uncount(&c->w->metrics.streams_active, 1);
	nghttp2_session_set_stream_user_data(h2, id, NULL);
	gw_stream_free(s);
	return 0;
}

static int on_invalid_frame(nghttp2_session *h2, const nghttp2_frame *f, int err, void *user)
{
	(void)h2, (void)f, (void)err;
	gw_h2_abuse(user, 1);
	return 0;
}

static int on_frame_send(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
	struct gw_conn *c = user;

	(void)h2;
	/* Resets we send are the mirror image of a client's bad frames; a
	 * NO_ERROR reset only ends a body we no longer need. */
	if (f->hd.type == NGHTTP2_RST_STREAM && f->rst_stream.error_code != NGHTTP2_NO_ERROR)
		gw_h2_abuse(c, 1);

	/* Counted when sent, so GOAWAYs nghttp2 decides on itself (protocol
	 * errors) are counted too. */
	if (f->hd.type == NGHTTP2_GOAWAY) {
		enum gw_goaway_reason r = GW_GOAWAY_PROTOCOL;

		if (f->goaway.error_code == NGHTTP2_ENHANCE_YOUR_CALM)
			r = GW_GOAWAY_CALM;
		else if (f->goaway.error_code == NGHTTP2_NO_ERROR)
			r = c->goaway_reason;
		gw_count(&c->w->metrics.goaway[r], 1);
	}
	return 0;
}

void gw_h2_callbacks(nghttp2_session_callbacks *cbs)
{
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
}

void gw_h2_option(nghttp2_option *opt)
{
	/* nghttp2's own Rapid Reset limit (burst 1000, 33/s) stays on behind
	 * ours; CONTINUATION flood protection (nghttp2_option_set_max_continuations,
	 * default 8) is left at its default. */
	nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
	nghttp2_option_set_max_outbound_ack(opt, 1000);
	nghttp2_option_set_max_settings(opt, 32);
}

int gw_h2_start(struct gw_conn *c)
{
	const struct gw_config *cfg = c->w->srv->cfg;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->limits.max_concurrent_streams },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, cfg->limits.max_header_list_bytes },
		{ NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1 },
	};

	if (nghttp2_session_server_new2(&c->h2, c->w->cbs, c, c->w->opt) != 0)
		return -1;
	if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0)
		return -1;
	return 0;
}
