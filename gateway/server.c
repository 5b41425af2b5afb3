/*
 * Listening sockets, worker threads and the per-connection TLS I/O.
 *
 * Each worker has its own epoll loop and its own SO_REUSEPORT listening
 * socket, so the kernel spreads connections and no lock is taken on the
 * request path. The main thread only waits for signals: SIGHUP builds a new
 * state (TLS context, members) and publishes it with one atomic store;
 * SIGTERM starts the drain. docs/architecture.md says why this shape.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sodium.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../aggregate/ledger.h"
#include "../crypto/boxkey.h"
#include "../crypto/pseudo.h"
#include "conn.h"
#include "../hub/fanout.h"
#include "../hub/hub.h"
#include "../cli/ledger_cli.h"
#include "log.h"
#include "polstate.h"
#include "privdrop.h"

#define SWEEP_MS 250
/* How long a closing connection may take to drain its last bytes. */
#define LINGER_MS 5000

static uint64_t now_ms(void)
{
	return gw_now_us() / 1000u;
}

/* ---- state: what SIGHUP reloads ---- */

static void state_free(struct gw_state *s)
{
	if (!s)
		return;
	SSL_CTX_free(s->ctx);
	gw_members_free(s->members);
	policy_set_free(s->policies);
	policy_catalog_free(s->catalog);
	free(s);
}

/* Loads the catalog and the policy set, validated against the members;
 * refuses expired and rolled-back files, recording the accepted serials
 * when |record| (not for check-config). */
static int policies_load(const struct gw_config *cfg, struct gw_state *s, int record,
			 struct diag *d)
{
	const char *ids[1024];
	size_t n = gw_members_count(s->members);
	unsigned char pub[32];
	char err[512];
	struct policy_refs refs = { 0 };

	if (cfg->catalog_file && policy_catalog_load(cfg->catalog_file, &s->catalog, d) < 0)
		return -1;
	if (!cfg->policies.nfiles)
		return 0;
	if (n > sizeof(ids) / sizeof(ids[0]))
		n = sizeof(ids) / sizeof(ids[0]);
	for (size_t i = 0; i < n; i++)
		ids[i] = gw_members_at(s->members, i)->id;
	refs.members = ids;
	refs.nmembers = n;
	refs.catalog = s->catalog;
	if (cfg->policies.require_signed) {
		/* Every file needs FILE.sig by this key, checked over the very
		 * bytes that are then parsed. */
		if (policy_read_pub(cfg->policies.signing_key, pub, err, sizeof(err)) < 0) {
			diag_error(d, cfg->policies.signing_key, 0, 0, "%s", err);
			return -1;
		}
		refs.signing_key = pub;
		refs.require_serial = 1;
	}
	if (policy_set_load((const char *const *)cfg->policies.files,
			    (size_t)cfg->policies.nfiles, &refs, &s->policies, d) < 0)
		return -1;
	return gw_polstate_check(cfg, s->policies, (int64_t)time(NULL), record, d);
}

/*
 * Builds a whole new state: TLS context, members, catalog, policies. Returns
 * NULL with every problem in |d|; |*policy_failed| says whether it was the
 * catalog or the policies (they have their own metric).
 */
static struct gw_state *state_load_ex(const struct gw_config *cfg, uint64_t gen,
				      struct diag *d, int *policy_failed, int record)
{
	struct gw_state *s = calloc(1, sizeof(*s));
	char err[512];

	*policy_failed = 0;
	if (!s) {
		diag_error(d, cfg->path, 0, 0, "out of memory");
		return NULL;
	}
	s->gen = gen;
	s->ctx = gw_tls_ctx_new(cfg, err, sizeof(err));
	if (!s->ctx) {
		diag_error(d, cfg->path, 0, 0, "tls: %s", err);
		goto fail;
	}
	if (gw_members_load(cfg->members_file, &s->members, d) < 0)
		goto fail;
	if (policies_load(cfg, s, record, d) < 0) {
		*policy_failed = 1;
		goto fail;
	}
	return s;
fail:
	state_free(s);
	return NULL;
}

/* For serving (start and SIGHUP): accepted policy serials are recorded. */
static struct gw_state *state_load(const struct gw_config *cfg, uint64_t gen,
				   struct diag *d, int *policy_failed)
{
	return state_load_ex(cfg, gen, d, policy_failed, 1);
}

/* One line for the log: the first problem, and how many more. */
static void diag_summary(const struct diag *d, char *out, size_t outlen)
{
	char first[400];

	diag_first(d, first, sizeof(first));
	if (d->errors > 1)
		snprintf(out, outlen, "%s (and %d more; run noordpoort check-config)", first,
			 d->errors - 1);
	else
		snprintf(out, outlen, "%s", first);
}

int gw_server_check(const struct gw_config *cfg, struct diag *d)
{
	int policy_failed;
	struct gw_state *s = state_load_ex(cfg, 1, d, &policy_failed, 0);
	struct gw_node *n = NULL;
	int rc = s ? 0 : -1;

	if (rc == 0 && (cfg->roles & GW_CFG_NODE) && gw_node_open(cfg, &n, d) < 0)
		rc = -1;
	gw_node_free(n);
	state_free(s);
	return rc;
}

/* Each diagnostic line as a log event |event| of its own severity. */
static void log_diag_as(const struct diag *d, const char *event)
{
	const char *t = diag_text(d);

	while (*t) {
		size_t n = strcspn(t, "\n");
		char line[1024];

		snprintf(line, sizeof(line), "%.*s", (int)(n < sizeof(line) ? n : sizeof(line) - 1), t);
		gw_log_message(strstr(line, ": error: ") ? "error" : "warn", event, line);
		t += n + (t[n] == '\n');
	}
}

static void log_diag(const struct diag *d)
{
	log_diag_as(d, "dataset");
}

/* ---- connections ---- */

static void conn_set_events(struct gw_conn *c, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = &c->ev };

	if (c->epoll_events == ev)
		return;
	if (epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->ev.fd, &e) == 0)
		c->epoll_events = ev;
}

static void conn_close(struct gw_conn *c)
{
	struct gw_worker *w = c->w;

	if (c->ssl) {
		if (c->state == GW_CONN_H2)
			SSL_shutdown(c->ssl); /* best effort close_notify, never waits */
		SSL_free(c->ssl);
		/* OpenSSL's error queue is per thread: an error left here would
		 * make SSL_get_error() fail the next connection's harmless
		 * WANT_READ. */
		ERR_clear_error();
	}
	/* nghttp2_session_del() calls no callbacks: free our streams here. */
	nghttp2_session_del(c->h2);
	while (c->streams) {
		struct gw_stream *s = c->streams;
		c->streams = s->next;
		gw_uncount(&w->metrics.streams_active, 1);
		gw_stream_free(s);
	}
	close(c->ev.fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->nconns--;
	gw_uncount(&w->metrics.connections_active, 1);
	free(c->out);
	free(c);
}

/* Writes what is buffered, then what nghttp2 has queued. 0, or -1 to close. */
static int conn_flush(struct gw_conn *c)
{
	for (;;) {
		if (c->out_off < c->out_len) {
			int n;

			ERR_clear_error();
			n = SSL_write(c->ssl, c->out + c->out_off, (int)(c->out_len - c->out_off));

			if (n <= 0) {
				int e = SSL_get_error(c->ssl, n);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
					conn_set_events(c, EPOLLIN | EPOLLOUT);
					return 0;
				}
				ERR_clear_error();
				return -1;
			}
			c->out_off += (size_t)n;
			if (c->out_off < c->out_len)
				continue;
			c->out_off = c->out_len = 0;
		}
		/* Gather frames into one buffer so small responses go out in one
		 * TLS record and one system call. */
		while (c->h2 && c->out_len < 32768) {
			const uint8_t *data;
			ssize_t k = nghttp2_session_mem_send(c->h2, &data);

			if (k < 0)
				return -1;
			if (k == 0)
				break;
			if (c->out_len + (size_t)k > c->out_cap) {
				size_t ncap = c->out_cap ? c->out_cap : 16384;
				unsigned char *nb;

				while (ncap < c->out_len + (size_t)k)
					ncap *= 2;
				nb = realloc(c->out, ncap);
				if (!nb)
					return -1;
				c->out = nb;
				c->out_cap = ncap;
			}
			memcpy(c->out + c->out_len, data, (size_t)k);
			c->out_len += (size_t)k;
		}
		if (c->out_len == 0)
			break;
	}
	conn_set_events(c, EPOLLIN);
	if (c->h2 && !nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2))
		return -1;
	if (c->goaway && c->nstreams == 0 && c->w->draining)
		return -1;
	return 0;
}

static int conn_read(struct gw_conn *c)
{
	struct gw_worker *w = c->w;

	for (;;) {
		int n;

		ERR_clear_error();
		n = SSL_read(c->ssl, w->rbuf, sizeof(w->rbuf));

		if (n > 0) {
			ssize_t rv = nghttp2_session_mem_recv(c->h2, w->rbuf, (size_t)n);

			c->active_ms = w->now_ms;
			if (c->cut)
				return 0; /* nothing more is read from a cut-off peer */
			if (rv < 0) {
				/* Bad preface, flood or a connection error nghttp2
				 * could not even answer: nothing more to say. */
				if (rv != NGHTTP2_ERR_FLOODED) {
					nghttp2_session_terminate_session(c->h2, NGHTTP2_PROTOCOL_ERROR);
					conn_flush(c);
				}
				return -1;
			}
			continue;
		}
		switch (SSL_get_error(c->ssl, n)) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			return 0;
		default: /* close_notify, reset, or a TLS error */
			ERR_clear_error();
			return -1;
		}
	}
}

/* ---- cutting off a peer that no longer passes ---- */

static const char *const cut_names[] = {
	[GW_CUT_NONE] = "none",
	[GW_CUT_REVOKED] = "revoked",
	[GW_CUT_EXPIRED] = "expired",
	[GW_CUT_CERTIFICATE] = "bad_certificate",
	[GW_CUT_MEMBER] = "unknown_organisation",
	[GW_CUT_ROLES] = "membership_changed",
};

/* Remembers who the peer of a new connection is in |s|, so a reload can
 * tell whether that changed. */
static void conn_note_member(struct gw_conn *c, const struct gw_state *s)
{
	const struct gw_member *m =
		c->peer.oin[0] ? gw_members_by_oin(s->members, c->peer.oin, GW_OIN_LEN) : NULL;

	c->member_id[0] = '\0';
	c->member_roles = 0;
	if (m) {
		snprintf(c->member_id, sizeof(c->member_id), "%s", m->id);
		c->member_roles = m->roles;
	}
}

/*
 * Verifies |c|'s certificate against |s|, once per certificate and state
 * generation on this worker. Keyed by the leaf alone: a leaf that verifies
 * over the chain one connection sent has a valid path, whichever chain
 * another connection sent with it (and a chain that fails for one only cuts
 * more, never less). 0, or -1 with the reason in |*why|.
 */
static int peer_reverify(struct gw_conn *c, const struct gw_state *s, enum gw_hs_fail *why)
{
	struct gw_worker *w = c->w;
	struct gw_verdict *slot = NULL;
	unsigned h = 0;
	int rc;

	for (int i = 0; i < 4; i++) {
		char ch = c->peer.fingerprint[i];
		h = h * 16 + (unsigned)(ch <= '9' ? ch - '0' : ch - 'a' + 10);
	}
	for (unsigned i = 0; i < 8; i++) {
		struct gw_verdict *v = &w->verdicts[(h + i) % GW_VERDICT_SLOTS];

		if (v->gen == s->gen && strcmp(v->fingerprint, c->peer.fingerprint) == 0) {
			*why = v->why < 0 ? GW_HS_OTHER : (enum gw_hs_fail)v->why;
			return v->why < 0 ? 0 : -1;
		}
		if (!slot && v->gen != s->gen)
			slot = v; /* empty, or left from an older generation */
	}
	rc = gw_tls_reverify(c->ssl, s->ctx, why);
	if (slot) {
		slot->gen = s->gen;
		memcpy(slot->fingerprint, c->peer.fingerprint, sizeof(slot->fingerprint));
		slot->why = rc == 0 ? -1 : (int)*why;
	}
	return rc;
}

/* What a new handshake plus the members file of |s| would say about the
 * peer of |c| now. */
static enum gw_cut peer_verdict(struct gw_conn *c, const struct gw_state *s)
{
	const struct gw_member *m;
	enum gw_hs_fail why;

	if (peer_reverify(c, s, &why) < 0)
		return why == GW_HS_REVOKED ? GW_CUT_REVOKED
		       : why == GW_HS_EXPIRED ? GW_CUT_EXPIRED : GW_CUT_CERTIFICATE;
	if (!c->member_id[0]) {
		/* Not a member at the handshake (a monitoring client on
		 * /healthz): each request is looked up anyway. */
		conn_note_member(c, s);
		return GW_CUT_NONE;
	}
	m = gw_members_by_oin(s->members, c->peer.oin, GW_OIN_LEN);
	if (!m)
		return GW_CUT_MEMBER;
	if (m->roles != c->member_roles || strcmp(m->id, c->member_id) != 0)
		return GW_CUT_ROLES;
	return GW_CUT_NONE;
}

/* Answers what |c| still owes with 403, stops what is still being sent and
 * queues GOAWAY; gw_conn_end_cut() closes after this event-loop turn. */
static void conn_cut(struct gw_conn *c, enum gw_cut why)
{
	struct gw_worker *w = c->w;
	char extra[200];

	c->cut = why;
	w->recheck = 1;
	for (struct gw_stream *s = c->streams; s; s = s->next) {
		if (!s->responded || s->deferred)
			gw_h2_refuse_cut(c, s);
		else if (s->resp_off < s->resp.len)
			/* An answer still being sent stops here. */
			nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
	}
	nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->h2),
			      NGHTTP2_NO_ERROR, (const uint8_t *)cut_names[why], strlen(cut_names[why]));
	c->goaway = 1;
	c->goaway_reason = GW_GOAWAY_REVOKED;
	c->closing_ms = w->now_ms;
	/* OINs and member ids are digits and [a-z0-9-]: nothing to escape. */
	snprintf(extra, sizeof(extra), ",\"reason\":\"%s\",\"oin\":\"%s\",\"org\":\"%s\","
		 "\"generation\":%llu", cut_names[why], c->peer.oin, c->member_id,
		 (unsigned long long)w->state->gen);
	gw_log_event("warn", "connection_cut", extra);
}

int gw_conn_check(struct gw_conn *c)
{
	struct gw_worker *w = c->w;
	enum gw_cut why = GW_CUT_NONE;

	if (c->cut)
		return -1;
	if (c->state != GW_CONN_H2)
		return 0;
	if (c->verified_gen != w->state->gen) {
		why = peer_verdict(c, w->state);
		c->verified_gen = w->state->gen;
	} else if ((long long)time(NULL) >= c->peer.not_after_unix) {
		/* The handshake checked the validity once; a connection may
		 * outlive it by months. From the not_after second on (OpenSSL
		 * still accepts a handshake within that second: stricter by at
		 * most one second). */
		why = GW_CUT_EXPIRED;
	}
	if (why == GW_CUT_NONE)
		return 0;
	conn_cut(c, why);
	return -1;
}

/*
 * Sends what conn_cut() queued (the 403s, GOAWAY), close_notify, and closes
 * our side at once; what the client still sends is read and dropped until
 * it closes or HS_LINGER_MS passes (closing with unread bytes would make the
 * kernel's reset overtake the GOAWAY). Nothing it sends is handled again.
 */
static void conn_end_cut(struct gw_conn *c)
{
	(void)conn_flush(c);
	ERR_clear_error();
	SSL_shutdown(c->ssl);
	ERR_clear_error();
	shutdown(c->ev.fd, SHUT_WR);
	c->state = GW_CONN_CLOSING;
	c->closing_ms = c->w->now_ms;
	conn_set_events(c, EPOLLIN);
}

/*
 * Counts the failure and half-closes: OpenSSL has written its alert, and
 * closing with the client's unread bytes in our queue would make the kernel
 * send a reset that can overtake it. The client reads "certificate revoked"
 * instead of "connection reset"; we discard its bytes until it closes or
 * HS_LINGER_MS passes.
 */
#define HS_LINGER_MS 1000
static void handshake_failed(struct gw_conn *c, enum gw_hs_fail why)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char peer[INET6_ADDRSTRLEN + 8] = "?";

	if (getpeername(c->ev.fd, (struct sockaddr *)&ss, &sl) == 0) {
		char host[INET6_ADDRSTRLEN];
		int v4 = ss.ss_family == AF_INET;
		const void *a = v4 ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
				   : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;

		if (inet_ntop(ss.ss_family, a, host, sizeof(host)))
			snprintf(peer, sizeof(peer), v4 ? "%s:%u" : "[%s]:%u", host,
				 ntohs(v4 ? ((struct sockaddr_in *)&ss)->sin_port
					  : ((struct sockaddr_in6 *)&ss)->sin6_port));
	}
	gw_count(&c->w->metrics.hs_fail[why], 1);
	gw_log_handshake(&c->w->log, gw_hs_fail_name(why), peer);
	if (why == GW_HS_TIMEOUT || c->state == GW_CONN_CLOSING) {
		conn_close(c);
		return;
	}
	shutdown(c->ev.fd, SHUT_WR);
	c->state = GW_CONN_CLOSING;
	c->closing_ms = c->w->now_ms;
	conn_set_events(c, EPOLLIN);
}

/* Discards what a refused client still sends; closes at its EOF. */
static void conn_discard(struct gw_conn *c)
{
	for (;;) {
		ssize_t n = read(c->ev.fd, c->w->rbuf, sizeof(c->w->rbuf));

		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		conn_close(c);
		return;
	}
}

static void conn_handshake(struct gw_conn *c)
{
	const unsigned char *alpn = NULL;
	unsigned int alpnlen = 0;
	int r;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);

	if (r != 1) {
		int e = SSL_get_error(c->ssl, r);

		if (e == SSL_ERROR_WANT_READ) {
			conn_set_events(c, EPOLLIN);
			return;
		}
		if (e == SSL_ERROR_WANT_WRITE) {
			conn_set_events(c, EPOLLIN | EPOLLOUT);
			return;
		}
		handshake_failed(c, gw_tls_classify(c->ssl, e));
		return;
	}
	SSL_get0_alpn_selected(c->ssl, &alpn, &alpnlen);
	if (alpnlen != 2 || memcmp(alpn, "h2", 2) != 0) {
		/* The client offered no ALPN at all (one offering only
		 * http/1.1 already failed in the handshake). */
		handshake_failed(c, GW_HS_NO_ALPN);
		return;
	}
	if (gw_tls_peer(c->ssl, &c->peer) < 0 || gw_h2_start(c) < 0) {
		handshake_failed(c, GW_HS_OTHER);
		return;
	}
	if (c->verified_gen != c->w->state->gen) {
		/* A reload came while this handshake ran on the old context:
		 * verify against the new one before the first request. */
		enum gw_hs_fail why;

		if (gw_tls_reverify(c->ssl, c->w->state->ctx, &why) < 0) {
			handshake_failed(c, why);
			return;
		}
		c->verified_gen = c->w->state->gen;
	}
	conn_note_member(c, c->w->state);
	c->state = GW_CONN_H2;
	c->active_ms = c->w->now_ms;
	if (conn_read(c) < 0 || conn_flush(c) < 0)
		conn_close(c);
}

static void conn_event(struct gw_conn *c, uint32_t events)
{
	if (c->state == GW_CONN_CLOSING) {
		conn_discard(c);
		return;
	}
	if (c->state == GW_CONN_HANDSHAKE) {
		conn_handshake(c);
		return;
	}
	if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && conn_read(c) < 0) {
		conn_flush(c); /* a GOAWAY nghttp2 queued may still get out */
		conn_close(c);
		return;
	}
	if (c->cut) {
		conn_end_cut(c);
		return;
	}
	if (conn_flush(c) < 0)
		conn_close(c);
}

/* ---- accepting ---- */

static void accept_one(struct gw_worker *w, int fd)
{
	struct gw_conn *c;
	struct epoll_event e;
	int one = 1;

	if (w->nconns >= w->max_conns || w->draining) {
		gw_count(&w->metrics.connections_refused, 1);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->ev.kind = GW_EV_CONN;
	c->ev.fd = fd;
	c->w = w;
	c->id = ++w->next_conn_id;
	c->accepted_ms = w->now_ms;
	c->ssl = SSL_new(w->state->ctx);
	c->verified_gen = w->state->gen; /* the context the handshake verifies with */
	if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
		SSL_free(c->ssl);
		free(c);
		close(fd);
		return;
	}
	SSL_set_accept_state(c->ssl);
	e.events = EPOLLIN;
	e.data.ptr = &c->ev;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &e) != 0) {
		SSL_free(c->ssl);
		free(c);
		close(fd);
		return;
	}
	c->epoll_events = EPOLLIN;
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	gw_count(&w->metrics.connections_total, 1);
	gw_count(&w->metrics.connections_active, 1);
}

static void listeners_enable(struct gw_worker *w, int on)
{
	for (int i = 0; i < w->nlisteners; i++) {
		struct epoll_event e = { .events = EPOLLIN, .data.ptr = &w->listeners[i] };

		epoll_ctl(w->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, w->listeners[i].fd, &e);
	}
}

static void accept_ready(struct gw_worker *w, int lfd)
{
	for (int i = 0; i < 64; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			accept_one(w, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE) {
			/* Out of descriptors: free the spare one, take the
			 * connection off the queue and close it, so the client
			 * hears "no" now. */
			if (w->spare_fd >= 0) {
				close(w->spare_fd);
				w->spare_fd = -1;
				fd = accept(lfd, NULL, NULL);
				if (fd >= 0) {
					close(fd);
					gw_count(&w->metrics.connections_refused, 1);
				}
				w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				if (w->spare_fd >= 0)
					continue;
			}
			/* No spare either (another worker took the freed slot):
			 * stop listening for a moment rather than spin on a
			 * listener that stays readable; the sweep resumes it. */
			listeners_enable(w, 0);
			w->accept_paused_until = w->now_ms + 100;
			return;
		}
		return; /* EAGAIN, or a transient error: epoll will tell us again */
	}
}

/* ---- timeouts and drain ---- */

/*
 * Whether the gateway still owes an answer on |c|. A stream answered early
 * (408, 413, 431) while its body was still coming is done for us; if the
 * client then falls silent it must not keep the connection from going idle.
 * (Resetting such streams with NO_ERROR, as RFC 9113 8.1 allows, makes
 * curl 7.88 drop the answer it already has, so we wait for idle instead.)
 */
static int conn_owes_answer(const struct gw_conn *c)
{
	for (const struct gw_stream *s = c->streams; s; s = s->next)
		if (!s->responded || s->deferred)
			return 1;
	return 0;
}

static void sweep(struct gw_worker *w)
{
	const struct gw_config *cfg = w->srv->cfg;
	uint32_t decay = cfg->limits.abuse_budget / 40 + 1; /* per sweep: budget/10 a second */
	struct gw_conn *c, *next;

	if (w->accept_paused_until && w->now_ms >= w->accept_paused_until && !w->draining) {
		if (w->spare_fd < 0)
			w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		w->accept_paused_until = 0;
		listeners_enable(w, 1);
	}

	for (c = w->conns; c; c = next) {
		next = c->next;
		if (c->state == GW_CONN_HANDSHAKE) {
			if (w->now_ms - c->accepted_ms >= cfg->timeouts.handshake_ms)
				handshake_failed(c, GW_HS_TIMEOUT);
			continue;
		}
		if (c->state == GW_CONN_CLOSING) {
			if (w->now_ms - c->closing_ms >= HS_LINGER_MS)
				conn_close(c);
			continue;
		}
		if (!c->preface_done && w->now_ms - c->accepted_ms >= cfg->timeouts.handshake_ms) {
			/* TLS done, but the HTTP/2 preface trickles in: the same
			 * deadline as the TLS handshake, whatever bytes arrive. */
			gw_count(&w->metrics.hs_fail[GW_HS_TIMEOUT], 1);
			conn_close(c);
			continue;
		}
		if (gw_conn_check(c) < 0) {
			/* Expired since the last request, or cut off this turn. */
			conn_end_cut(c);
			continue;
		}
		c->abuse = c->abuse > decay ? c->abuse - decay : 0;
		/* A peer that stops reading after our GOAWAY is not waited for;
		 * while draining, in-flight streams get until the drain deadline. */
		if (c->goaway && w->now_ms - c->closing_ms >= LINGER_MS &&
		    (!w->draining || c->nstreams == 0)) {
			conn_close(c);
			continue;
		}
		for (struct gw_stream *s = c->streams; s; s = s->next)
			if (!s->responded && (gw_now_us() - s->start_us) / 1000u >= cfg->timeouts.request_ms)
				gw_h2_timeout_stream(c, s);
		if (!c->goaway && !conn_owes_answer(c) && w->now_ms - c->active_ms >= cfg->timeouts.idle_ms) {
			c->goaway = 1;
			c->goaway_reason = GW_GOAWAY_TIMEOUT;
			c->closing_ms = w->now_ms;
			nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
		}
		if (conn_flush(c) < 0)
			conn_close(c);
	}
}

static void start_drain(struct gw_worker *w)
{
	struct gw_conn *c, *next;

	w->draining = 1;
	w->drain_deadline_ms = w->now_ms + w->srv->cfg->timeouts.drain_ms;
	for (int i = 0; i < w->nlisteners; i++) {
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->listeners[i].fd, NULL);
		close(w->listeners[i].fd);
	}
	w->nlisteners = 0;
	for (c = w->conns; c; c = next) {
		next = c->next;
		if (c->state != GW_CONN_H2) {
			conn_close(c);
			continue;
		}
		if (!c->goaway) {
			/* Streams the peer opened so far complete; later ones are
			 * refused by nghttp2 with REFUSED_STREAM. */
			nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
					      nghttp2_session_get_last_proc_stream_id(c->h2),
					      NGHTTP2_NO_ERROR, NULL, 0);
			c->goaway = 1;
			c->goaway_reason = GW_GOAWAY_SHUTDOWN;
			c->closing_ms = w->now_ms;
		}
		if (conn_flush(c) < 0)
			conn_close(c);
	}
}

/* ---- jobs: federated questions, answered off the event loop ---- */

#define MAX_QUEUED_JOBS 64

struct gw_hubctx {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct gw_job *head, *tail;
	unsigned queued;
	int stop;
	pthread_t *threads;
	unsigned nthreads;
	/* What every question needs besides the state (process lifetime). */
	struct ledger *ledger;     /* NULL: missing, replaced or rolled back at start */
	atomic_int ledger_logged;  /* the ledger's problem was logged once */
	_Atomic int64_t debit_floor; /* the highest last debit id seen: debits only grow */
	struct gw_fanout *fanout;
	unsigned char box_pk[crypto_box_PUBLICKEYBYTES];
	unsigned char *box_sk; /* sodium_malloc, read-only */
	unsigned node_timeout_ms;
	struct audit_log *audit;
};

int gw_job_submit(struct gw_conn *c, struct gw_stream *s)
{
	struct gw_hubctx *h = c->w->srv->hub;
	struct gw_job *j;

	if (!h)
		return -1;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -1;
	j->w = c->w;
	j->conn_id = c->id;
	j->stream_id = s->id;
	j->state = c->w->state;
	j->caller = s->resp.job_caller;
	j->body = s->resp.job_body;
	pthread_mutex_lock(&h->lock);
	if (h->queued >= MAX_QUEUED_JOBS || h->stop) {
		pthread_mutex_unlock(&h->lock);
		free(j);
		return -1;
	}
	s->resp.job_body = NULL; /* the job owns it now */
	/* The state (policies, members) stays alive until the worker has
	 * answered: the job reads it, the answer's log line points into it. */
	atomic_fetch_add(&j->state->pins, 1);
	if (h->tail)
		h->tail->next = j;
	else
		h->head = j;
	h->tail = j;
	h->queued++;
	pthread_cond_signal(&h->cond);
	pthread_mutex_unlock(&h->lock);
	return 0;
}

/* NULL while the ledger opened at start is still the file at its path;
 * otherwise why not, logged once (docs/ledger.md, "The ledger cannot vanish"). */
static const char *ledger_problem(struct gw_hubctx *h)
{
	char err[600];
	int rc;

	if (!h->ledger)
		return "no usable budget ledger";
	rc = ledger_same_file(h->ledger, err, sizeof(err));
	if (rc == 0) {
		int64_t last = 0, floor = atomic_load(&h->debit_floor);

		/* An older copy written over the same file (same inode): its last
		 * debit is behind one this hub has seen. */
		if (ledger_last_debit(h->ledger, &last, err, sizeof(err)) < 0)
			return NULL; /* busy or unreadable: the question's own ledger call answers 503 */
		if (last >= floor) {
			while (last > floor && !atomic_compare_exchange_weak(&h->debit_floor, &floor, last))
				;
			return NULL;
		}
		snprintf(err, sizeof(err), "the budget ledger was rolled back while the hub ran: its last "
			 "debit is %lld, the hub saw %lld", (long long)last, (long long)floor);
		rc = LEDGER_REPLACED;
	}
	if (atomic_exchange(&h->ledger_logged, 1) == 0)
		gw_log_message("error", "budget_ledger_unavailable", err);
	return rc == LEDGER_REPLACED ? "budget ledger replaced" : "budget ledger gone";
}

static void job_run(struct gw_hubctx *h, struct gw_job *j)
{
	struct gw_hub hub = {
		.policies = j->state->policies,
		.catalog = j->state->catalog,
		.members = j->state->members,
		.ledger = h->ledger,
		.audit = h->audit,
		.box_pk = h->box_pk,
		.box_sk = h->box_sk,
		.fanout = gw_fanout_run,
		.fanout_arg = h->fanout,
		.node_timeout_ms = h->node_timeout_ms,
		.ledger_problem = ledger_problem(h),
	};

	if (gw_hub_aggregate(&hub, j->caller, j->body, &j->resp) < 0)
		j->resp.status = 0; /* the worker resets the stream */
	if (!hub.ledger_problem)
		ledger_problem(h); /* raises the floor past this question's debit */
	cJSON_Delete(j->body);
	j->body = NULL;
}

static void *job_thread(void *arg)
{
	struct gw_hubctx *h = arg;
	uint64_t one = 1;

	for (;;) {
		struct gw_job *j;

		pthread_mutex_lock(&h->lock);
		while (!h->head && !h->stop)
			pthread_cond_wait(&h->cond, &h->lock);
		if (!h->head) {
			pthread_mutex_unlock(&h->lock);
			return NULL;
		}
		j = h->head;
		h->head = j->next;
		if (!h->head)
			h->tail = NULL;
		h->queued--;
		pthread_mutex_unlock(&h->lock);

		j->next = NULL;
		job_run(h, j);
		pthread_mutex_lock(&j->w->done_lock);
		j->next = j->w->done;
		j->w->done = j;
		pthread_mutex_unlock(&j->w->done_lock);
		if (write(j->w->wake.fd, &one, sizeof(one)) < 0)
			continue; /* the counter is full: the worker is awake anyway */
	}
}

static void job_free(struct gw_job *j)
{
	atomic_fetch_sub(&j->state->pins, 1);
	cJSON_Delete(j->body);
	free(j->resp.body);
	free(j);
}

/* Answers the streams whose jobs finished, if they are still there. */
static void finish_jobs(struct gw_worker *w)
{
	struct gw_job *j, *next;

	pthread_mutex_lock(&w->done_lock);
	j = w->done;
	w->done = NULL;
	pthread_mutex_unlock(&w->done_lock);
	for (; j; j = next) {
		struct gw_conn *c = w->conns;
		struct gw_stream *s = NULL;

		next = j->next;
		while (c && c->id != j->conn_id)
			c = c->next;
		if (c && c->h2)
			s = nghttp2_session_get_stream_user_data(c->h2, j->stream_id);
		/* An answer for a peer cut off meanwhile (revoked, removed,
		 * expired) is never sent: gw_conn_check() answers 403 instead,
		 * and the worker closes the connection after this turn. */
		if (s && s->deferred && gw_conn_check(c) < 0)
			s = NULL;
		if (s && s->deferred) {
			s->deferred = 0;
			if (j->resp.status == 0) {
				nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, s->id,
							  NGHTTP2_INTERNAL_ERROR);
			} else {
				const char *org = s->resp.org;
				free(s->resp.body);
				s->resp = j->resp;
				s->resp.route = GW_ROUTE_AGGREGATE;
				s->resp.org = org;
				j->resp.body = NULL;
				gw_h2_respond(c, s);
			}
			if (conn_flush(c) < 0)
				conn_close(c);
		}
		/* Else the client went away: the question was answered and
		 * audited, and the answer is dropped. */
		job_free(j);
	}
}

static void hub_free(struct gw_hubctx *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	h->stop = 1;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	for (unsigned i = 0; i < h->nthreads; i++)
		pthread_join(h->threads[i], NULL);
	while (h->head) {
		struct gw_job *j = h->head;
		h->head = j->next;
		job_free(j);
	}
	free(h->threads);
	gw_fanout_free(h->fanout);
	ledger_close(h->ledger);
	sodium_free(h->box_sk);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

/*
 * Opens the budget ledger, which must exist (`noordpoort ledger init`:
 * serve never creates one), and checks it against what the audit log
 * records: the same ledger id, and no debit behind the last one recorded.
 * Then records "ledger_attach" with its id and last debit. A ledger that
 * is missing, replaced or rolled back is logged and left closed: the hub
 * starts (its other roles serve) and answers every aggregate question
 * with 503. Returns -1 only for what stops the start: a damaged ledger,
 * an unreadable audit log, an attach record that cannot be written.
 */
static int ledger_attach(struct gw_hubctx *h, const struct gw_config *cfg, struct audit_log *audit,
			 char *err, size_t errlen)
{
	struct gw_ledger_seen seen;
	int64_t last = 0;
	cJSON *o;
	int rc, ok;

	rc = ledger_open(cfg->hub.ledger, &h->ledger, err, errlen);
	if (rc == LEDGER_MISSING) {
		gw_log_message("error", "budget_ledger_missing", err);
		h->ledger_logged = 1;
		return 0;
	}
	if (rc < 0)
		return -1;
	if (!cfg->audit.path || !audit)
		return 0; /* without an audit log the hub answers nothing anyway (503) */
	if (ledger_last_debit(h->ledger, &last, err, errlen) < 0 ||
	    gw_ledger_audit_scan(cfg->audit.path, &seen, err, errlen) < 0)
		return -1;
	if (gw_ledger_matches(&seen, ledger_id(h->ledger), last, err, errlen) < 0) {
		gw_log_message("error", "budget_ledger_refused", err);
		h->ledger_logged = 1;
		ledger_close(h->ledger);
		h->ledger = NULL;
		return 0;
	}
	h->debit_floor = last;
	o = cJSON_CreateObject();
	ok = o && cJSON_AddStringToObject(o, "operation", "ledger_attach") &&
	     cJSON_AddStringToObject(o, "ledger_id", ledger_id(h->ledger)) &&
	     cJSON_AddNumberToObject(o, "last_debit", (double)last);
	rc = ok ? audit_append(audit, o, NULL) : -1;
	cJSON_Delete(o);
	if (rc < 0) {
		snprintf(err, errlen, "the budget ledger's id could not be recorded in the audit log");
		return -1;
	}
	return 0;
}

/* Opens what the hub role needs: its box key, the budget ledger, the
 * fan-out client; job threads start later (hub_start). */
static int hub_open(const struct gw_config *cfg, struct audit_log *audit,
		    struct gw_hubctx **out, char *err, size_t errlen)
{
	struct gw_hubctx *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	h->audit = audit;
	h->node_timeout_ms = cfg->hub.node_timeout_ms;
	h->box_sk = sodium_malloc(crypto_box_SECRETKEYBYTES);
	if (!h->box_sk ||
	    pseudo_box_read_sec(cfg->hub.box_key, h->box_sk, err, errlen) < 0 ||
	    crypto_scalarmult_base(h->box_pk, h->box_sk) != 0) {
		if (!h->box_sk)
			snprintf(err, errlen, "out of memory");
		goto fail;
	}
	sodium_mprotect_readonly(h->box_sk);
	if (ledger_attach(h, cfg, audit, err, errlen) < 0)
		goto fail;
	if (gw_fanout_new(cfg->hub.client_certificate, cfg->hub.client_key,
			  cfg->client_ca_file, &h->fanout, err, errlen) < 0)
		goto fail;
	*out = h;
	return 0;
fail:
	hub_free(h);
	return -1;
}

static int hub_start(struct gw_hubctx *h, unsigned n)
{
	h->threads = calloc(n, sizeof(*h->threads));
	if (!h->threads)
		return -1;
	for (; h->nthreads < n; h->nthreads++)
		if (pthread_create(&h->threads[h->nthreads], NULL, job_thread, h) != 0)
			return -1;
	return 0;
}

/* ---- the worker loop ---- */

static void adopt_state(struct gw_worker *w)
{
	struct gw_state *s = atomic_load_explicit(&w->srv->state, memory_order_acquire);

	if (s != w->state) {
		w->state = s;
		atomic_store_explicit(&w->seen_gen, s->gen, memory_order_release);
		w->recheck = 1;
	}
}

/*
 * After a reload, every open connection's peer is verified again against the
 * new state (and cut off if it no longer passes), and connections cut off
 * during this turn are closed. Runs after the turn's events: closing frees
 * connections that later entries of the event array may point at. Requests
 * handled before this pass are checked on their own (gw_conn_check in
 * dispatch), so none is answered under the old state's verdict.
 */
static void recheck_conns(struct gw_worker *w)
{
	struct gw_conn *c, *next;
	uint64_t t0 = gw_now_us();
	unsigned checked = 0, cut = 0;

	w->recheck = 0;
	for (c = w->conns; c; c = next) {
		next = c->next;
		if (c->state != GW_CONN_H2)
			continue;
		checked += c->verified_gen != w->state->gen;
		if (gw_conn_check(c) < 0) {
			cut++;
			conn_end_cut(c);
		}
	}
	if (checked) {
		char extra[160];

		snprintf(extra, sizeof(extra), ",\"worker\":%u,\"generation\":%llu,\"connections\":%u,"
			 "\"cut\":%u,\"ms\":%.1f", w->idx, (unsigned long long)w->state->gen, checked,
			 cut, (double)(gw_now_us() - t0) / 1000.0);
		gw_log_event("info", "connections_rechecked", extra);
	}
}

static void *worker_main(void *arg)
{
	struct gw_worker *w = arg;
	struct epoll_event evs[128];
	uint64_t next_sweep = 0;

	for (;;) {
		int n = epoll_wait(w->epfd, evs, 128, SWEEP_MS);

		w->now_ms = now_ms();
		adopt_state(w);
		for (int i = 0; i < n; i++) {
			struct gw_evsrc *src = evs[i].data.ptr;

			if (src->kind == GW_EV_LISTEN) {
				if (!w->draining)
					accept_ready(w, src->fd);
			} else if (src->kind == GW_EV_WAKE) {
				uint64_t v;
				if (read(src->fd, &v, sizeof(v)) < 0)
					continue;
				finish_jobs(w);
			} else {
				conn_event((struct gw_conn *)src, evs[i].events);
			}
		}
		if (w->recheck)
			recheck_conns(w);
		/* After the events: start_drain() frees connections that later
		 * entries of evs[] may still point at. */
		if (!w->draining && atomic_load_explicit(&w->srv->draining, memory_order_relaxed))
			start_drain(w);
		if (w->now_ms >= next_sweep) {
			sweep(w);
			next_sweep = w->now_ms + SWEEP_MS;
		}
		gw_log_flush(&w->log);
		if (w->draining && (w->nconns == 0 || w->now_ms >= w->drain_deadline_ms))
			break;
	}
	while (w->conns)
		conn_close(w->conns);
	gw_log_flush(&w->log);
	return NULL;
}

/* ---- start-up ---- */

static int listen_on(const struct gw_listen *l, uint16_t port, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, one = 1;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, l->host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
		sl = sizeof(struct sockaddr_in);
	} else {
		inet_pton(AF_INET6, l->host, &((struct sockaddr_in6 *)&ss)->sin6_addr);
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
		sl = sizeof(struct sockaddr_in6);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 1024) != 0) {
		snprintf(err, errlen, "cannot listen on %s:%u: %s", l->host, port, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static uint16_t bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static int worker_init(struct gw_server *srv, struct gw_worker *w, unsigned idx,
		       uint16_t *ports, char *err, size_t errlen)
{
	const struct gw_config *cfg = srv->cfg;
	struct epoll_event e;

	w->idx = idx;
	w->srv = srv;
	w->state = atomic_load(&srv->state);
	atomic_store(&w->seen_gen, w->state->gen);
	w->max_conns = cfg->limits.max_connections / srv->nworkers;
	if (w->max_conns == 0)
		w->max_conns = 1;
	w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	gw_log_init(&w->log);
	pthread_mutex_init(&w->done_lock, NULL);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->wake.kind = GW_EV_WAKE;
	w->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->epfd < 0 || w->wake.fd < 0) {
		snprintf(err, errlen, "epoll/eventfd: %s", strerror(errno));
		return -1;
	}
	e.events = EPOLLIN;
	e.data.ptr = &w->wake;
	epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wake.fd, &e);
	for (int i = 0; i < cfg->nlisten; i++) {
		int fd = listen_on(&cfg->listen[i], ports[i], err, errlen);

		if (fd < 0)
			return -1;
		if (ports[i] == 0)
			ports[i] = bound_port(fd); /* later workers share the port */
		w->listeners[i].kind = GW_EV_LISTEN;
		w->listeners[i].fd = fd;
		w->nlisteners++;
		e.events = EPOLLIN;
		e.data.ptr = &w->listeners[i];
		epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &e);
	}
	if (srv->node && gw_node_worker_open(srv->node, &w->node, err, errlen) < 0)
		return -1;
	if (nghttp2_session_callbacks_new(&w->cbs) != 0 || nghttp2_option_new(&w->opt) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	gw_h2_callbacks(w->cbs);
	gw_h2_option(w->opt);
	return 0;
}

static void worker_fini(struct gw_worker *w)
{
	for (int i = 0; i < w->nlisteners; i++)
		close(w->listeners[i].fd);
	if (w->wake.fd > 0)
		close(w->wake.fd);
	if (w->epfd > 0)
		close(w->epfd);
	if (w->spare_fd >= 0)
		close(w->spare_fd);
	nghttp2_session_callbacks_del(w->cbs);
	nghttp2_option_del(w->opt);
	gw_node_worker_free(w->node);
	while (w->done) {
		struct gw_job *j = w->done;
		w->done = j->next;
		job_free(j);
	}
	pthread_mutex_destroy(&w->done_lock);
	gw_log_fini(&w->log);
}

/*
 * Stops every worker's listener from taking connections, all at once, before
 * the workers hear of the drain: each worker closes its own listener when it
 * gets to it, and with SO_REUSEPORT a new connection could otherwise land on
 * a worker that has not yet (a client that already saw GOAWAY from another
 * worker would be served). shutdown() stops listening without freeing the
 * descriptor, so a worker closing it meanwhile is no race. Called before
 * srv->draining is set: until then only workers' init touches listeners.
 */
static void stop_listening(struct gw_server *srv)
{
	for (unsigned i = 0; i < srv->nworkers; i++)
		for (int j = 0; j < srv->workers[i].nlisteners; j++)
			shutdown(srv->workers[i].listeners[j].fd, SHUT_RD);
}

static void wake_workers(struct gw_server *srv)
{
	uint64_t one = 1;

	for (unsigned i = 0; i < srv->nworkers; i++)
		if (write(srv->workers[i].wake.fd, &one, sizeof(one)) < 0)
			continue; /* the counter is full: the worker is awake anyway */
}

/* Frees retired states no worker can still be using. */
static void reap_states(struct gw_server *srv)
{
	uint64_t min = UINT64_MAX;
	struct gw_state **pp = &srv->retired;

	for (unsigned i = 0; i < srv->nworkers; i++) {
		uint64_t g = atomic_load_explicit(&srv->workers[i].seen_gen, memory_order_acquire);
		if (g < min)
			min = g;
	}
	while (*pp) {
		struct gw_state *s = *pp;
		if (s->gen < min && atomic_load(&s->pins) == 0) {
			*pp = s->next_retired;
			state_free(s);
		} else {
			pp = &s->next_retired;
		}
	}
}

static void reload(struct gw_server *srv)
{
	struct gw_state *old = atomic_load(&srv->state);
	char err[512];
	struct diag d = { 0 };
	struct gw_state *s;
	int fd, policy_failed;

	/* Reopen the log first, so a rotated file receives what follows. */
	if (srv->log_fd > 2 && (fd = gw_log_open(srv->cfg->log_destination, srv->log_fd)) < 0)
		gw_log_message("error", "log_reopen_failed", strerror(errno));
	s = state_load(srv->cfg, old->gen + 1, &d, &policy_failed);
	if (!s) {
		gw_count(&srv->global.reload_failed, 1);
		if (policy_failed)
			gw_count(&srv->global.policy_reload_failed, 1);
		diag_summary(&d, err, sizeof(err));
		diag_clear(&d);
		gw_log_message("error", policy_failed ? "policy_reload_failed" : "reload_failed", err);
		return;
	}
	/* Warnings of a state that loads: among them each grant that names a
	 * removed member and so no longer applies. */
	log_diag_as(&d, "config_warning");
	diag_clear(&d);
	s->next_retired = NULL;
	old->next_retired = srv->retired;
	srv->retired = old;
	atomic_store_explicit(&srv->state, s, memory_order_release);
	gw_count(&srv->global.reload_ok, 1);
	wake_workers(srv);
	{
		char extra[160];
		snprintf(extra, sizeof(extra), ",\"generation\":%llu,\"policy_set\":\"%s\"",
			 (unsigned long long)s->gen, s->policies ? policy_set_hash(s->policies) : "");
		gw_log_event("info", "reloaded", extra);
	}
}

/*
 * Every connection holds a descriptor. If max_connections would run the
 * process out of them, accept() fails with EMFILE and connections pile up
 * unanswered in the listen queue; capping it below the limit instead
 * refuses the excess at once (accept and close) and leaves room for what
 * the gateway itself opens: reloads, the audit log, datasets, the ledger,
 * the hub's connections to nodes.
 */
static void cap_connections(struct gw_config *cfg)
{
	struct rlimit rl;
	uint64_t reserve = 64 + 8u * cfg->workers + 2u * cfg->workers * (uint64_t)cfg->node.ndatasets;
	uint64_t room;
	char extra[160];

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return;
	room = rl.rlim_cur > reserve + cfg->workers ? rl.rlim_cur - reserve : cfg->workers;
	if (cfg->limits.max_connections <= room)
		return;
	snprintf(extra, sizeof(extra), ",\"max_connections\":%llu,\"open_files_limit\":%llu",
		 (unsigned long long)room, (unsigned long long)rl.rlim_cur);
	gw_log_event("warn", "max_connections_capped", extra);
	cfg->limits.max_connections = (uint32_t)room;
}

void gw_server_no_core_dumps(void)
{
	struct rlimit none = { 0, 0 };

	setrlimit(RLIMIT_CORE, &none);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

void gw_server_keep_freed_memory(void)
{
	mallopt(M_MMAP_THRESHOLD, GW_KEEP_MMAP_THRESHOLD);
	mallopt(M_TRIM_THRESHOLD, GW_KEEP_TRIM_THRESHOLD);
}

int gw_server_run(struct gw_config *cfg)
{
	struct gw_server srv;
	uint16_t ports[GW_MAX_LISTEN];
	char err[512];
	struct rlimit rl;
	sigset_t sigs;
	struct gw_state *st;
	unsigned started = 0;
	int rc = -1;

	memset(&srv, 0, sizeof(srv));
	srv.cfg = cfg;
	srv.log_fd = gw_log_open(cfg->log_destination, -1);
	if (srv.log_fd < 0) {
		fprintf(stderr, "noordpoort: cannot open log '%s': %s\n", cfg->log_destination,
			strerror(errno));
		gw_config_free(cfg);
		return -1;
	}
	gw_log_set_fd(srv.log_fd);
	gw_server_keep_freed_memory();
	/* Every idle partner connection costs a descriptor: take all we may. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	cap_connections(cfg);
	signal(SIGPIPE, SIG_IGN);
	/* SIGHUP waits for the loop below; SIGTERM and SIGINT keep their
	 * default action during the first load, so a start stuck on a huge or
	 * hostile file is stopped like any process: nothing is bound or opened
	 * yet that an exit would leave behind. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	{
		struct diag d = { 0 };
		int policy_failed;

		st = state_load(cfg, 1, &d, &policy_failed);
		if (st)
			log_diag_as(&d, "config_warning");
		diag_summary(&d, err, sizeof(err));
		diag_clear(&d);
	}
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* workers inherit the mask */
	if (!st) {
		gw_log_message("error", "start_failed", err);
		goto out;
	}
	atomic_store(&srv.state, st);
	srv.nworkers = cfg->workers;
	if (cfg->audit.path) {
		struct audit_options ao = {
			cfg->audit.fsync_every_records, cfg->audit.fsync_every_ms,
			cfg->audit.checkpoint_every_records,
		};
		int e = audit_open(cfg->audit.path, cfg->audit.sign_key, &ao, &srv.audit, err, sizeof(err));

		if (e < 0) {
			gw_log_message("error", "start_failed", err);
			goto out;
		}
		audit_set_refusal_limit(srv.audit, cfg->audit.refusals_per_minute);
	}
	if (cfg->roles & GW_CFG_NODE) {
		struct diag d = { 0 };
		int e = gw_node_open(cfg, &srv.node, &d);

		log_diag(&d);
		diag_clear(&d);
		if (e < 0) {
			gw_log_message("error", "start_failed", "the node's datasets or key could not be opened");
			goto out;
		}
	}
	if ((cfg->roles & GW_CFG_HUB) && hub_open(cfg, srv.audit, &srv.hub, err, sizeof(err)) < 0) {
		gw_log_message("error", "start_failed", err);
		goto out;
	}
	srv.workers = calloc(srv.nworkers, sizeof(*srv.workers));
	srv.metrics = calloc(srv.nworkers, sizeof(*srv.metrics));
	if (!srv.workers || !srv.metrics) {
		gw_log_message("error", "start_failed", "out of memory");
		goto out;
	}
	for (int i = 0; i < cfg->nlisten; i++)
		ports[i] = cfg->listen[i].port;
	for (unsigned i = 0; i < srv.nworkers; i++) {
		srv.metrics[i] = &srv.workers[i].metrics;
		srv.workers[i].spare_fd = -1;
		if (worker_init(&srv, &srv.workers[i], i, ports, err, sizeof(err)) < 0) {
			gw_log_message("error", "start_failed", err);
			goto out;
		}
	}
	/* Every port is bound and every key, the audit log and the ledger are
	 * open; no other thread runs yet. From here on we are cfg->user. */
	if (gw_privdrop(cfg, err, sizeof(err)) < 0) {
		gw_log_message("error", "start_failed", err);
		goto out;
	}
	gw_server_no_core_dumps();
	if (srv.hub && hub_start(srv.hub, cfg->hub.jobs) < 0) {
		gw_log_message("error", "start_failed", "cannot start the hub's job threads");
		goto out;
	}
	for (unsigned i = 0; i < srv.nworkers; i++) {
		if (pthread_create(&srv.workers[i].thread, NULL, worker_main, &srv.workers[i]) != 0) {
			gw_log_message("error", "start_failed", "cannot start worker thread");
			atomic_store(&srv.draining, 1);
			wake_workers(&srv);
			break;
		}
		started++;
	}
	for (int i = 0; started == srv.nworkers && i < cfg->nlisten; i++) {
		char extra[160];
		int v6 = strchr(cfg->listen[i].host, ':') != NULL;

		snprintf(extra, sizeof(extra), ",\"address\":\"%s%s%s:%u\",\"workers\":%u",
			 v6 ? "[" : "", cfg->listen[i].host, v6 ? "]" : "", ports[i], srv.nworkers);
		gw_log_event("info", "listening", extra);
	}

	while (!atomic_load(&srv.draining)) {
		struct timespec ts = { 1, 0 };
		int sig = sigtimedwait(&sigs, NULL, &ts);

		if (sig == SIGHUP) {
			reload(&srv);
		} else if (sig == SIGTERM || sig == SIGINT) {
			gw_log_event("info", "draining", NULL);
			stop_listening(&srv);
			atomic_store(&srv.draining, 1);
			wake_workers(&srv);
		}
		reap_states(&srv);
	}
	rc = started == srv.nworkers ? 0 : -1;
out:
	for (unsigned i = 0; i < started; i++)
		pthread_join(srv.workers[i].thread, NULL);
	/* Job threads after the workers: a job still running finishes into a
	 * done list that worker_fini() frees. */
	hub_free(srv.hub);
	srv.hub = NULL;
	if (started)
		gw_log_event("info", "stopped", NULL);
	for (unsigned i = 0; srv.workers && i < srv.nworkers; i++)
		if (srv.workers[i].srv)
			worker_fini(&srv.workers[i]);
	while (srv.retired) {
		struct gw_state *s = srv.retired;
		srv.retired = s->next_retired;
		state_free(s);
	}
	state_free(atomic_load(&srv.state));
	gw_node_free(srv.node);
	audit_close(srv.audit);
	free(srv.workers);
	free(srv.metrics);
	gw_config_free(cfg);
	return rc;
}
