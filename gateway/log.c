/*
 * JSON-lines logging with one write per batch. Time stamps are UTC with
 * milliseconds; the second-resolution part is formatted once per second.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/fdio.h"

static int log_fd = 2;

int gw_log_open(const char *dest, int oldfd)
{
	int fd;

	if (strcmp(dest, "stderr") == 0)
		return 2;
	fd = open(dest, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	if (oldfd > 2 && fd != oldfd) {
		if (dup2(fd, oldfd) < 0) {
			int e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		close(fd);
		return oldfd;
	}
	return fd;
}

void gw_log_set_fd(int fd)
{
	log_fd = fd;
}

static void timestamp(long *cached_sec, char *cached, char *out, size_t outlen)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != *cached_sec) {
		struct tm tm;
		gmtime_r(&ts.tv_sec, &tm);
		strftime(cached, 24, "%Y-%m-%dT%H:%M:%S", &tm);
		*cached_sec = ts.tv_sec;
	}
	snprintf(out, outlen, "%s.%03ldZ", cached, ts.tv_nsec / 1000000);
}

void gw_log_init(struct gw_log *l)
{
	memset(l, 0, sizeof(*l));
	l->cached_sec = -1;
}

void gw_log_fini(struct gw_log *l)
{
	gw_log_flush(l);
	free(l->buf);
	l->buf = NULL;
}

/* Makes room for one more line; 0, or -1 when out of memory. */
static int reserve(struct gw_log *l)
{
	if (l->cap - l->len >= 512)
		return 0;
	if (l->len > 65536)
		gw_log_flush(l);
	if (l->cap - l->len < 512) {
		size_t ncap = l->cap ? l->cap * 2 : 16384;
		char *nb = realloc(l->buf, ncap);

		if (!nb)
			return -1;
		l->buf = nb;
		l->cap = ncap;
	}
	return 0;
}

void gw_log_handshake(struct gw_log *l, const char *reason, const char *peer)
{
	char ts[32];
	int n;

	if (reserve(l) < 0)
		return;
	timestamp(&l->cached_sec, l->cached_ts, ts, sizeof(ts));
	n = snprintf(l->buf + l->len, l->cap - l->len,
		     "{\"time\":\"%s\",\"level\":\"warn\",\"event\":\"handshake_failed\","
		     "\"reason\":\"%s\",\"client\":\"%s\"}\n", ts, reason, peer);
	if (n > 0 && (size_t)n < l->cap - l->len)
		l->len += (size_t)n;
}

void gw_log_request(struct gw_log *l, const char *org, const char *oin, const char *method,
		    const char *route, int status, uint64_t duration_us, size_t bytes)
{
	char ts[32];
	char who[96];
	int n;

	if (reserve(l) < 0)
		return;
	timestamp(&l->cached_sec, l->cached_ts, ts, sizeof(ts));
	/* org ids are [a-z0-9-] and OINs digits: nothing to escape. */
	if (org)
		snprintf(who, sizeof(who), "\"%s\"", org);
	else if (oin && *oin)
		snprintf(who, sizeof(who), "null,\"oin\":\"%s\"", oin);
	else
		snprintf(who, sizeof(who), "null");
	n = snprintf(l->buf + l->len, l->cap - l->len,
		     "{\"time\":\"%s\",\"level\":\"info\",\"event\":\"request\",\"org\":%s,"
		     "\"method\":\"%s\",\"route\":\"%s\",\"status\":%d,\"duration_ms\":%.3f,"
		     "\"bytes\":%zu}\n",
		     ts, who, method, route, status, (double)duration_us / 1000.0, bytes);
	if (n > 0 && (size_t)n < l->cap - l->len)
		l->len += (size_t)n;
}

void gw_log_flush(struct gw_log *l)
{
	if (l->len) {
		/* a log that cannot be written must not stop serving */
		(void)fd_write_all(log_fd, l->buf, l->len);
		l->len = 0;
	}
}

void gw_log_event(const char *level, const char *event, const char *extra)
{
	char line[2048];
	char ts[32], cache[24];
	long sec = -1;
	int n;

	timestamp(&sec, cache, ts, sizeof(ts));
	n = snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":\"%s\",\"event\":\"%s\"%s}\n",
		     ts, level, event, extra ? extra : "");
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 2] = '}';
		line[n - 1] = '\n';
	}
	(void)fd_write_all(log_fd, line, (size_t)n); /* as gw_log_flush */
}

void gw_log_message(const char *level, const char *event, const char *message)
{
	char extra[1800];
	size_t o = 0;

	o += (size_t)snprintf(extra, sizeof(extra), ",\"message\":\"");
	for (const char *s = message; *s && o + 8 < sizeof(extra); s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			extra[o++] = '\\';
			extra[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(extra + o, sizeof(extra) - o, "\\u%04x", c);
		} else {
			extra[o++] = (char)c;
		}
	}
	snprintf(extra + o, sizeof(extra) - o, "\"");
	gw_log_event(level, event, extra);
}
