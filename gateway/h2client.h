/*
 * The federation's HTTP/2 client, shared by the hub's fan-out (fanout.c) and
 * `noordpoort query` (query_cli.c): POST requests over mutual TLS, nghttp2's
 * client session on non-blocking OpenSSL sockets, any number of connections
 * driven at once by one poll() loop, several requests on each connection.
 */
#ifndef NOORDPOORT_H2CLIENT_H
#define NOORDPOORT_H2CLIENT_H

#include "../common/err.h"

#include <stddef.h>
#include <stdint.h>

/* What the h2c_ functions return (0 on success); the values are those of
 * enum gw_fanout_error. */
enum h2c_error {
	H2C_OK = 0,
	H2C_ERR_NOMEM = NP_ERR_NOMEM, /* out of memory */
	H2C_ERR_ARG = NP_ERR_ARG,   /* NULL argument, or an endpoint that is not https://HOST:PORT */
	H2C_ERR_FILE = NP_ERR_IO,  /* a certificate, key or CA file unreadable, unparsable, not
			     * matching, or a key readable by group/others */
	H2C_ERR_INIT = NP_ERR_INIT,  /* OpenSSL or libsodium failed to initialise */
};

/* Why a request has no answer (h2c_fail_phrase() says it in words). */
enum h2c_fail {
	H2C_FAIL_NONE = 0,
	H2C_FAIL_RESOLVE,  /* the host name did not resolve */
	H2C_FAIL_CONNECT,  /* no TCP connection to any of its addresses */
	H2C_FAIL_VERIFY,   /* the server's certificate did not verify (chain or name) */
	H2C_FAIL_TLS,      /* the TLS handshake failed otherwise (e.g. it refused ours) */
	H2C_FAIL_NO_H2,    /* the server did not select HTTP/2 by ALPN */
	H2C_FAIL_TIMEOUT,  /* the deadline passed before the answer was complete */
	H2C_FAIL_RESET,    /* the server reset the stream */
	H2C_FAIL_CLOSED,   /* the connection ended before the answer was complete */
	H2C_FAIL_PROTOCOL, /* the server broke HTTP/2 */
	H2C_FAIL_TOO_BIG,  /* the answer is larger than the request's max_body */
	H2C_FAIL_NOMEM,    /* out of memory on our side */
};

/* A short static English phrase for |f| ("Couldn't connect to server"). */
const char *h2c_fail_phrase(enum h2c_fail f);

/*
 * One POST. The caller fills the first part, keeps owning |path| and |body|
 * until h2c_run returns, and zeroes the rest before h2c_conn_add.
 */
struct h2c_request {
	const char *path;  /* "/v1/federation/subquery" */
	const void *body;  /* |len| bytes sent as application/json */
	size_t len;
	size_t max_body;   /* a larger answer fails with H2C_FAIL_TOO_BIG */

	/* The outcome, set by h2c_run. status > 0 only when fail is NONE; then
	 * |answer| is malloc'd (the caller frees it), NUL-terminated beyond
	 * |answer_len|, and may hold any bytes. */
	int status;
	char *answer;
	size_t answer_len;
	enum h2c_fail fail;

	/* Private to h2client.c. */
	struct h2c_request *next;
	size_t sent, cap;
	int32_t stream_id;
	int done, got_headers, ended, refused, reset_by_peer;
};

struct h2c_tls;  /* certificate, key and CA, loaded once; shared by threads */
struct h2c_conn; /* one connection to one endpoint; used by one thread at a time */

/*
 * Reads the client certificate |cert| (PEM, may carry its chain), its key
 * |key| (PEM, must not be accessible by group or others and owned by this
 * user or root) and the CA file |ca| (PEM, every certificate in it is
 * trusted, nothing else: not the system's store), and checks that the key belongs to the certificate.
 * Returns 0 and |*out|, or H2C_ERR_ARG, _FILE, _NOMEM, _INIT with |*out| =
 * NULL and |err| naming the file and what is wrong with it.
 */
int h2c_tls_new(const char *cert, const char *key, const char *ca, struct h2c_tls **out, char *err,
		size_t errlen);

/* Frees |t|; every connection made with it must be freed first. NULL is a
 * no-op. */
void h2c_tls_free(struct h2c_tls *t);

/*
 * A connection to |url| = "https://HOST:PORT" (HOST a name, an IPv4 address
 * or an IPv6 address in brackets; without ":PORT", 443; one trailing "/" is
 * allowed). Nothing is sent until h2c_run. The server's certificate is
 * always verified: it must chain to the CA and name HOST (a DNS name, or
 * the IP address). Returns 0 and |*out|, or H2C_ERR_ARG (any other URL) or
 * H2C_ERR_NOMEM.
 */
int h2c_conn_new(struct h2c_tls *t, const char *url, struct h2c_conn **out);

/*
 * Connect through the HTTP proxy |proxy| ("http://HOST[:PORT]" or
 * "HOST[:PORT]", port 1080 by default, as curl reads https_proxy) with
 * CONNECT, unless |no_proxy| (may be NULL) names the host: comma- or
 * space-separated host names, domains (".example.org" or "example.org",
 * with their subdomains) and addresses, "*" for all. TLS still runs end to
 * end to the server. NULL or "" |proxy|: connect directly. Returns 0, or
 * H2C_ERR_ARG for a proxy URL of another kind (https://, socks, user
 * info), leaving |c| without a proxy (the caller should refuse rather than
 * go around the proxy the user set).
 */
int h2c_conn_set_proxy(struct h2c_conn *c, const char *proxy, const char *no_proxy);

/* 0 when |url| is one h2c_conn_new accepts, H2C_ERR_ARG otherwise. */
int h2c_url_check(const char *url);

/* "host:port" of the connection (the :authority), for comparing endpoints:
 * the host in lower case, an IPv6 address in brackets. */
const char *h2c_conn_authority(const struct h2c_conn *c);

/* Queues |r| on |c| for the next h2c_run. */
void h2c_conn_add(struct h2c_conn *c, struct h2c_request *r);

/*
 * Connects what is not connected, sends every queued request and returns
 * when all have an outcome or the clock (h2c_now_ms) reaches |deadline_ms|;
 * a connection not established (TCP and TLS) by |connect_deadline_ms| fails
 * as timed out. A connection left open by an earlier run is checked first
 * and reconnected when the server has closed it; if it dies under requests
 * that got no answer yet, they are sent once more on a new connection
 * (so are requests the server refused unprocessed, RST_STREAM or GOAWAY
 * REFUSED_STREAM). Returns 0 (every queued request then has its outcome
 * and is no longer queued) or H2C_ERR_NOMEM (nothing was sent).
 */
int h2c_run(struct h2c_conn *const *conns, size_t n, uint64_t connect_deadline_ms,
	    uint64_t deadline_ms);

/* 1 when |c| may carry the next run's requests: open, every request of the
 * last run answered in full, no GOAWAY from the server. */
int h2c_conn_reusable(const struct h2c_conn *c);

/* Connections |c| has opened (TCP established) since h2c_conn_new. */
unsigned long h2c_conn_opened(const struct h2c_conn *c);

/* What the last failure on |c| was, in more words than the phrase
 * ("127.0.0.1 port 1: Connection refused", "hostname mismatch"), or "". */
const char *h2c_conn_detail(const struct h2c_conn *c);

/* Closes |c| (a GOAWAY when it is open, best effort) and frees it. Queued
 * requests are forgotten, not freed. NULL is a no-op. */
void h2c_conn_free(struct h2c_conn *c);

/* The clock of the deadlines: CLOCK_MONOTONIC in milliseconds. */
uint64_t h2c_now_ms(void);

#endif
