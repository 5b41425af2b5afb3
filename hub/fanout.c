/*
 * The hub's fan-out: one POST /v1/federation/subquery per node, all at once,
 * over mutual-TLS HTTP/2 (gateway/h2client.c), on connections that stay
 * open between questions.
 *
 * Reuse and threads: a gw_fanout keeps a pool of idle connections, most
 * recently used first. A call takes, for each node it asks, one idle
 * connection to that node (or opens one), sends all its subqueries to that
 * node on it, and puts it back when every answer came in full. So
 * sequential questions reuse one connection per node; N questions at once
 * use up to N per node, each used by one thread at a time, which needs no
 * locking but around the pool itself. A connection idle for longer than
 * CONN_MAX_AGE_MS is closed, not reused.
 */
#include "../common/errbuf.h"
#include "fanout.h"
#include "../gateway/h2client.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SUBQUERY_PATH "/v1/federation/subquery"
/* Do not reuse a connection idle for longer than this. Gateways close idle
 * connections after 120 s (timeouts.idle); reusing one at that moment would
 * race its close. */
#define CONN_MAX_AGE_MS 100000u
/* Idle connections kept at most (all nodes): more than the nodes of any
 * federation we know (the demo has nine) times the hub's job threads. */
#define POOL_MAX 256
/* The cap on an answer; tests/unit/test_fanout.c lowers it to reach it
 * without 512 MiB of data. */
#ifndef FANOUT_MAX_BODY
#define FANOUT_MAX_BODY GW_FANOUT_MAX_BODY
#endif

struct idle_conn {
	struct h2c_conn *conn;
	uint64_t since_ms;
	struct idle_conn *next;
};

struct gw_fanout {
	struct h2c_tls *tls;    /* read-only after new: shared by all calls */
	pthread_mutex_t lock;   /* guards idle, nidle and opened */
	struct idle_conn *idle; /* most recently used first */
	size_t nidle;
	unsigned long opened;
};

/* One node of a call: its connection and what it had opened before. */
struct node_conn {
	struct h2c_conn *conn;
	unsigned long opened_before;
};

int gw_fanout_new(const char *cert, const char *key, const char *ca, struct gw_fanout **out,
		  char *err, size_t errlen)
{
	struct gw_fanout *f;
	int rc;

	if (out)
		*out = NULL;
	if (!cert || !key || !ca || !out || !*cert || !*key || !*ca) {
		err_set(err, errlen, "fan-out: certificate, key and CA files are all required");
		return GW_FANOUT_ERR_ARG;
	}
	if (!(f = calloc(1, sizeof(*f)))) {
		err_set(err, errlen, "fan-out: out of memory");
		return GW_FANOUT_ERR_NOMEM;
	}
	if (pthread_mutex_init(&f->lock, NULL) != 0) {
		free(f);
		err_set(err, errlen, "fan-out: cannot create a mutex");
		return GW_FANOUT_ERR_NOMEM;
	}
	/* The h2c_ codes are the gw_fanout_ ones (h2client.h). */
	if ((rc = h2c_tls_new(cert, key, ca, &f->tls, err, errlen)) < 0) {
		gw_fanout_free(f);
		return rc;
	}
	*out = f;
	return 0;
}

void gw_fanout_free(struct gw_fanout *f)
{
	struct idle_conn *i, *next;

	if (!f)
		return;
	for (i = f->idle; i; i = next) {
		next = i->next;
		h2c_conn_free(i->conn);
		free(i);
	}
	h2c_tls_free(f->tls);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

unsigned long gw_fanout_connections(struct gw_fanout *f)
{
	unsigned long n;

	pthread_mutex_lock(&f->lock);
	n = f->opened;
	pthread_mutex_unlock(&f->lock);
	return n;
}

/* An idle connection to |authority| from the pool, or NULL. Connections
 * idle too long are closed on the way (outside the lock). */
static struct h2c_conn *pool_take(struct gw_fanout *f, const char *authority)
{
	struct idle_conn **p, *i, *stale = NULL;
	struct h2c_conn *c = NULL;
	uint64_t now = h2c_now_ms();

	pthread_mutex_lock(&f->lock);
	for (p = &f->idle; (i = *p);) {
		if (now - i->since_ms > CONN_MAX_AGE_MS) {
			*p = i->next;
			f->nidle--;
			i->next = stale;
			stale = i;
			continue;
		}
		if (!c && strcmp(h2c_conn_authority(i->conn), authority) == 0) {
			*p = i->next;
			f->nidle--;
			c = i->conn;
			free(i);
			continue;
		}
		p = &i->next;
	}
	pthread_mutex_unlock(&f->lock);
	while ((i = stale)) {
		stale = i->next;
		h2c_conn_free(i->conn);
		free(i);
	}
	return c;
}

/* Back into the pool if it can carry the next question; closed if not. */
static void pool_put(struct gw_fanout *f, struct h2c_conn *c)
{
	struct idle_conn *i = NULL;

	if (h2c_conn_reusable(c) && (i = malloc(sizeof(*i)))) {
		i->conn = c;
		i->since_ms = h2c_now_ms();
		pthread_mutex_lock(&f->lock);
		if (f->nidle < POOL_MAX) {
			i->next = f->idle;
			f->idle = i;
			f->nidle++;
			c = NULL;
			i = NULL;
		}
		pthread_mutex_unlock(&f->lock);
	}
	free(i);
	h2c_conn_free(c);
}

/* The call's connections: one per distinct node (by host:port), taken from
 * the pool or new; node_of[i] says which one carries q[i]. Returns the
 * number of nodes, or GW_FANOUT_ERR_NOMEM (what was taken is in |nc|). */
static int connect_nodes(struct gw_fanout *f, const struct gw_hub_subquery *q, size_t n,
			 struct node_conn *nc, size_t *node_of)
{
	size_t nn = 0;

	for (size_t i = 0; i < n; i++) {
		struct h2c_conn *c = NULL, *pooled;
		size_t j;

		if (h2c_conn_new(f->tls, q[i].endpoint, &c) < 0)
			return GW_FANOUT_ERR_NOMEM; /* the URL was checked */
		for (j = 0; j < nn; j++)
			if (strcmp(h2c_conn_authority(nc[j].conn), h2c_conn_authority(c)) == 0)
				break;
		node_of[i] = j;
		if (j < nn) {
			h2c_conn_free(c);
			continue;
		}
		if ((pooled = pool_take(f, h2c_conn_authority(c)))) {
			h2c_conn_free(c);
			c = pooled;
		}
		nc[nn].conn = c;
		nc[nn].opened_before = h2c_conn_opened(c);
		nn++;
	}
	return (int)nn;
}

/* The outcome of one request as the hub sees it. */
static void answer_from(struct h2c_request *r, struct gw_hub_answer *a, const char **why)
{
	if (r->fail == H2C_FAIL_NONE) {
		a->status = r->status;
		a->body = r->answer;
		a->len = r->answer_len;
		r->answer = NULL;
		return;
	}
	a->timed_out = r->fail == H2C_FAIL_TIMEOUT;
	a->too_big = r->fail == H2C_FAIL_TOO_BIG;
	if (!why)
		return;
	if (r->fail == H2C_FAIL_TOO_BIG)
		*why = "answer larger than 512 MiB";
	else if (r->fail == H2C_FAIL_NOMEM)
		*why = "out of memory";
	else
		*why = h2c_fail_phrase(r->fail);
}

int gw_fanout_exchange(struct gw_fanout *f, const struct gw_hub_subquery *q, size_t n,
		       struct gw_hub_answer *a, const char **why, unsigned timeout_ms)
{
	struct h2c_request *r = NULL;
	struct node_conn *nc = NULL;
	struct h2c_conn **conns = NULL;
	size_t *node_of = NULL;
	unsigned long opened = 0;
	uint64_t deadline;
	int nn = 0, rc;

	if (!a && n)
		return GW_FANOUT_ERR_ARG;
	for (size_t i = 0; i < n; i++) {
		a[i] = (struct gw_hub_answer){ .node = q ? q[i].node : NULL };
		if (why)
			why[i] = NULL;
	}
	if (!f || (!q && n))
		return GW_FANOUT_ERR_ARG;
	for (size_t i = 0; i < n; i++)
		if (h2c_url_check(q[i].endpoint) < 0 || (!q[i].body && q[i].len))
			return GW_FANOUT_ERR_ARG;
	if (n == 0)
		return 0;
	if (timeout_ms == 0)
		timeout_ms = GW_FANOUT_DEFAULT_TIMEOUT_MS;
	/* The deadline covers everything: connect, handshake, request, answer. */
	deadline = h2c_now_ms() + timeout_ms;
	rc = GW_FANOUT_ERR_NOMEM;
	if (!(r = calloc(n, sizeof(*r))) || !(nc = calloc(n, sizeof(*nc))) ||
	    !(conns = calloc(n, sizeof(*conns))) || !(node_of = calloc(n, sizeof(*node_of))))
		goto done;
	if ((nn = connect_nodes(f, q, n, nc, node_of)) < 0) {
		for (nn = 0; nn < (int)n && nc[nn].conn; nn++)
			;
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		r[i].path = SUBQUERY_PATH;
		r[i].body = q[i].body;
		r[i].len = q[i].len;
		r[i].max_body = FANOUT_MAX_BODY;
		h2c_conn_add(nc[node_of[i]].conn, &r[i]);
	}
	for (int j = 0; j < nn; j++)
		conns[j] = nc[j].conn;
	if (h2c_run(conns, (size_t)nn, deadline, deadline) < 0)
		goto done;
	for (size_t i = 0; i < n; i++)
		answer_from(&r[i], &a[i], why ? &why[i] : NULL);
	rc = 0;
done:
	for (int j = 0; nc && j < nn; j++) {
		opened += h2c_conn_opened(nc[j].conn) - nc[j].opened_before;
		if (rc == 0)
			pool_put(f, nc[j].conn);
		else
			h2c_conn_free(nc[j].conn);
	}
	if (opened) {
		pthread_mutex_lock(&f->lock);
		f->opened += opened;
		pthread_mutex_unlock(&f->lock);
	}
	for (size_t i = 0; r && i < n; i++)
		free(r[i].answer);
	if (rc < 0) {
		for (size_t i = 0; i < n; i++) {
			free(a[i].body);
			a[i] = (struct gw_hub_answer){ .node = q[i].node };
			if (why)
				why[i] = NULL;
		}
	}
	free(node_of);
	free(conns);
	free(nc);
	free(r);
	return rc;
}

int gw_fanout_run(void *fanout, const struct gw_hub_subquery *q, size_t n, struct gw_hub_answer *a,
		  unsigned timeout_ms)
{
	return gw_fanout_exchange(fanout, q, n, a, NULL, timeout_ms);
}
