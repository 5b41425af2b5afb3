/*
 * libFuzzer target: the HTTP/2 request path. Bytes go to
 * nghttp2_session_mem_recv() with the gateway's own callbacks, limits and
 * request engine, as if they had come out of TLS; whatever the session
 * wants to send is drained.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../gateway/conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct gw_config cfg;
static struct gw_state state;
static struct gw_server srv;
static struct gw_worker worker;
static struct gw_metrics *all[1];

static void setup(void)
{
	static const char members[] =
		"members:\n"
		"  - {id: provincie-groningen, name: Provincie Groningen, "
		"oin: \"00000001001589623000\", roles: [node]}\n";
	char path[] = "/tmp/fuzz-members-XXXXXX";
	int fd = mkstemp(path);
	struct diag d = { 0 };

	if (fd < 0 || write(fd, members, sizeof(members) - 1) < 0)
		abort();
	close(fd);
	if (gw_members_load(path, &state.members, &d) < 0)
		abort();
	unlink(path);
	cfg.limits.max_concurrent_streams = 100;
	cfg.limits.max_header_list_bytes = 16384;
	cfg.limits.max_header_fields = 100;
	cfg.limits.max_body_bytes = 65536;
	cfg.limits.abuse_budget = 200;
	srv.cfg = &cfg;
	srv.nworkers = 1;
	all[0] = &worker.metrics;
	srv.metrics = all;
	worker.srv = &srv;
	worker.state = &state;
	gw_log_init(&worker.log);
	nghttp2_session_callbacks_new(&worker.cbs);
	nghttp2_option_new(&worker.opt);
	gw_h2_callbacks(worker.cbs);
	gw_h2_option(worker.opt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	struct gw_conn c;
	const uint8_t *out;

	if (!worker.srv)
		setup();
	memset(&c, 0, sizeof(c));
	c.w = &worker;
	memcpy(c.peer.oin, "00000001001589623000", 21);
	if (gw_h2_start(&c) < 0)
		return 0;
	/* Most inputs should reach the frame parser, not die at the preface. */
	if (nghttp2_session_mem_recv(c.h2, (const uint8_t *)preface, sizeof(preface) - 1) >= 0)
		nghttp2_session_mem_recv(c.h2, data, size);
	while (nghttp2_session_mem_send(c.h2, &out) > 0)
		;
	nghttp2_session_del(c.h2);
	while (c.streams) {
		struct gw_stream *s = c.streams;
		c.streams = s->next;
		gw_stream_free(s);
	}
	worker.log.len = 0; /* keep the fuzzer's output quiet */
	return 0;
}
