/*
 * Becoming the configured `user:` after the ports are bound and every key,
 * the audit log and the ledger are open: a bug in TLS, HTTP/2 or JSON
 * handling then runs as an account that owns nothing but its own files.
 */
#include "privdrop.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* The user name for a log line: account names are [a-z0-9_.-]; anything
 * else is shown as '?' so the JSON needs no escaping. */
static void safe_name(const char *in, char *out, size_t outlen)
{
	size_t i = 0;

	for (; in[i] && i + 1 < outlen; i++) {
		char ch = in[i];
		int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			 (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.';
		out[i] = ok ? ch : '?';
	}
	out[i] = '\0';
}

/* One warning per file SIGHUP re-reads that we can no longer read. */
static int warn_unreadable(const char *file, const char *what, const char *user)
{
	char msg[1200];
	struct stat st;

	if (!file || access(file, R_OK) == 0)
		return 0;
	if (stat(file, &st) == 0)
		snprintf(msg, sizeof(msg),
			 "%s '%s' (owner uid %u, mode %04o) is not readable by user '%s': "
			 "a reload (SIGHUP) will fail and keep the old state", what, file,
			 (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777), user);
	else
		snprintf(msg, sizeof(msg),
			 "%s '%s' cannot be reached by user '%s' (%s): a reload (SIGHUP) will "
			 "fail and keep the old state", what, file, user, strerror(errno));
	gw_log_message("warn", "reload_will_fail", msg);
	return 1;
}

/* SIGHUP reopens the log file with O_APPEND|O_CREAT: the file must be
 * writable, or (when logrotate moved it away) its folder. */
static void warn_log_reopen(const char *dest, const char *user)
{
	char dir[1024], msg[1400];
	const char *slash;

	if (!dest || strcmp(dest, "stderr") == 0 || access(dest, W_OK) == 0)
		return;
	slash = strrchr(dest, '/');
	if (slash == dest)
		snprintf(dir, sizeof(dir), "/");
	else if (slash)
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - dest), dest);
	else
		snprintf(dir, sizeof(dir), ".");
	snprintf(msg, sizeof(msg),
		 "log file '%s' is not writable by user '%s'%s: the reopen on SIGHUP will fail "
		 "and the gateway keeps writing to the file it has open (chown it, or let "
		 "logrotate 'create' it for that user)", dest, user,
		 access(dir, W_OK | X_OK) == 0 ? "" : " (nor is its folder)");
	gw_log_message("warn", "log_reopen_will_fail", msg);
}

/* A CSV dataset replaced by a rename is read from the next scan on
 * (docs/adapters.md), if the user can look at the path and read the new
 * file; otherwise the adapter keeps the file it opened at start (no stat)
 * or answers 503 (a new file it cannot read). Said once, here. */
static void warn_datasets(const struct gw_config *cfg, const char *user)
{
	char msg[1400];
	struct stat st;

	if (!(cfg->roles & GW_CFG_NODE))
		return;
	for (int i = 0; i < cfg->node.ndatasets; i++) {
		const struct gw_dataset_cfg *ds = &cfg->node.datasets[i];

		if (ds->sqlite || !ds->path)
			continue;
		if (stat(ds->path, &st) != 0)
			snprintf(msg, sizeof(msg),
				 "dataset %s: '%s' cannot be looked at by user '%s' (%s): a file renamed "
				 "over it will not be seen, the node answers from the file it opened at "
				 "start (let the user search its folder)", ds->id, ds->path, user,
				 strerror(errno));
		else if (access(ds->path, R_OK) != 0)
			snprintf(msg, sizeof(msg),
				 "dataset %s: '%s' (owner uid %u, mode %04o) is not readable by user '%s': "
				 "a file like it renamed over it cannot be opened, and the dataset answers "
				 "503 source_unavailable until it can", ds->id, ds->path,
				 (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777), user);
		else
			continue;
		gw_log_message("warn", "dataset_replacement_unseen", msg);
	}
}

static void check_reload_files(const struct gw_config *cfg, const char *user)
{
	char sig[4096];

	warn_unreadable(cfg->cert_file, "tls.certificate", user);
	warn_unreadable(cfg->key_file, "tls.key", user);
	warn_unreadable(cfg->client_ca_file, "tls.client_ca", user);
	warn_unreadable(cfg->crl_file, "tls.crl", user);
	warn_unreadable(cfg->members_file, "members", user);
	warn_unreadable(cfg->catalog_file, "catalog", user);
	for (int i = 0; i < cfg->policies.nfiles; i++) {
		warn_unreadable(cfg->policies.files[i], "policy", user);
		if (cfg->policies.require_signed &&
		    (size_t)snprintf(sig, sizeof(sig), "%s.sig", cfg->policies.files[i]) < sizeof(sig))
			warn_unreadable(sig, "policy signature", user);
	}
	if (cfg->policies.require_signed)
		warn_unreadable(cfg->policies.signing_key, "policy_signing_key", user);
	warn_log_reopen(cfg->log_destination, user);
	warn_datasets(cfg, user);
}

/*
 * The state_dir must stay writable after the switch: a reload records the
 * new policy serials there (gateway/polstate.c), and one that cannot is
 * refused. Refused at start instead, where the operator is looking.
 */
static int check_state_dir(const struct gw_config *cfg, const char *user, char *err, size_t errlen)
{
	char file[4200];
	struct stat st;

	if (!cfg->state_dir)
		return 0;
	if (access(cfg->state_dir, W_OK | X_OK) != 0) {
		if (stat(cfg->state_dir, &st) == 0)
			snprintf(err, errlen, "state_dir '%s' (owner uid %u, mode %04o) is not writable "
				 "by user '%s': policy serials could not be recorded at a reload; "
				 "chown it to that user", cfg->state_dir, (unsigned)st.st_uid,
				 (unsigned)(st.st_mode & 07777), user);
		else
			snprintf(err, errlen, "state_dir '%s' cannot be reached by user '%s': %s",
				 cfg->state_dir, user, strerror(errno));
		return -1;
	}
	snprintf(file, sizeof(file), "%s/policy-serials", cfg->state_dir);
	if (access(file, F_OK) == 0 && access(file, R_OK) != 0) {
		snprintf(err, errlen, "'%s' is not readable by user '%s': a reload would be refused; "
			 "chown it to that user", file, user);
		return -1;
	}
	return 0;
}

/* After the switch: every id is the user's, and root cannot come back. */
static int verify_dropped(uid_t uid, gid_t gid, char *err, size_t errlen)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg, groups[2];
	int ng;

	if (getresuid(&ru, &eu, &su) != 0 || ru != uid || eu != uid || su != uid ||
	    getresgid(&rg, &eg, &sg) != 0 || rg != gid || eg != gid || sg != gid) {
		snprintf(err, errlen, "user: after the switch the ids are not all %u:%u",
			 (unsigned)uid, (unsigned)gid);
		return -1;
	}
	ng = getgroups(2, groups);
	if (ng < 0 || ng > 1 || (ng == 1 && groups[0] != gid)) {
		snprintf(err, errlen, "user: supplementary groups were not dropped");
		return -1;
	}
	/* OpenSSH's permanently_set_uid() makes the same check: if root can
	 * be regained, nothing was dropped. */
	if (setuid(0) != -1 || seteuid(0) != -1 || setgid(0) != -1 || setegid(0) != -1) {
		snprintf(err, errlen, "user: root could be regained after the switch; refusing to run");
		return -1;
	}
	return 0;
}

int gw_privdrop(const struct gw_config *cfg, char *err, size_t errlen)
{
	uid_t uid = cfg->user_uid;
	gid_t gid = cfg->user_gid;
	char name[64], extra[160];

	if (!cfg->user) {
		/* Not refused: development, tests and containers whose root is
		 * mapped to an unprivileged uid run this way. Said loudly. */
		if (geteuid() == 0)
			gw_log_message("warn", "running_as_root",
				       "no 'user:' in the config: the gateway keeps root after "
				       "binding; set user: to an unprivileged account "
				       "(docs/security.md)");
		return 0;
	}
	safe_name(cfg->user, name, sizeof(name));
	if (geteuid() != 0) {
		uid_t ru, eu, su;
		gid_t rg, eg, sg;

		/* Started as that user already (systemd User=, or a port >= 1024
		 * without root): nothing to drop, but nothing to regain either. */
		if (getresuid(&ru, &eu, &su) == 0 && ru == uid && eu == uid && su == uid &&
		    getresgid(&rg, &eg, &sg) == 0 && rg == gid && eg == gid && sg == gid)
			return 0;
		snprintf(err, errlen, "user: cannot switch to '%s' (uid %u): not started as root "
			 "(uid %u)", name, (unsigned)uid, (unsigned)geteuid());
		return -1;
	}
	/* Groups first: once the uid is gone we may no longer change them. */
	if (setgroups(1, &gid) != 0) {
		snprintf(err, errlen, "user: setgroups(%u): %s", (unsigned)gid, strerror(errno));
		return -1;
	}
	if (setresgid(gid, gid, gid) != 0) {
		snprintf(err, errlen, "user: setresgid(%u): %s", (unsigned)gid, strerror(errno));
		return -1;
	}
	if (setresuid(uid, uid, uid) != 0) {
		snprintf(err, errlen, "user: setresuid(%u): %s", (unsigned)uid, strerror(errno));
		return -1;
	}
	if (verify_dropped(uid, gid, err, errlen) < 0)
		return -1;
	/* Nothing we might exec could gain privileges back (we exec nothing;
	 * this makes it a property rather than a habit). */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		snprintf(err, errlen, "user: PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		return -1;
	}
	snprintf(extra, sizeof(extra), ",\"user\":\"%s\",\"uid\":%u,\"gid\":%u", name,
		 (unsigned)uid, (unsigned)gid);
	gw_log_event("info", "privileges_dropped", extra);
	check_reload_files(cfg, name);
	return check_state_dir(cfg, name, err, errlen);
}
