/*
 * Dropping root after start-up: the gateway binds its ports and opens its
 * keys, audit log and ledger as root, then becomes the configured `user:`
 * for good, before any worker or job thread starts. docs/security.md says why.
 */
#ifndef NOORDPOORT_PRIVDROP_H
#define NOORDPOORT_PRIVDROP_H

#include <stddef.h>

#include "config.h"

/*
 * With cfg->user set: setgroups (only the user's primary group), setresgid,
 * setresuid, in that order, then proves it cannot be undone (setuid(0),
 * setgid(0) and seteuid(0) must fail) and sets PR_SET_NO_NEW_PRIVS. Started
 * as that user already: nothing to do. Started as another non-root user:
 * an error (we cannot switch).
 * Without cfg->user: nothing is dropped; running as root logs a warning.
 * After a drop, every file SIGHUP re-reads that the user cannot read (and a
 * log file it cannot reopen) is logged as a warning: such a reload fails
 * and keeps the old state, it never stops the gateway. So is every CSV
 * dataset whose path the user cannot look at or read: a file renamed over
 * it would not be followed (docs/security.md).
 * Returns 0, or -1 with the reason in |err| (the caller must not serve:
 * the process may be half-dropped).
 */
int gw_privdrop(const struct gw_config *cfg, char *err, size_t errlen);

#endif
