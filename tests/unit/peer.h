/*
 * Servers for the client tests (test_h2client.c, test_fanout.c):
 * `noordpoort serve` with a config of the test's choosing, and the
 * misbehaving HTTP/2 servers of tests/integration/h2peer.py.
 */
#ifndef NOORDPOORT_TEST_PEER_H
#define NOORDPOORT_TEST_PEER_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static char peer_dir[] = "/tmp/np-peer-XXXXXX";
static char peer_certs[PATH_MAX];
static char peer_bin[PATH_MAX];

struct server {
	pid_t pid;
	int port;
	char log[PATH_MAX];
};

/* The ports of h2peer.py's listeners (0: not started). */
struct h2peer {
	pid_t pid;
	int to_peer; /* closing it stops the peer */
	int h2, ip2, otherhost, http11, noalpn;
};

static uint64_t peer_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Sets up the scratch folder and finds the binary and the certificates;
 * -1 when they are not there (run from the repository root after make). */
static int peer_setup(void)
{
	const char *b = getenv("NOORDPOORT_BIN"), *c = getenv("CERTS_DIR");

	signal(SIGPIPE, SIG_IGN);
	if (!realpath(b ? b : "build/asan/noordpoort", peer_bin) ||
	    !realpath(c ? c : "certs/dev", peer_certs) || !mkdtemp(peer_dir))
		return -1;
	return 0;
}

static void peer_cleanup(void)
{
	if (fork() == 0) {
		execlp("rm", "rm", "-rf", peer_dir, (char *)NULL);
		_exit(127);
	}
	wait(NULL);
}

static char *cert_path(const char *name)
{
	static char buf[8][PATH_MAX + 64];
	static int next;
	char *p = buf[next++ % 8];

	snprintf(p, sizeof(buf[0]), "%s/%s", peer_certs, name);
	return p;
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

/* Starts `noordpoort serve` with |crt|/|key| as its server certificate and
 * |extra| appended to its config; waits for its "listening" line. */
static int start_gateway(struct server *s, const char *name, const char *crt, const char *key,
			 const char *extra)
{
	char conf[PATH_MAX], members[PATH_MAX], text[4096];
	char *cp, *mp;
	uint64_t deadline;

	snprintf(members, sizeof(members), "%s-members.yaml", name);
	mp = check_write(peer_dir, members,
			 "members:\n"
			 "  - id: hub\n    name: Noordpoort Hub\n    oin: \"00000001009876544000\"\n"
			 "    roles: [hub]\n"
			 "  - id: arbeidsmarkttafel\n    name: Arbeidsmarkttafel Noord\n"
			 "    oin: \"00000001009876543000\"\n    roles: [coordinator]\n");
	snprintf(text, sizeof(text),
		 "listen: [\"127.0.0.1:0\"]\n"
		 "tls:\n  certificate: \"%s\"\n  key: \"%s\"\n  client_ca: \"%s\"\n  crl: \"%s\"\n"
		 "members: \"%s\"\nworkers: 2\nlog:\n  destination: stderr\n%s",
		 cert_path(crt), cert_path(key), cert_path("ca.crt"), cert_path("crl.pem"), mp,
		 extra ? extra : "");
	snprintf(conf, sizeof(conf), "%s.yaml", name);
	cp = check_write(peer_dir, conf, text);
	snprintf(s->log, sizeof(s->log), "%s/%s.log", peer_dir, name);
	s->port = 0;
	s->pid = fork();
	if (s->pid == 0) {
		int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (fd < 0)
			_exit(127);
		dup2(fd, 2);
		dup2(fd, 1);
		execl(peer_bin, peer_bin, "serve", "-c", cp, (char *)NULL);
		_exit(127);
	}
	free(cp);
	free(mp);
	deadline = peer_ms() + 15000;
	while (s->pid > 0 && peer_ms() < deadline) {
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

static int json_port(const char *line, const char *key)
{
	char k[32];
	const char *p;

	snprintf(k, sizeof(k), "\"%s\": ", key);
	p = strstr(line, k);
	return p ? atoi(p + strlen(k)) : 0;
}

/* Starts tests/integration/h2peer.py (Debian's python3-h2). */
static int start_h2peer(struct h2peer *p)
{
	int in[2], out[2];
	char line[512];
	ssize_t n = 0, r;
	uint64_t deadline = peer_ms() + 20000;

	memset(p, 0, sizeof(*p));
	p->to_peer = -1;
	if (pipe(in) < 0 || pipe(out) < 0)
		return -1;
	p->pid = fork();
	if (p->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		execl("/usr/bin/python3", "python3", "tests/integration/h2peer.py", peer_certs,
		      (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	p->to_peer = in[1];
	while (n < (ssize_t)sizeof(line) - 1 && peer_ms() < deadline) {
		r = read(out[0], line + n, sizeof(line) - 1 - (size_t)n);
		if (r <= 0)
			break;
		n += r;
		if (memchr(line, '\n', (size_t)n))
			break;
	}
	close(out[0]);
	line[n] = '\0';
	p->h2 = json_port(line, "h2");
	p->ip2 = json_port(line, "ip2");
	p->otherhost = json_port(line, "otherhost");
	p->http11 = json_port(line, "http11");
	p->noalpn = json_port(line, "noalpn");
	if (p->h2 <= 0) {
		printf("# h2peer.py did not start: '%s'\n", line);
		return -1;
	}
	return 0;
}

static void stop_h2peer(struct h2peer *p)
{
	if (p->to_peer >= 0)
		close(p->to_peer);
	p->to_peer = -1;
	if (p->pid > 0) {
		kill(p->pid, SIGTERM);
		waitpid(p->pid, NULL, 0);
	}
	p->pid = 0;
}

/* A loopback TCP socket: listening (accepts, never speaks) or only bound
 * (a port nobody listens on once closed). */
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

#endif
