/*
 * The federation's clients, both on gateway/h2client.c (nghttp2 + OpenSSL):
 * the hub's fan-out (one subquery per node, all at once, over mutual-TLS
 * HTTP/2 on connections kept open between questions) and the coordinator's
 * `noordpoort query`.
 */
#ifndef NOORDPOORT_FANOUT_H
#define NOORDPOORT_FANOUT_H

#include "../common/err.h"

#include <stddef.h>
#include <stdio.h>

#include "hub.h" /* struct gw_hub_subquery, struct gw_hub_answer, gw_hub_fanout_fn */

/* What the gw_fanout_ functions return (0 on success). */
enum gw_fanout_error {
	GW_FANOUT_OK = 0,
	GW_FANOUT_ERR_NOMEM = NP_ERR_NOMEM,  /* out of memory */
	GW_FANOUT_ERR_ARG = NP_ERR_ARG,    /* NULL argument, or an endpoint that is not https:// */
	GW_FANOUT_ERR_FILE = NP_ERR_IO,   /* new: a certificate, key or CA file unreadable, unparsable,
				    * not matching, or a key readable by group/others */
	GW_FANOUT_ERR_INIT = NP_ERR_INIT,   /* OpenSSL or libsodium refused to start */
};

/* Largest subquery answer accepted. A tokens answer for a million persons is
 * about 18 MB of sealed box; anything past this is garbage, not data. */
#define GW_FANOUT_MAX_BODY ((size_t)512 << 20)
/* timeout_ms == 0 means this (hub.node_timeout's default). */
#define GW_FANOUT_DEFAULT_TIMEOUT_MS 10000u

struct gw_fanout;

/*
 * An mTLS client: |cert|/|key| = the hub's client certificate (PEM,
 * certs/dev/hub.crt), |ca| = the federation CA that node certificates must
 * chain to. Nodes are always verified (peer and host name); there is no
 * switch to turn that off. The three files are read once, here, and checked
 * (key matches certificate, key not accessible by group/others): a reload
 * makes a new gw_fanout. Returns 0 and |*out|, or GW_FANOUT_ERR_ARG, _FILE,
 * _NOMEM, _INIT with |*out| = NULL and |err| saying which file and why.
 */
int gw_fanout_new(const char *cert, const char *key, const char *ca, struct gw_fanout **out,
		  char *err, size_t errlen);

/*
 * A gw_hub_fanout_fn (|fanout| is the struct gw_fanout). POSTs q[i].body
 * (q[i].len bytes, content-type application/json; the caller keeps owning
 * it) to q[i].endpoint + "/v1/federation/subquery" over HTTP/2 (ALPN h2,
 * TLS >= 1.2), all n at once, and returns when every answer is in or
 * |timeout_ms| has passed since the call, whichever is first (0 =
 * GW_FANOUT_DEFAULT_TIMEOUT_MS; connecting and the TLS handshake count).
 * An endpoint is "https://HOST:PORT": HOST a name, an IPv4 address or an
 * IPv6 address in brackets (":PORT" left out means 443). Fills a[i] for
 * every i < n:
 *
 *   node       q[i].node
 *   status     the HTTP status of the answer (any status, 2xx or not), or 0
 *   timed_out  1 when the deadline passed before the answer was complete
 *   body, len  the answer's body (malloc'd, NUL-terminated beyond len, the
 *              caller frees it), or NULL/0 when status is 0
 *
 * Convention: status 0 with timed_out 0 means the node gave no usable answer
 * for a reason other than time: connection refused, name not resolved, TLS
 * failure (the node's certificate did not verify, or it refused ours), a
 * broken HTTP/2 stream, or a body larger than GW_FANOUT_MAX_BODY (treated as
 * garbage and dropped). gw_fanout_exchange says which.
 *
 * Several threads may call this at once with one gw_fanout. Connections to
 * nodes are kept open and reused by later calls (see fanout.c); one the node
 * closed meanwhile is replaced transparently. Requests to the same node in
 * one call share one HTTP/2 connection.
 *
 * Returns 0 when every a[i] was filled (whatever the nodes did), or
 * GW_FANOUT_ERR_ARG (NULL arguments, an endpoint not https://HOST:PORT) or
 * GW_FANOUT_ERR_NOMEM; then every a[i] is still set to status 0, body NULL
 * (nothing to free).
 */
int gw_fanout_run(void *fanout, const struct gw_hub_subquery *q, size_t n, struct gw_hub_answer *a,
		  unsigned timeout_ms);

/*
 * gw_fanout_run that also says why an answer is missing: |why| (n entries,
 * may be NULL) gets, for each a[i] with status 0, a static English phrase
 * ("Couldn't connect to server", "Server certificate did not verify",
 * "Timeout was reached", "answer larger than 512 MiB", ...: h2c_fail_phrase
 * or ours), NULL otherwise. For the hub's 502 message and its log.
 */
int gw_fanout_exchange(struct gw_fanout *f, const struct gw_hub_subquery *q, size_t n,
		       struct gw_hub_answer *a, const char **why, unsigned timeout_ms);

/* Connections opened so far (all threads): a metric, and how the tests see
 * reuse. */
unsigned long gw_fanout_connections(struct gw_fanout *f);

/* Closes every kept connection and frees |f|; no call may be running. NULL
 * is a no-op. */
void gw_fanout_free(struct gw_fanout *f);

/*
 * The coordinator's client (cli/query_cli.c): `noordpoort query`.
 * argv[0] = "query". --help prints the usage and returns 0; bad usage prints
 * one line on stderr and returns 2; a refusal by the hub, a connection or TLS
 * failure or an unreadable answer prints one line on stderr and returns 1.
 */
int query_cli(int argc, char **argv);

enum query_fmt { QUERY_FMT_TABLE, QUERY_FMT_CSV, QUERY_FMT_JSON };

/*
 * Writes the hub's answer (docs/federation.md "The answer"; |len| bytes of
 * JSON) to |out| as an aligned table with a legend, as CSV, or as
 * pretty-printed JSON (docs/query.md). Returns 0, or -1 with |err| naming
 * what is wrong with the answer (nothing is written then) or -2 when writing
 * to |out| failed.
 */
int query_format(const char *answer_json, size_t len, enum query_fmt fmt, FILE *out, char *err,
		 size_t errlen);

#endif
