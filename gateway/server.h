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

/*
 * How a serving process keeps memory (called by gw_server_run). Every
 * question allocates and frees buffers of megabytes (answer bodies,
 * plaintexts, token arrays). By default glibc maps blocks over 128 KiB
 * separately and hands them back to the kernel when freed, so the next
 * question faults every page in again and has the kernel clear it: at 100 k
 * persons about 1,400 page faults and 5 ms of CPU per question on the hub
 * and as much on the node (docs/benchmarks.md). Instead, blocks below
 * GW_KEEP_MMAP_THRESHOLD come from the heap, and up to
 * GW_KEEP_TRIM_THRESHOLD of free heap is kept per arena for reuse. The
 * cost: a process's resident memory stays near its largest question's
 * peak. The large buffers with BSNs, tokens or sealed answers are wiped
 * before they are freed (docs/architecture.md, "Memory between questions").
 */
/*
 * No core dumps, and no ptrace or /proc/PID/mem by anyone but root: a
 * serving process holds keys (in sodium_malloc memory, already excluded
 * from dumps) and, on a node, every CSV dataset typed in memory (BSNs
 * included: adapters/csv.c's copy) and per-question rows. Sets RLIMIT_CORE
 * to 0 and PR_SET_DUMPABLE to 0; called by gw_server_run after the
 * privilege drop (which resets the dumpable flag). To debug a crash, attach
 * a debugger as root.
 */
void gw_server_no_core_dumps(void);

#define GW_KEEP_MMAP_THRESHOLD (32 << 20)  /* glibc's largest allowed on 64-bit */
#define GW_KEEP_TRIM_THRESHOLD (64 << 20)
void gw_server_keep_freed_memory(void);

/* Loads everything serve would (TLS files, members, catalog, policies)
 * and drops it again: 0, or -1 with every problem in |d|. */
int gw_server_check(const struct gw_config *cfg, struct diag *d);

#endif
