/*
 * Unit tests for the HTTP/2 client (gateway/h2client.c) against real servers
 * on loopback: the gateway (which refuses a client certificate of another
 * CA), misbehaving servers (tests/integration/h2peer.py: no ALPN h2, a
 * certificate for another host, answers reset, dropped or stalled half way,
 * connections closed under a kept connection, GOAWAY), and every allocation
 * failing in turn.
 */
#define CHECK_FILE "test_h2client"
#include "check.h"
#include "peer.h"

/*
 * Out of memory: h2client.c's allocations, and nghttp2's (it allocates
 * through h2client.c's nghttp2_mem), fail one at a time. Every header
 * h2client.c uses comes first, so the macros below rewrite its code only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/stat.h>
#include <nghttp2/nghttp2.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sodium.h>
#include "../../common/errbuf.h"
#include "../../gateway/h2client.h"

static long alloc_fail_at = -1, alloc_count;
static int alloc_failed;

static int alloc_fails(void)
{
	if (alloc_fail_at < 0 || alloc_count++ != alloc_fail_at)
		return 0;
	alloc_failed = 1;
	return 1;
}
static void *t_malloc(size_t n)
{
	return alloc_fails() ? NULL : malloc(n);
}
static void *t_calloc(size_t n, size_t s)
{
	return alloc_fails() ? NULL : calloc(n, s);
}
static void *t_realloc(void *p, size_t n)
{
	return alloc_fails() ? NULL : realloc(p, n);
}
/* A block h2client.c frees while |watch| points at it: whether its first
 * |watch_len| bytes were zeros by then (answers are wiped, not just freed). */
static const void *watch;
static size_t watch_len;
static int watch_freed, watch_wiped;
static void t_free(void *p)
{
	if (p && p == watch) {
		watch_freed = 1;
		watch_wiped = 1;
		for (size_t i = 0; i < watch_len; i++)
			if (((const unsigned char *)p)[i])
				watch_wiped = 0;
		watch = NULL;
	}
	free(p);
}
#define malloc(n) t_malloc(n)
#define calloc(n, s) t_calloc(n, s)
#define realloc(p, n) t_realloc(p, n)
#define free(p) t_free(p)
#include "../../gateway/h2client.c"
#undef malloc
#undef calloc
#undef realloc
#undef free

static struct server gw;
static struct h2peer peer;
static struct h2c_tls *hub_tls;

static char *url(const char *host, int port)
{
	static char buf[8][64];
	static int next;
	char *u = buf[next++ % 8];

	snprintf(u, 64, "https://%s:%d", host, port);
	return u;
}

/* One POST of |body| to |u| on a new connection; the outcome in |r|, the
 * connection's detail in |detail|. Returns h2c_run's result. */
static int ask(struct h2c_tls *t, const char *u, const char *body, size_t max_body,
	       unsigned timeout_ms, struct h2c_request *r, char *detail, size_t dlen)
{
	struct h2c_conn *c = NULL;
	uint64_t now = h2c_now_ms();
	int rc;

	*r = (struct h2c_request){ .path = "/v1/federation/subquery", .body = body,
				   .len = strlen(body), .max_body = max_body };
	if ((rc = h2c_conn_new(t, u, &c)) < 0)
		return rc;
	h2c_conn_add(c, r);
	rc = h2c_run(&c, 1, now + timeout_ms, now + timeout_ms);
	if (detail)
		snprintf(detail, dlen, "%s", h2c_conn_detail(c));
	h2c_conn_free(c);
	return rc;
}

/* The outcome of a request that got no answer. */
static void check_failed(const struct h2c_request *r, enum h2c_fail want, const char *what)
{
	if (r->fail != want)
		printf("#   %s: fail %d (%s), expected %d (%s)\n", what, r->fail,
		       h2c_fail_phrase(r->fail), want, h2c_fail_phrase(want));
	CHECK(r->fail == want);
	CHECK(r->status == 0 && r->answer == NULL && r->answer_len == 0);
}

static int is_pattern(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] != (unsigned char)(i % 256))
			return 0;
	return 1;
}

/* ---- tests --------------------------------------------------------------- */

static void test_tls_new_refuses_bad_files(void)
{
	struct h2c_tls *t = (struct h2c_tls *)1;
	char err[512] = "", *loose, *text;

	CHECK(h2c_tls_new(NULL, "k", "c", &t, err, sizeof(err)) == H2C_ERR_ARG && !t);
	CHECK(h2c_tls_new(cert_path("hub.crt"), cert_path("hub.key"), "/nonexistent/ca.crt", &t, err,
			  sizeof(err)) == H2C_ERR_FILE && !t);
	CHECK_CONTAINS(err, "/nonexistent/ca.crt: cannot open: No such file");
	CHECK(h2c_tls_new(cert_path("hub.crt"), cert_path("uwv.key"), cert_path("ca.crt"), &t, err,
			  sizeof(err)) == H2C_ERR_FILE);
	CHECK_CONTAINS(err, "does not belong to certificate");
	CHECK(h2c_tls_new(cert_path("hub.key"), cert_path("hub.key"), cert_path("ca.crt"), &t, err,
			  sizeof(err)) == H2C_ERR_FILE);
	CHECK_CONTAINS(err, "not a PEM certificate");
	text = slurp(cert_path("hub.crt"));
	loose = check_write(peer_dir, "cert-as.key", text ? text : "");
	chmod(loose, 0600);
	CHECK(h2c_tls_new(cert_path("hub.crt"), loose, cert_path("ca.crt"), &t, err, sizeof(err)) ==
	      H2C_ERR_FILE);
	CHECK_CONTAINS(err, "not a PEM private key");
	free(loose);
	free(text);
	CHECK(h2c_tls_new(cert_path("hub.crt"), cert_path("hub.key"), cert_path("hub.key"), &t, err,
			  sizeof(err)) == H2C_ERR_FILE);
	CHECK_CONTAINS(err, "no PEM certificate");
	text = slurp(cert_path("hub.key"));
	loose = check_write(peer_dir, "loose.key", text ? text : "");
	chmod(loose, 0640);
	CHECK(h2c_tls_new(cert_path("hub.crt"), loose, cert_path("ca.crt"), &t, err, sizeof(err)) ==
	      H2C_ERR_FILE);
	CHECK_CONTAINS(err, ": secret key file is accessible by group or others (mode 0640); "
			    "run: chmod 600 '");
	free(loose);
	free(text);
	h2c_tls_free(NULL);
}

static void test_urls(void)
{
	static const char *good[] = { "https://127.0.0.1:8443", "https://[::1]:8443",
				      "https://node.example:1", "https://Node.Example",
				      "https://h:65535/", "https://[2001:db8::1]" };
	static const char *bad[] = { "http://x:1", "https://", "https://:1", "https://x:0",
				     "https://x:65536", "https://x:1/path", "https://user@x:1",
				     "https://[::1", "https://[zz]:1", "https://x:1?q", "https://x: 1",
				     "https://[fe80::1%25eth0]:1", "https://x:", "HTTPS://x:1",
				     "https://a b:1", "https://x:1//" };
	struct h2c_conn *c;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (h2c_url_check(good[i]) != 0)
			printf("#   refused %s\n", good[i]);
		CHECK(h2c_url_check(good[i]) == 0);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (h2c_url_check(bad[i]) != H2C_ERR_ARG)
			printf("#   accepted %s\n", bad[i]);
		CHECK(h2c_url_check(bad[i]) == H2C_ERR_ARG);
	}
	CHECK(h2c_url_check(NULL) == H2C_ERR_ARG);
	CHECK(h2c_conn_new(hub_tls, "https://LocalHost:5/", &c) == 0);
	CHECK_STR(h2c_conn_authority(c), "localhost:5");
	CHECK(!c->host_is_ip);
	h2c_conn_free(c);
	CHECK(h2c_conn_new(hub_tls, "https://[::1]", &c) == 0);
	CHECK_STR(h2c_conn_authority(c), "[::1]:443");
	CHECK_STR(c->host, "::1");
	CHECK(c->host_is_ip);
	h2c_conn_free(c);
	CHECK(h2c_conn_new(hub_tls, "https://10.1.2.3:99", &c) == 0 && c->host_is_ip);
	h2c_conn_free(c);
	CHECK(h2c_conn_new(hub_tls, "ftp://x:1", &c) == H2C_ERR_ARG && !c);
}

/* https_proxy and no_proxy as curl reads them. */
static void test_proxy_settings(void)
{
	struct h2c_conn *c = NULL;

	CHECK(no_proxy_matches("*", "node.example"));
	CHECK(no_proxy_matches("example.org, node.example", "node.example"));
	CHECK(no_proxy_matches(".example", "node.example"));
	CHECK(no_proxy_matches("example", "a.node.example"));
	CHECK(no_proxy_matches("EXAMPLE", "a.node.example"));
	CHECK(!no_proxy_matches("ode.example", "node.example"));
	CHECK(!no_proxy_matches("node.example.org", "node.example"));
	CHECK(no_proxy_matches("127.0.0.1", "127.0.0.1"));
	CHECK(no_proxy_matches("[::1]", "::1"));
	CHECK(!no_proxy_matches("", "node.example") && !no_proxy_matches(NULL, "node.example"));
	CHECK(h2c_conn_new(hub_tls, "https://node.example:8443", &c) == 0);
	CHECK(h2c_conn_set_proxy(c, "http://Proxy.Local:3128", NULL) == 0);
	CHECK_STR(c->proxy_host, "proxy.local");
	CHECK_STR(c->proxy_port, "3128");
	CHECK(h2c_conn_set_proxy(c, "proxy.local", "") == 0);
	CHECK_STR(c->proxy_port, "1080");
	CHECK(h2c_conn_set_proxy(c, "http://proxy.local:3128", "other,.example") == 0);
	CHECK_STR(c->proxy_host, "");
	CHECK(h2c_conn_set_proxy(c, "", NULL) == 0 && c->proxy_host[0] == '\0');
	CHECK(h2c_conn_set_proxy(c, "socks5://p:1080", NULL) == H2C_ERR_ARG);
	CHECK(h2c_conn_set_proxy(c, "https://p:1080", NULL) == H2C_ERR_ARG);
	CHECK(h2c_conn_set_proxy(c, "http://user:pw@p:1080", NULL) == H2C_ERR_ARG);
	CHECK(c->proxy_host[0] == '\0');
	h2c_conn_free(c);
}

/* Binary answers of several MB (past the default 64 KiB windows), with and
 * without content-length, and an empty one. */
static void test_answers(void)
{
	struct h2c_request r;
	char body[128];
	const size_t big = (3u << 20) + 17;

	snprintf(body, sizeof(body), "{\"do\":\"ok\",\"size\":%zu}", big);
	CHECK(ask(hub_tls, url("127.0.0.1", peer.h2), body, 64u << 20, 10000, &r, NULL, 0) == 0);
	CHECK(r.fail == H2C_FAIL_NONE && r.status == 200 && r.answer_len == big);
	CHECK(r.answer && is_pattern(r.answer, r.answer_len) && r.answer[big] == '\0');
	free(r.answer);
	CHECK(ask(hub_tls, url("127.0.0.1", peer.h2), "{\"do\":\"nolength\",\"size\":100000}",
		  64u << 20, 10000, &r, NULL, 0) == 0);
	CHECK(r.status == 200 && r.answer_len == 100000 && is_pattern(r.answer, 100000));
	free(r.answer);
	CHECK(ask(hub_tls, url("127.0.0.1", peer.h2), "{\"do\":\"ok\",\"size\":0}", 100, 10000, &r,
		  NULL, 0) == 0);
	if (r.fail)
		printf("#   empty answer: %s\n", h2c_fail_phrase(r.fail));
	CHECK(r.status == 200 && r.answer && r.answer_len == 0 && r.answer[0] == '\0');
	free(r.answer);
	/* by name: the certificate says DNS:localhost; ::1 first may refuse */
	CHECK(ask(hub_tls, url("localhost", peer.h2), "{\"say\":\"hello\"}", 1000, 10000, &r, NULL,
		  0) == 0);
	CHECK(r.status == 200);
	CHECK_CONTAINS(r.answer, "hello");
	free(r.answer);
}

/* Five requests on one connection, all answered on it. */
static void test_one_connection_many_requests(void)
{
	struct h2c_conn *c = NULL;
	struct h2c_request r[5];
	char bodies[5][64];
	uint64_t now = h2c_now_ms();

	CHECK(h2c_conn_new(hub_tls, url("127.0.0.1", peer.h2), &c) == 0);
	for (int i = 0; i < 5; i++) {
		snprintf(bodies[i], sizeof(bodies[i]), "{\"do\":\"ok\",\"size\":%d}", 1000 * (i + 1));
		r[i] = (struct h2c_request){ .path = "/", .body = bodies[i], .len = strlen(bodies[i]),
					     .max_body = 1 << 20 };
		h2c_conn_add(c, &r[i]);
	}
	CHECK(h2c_run(&c, 1, now + 10000, now + 10000) == 0);
	for (int i = 0; i < 5; i++) {
		CHECK(r[i].status == 200 && r[i].answer_len == (size_t)(1000 * (i + 1)));
		free(r[i].answer);
	}
	CHECK(h2c_conn_opened(c) == 1 && h2c_conn_reusable(c));
	h2c_conn_free(c);
}

static void test_server_without_h2(void)
{
	struct h2c_request r;
	char detail[320];

	CHECK(ask(hub_tls, url("127.0.0.1", peer.http11), "{}", 100, 5000, &r, detail,
		  sizeof(detail)) == 0);
	check_failed(&r, H2C_FAIL_NO_H2, "ALPN http/1.1 only");
	printf("# http/1.1 only: %s (%s)\n", h2c_fail_phrase(r.fail), detail);
	CHECK(ask(hub_tls, url("127.0.0.1", peer.noalpn), "{}", 100, 5000, &r, detail,
		  sizeof(detail)) == 0);
	check_failed(&r, H2C_FAIL_NO_H2, "no ALPN");
	CHECK_CONTAINS(detail, "the server selected no protocol");
	CHECK_STR(h2c_fail_phrase(H2C_FAIL_NO_H2), "Server did not select HTTP/2 (ALPN h2)");
}

/* The name or address we dialled must be in the certificate. */
static void test_certificate_for_another_host(void)
{
	struct h2c_request r;
	char detail[320];

	CHECK(ask(hub_tls, url("localhost", peer.otherhost), "{}", 100, 5000, &r, detail,
		  sizeof(detail)) == 0);
	check_failed(&r, H2C_FAIL_VERIFY, "DNS name not in the certificate");
	CHECK_CONTAINS(detail, "hostname mismatch");
	CHECK(ask(hub_tls, url("127.0.0.1", peer.otherhost), "{}", 100, 5000, &r, detail,
		  sizeof(detail)) == 0);
	check_failed(&r, H2C_FAIL_VERIFY, "address not in the certificate");
	CHECK_CONTAINS(detail, "IP address mismatch");
	if (peer.ip2 > 0) {
		/* the dev certificate lists 127.0.0.1, not 127.0.0.2 */
		CHECK(ask(hub_tls, url("127.0.0.2", peer.ip2), "{}", 100, 5000, &r, detail,
			  sizeof(detail)) == 0);
		check_failed(&r, H2C_FAIL_VERIFY, "127.0.0.2");
		CHECK_CONTAINS(detail, "IP address mismatch");
	}
	CHECK_CONTAINS(h2c_fail_phrase(H2C_FAIL_VERIFY), "certificate");
}

static void test_certificate_of_another_ca(void)
{
	struct h2c_tls *t = NULL;
	struct h2c_request r;
	char err[512], detail[320];

	if (h2c_tls_new(cert_path("hub.crt"), cert_path("hub.key"), cert_path("rogue-ca.crt"), &t,
			err, sizeof(err)) != 0) {
		printf("# %s\n", err);
		CHECK(!"setup");
		return;
	}
	CHECK(ask(t, url("127.0.0.1", peer.h2), "{}", 100, 5000, &r, detail, sizeof(detail)) == 0);
	check_failed(&r, H2C_FAIL_VERIFY, "server of another CA");
	printf("# server of another CA: %s\n", detail);
	CHECK_CONTAINS(detail, "local issuer");
	h2c_tls_free(t);
}

/* The gateway refuses a client certificate of another CA: our handshake
 * fails (TLS 1.3: on the first read after it), and nothing is requested. */
static void test_client_certificate_refused(void)
{
	struct h2c_tls *t = NULL;
	struct h2c_request r;
	char err[512], detail[320], *log;

	if (gw.port <= 0 || h2c_tls_new(cert_path("rogue.crt"), cert_path("rogue.key"),
					cert_path("ca.crt"), &t, err, sizeof(err)) != 0) {
		CHECK(!"setup");
		return;
	}
	CHECK(ask(t, url("127.0.0.1", gw.port), "{}", 1000, 5000, &r, detail, sizeof(detail)) == 0);
	check_failed(&r, H2C_FAIL_TLS, "client certificate refused");
	printf("# refused client certificate: %s (%s)\n", h2c_fail_phrase(r.fail), detail);
	CHECK_CONTAINS(detail, "alert");
	usleep(100000);
	log = slurp(gw.log);
	CHECK(count(log, "\"reason\":\"unknown_ca\"") >= 1 || count(log, "unknown_ca") >= 1);
	CHECK(count(log, "\"event\":\"request\"") == 0);
	free(log);
	h2c_tls_free(t);
}

static void test_broken_answers(void)
{
	struct h2c_request r;
	char detail[320];
	uint64_t t0, dt;

	CHECK(ask(hub_tls, url("127.0.0.1", peer.h2), "{\"do\":\"reset-mid-body\",\"size\":200000}",
		  1 << 20, 5000, &r, detail, sizeof(detail)) == 0);
	check_failed(&r, H2C_FAIL_RESET, "RST_STREAM mid-body");
	CHECK(ask(hub_tls, url("127.0.0.1", peer.h2), "{\"do\":\"drop-mid-body\",\"size\":200000}",
		  1 << 20, 5000, &r, detail, sizeof(detail)) == 0);
	check_failed(&r, H2C_FAIL_CLOSED, "TCP reset mid-body");
	printf("# TCP reset mid-body: %s (%s)\n", h2c_fail_phrase(r.fail), detail);
	t0 = h2c_now_ms();
	CHECK(ask(hub_tls, url("127.0.0.1", peer.h2), "{\"do\":\"stall-mid-body\",\"size\":200000}",
		  1 << 20, 700, &r, detail, sizeof(detail)) == 0);
	dt = h2c_now_ms() - t0;
	check_failed(&r, H2C_FAIL_TIMEOUT, "stalled mid-body");
	printf("# stalled mid-body, deadline 700 ms: %llu ms\n", (unsigned long long)dt);
	CHECK(dt >= 690 && dt < 1500);
}

/* The bytes of an answer are wiped before their memory is freed: when the
 * buffer grows and when a failed request's answer is dropped (the hub's
 * answers hold sealed tokens or exact counts; docs/architecture.md). */
static void test_answer_buffers_wiped(void)
{
	struct h2c_request r = { .max_body = 1 << 20 };

	CHECK(answer_reserve(&r, 11) == 0 && r.answer);
	memcpy(r.answer, "0123456789", 11);
	r.answer_len = 10;
	watch = r.answer;
	watch_len = r.answer_len;
	watch_freed = watch_wiped = 0;
	CHECK(answer_reserve(&r, 40000) == 0 && r.cap >= 40000);
	CHECK(watch_freed && watch_wiped);
	CHECK(r.answer && strcmp(r.answer, "0123456789") == 0);
	watch = r.answer;
	watch_len = r.answer_len;
	watch_freed = watch_wiped = 0;
	forget_answer(&r);
	CHECK(watch_freed && watch_wiped);
	CHECK(!r.answer && r.answer_len == 0 && r.cap == 0);
	watch = NULL;
}

/* A server that never stops sending frames the client must read and
 * ignore (no flow control holds them back): the deadline still ends the
 * request on time, however fast they come. */
static void test_frame_flood_bounded_by_deadline(void)
{
	struct h2c_request r;
	char detail[320];
	uint64_t t0, dt;

	t0 = h2c_now_ms();
	CHECK(ask(hub_tls, url("127.0.0.1", peer.h2), "{\"do\":\"flood-frames\"}", 1 << 20, 700, &r,
		  detail, sizeof(detail)) == 0);
	dt = h2c_now_ms() - t0;
	check_failed(&r, H2C_FAIL_TIMEOUT, "flood of unknown frames");
	printf("# flood of unknown frames, deadline 700 ms: %llu ms\n", (unsigned long long)dt);
	CHECK(dt >= 690 && dt < 1500);
}

/* max_body at its edge: the last byte that fits, the first that does not
 * (declared or not). */
static void test_body_cap(void)
{
	struct h2c_request r;

	CHECK(ask(hub_tls, url("127.0.0.1", peer.h2), "{\"do\":\"nolength\",\"size\":4096}", 4096,
		  5000, &r, NULL, 0) == 0);
	CHECK(r.status == 200 && r.answer_len == 4096);
	free(r.answer);
	CHECK(ask(hub_tls, url("127.0.0.1", peer.h2), "{\"do\":\"ok\",\"size\":4096}", 4096, 5000, &r,
		  NULL, 0) == 0);
	CHECK(r.status == 200 && r.answer_len == 4096);
	free(r.answer);
	CHECK(ask(hub_tls, url("127.0.0.1", peer.h2), "{\"do\":\"nolength\",\"size\":4097}", 4096,
		  5000, &r, NULL, 0) == 0);
	check_failed(&r, H2C_FAIL_TOO_BIG, "streamed 4097");
	CHECK(ask(hub_tls, url("127.0.0.1", peer.h2), "{\"do\":\"ok\",\"size\":4097}", 4096, 5000, &r,
		  NULL, 0) == 0);
	check_failed(&r, H2C_FAIL_TOO_BIG, "declared 4097");
}

/* A kept connection the server closes as our next request arrives (no
 * GOAWAY): the request goes out again on a new connection, once. */
static void test_kept_connection_closed_under_request(void)
{
	struct h2c_conn *c = NULL;
	struct h2c_request r;
	const char *body = "{\"do\":\"once\"}";
	uint64_t now;

	CHECK(h2c_conn_new(hub_tls, url("127.0.0.1", peer.h2), &c) == 0);
	for (int round = 0; round < 3; round++) {
		r = (struct h2c_request){ .path = "/", .body = body, .len = strlen(body), .max_body = 100 };
		h2c_conn_add(c, &r);
		now = h2c_now_ms();
		CHECK(h2c_run(&c, 1, now + 5000, now + 5000) == 0);
		CHECK(r.fail == H2C_FAIL_NONE && r.status == 200);
		CHECK(r.answer && strcmp(r.answer, "first") == 0);
		free(r.answer);
		CHECK(h2c_conn_opened(c) == (unsigned long)round + 1);
		CHECK(h2c_conn_reusable(c));
	}
	h2c_conn_free(c);
}

/* The detail names this failure, not one an earlier run (or an earlier
 * connection of this run) overcame. */
static void test_detail_names_this_failure(void)
{
	struct h2c_conn *c = NULL;
	struct h2c_request r;
	const char *once = "{\"do\":\"once\"}", *reset = "{\"do\":\"reset-mid-body\",\"size\":2000}";
	uint64_t now;

	CHECK(h2c_conn_new(hub_tls, url("127.0.0.1", peer.h2), &c) == 0);
	for (int round = 0; round < 2; round++) {
		/* the second: the server closes the kept connection, it is retried */
		r = (struct h2c_request){ .path = "/", .body = once, .len = strlen(once), .max_body = 100 };
		h2c_conn_add(c, &r);
		now = h2c_now_ms();
		CHECK(h2c_run(&c, 1, now + 5000, now + 5000) == 0);
		CHECK(r.fail == H2C_FAIL_NONE && r.status == 200);
		free(r.answer);
	}
	CHECK(h2c_conn_opened(c) == 2);
	r = (struct h2c_request){ .path = "/", .body = reset, .len = strlen(reset), .max_body = 10000 };
	h2c_conn_add(c, &r);
	now = h2c_now_ms();
	CHECK(h2c_run(&c, 1, now + 5000, now + 5000) == 0);
	check_failed(&r, H2C_FAIL_RESET, "reset after a retried run");
	printf("# reset after a retried run: %s (%s)\n", h2c_fail_phrase(r.fail), h2c_conn_detail(c));
	CHECK(!strstr(h2c_conn_detail(c), "closed the connection"));
	CHECK_CONTAINS(h2c_conn_detail(c), "INTERNAL_ERROR");
	h2c_conn_free(c);
}

/* A request the server refuses unprocessed (GOAWAY below its stream) goes
 * out again on a new connection, even on a fresh one. */
static void test_goaway_refused_request_retried(void)
{
	struct h2c_conn *c = NULL;
	struct h2c_request r = { .path = "/", .body = "{\"do\":\"goaway-first\"}", .max_body = 1000 };
	uint64_t now = h2c_now_ms();

	r.len = strlen(r.body);
	CHECK(h2c_conn_new(hub_tls, url("127.0.0.1", peer.h2), &c) == 0);
	h2c_conn_add(c, &r);
	CHECK(h2c_run(&c, 1, now + 5000, now + 5000) == 0);
	CHECK(r.fail == H2C_FAIL_NONE && r.status == 200);
	CHECK_CONTAINS(r.answer, "goaway-first");
	CHECK(h2c_conn_opened(c) == 2);
	free(r.answer);
	h2c_conn_free(c);
}

/* A request the server refuses unprocessed with RST_STREAM REFUSED_STREAM,
 * keeping the connection open, goes out again on a new connection, once;
 * refused again, it fails as reset at once, not at the deadline. */
static void test_refused_stream_retried(void)
{
	struct h2c_conn *c = NULL;
	struct h2c_request r = { .path = "/", .body = "{\"do\":\"refuse-first\"}", .max_body = 1000 };
	uint64_t now = h2c_now_ms(), t0 = now;

	r.len = strlen(r.body);
	CHECK(h2c_conn_new(hub_tls, url("127.0.0.1", peer.h2), &c) == 0);
	h2c_conn_add(c, &r);
	CHECK(h2c_run(&c, 1, now + 3000, now + 3000) == 0);
	if (r.fail)
		printf("#   refused once: %s (%s)\n", h2c_fail_phrase(r.fail), h2c_conn_detail(c));
	CHECK(r.fail == H2C_FAIL_NONE && r.status == 200);
	CHECK_CONTAINS(r.answer, "refuse-first");
	CHECK(h2c_conn_opened(c) == 2);
	CHECK(h2c_now_ms() - t0 < 2000);
	free(r.answer);
	h2c_conn_free(c);

	r = (struct h2c_request){ .path = "/", .body = "{\"do\":\"refuse-always\"}", .max_body = 1000 };
	r.len = strlen(r.body);
	CHECK(h2c_conn_new(hub_tls, url("127.0.0.1", peer.h2), &c) == 0);
	h2c_conn_add(c, &r);
	t0 = now = h2c_now_ms();
	CHECK(h2c_run(&c, 1, now + 3000, now + 3000) == 0);
	check_failed(&r, H2C_FAIL_RESET, "refused twice");
	CHECK(h2c_conn_opened(c) == 2);
	CHECK(h2c_now_ms() - t0 < 2000);
	h2c_conn_free(c);
}

static void test_connect_failures(void)
{
	struct h2c_request r;
	char detail[320];
	int port, fd = listener(&port, 0);
	uint64_t t0, now;
	struct h2c_conn *c = NULL;

	close(fd);
	CHECK(ask(hub_tls, url("127.0.0.1", port), "{}", 100, 3000, &r, detail, sizeof(detail)) == 0);
	check_failed(&r, H2C_FAIL_CONNECT, "closed port");
	CHECK_CONTAINS(detail, "127.0.0.1 port");
	CHECK_CONTAINS(detail, "Connection refused");
	CHECK(ask(hub_tls, "https://nonexistent.invalid:1", "{}", 100, 3000, &r, detail,
		  sizeof(detail)) == 0);
	check_failed(&r, H2C_FAIL_RESOLVE, "no such name");
	/* a listener that never speaks TLS: the connect deadline */
	fd = listener(&port, 1);
	r = (struct h2c_request){ .path = "/", .body = "{}", .len = 2, .max_body = 100 };
	CHECK(h2c_conn_new(hub_tls, url("127.0.0.1", port), &c) == 0);
	h2c_conn_add(c, &r);
	t0 = now = h2c_now_ms();
	CHECK(h2c_run(&c, 1, now + 300, now + 5000) == 0);
	check_failed(&r, H2C_FAIL_TIMEOUT, "silent listener");
	CHECK(h2c_now_ms() - t0 < 1500);
	CHECK(!h2c_conn_reusable(c));
	h2c_conn_free(c);
	close(fd);
}

/* Every allocation (ours and nghttp2's) failing in turn: the request fails
 * as out of memory or succeeds, nothing leaks (LeakSanitizer at exit). */
static void test_allocation_failures(void)
{
	const char *u = url("127.0.0.1", peer.h2);
	long i;

	for (i = 0; i < 400; i++) {
		struct h2c_request r;
		int rc;

		alloc_count = 0;
		alloc_failed = 0;
		alloc_fail_at = i;
		rc = ask(hub_tls, u, "{\"do\":\"ok\",\"size\":70000}", 1 << 20, 5000, &r, NULL, 0);
		alloc_fail_at = -1;
		if (!alloc_failed) {
			CHECK(rc == 0 && r.status == 200 && r.answer_len == 70000);
			free(r.answer);
			break;
		}
		if (rc == 0 && r.fail == H2C_FAIL_NONE) {
			CHECK(r.status == 200 && r.answer_len == 70000); /* a failure it could absorb */
			free(r.answer);
			continue;
		}
		if (rc == 0 && r.fail != H2C_FAIL_NOMEM)
			printf("#   allocation %ld failing: fail %d (%s)\n", i, r.fail,
			       h2c_fail_phrase(r.fail));
		CHECK(rc == H2C_ERR_NOMEM || r.fail == H2C_FAIL_NOMEM);
		CHECK(rc != 0 || (r.answer == NULL && r.status == 0));
	}
	printf("# %ld allocations failed in turn\n", i);
	CHECK(i > 10 && i < 400);
}

int main(void)
{
	char err[512];

	if (peer_setup() < 0) {
		printf("not ok - test_h2client: setup: no server binary or certificates "
		       "(run from the repository root after make)\n");
		return 1;
	}
	if (h2c_tls_new(cert_path("hub.crt"), cert_path("hub.key"), cert_path("ca.crt"), &hub_tls, err,
			sizeof(err)) != 0) {
		printf("not ok - test_h2client: setup: %s\n", err);
		return 1;
	}
	if (start_gateway(&gw, "gw", "server.crt", "server.key", NULL) < 0)
		gw.port = 0;
	if (start_h2peer(&peer) < 0) {
		printf("not ok - test_h2client: setup: tests/integration/h2peer.py did not start\n");
		stop_gateway(&gw);
		return 1;
	}

	RUN(test_tls_new_refuses_bad_files);
	RUN(test_urls);
	RUN(test_proxy_settings);
	RUN(test_answers);
	RUN(test_one_connection_many_requests);
	RUN(test_server_without_h2);
	RUN(test_certificate_for_another_host);
	RUN(test_certificate_of_another_ca);
	RUN(test_client_certificate_refused);
	RUN(test_broken_answers);
	RUN(test_answer_buffers_wiped);
	RUN(test_frame_flood_bounded_by_deadline);
	RUN(test_body_cap);
	RUN(test_kept_connection_closed_under_request);
	RUN(test_goaway_refused_request_retried);
	RUN(test_refused_stream_retried);
	RUN(test_detail_names_this_failure);
	RUN(test_connect_failures);
	RUN(test_allocation_failures);

	stop_h2peer(&peer);
	stop_gateway(&gw);
	h2c_tls_free(hub_tls);
	peer_cleanup();
	return check_total_failed ? 1 : 0;
}
