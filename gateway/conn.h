/*
 * Internal to server.c and h2.c: one worker's connections and streams.
 * A worker thread owns its connections outright; nothing here is shared
 * between threads except what struct gw_server marks as atomic.
 */
#ifndef NOORDPOORT_CONN_H
#define NOORDPOORT_CONN_H

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <pthread.h>

#include "config.h"
#include "log.h"
#include "members.h"
#include "metrics.h"
#include "routes.h"
#include "tls.h"
#include "../audit/audit.h"
#include "../node/node.h"
#include "../policies/policy.h"

/* What a reload replaces, as one unit: all files load, or none is used. */
struct gw_state {
	atomic_int pins; /* jobs still using this state: not freed while > 0 */
	SSL_CTX *ctx;
	struct gw_members *members;
	struct policy_catalog *catalog; /* NULL without 'catalog' */
	struct policy_set *policies;    /* NULL without 'policies' */
	uint64_t gen;
	struct gw_state *next_retired;
};

enum gw_evkind { GW_EV_LISTEN, GW_EV_WAKE, GW_EV_CONN };

struct gw_evsrc {
	enum gw_evkind kind;
	int fd;
};

struct gw_stream {
	int32_t id;
	struct gw_stream *prev, *next; /* the connection's open streams */
	uint64_t start_us;
	enum gw_route route;
	int takes_body;
	int responded;
	int deferred;          /* a job is computing the answer */
	int headers_too_large;
	int body_too_large;
	int path_too_long;
	uint32_t header_bytes;
	uint32_t header_fields;
	int64_t content_length; /* -1: not given */
	char method[8];
	char path[256];
	unsigned char *body;
	size_t bodylen, bodycap;
	struct gw_response resp;
	size_t resp_off;
};

enum gw_conn_state { GW_CONN_HANDSHAKE, GW_CONN_H2, GW_CONN_CLOSING };

/* Why an open connection was cut off: its peer no longer passes what a new
 * handshake and the members file would require (gw_conn_check). */
enum gw_cut {
	GW_CUT_NONE,
	GW_CUT_REVOKED,     /* listed in the reloaded CRL */
	GW_CUT_EXPIRED,     /* the certificate's not_after has passed */
	GW_CUT_CERTIFICATE, /* no longer verifies for another reason (CA replaced) */
	GW_CUT_MEMBER,      /* the OIN is no longer a member */
	GW_CUT_ROLES,       /* still a member, but under another id or with other roles */
};

struct gw_worker;

struct gw_conn {
	struct gw_evsrc ev; /* first: epoll hands us this pointer */
	struct gw_worker *w;
	uint64_t id;        /* unique per worker: finished jobs find their connection by it */
	struct gw_conn *prev, *next;
	enum gw_conn_state state;
	SSL *ssl;
	nghttp2_session *h2;
	struct gw_peer peer;
	uint64_t accepted_ms;
	uint64_t active_ms;  /* last byte read */
	uint64_t closing_ms; /* when GOAWAY went out */
	uint32_t epoll_events;
	uint32_t abuse;      /* misbehaviour score, decays each second */
	int preface_done;    /* the client's HTTP/2 preface and SETTINGS arrived */
	int calmed;          /* ENHANCE_YOUR_CALM sent */
	int goaway;          /* we decided to end the connection */
	enum gw_cut cut;     /* cut off: every request is refused, the connection closes */
	uint64_t verified_gen; /* the state generation the peer was last verified against */
	unsigned member_roles; /* as first verified; checked again on each reload */
	char member_id[65];    /* "" when the peer was not a member */
	enum gw_goaway_reason goaway_reason; /* why, for a NO_ERROR GOAWAY */
	uint32_t nstreams;
	struct gw_stream *streams;
	unsigned char *out;
	size_t out_len, out_off, out_cap;
};

struct gw_server;

/* One certificate's verdict against one state generation, so a reload
 * verifies each distinct certificate once per worker, not once per
 * connection (a partner holds many connections with one certificate; a
 * verification costs ~0.1 ms). */
#define GW_VERDICT_SLOTS 256
struct gw_verdict {
	uint64_t gen; /* 0: empty */
	char fingerprint[65];
	int why;      /* -1: verifies; else enum gw_hs_fail */
};

struct gw_worker {
	unsigned idx;
	pthread_t thread;
	struct gw_server *srv;
	int epfd;
	struct gw_evsrc wake;
	struct gw_evsrc listeners[GW_MAX_LISTEN];
	int nlisteners;
	int spare_fd; /* released when accept() hits the fd limit */
	uint64_t accept_paused_until; /* out of descriptors: listeners off until then */
	struct gw_conn *conns;
	uint32_t nconns;
	uint32_t max_conns;
	struct gw_state *state;
	_Atomic uint64_t seen_gen;
	int draining;
	int recheck;         /* a reload or a cut: gw_conn_check() every connection after this turn */
	uint64_t drain_deadline_ms;
	uint64_t now_ms;
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	struct gw_metrics metrics;
	struct gw_log log;
	struct gw_node_worker *node; /* NULL without the node role */
	uint64_t next_conn_id;
	pthread_mutex_t done_lock;   /* jobs finished by job threads, for this worker */
	struct gw_job *done;
	struct gw_verdict verdicts[GW_VERDICT_SLOTS];
	unsigned char rbuf[16384];
};

/* A deferred request: run on a job thread, answered on its worker. */
struct gw_job {
	struct gw_worker *w;
	uint64_t conn_id;
	int32_t stream_id;
	struct gw_state *state;  /* pinned */
	const struct gw_member *caller;
	struct cJSON *body;
	struct gw_response resp;
	struct gw_job *next;
};

struct gw_server {
	struct gw_config *cfg;
	_Atomic(struct gw_state *) state;
	atomic_int draining;
	struct gw_worker *workers;
	unsigned nworkers;
	struct gw_metrics **metrics; /* &workers[i].metrics, for /metrics */
	struct gw_metrics_global global;
	struct gw_state *retired;
	int log_fd;
	struct gw_node *node;   /* NULL without the node role */
	struct audit_log *audit; /* NULL without an audit log */
	struct gw_hubctx *hub;   /* NULL without the hub role */
};

/* server.c: hands a deferred stream to the job threads; 0, or -1 (the
 * caller answers 503). */
int gw_job_submit(struct gw_conn *c, struct gw_stream *s);

/*
 * server.c: whether |c|'s peer still passes: its certificate has not
 * expired, and after a reload its chain verifies against the new CA and CRL
 * and its OIN is still a member with the same id and roles. Returns 0, or
 * -1 once |c| is cut off: then every stream still owed an answer (a hub
 * question in progress too) has been answered 403 and GOAWAY queued; the
 * worker closes the connection after this event-loop turn. Called before
 * each request is handled and for every connection after a reload.
 */
int gw_conn_check(struct gw_conn *c);

/* h2.c */
/* Sends |s->resp| (filled by a finished job) on its stream. */
void gw_h2_respond(struct gw_conn *c, struct gw_stream *s);
int gw_h2_start(struct gw_conn *c);
void gw_h2_callbacks(nghttp2_session_callbacks *cbs);
void gw_h2_option(nghttp2_option *opt);
/* Answers |s| with 403 because its connection was cut off (|c->cut|). */
void gw_h2_refuse_cut(struct gw_conn *c, struct gw_stream *s);
/* Answers |s| with 408 when it outlived timeouts.request. */
void gw_h2_timeout_stream(struct gw_conn *c, struct gw_stream *s);
/* Adds |n| to the connection's misbehaviour score; past the budget, GOAWAY
 * ENHANCE_YOUR_CALM. */
void gw_h2_abuse(struct gw_conn *c, uint32_t n);
void gw_stream_free(struct gw_stream *s);

uint64_t gw_now_us(void);

#endif
