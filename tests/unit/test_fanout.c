/*
 * Unit tests for the hub's fan-out client (gateway/fanout.c) against real
 * servers on loopback: the gateway itself (build/asan/noordpoort serve, which
 * answers /v1/federation/subquery with 501 today), one with a rogue server
 * certificate, a listener that never answers and a closed port.
 */
#define CHECK_FILE "test_fanout"
#include "check.h"
#include "../../gateway/fanout.c"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

static char dir[] = "/tmp/np-fanout-XXXXXX";
static char certs[PATH_MAX];
static char bin[PATH_MAX];

struct server {
	pid_t pid;
	int port;
	char log[PATH_MAX];
};

static struct server gw, rogue;
static int silent_fd = -1, silent_port, closed_port;

static char *cert_path(const char *name)
{
	static char buf[8][PATH_MAX + 64];
	static int next;
	char *p = buf[next++ % 8];

	snprintf(p, sizeof(buf[0]), "%s/%s", certs, name);
	return p;
}

static uint64_t ms_now(void)
{
	return now_ms();
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *b;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	b = calloc(1, (size_t)n + 1);
	if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		b = NULL;
	}
	fclose(f);
	return b;
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* Starts `noordpoort serve` with |crt|/|key| as its server certificate;
 * waits for its "listening" line. */
static int start_gateway(struct server *s, const char *name, const char *crt, const char *key)
{
	char conf[PATH_MAX], members[PATH_MAX], text[4096];
	char *cp, *mp;
	uint64_t deadline;

	snprintf(members, sizeof(members), "%s-members.yaml", name);
	mp = check_write(dir, members,
			 "members:\n"
			 "  - id: hub\n    name: Noordpoort Hub\n    oin: \"00000001009876544000\"\n"
			 "    roles: [hub]\n"
			 "  - id: arbeidsmarkttafel\n    name: Arbeidsmarkttafel Noord\n"
			 "    oin: \"00000001009876543000\"\n    roles: [coordinator]\n");
	snprintf(text, sizeof(text),
		 "listen: [\"127.0.0.1:0\"]\n"
		 "tls:\n  certificate: \"%s\"\n  key: \"%s\"\n  client_ca: \"%s\"\n  crl: \"%s\"\n"
		 "members: \"%s\"\nworkers: 2\nlog:\n  destination: stderr\n",
		 cert_path(crt), cert_path(key), cert_path("ca.crt"), cert_path("crl.pem"), mp);
	snprintf(conf, sizeof(conf), "%s.yaml", name);
	cp = check_write(dir, conf, text);
	snprintf(s->log, sizeof(s->log), "%s/%s.log", dir, name);
	s->port = 0;
	s->pid = fork();
	if (s->pid == 0) {
		int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (fd < 0)
			_exit(127);
		dup2(fd, 2);
		dup2(fd, 1);
		execl(bin, bin, "serve", "-c", cp, (char *)NULL);
		_exit(127);
	}
	free(cp);
	free(mp);
	deadline = ms_now() + 15000;
	while (s->pid > 0 && ms_now() < deadline) {
		char *log = slurp(s->log);
		const char *p = log ? strstr(log, "\"event\":\"listening\"") : NULL;

		if (p && (p = strstr(p, "127.0.0.1:")))
			s->port = atoi(p + 10);
		free(log);
		if (s->port > 0)
			return 0;
		if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
			s->pid = 0;
			break;
		}
		usleep(50000);
	}
	printf("# %s did not start; log %s\n", name, s->log);
	return -1;
}

static void stop_gateway(struct server *s)
{
	int st;

	if (s->pid <= 0)
		return;
	kill(s->pid, SIGTERM);
	waitpid(s->pid, &st, 0);
	s->pid = 0;
}

static int listener(int *port, int do_listen)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0 || (do_listen && listen(fd, 64) < 0))
		return -1;
	*port = ntohs(a.sin_port);
	return fd;
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
	loose = check_write(dir, "loose.key", text ? text : "");
	chmod(loose, 0644);
	CHECK(gw_fanout_new(cert_path("hub.crt"), loose, cert_path("ca.crt"), &f, err, sizeof(err)) ==
	      GW_FANOUT_ERR_FILE);
	CHECK_CONTAINS(err, "accessible by group or others");
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

/* The body cap, at its edge: the last byte that fits, the first that does
 * not, and what the hub is told. */
static void test_body_cap(void)
{
	struct xfer x = { 0 };
	struct gw_hub_answer a = { 0 };
	const char *why = NULL;
	char data[16] = "0123456789abcdef";

	x.len = GW_FANOUT_MAX_BODY - 16;
	x.cap = 0;
	/* pretend the buffer is full without allocating 512 MiB: only the check runs */
	CHECK(on_body(data, 1, 17, &x) == 0 && x.too_big == 1);
	x = (struct xfer){ 0 };
	CHECK(on_body(data, 1, 16, &x) == 16 && x.len == 16 && !x.too_big);
	free(x.buf);
	x = (struct xfer){ .too_big = 1 };
	x.easy = curl_easy_init();
	finish(&x, CURLE_WRITE_ERROR, &a, &why);
	CHECK(a.status == 0 && !a.timed_out && !a.body);
	CHECK_STR(why, "answer larger than 512 MiB");
	x.too_big = 0;
	finish(&x, CURLE_FILESIZE_EXCEEDED, &a, &why);
	CHECK_STR(why, "answer larger than 512 MiB");
	curl_easy_cleanup(x.easy);
}

int main(void)
{
	const char *b = getenv("NOORDPOORT_BIN"), *c = getenv("CERTS_DIR");
	int fd;

	signal(SIGPIPE, SIG_IGN);
	if (!realpath(b ? b : "build/asan/noordpoort", bin) || !realpath(c ? c : "certs/dev", certs) ||
	    !mkdtemp(dir)) {
		printf("not ok - test_fanout: setup: no server binary or certificates "
		       "(run from the repository root after make)\n");
		return 1;
	}
	if (start_gateway(&gw, "gw", "server.crt", "server.key") < 0)
		gw.port = 0;
	/* rogue.crt is issued by another CA (and names no host): a node to refuse */
	if (start_gateway(&rogue, "rogue", "rogue.crt", "rogue.key") < 0)
		rogue.port = 0;
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

	stop_gateway(&rogue);
	stop_gateway(&gw);
	if (silent_fd >= 0)
		close(silent_fd);
	if (fork() == 0) {
		execlp("rm", "rm", "-rf", dir, (char *)NULL);
		_exit(127);
	}
	wait(NULL);
	curl_global_cleanup();
	return check_total_failed ? 1 : 0;
}
