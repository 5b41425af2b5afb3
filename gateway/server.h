/*
 * The server: listening sockets, one event-loop worker thread per core, TLS
 * and HTTP/2 per connection, timeouts, reload on SIGHUP and drain on SIGTERM.
 */
#ifndef NOORDPOORT_SERVER_H
#define NOORDPOORT_SERVER_H

#include "config.h"

/*
 * Serves |cfg| until SIGTERM or SIGINT, then drains. Takes ownership of |cfg|
 * (a reload replaces it). Returns 0 after a clean drain, or -1 when it could
 * not start (the reason is logged).
 */
int gw_server_run(struct gw_config *cfg);

/* Loads everything serve would (TLS files, members, catalog, policies)
 * and drops it again: 0, or -1 with every problem in |d|. */
int gw_server_check(const struct gw_config *cfg, struct diag *d);

#endif
