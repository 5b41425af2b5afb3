/*
 * The gateway's log: JSON lines. Request lines are buffered per worker and
 * written in one write(2) per event-loop turn; events from the main thread
 * are written at once. Nothing here ever receives personal data: request
 * lines carry the route, never the raw path, query or body.
 */
#ifndef NOORDPOORT_LOG_H
#define NOORDPOORT_LOG_H

#include <stddef.h>
#include <stdint.h>

struct gw_log {
	int fd;
	char *buf;
	size_t len, cap;
	long cached_sec;
	char cached_ts[24]; /* "2026-11-27T20:30:54" */
};

/* Opens |dest| ("stderr" or a file, appended, mode 0640) as the process log
 * fd; returns it, or -1 with errno. Reopening (SIGHUP) dup2()s onto |oldfd|. */
int gw_log_open(const char *dest, int oldfd);
void gw_log_set_fd(int fd);

/* A worker's buffer; gw_log_fini() flushes and frees. */
void gw_log_init(struct gw_log *l);
void gw_log_fini(struct gw_log *l);
void gw_log_request(struct gw_log *l, const char *org, const char *oin, const char *method,
		    const char *route, int status, uint64_t duration_us, size_t bytes);
/* A refused TLS handshake: the reason and the client's address (partner
 * infrastructure, not a data subject). */
void gw_log_handshake(struct gw_log *l, const char *reason, const char *peer);
void gw_log_flush(struct gw_log *l);

/* One event line now: {"time","level","event", ...extra}. |extra| is a JSON
 * fragment of further members (",\"k\":v") or NULL. */
void gw_log_event(const char *level, const char *event, const char *extra);
/* Same, with a free-text "message" that is escaped here. */
void gw_log_message(const char *level, const char *event, const char *message);

#endif
