/*
 * Unit tests for the hub's fan-out client (hub/fanout.c) against real
 * servers on loopback: the gateway itself (build/asan/noordpoort serve, which
 * answers /v1/federation/subquery with 501 without the node role), one with
 * a rogue server certificate, one that closes idle connections after 1 s,
 * the misbehaving servers of tests/integration/h2peer.py, a listener that
 * never answers and a closed port.
 */
#define CHECK_FILE "test_fanout"
#include "check.h"
#include "peer.h"
/* The answer cap at 4 KiB, to reach it without 512 MiB of answer. */
#define FANOUT_MAX_BODY 4096
#include "../../hub/fanout.c"

static struct server gw, rogue, idler;
static struct h2peer peer;
static int silent_fd = -1, silent_port, closed_port;

static uint64_t ms_now(void)
{
	return h2c_now_ms();
}

static char urls[8][64];

static const char *url(int port)
{
	static int next;
	char *u = urls[next++ % 8];

	snprintf(u, 64, "https://127.0.0.1:%d", port);
	return u;
}

static struct gw_fanout *hub_fanout(const char *ca)
{
	struct gw_fanout *f = NULL;
	char err[256] = "";

	if (gw_fanout_new(cert_path("hub.crt"), cert_path("hub.key"), cert_path(ca), &f, err,
			  sizeof(err)) != 0)
		printf("# gw_fanout_new: %s\n", err);
	return f;
}

static char body[] = "{\"query_id\":\"00\",\"dataset\":\"uwv/ww-uitkeringen\",\"mode\":\"counts\"}";

static void fill(struct gw_hub_subquery *q, size_t n, const char *endpoint)
{
	static const char *names[] = { "uwv", "opleidingsfonds-techniek", "gemeente-emmen",
				       "provincie-drenthe", "opleidingsfonds-zorg", "gemeente-groningen" };

	for (size_t i = 0; i < n; i++)
		q[i] = (struct gw_hub_subquery){ names[i % 6], endpoint, body, sizeof(body) - 1 };
}

static void free_answers(struct gw_hub_answer *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(a[i].body);
}

/* ---- tests --------------------------------------------------------------- */

static void test_new_refuses_bad_files(void)
{
	struct gw_fanout *f = (struct gw_fanout *)1;
	char err[256] = "", *loose, *text;

	CHECK(gw_fanout_new(NULL, "k", "c", &f, err, sizeof(err)) == GW_FANOUT_ERR_ARG && !f);
	CHECK(gw_fanout_new(cert_path("hub.crt"), cert_path("hub.key"), "/nonexistent/ca.crt", &f,
			    err, sizeof(err)) == GW_FANOUT_ERR_FILE && !f);
	CHECK_CONTAINS(err, "/nonexistent/ca.crt");
	/* a key of another organisation */
	CHECK(gw_fanout_new(cert_path("hub.crt"), cert_path("uwv.key"), cert_path("ca.crt"), &f, err,
			    sizeof(err)) == GW_FANOUT_ERR_FILE);
	CHECK_CONTAINS(err, "does not belong to certificate");
	/* a CA file that is no certificate */
	CHECK(gw_fanout_new(cert_path("hub.crt"), cert_path("hub.key"), cert_path("hub.key"), &f, err,
			    sizeof(err)) == GW_FANOUT_ERR_FILE);
	CHECK_CONTAINS(err, "no PEM certificate");
	/* a key group and others may read */
	text = slurp(cert_path("hub.key"));
	loose = check_write(peer_dir, "loose.key", text ? text : "");
	chmod(loose, 0644);
	CHECK(gw_fanout_new(cert_path("hub.crt"), loose, cert_path("ca.crt"), &f, err, sizeof(err)) ==
	      GW_FANOUT_ERR_FILE);
	CHECK_CONTAINS(err, ": secret key file is accessible by group or others (mode 0644); "
			    "run: chmod 600 '");
	free(loose);
	free(text);
	gw_fanout_free(NULL);
}

/* Five subqueries to one gateway: all answered (501 today) with their body,
 * over one HTTP/2 connection, presenting the hub's certificate; a second
 * question reuses the connection. */
static void test_answers_and_reuse(void)
{
	struct gw_fanout *f = hub_fanout("ca.crt");
	struct gw_hub_subquery q[5];
	struct gw_hub_answer a[5];
	const char *why[5];
	char *log;

	if (!f || gw.port <= 0) {
		CHECK(!"setup");
		gw_fanout_free(f);
		return;
	}
	fill(q, 5, url(gw.port));
	CHECK(gw_fanout_exchange(f, q, 5, a, why, 5000) == 0);
	{
		gw_hub_fanout_fn fn = gw_fanout_run; /* what the hub calls through */

		CHECK(fn == gw_fanout_run);
	}
	for (size_t i = 0; i < 5; i++) {
		CHECK(a[i].node == q[i].node);
		CHECK(a[i].status == 501);
		CHECK(!a[i].timed_out);
		CHECK(a[i].body && a[i].len > 0 && a[i].body[a[i].len] == '\0');
		CHECK_CONTAINS(a[i].body, "\"not_implemented\"");
		CHECK(why[i] == NULL);
	}
	CHECK(gw_fanout_connections(f) == 1); /* one HTTP/2 connection for all five */
	free_answers(a, 5);

	CHECK(gw_fanout_run(f, q, 2, a, 5000) == 0);
	CHECK(a[0].status == 501 && a[1].status == 501);
	CHECK(gw_fanout_connections(f) == 1); /* reused: no new connection */
	free_answers(a, 2);

	usleep(200000);
	log = slurp(gw.log);
	CHECK(count(log, "\"org\":\"hub\",\"method\":\"POST\",\"route\":\"/v1/federation/subquery\","
			 "\"status\":501") == 7);
	free(log);
	gw_fanout_free(f);
}

/* n = 5 against a listener that never answers: all time out together, in
 * about the timeout, not five times it. */
static void test_silent_nodes_time_out_together(void)
{
	struct gw_fanout *f = hub_fanout("ca.crt");
	struct gw_hub_subquery q[5];
	struct gw_hub_answer a[5];
	uint64_t t0, dt;

	if (!f || silent_fd < 0) {
		CHECK(!"setup");
		gw_fanout_free(f);
		return;
	}
	fill(q, 5, url(silent_port));
	q[1].endpoint = q[3].endpoint = url(silent_port); /* same node, other spelling: same host */
	t0 = ms_now();
	CHECK(gw_fanout_run(f, q, 5, a, 800) == 0);
	dt = ms_now() - t0;
	printf("# 5 silent nodes, timeout 800 ms: %llu ms\n", (unsigned long long)dt);
	CHECK(dt >= 750 && dt < 2000);
	for (size_t i = 0; i < 5; i++) {
		CHECK(a[i].status == 0);
		CHECK(a[i].timed_out == 1);
		CHECK(a[i].body == NULL && a[i].len == 0);
	}
	gw_fanout_free(f);
}

/* One question, four kinds of node: answered, silent, closed port, and a
 * second answer from the first. Each comes back as itself. */
static void test_mixed_nodes(void)
{
	struct gw_fanout *f = hub_fanout("ca.crt");
	struct gw_hub_subquery q[4];
	struct gw_hub_answer a[4];
	const char *why[4];
	uint64_t t0, dt;

	if (!f) {
		CHECK(!"setup");
		return;
	}
	fill(q, 4, url(gw.port));
	q[1].endpoint = url(silent_port);
	q[2].endpoint = url(closed_port);
	t0 = ms_now();
	CHECK(gw_fanout_exchange(f, q, 4, a, why, 1000) == 0);
	dt = ms_now() - t0;
	CHECK(dt >= 950 && dt < 2500);
	CHECK(a[0].status == 501 && !a[0].timed_out && a[0].body);
	CHECK(a[3].status == 501 && !a[3].timed_out && a[3].body);
	CHECK(a[1].status == 0 && a[1].timed_out == 1 && !a[1].body);
	CHECK(a[2].status == 0 && a[2].timed_out == 0 && !a[2].body);
	CHECK_STR(why[2], "Couldn't connect to server");
	CHECK(why[1] != NULL && why[0] == NULL);
	free_answers(a, 4);
	gw_fanout_free(f);
}

/* The node's certificate must chain to our CA: a wrong CA on our side, or a
 * rogue certificate on the node's, and nothing is accepted (or sent). */
static void test_node_certificate_verified(void)
{
	struct gw_fanout *wrong = hub_fanout("rogue-ca.crt");
	struct gw_fanout *f = hub_fanout("ca.crt");
	struct gw_hub_subquery q[1];
	struct gw_hub_answer a[1];
	const char *why[1];
	char *log;
	size_t before;

	if (!wrong || !f) {
		CHECK(!"setup");
		gw_fanout_free(wrong);
		gw_fanout_free(f);
		return;
	}
	log = slurp(gw.log);
	before = count(log, "\"route\":\"/v1/federation/subquery\"");
	free(log);
	fill(q, 1, url(gw.port));
	CHECK(gw_fanout_exchange(wrong, q, 1, a, why, 3000) == 0);
	CHECK(a[0].status == 0 && !a[0].timed_out && !a[0].body);
	CHECK(why[0] && strstr(why[0], "certificate"));
	if (rogue.port > 0) {
		q[0].endpoint = url(rogue.port);
		CHECK(gw_fanout_exchange(f, q, 1, a, why, 3000) == 0);
		CHECK(a[0].status == 0 && !a[0].timed_out && !a[0].body);
		CHECK(why[0] && strstr(why[0], "certificate"));
	} else {
		CHECK(!"rogue gateway did not start");
	}
	usleep(100000);
	log = slurp(gw.log);
	CHECK(count(log, "\"route\":\"/v1/federation/subquery\"") == before);
	free(log);
	gw_fanout_free(wrong);
	gw_fanout_free(f);
}

struct worker {
	struct gw_fanout *f;
	int ok;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct gw_hub_subquery q[3];
	struct gw_hub_answer a[3];

	fill(q, 3, url(gw.port));
	w->ok = 1;
	for (int round = 0; round < 5; round++) {
		if (gw_fanout_run(w->f, q, 3, a, 5000) != 0)
			w->ok = 0;
		for (size_t i = 0; i < 3; i++)
			if (a[i].status != 501 || !a[i].body)
				w->ok = 0;
		free_answers(a, 3);
	}
	return NULL;
}

/* Four hub questions at once through one gw_fanout; at most one connection
 * per concurrent caller, kept and reused over the rounds. */
static void test_threads(void)
{
	struct gw_fanout *f = hub_fanout("ca.crt");
	struct worker w[4];
	pthread_t t[4];

	if (!f) {
		CHECK(!"setup");
		return;
	}
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ f, 0 };
		CHECK(pthread_create(&t[i], NULL, worker_run, &w[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK(w[i].ok);
	}
	printf("# 4 threads x 5 questions x 3 subqueries: %lu connections\n",
	       gw_fanout_connections(f));
	CHECK(gw_fanout_connections(f) >= 1 && gw_fanout_connections(f) <= 4);
	gw_fanout_free(f);
}

static void test_bad_arguments(void)
{
	struct gw_fanout *f = hub_fanout("ca.crt");
	struct gw_hub_subquery q[2];
	struct gw_hub_answer a[2];

	if (!f) {
		CHECK(!"setup");
		return;
	}
	fill(q, 2, url(gw.port));
	q[1].endpoint = "http://127.0.0.1:1"; /* never cleartext */
	CHECK(gw_fanout_run(f, q, 2, a, 1000) == GW_FANOUT_ERR_ARG);
	CHECK(a[0].status == 0 && !a[0].body && a[0].node == q[0].node);
	CHECK(a[1].status == 0 && !a[1].body);
	CHECK(gw_fanout_run(NULL, q, 2, a, 1000) == GW_FANOUT_ERR_ARG);
	CHECK(gw_fanout_run(f, q, 0, a, 1000) == 0);
	CHECK(gw_fanout_connections(f) == 0);
	gw_fanout_free(f);
}

/* The body cap (FANOUT_MAX_BODY, lowered to 4 KiB here), at its edge: the
 * last byte that fits, the first that does not, declared or streamed, and
 * what the hub is told. */
static void test_body_cap(void)
{
	struct gw_fanout *f = hub_fanout("ca.crt");
	struct gw_hub_subquery q[4];
	struct gw_hub_answer a[4];
	const char *why[4];
	static char b0[] = "{\"do\":\"nolength\",\"size\":4096}", b1[] = "{\"do\":\"ok\",\"size\":4096}",
		    b2[] = "{\"do\":\"nolength\",\"size\":4097}", b3[] = "{\"do\":\"ok\",\"size\":4097}";
	char *bodies[4] = { b0, b1, b2, b3 };

	if (!f) {
		CHECK(!"setup");
		return;
	}
	fill(q, 4, url(peer.h2));
	for (size_t i = 0; i < 4; i++)
		q[i].body = bodies[i], q[i].len = strlen(bodies[i]);
	CHECK(gw_fanout_exchange(f, q, 4, a, why, 5000) == 0);
	CHECK(a[0].status == 200 && a[0].len == 4096 && !why[0] && !a[0].too_big);
	CHECK(a[1].status == 200 && a[1].len == 4096 && !why[1] && !a[1].too_big);
	for (size_t i = 2; i < 4; i++) {
		CHECK(a[i].status == 0 && !a[i].timed_out && a[i].too_big && !a[i].body && a[i].len == 0);
		CHECK_STR(why[i], "answer larger than 512 MiB");
	}
	CHECK(gw_fanout_connections(f) == 1);
	free_answers(a, 4);
	/* a node that sent too much may have more in flight: not kept */
	CHECK(gw_fanout_run(f, q, 1, a, 5000) == 0 && a[0].status == 200);
	CHECK(gw_fanout_connections(f) == 2);
	free_answers(a, 1);
	gw_fanout_free(f);
}

/* Answers broken half way: reset, dropped, stalled past the deadline; each
 * says so, and the good answer beside them is kept. */
static void test_broken_answers(void)
{
	struct gw_fanout *f = hub_fanout("ca.crt");
	struct gw_hub_subquery q[4];
	struct gw_hub_answer a[4];
	const char *why[4];
	static char b0[] = "{\"do\":\"reset-mid-body\",\"size\":3000}",
		    b1[] = "{\"do\":\"stall-mid-body\",\"size\":3000}",
		    b2[] = "{\"do\":\"ok\",\"size\":3000}",
		    b3[] = "{\"do\":\"drop-mid-body\",\"size\":3000}";
	uint64_t t0, dt;

	if (!f) {
		CHECK(!"setup");
		return;
	}
	fill(q, 3, url(peer.h2));
	q[0].body = b0, q[0].len = strlen(b0);
	q[1].body = b1, q[1].len = strlen(b1);
	q[2].body = b2, q[2].len = strlen(b2);
	t0 = ms_now();
	CHECK(gw_fanout_exchange(f, q, 3, a, why, 800) == 0);
	dt = ms_now() - t0;
	CHECK(dt >= 750 && dt < 2000);
	CHECK(a[0].status == 0 && !a[0].timed_out && !a[0].body);
	CHECK_STR(why[0], "Stream reset by the server");
	CHECK(a[1].status == 0 && a[1].timed_out && !a[1].body);
	CHECK_STR(why[1], "Timeout was reached");
	CHECK(a[2].status == 200 && a[2].len == 3000 && !why[2]);
	free_answers(a, 3);
	/* the connection that timed out is not kept: a new one next time */
	CHECK(gw_fanout_run(f, q + 2, 1, a, 5000) == 0 && a[0].status == 200);
	CHECK(gw_fanout_connections(f) == 2);
	free_answers(a, 1);
	q[0].body = b3, q[0].len = strlen(b3);
	CHECK(gw_fanout_exchange(f, q, 1, a, why, 5000) == 0);
	CHECK(a[0].status == 0 && !a[0].timed_out && !a[0].body);
	CHECK_STR(why[0], "Connection closed before the answer was complete");
	gw_fanout_free(f);
}

/* A kept connection the node closed between two questions: by its idle
 * timeout (GOAWAY, then close), or silently as the next subquery arrives.
 * Either way the next question is answered, on a new connection. */
static void test_kept_connection_closed_by_node(void)
{
	struct gw_fanout *f = hub_fanout("ca.crt");
	struct gw_hub_subquery q[2];
	struct gw_hub_answer a[2];
	const char *why[2];
	static char once[] = "{\"do\":\"once\"}";

	if (!f || idler.port <= 0) {
		CHECK(!"setup");
		gw_fanout_free(f);
		return;
	}
	fill(q, 2, url(idler.port));
	CHECK(gw_fanout_exchange(f, q, 2, a, why, 5000) == 0);
	CHECK(a[0].status == 501 && a[1].status == 501);
	free_answers(a, 2);
	usleep(1500000); /* past the node's timeouts.idle of 1 s */
	CHECK(gw_fanout_exchange(f, q, 2, a, why, 5000) == 0);
	CHECK(a[0].status == 501 && a[1].status == 501 && !why[0] && !why[1]);
	free_answers(a, 2);
	CHECK(gw_fanout_connections(f) == 2);
	gw_fanout_free(f);

	f = hub_fanout("ca.crt");
	fill(q, 1, url(peer.h2));
	q[0].body = once, q[0].len = strlen(once);
	for (unsigned long round = 1; f && round <= 3; round++) {
		CHECK(gw_fanout_exchange(f, q, 1, a, why, 5000) == 0);
		CHECK(a[0].status == 200 && a[0].body && strcmp(a[0].body, "first") == 0 && !why[0]);
		CHECK(gw_fanout_connections(f) == round);
		free_answers(a, 1);
	}
	gw_fanout_free(f);
}

/* A connection idle for longer than CONN_MAX_AGE_MS is closed, not reused. */
static void test_old_connection_not_reused(void)
{
	struct gw_fanout *f = hub_fanout("ca.crt");
	struct gw_hub_subquery q[1];
	struct gw_hub_answer a[1];

	if (!f) {
		CHECK(!"setup");
		return;
	}
	fill(q, 1, url(gw.port));
	CHECK(gw_fanout_run(f, q, 1, a, 5000) == 0 && a[0].status == 501);
	free_answers(a, 1);
	CHECK(f->nidle == 1 && f->idle);
	f->idle->since_ms -= CONN_MAX_AGE_MS - 1000; /* young enough */
	CHECK(gw_fanout_run(f, q, 1, a, 5000) == 0 && a[0].status == 501);
	free_answers(a, 1);
	CHECK(gw_fanout_connections(f) == 1);
	f->idle->since_ms -= CONN_MAX_AGE_MS + 1; /* too old */
	CHECK(gw_fanout_run(f, q, 1, a, 5000) == 0 && a[0].status == 501);
	free_answers(a, 1);
	CHECK(gw_fanout_connections(f) == 2 && f->nidle == 1);
	gw_fanout_free(f);
}

/* Endpoints: IPv6 in brackets and names are fine; anything not
 * https://HOST:PORT is refused before anything is sent. */
static void test_endpoints(void)
{
	struct gw_fanout *f = hub_fanout("ca.crt");
	struct gw_hub_subquery q[1];
	struct gw_hub_answer a[1];
	const char *why[1];
	char u[64];
	static const char *bad[] = { "https://127.0.0.1:1/v1", "https://u@127.0.0.1:1",
				     "https://[::1:1", "https://127.0.0.1:99999", "https://" };

	if (!f) {
		CHECK(!"setup");
		return;
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fill(q, 1, bad[i]);
		CHECK(gw_fanout_run(f, q, 1, a, 1000) == GW_FANOUT_ERR_ARG && !a[0].body);
	}
	snprintf(u, sizeof(u), "https://localhost:%d", gw.port);
	fill(q, 1, u);
	CHECK(gw_fanout_exchange(f, q, 1, a, why, 5000) == 0 && a[0].status == 501);
	free_answers(a, 1);
	/* the gateway listens on 127.0.0.1 only: ::1 is refused */
	snprintf(u, sizeof(u), "https://[::1]:%d", closed_port);
	fill(q, 1, u);
	CHECK(gw_fanout_exchange(f, q, 1, a, why, 5000) == 0 && a[0].status == 0);
	CHECK(why[0] && (strstr(why[0], "connect") || strstr(why[0], "resolve")));
	gw_fanout_free(f);
}

int main(void)
{
	int fd;

	if (peer_setup() < 0) {
		printf("not ok - test_fanout: setup: no server binary or certificates "
		       "(run from the repository root after make)\n");
		return 1;
	}
	if (start_gateway(&gw, "gw", "server.crt", "server.key", NULL) < 0)
		gw.port = 0;
	/* rogue.crt is issued by another CA (and names no host): a node to refuse */
	if (start_gateway(&rogue, "rogue", "rogue.crt", "rogue.key", NULL) < 0)
		rogue.port = 0;
	if (start_gateway(&idler, "idler", "server.crt", "server.key", "timeouts:\n  idle: 1s\n") < 0)
		idler.port = 0;
	if (start_h2peer(&peer) < 0)
		peer.h2 = 0;
	silent_fd = listener(&silent_port, 1);
	fd = listener(&closed_port, 0);
	if (fd >= 0)
		close(fd); /* a port nobody listens on: connection refused */

	RUN(test_new_refuses_bad_files);
	RUN(test_answers_and_reuse);
	RUN(test_silent_nodes_time_out_together);
	RUN(test_mixed_nodes);
	RUN(test_node_certificate_verified);
	RUN(test_threads);
	RUN(test_bad_arguments);
	RUN(test_body_cap);
	RUN(test_broken_answers);
	RUN(test_kept_connection_closed_by_node);
	RUN(test_old_connection_not_reused);
	RUN(test_endpoints);

	stop_h2peer(&peer);
	stop_gateway(&idler);
	stop_gateway(&rogue);
	stop_gateway(&gw);
	if (silent_fd >= 0)
		close(silent_fd);
	peer_cleanup();
	return check_total_failed ? 1 : 0;
}
