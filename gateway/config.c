/*
 * Parses the gateway config file into struct gw_config. Every default that
 * matters for security or robustness is set here, with its reason.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/yamldoc.h"
#include "../audit/audit.h"

static void set_defaults(struct gw_config *c)
{
	/* Enough for every partner system with headroom; each costs ~50 KiB. */
	c->limits.max_connections = 4096;
	/* RFC 9113 recommends at least 100; more only widens abuse. */
	c->limits.max_concurrent_streams = 100;
	/* Our API needs a few hundred bytes of headers; 16 KiB leaves room for
	 * tracing headers and still bounds what one stream may make us hold. */
	c->limits.max_header_list_bytes = 16384;
	c->limits.max_header_fields = 100;
	/* Lookup and aggregate questions are small JSON documents. */
	c->limits.max_body_bytes = 1024 * 1024;
	/* Invalid frames, stream resets sent or received: a well-behaved client
	 * causes a handful a day; a Rapid Reset or malformed-frame flood
	 * thousands a second. */
	c->limits.abuse_budget = 200;
	/* A partner's TLS stack completes a handshake in milliseconds; ten
	 * seconds cuts slowloris at the handshake without hurting slow links. */
	c->timeouts.handshake_ms = 10000;
	c->timeouts.idle_ms = 120000;
	c->timeouts.request_ms = 30000;
	c->timeouts.drain_ms = 30000;
	/* A mobility team checks a client at a time, by hand: two a second
	 * sustained is far above that and far below enumerating a dataset. */
	c->node.lookups_per_minute = 120;
	c->node.lookup_burst = 30;
	/* Lose at most 100 ms or 64 decisions of audit in a power cut. */
	c->audit.fsync_every_records = 64;
	c->audit.fsync_every_ms = 100;
	c->audit.checkpoint_every_records = 1000;
	c->audit.refusals_per_minute = AUDIT_REFUSALS_PER_MINUTE;
	/* A node answering a million-person question takes about a second;
	 * ten is generous and still gives the coordinator an answer soon. */
	c->hub.node_timeout_ms = 10000;
	c->hub.jobs = 4;
}

/* Resolves |p| against the config file's folder unless absolute. */
static char *resolve(const char *cfgpath, const char *p)
{
	const char *slash = strrchr(cfgpath, '/');
	size_t dirlen = slash ? (size_t)(slash - cfgpath) + 1 : 0;
	size_t plen = strlen(p);
	char *r;

	if (p[0] == '/' || dirlen == 0)
		return strdup(p);
	r = malloc(dirlen + plen + 1);
	if (!r)
		return NULL;
	memcpy(r, cfgpath, dirlen);
	memcpy(r + dirlen, p, plen + 1);
	return r;
}

static int parse_path(struct ydoc *y, yaml_node_t *n, const char *field,
		      const char *cfgpath, char **out, int must_exist)
{
	const char *s = ydoc_str(y, n, field);

	if (!s)
		return -1;
	if (!*s) {
		ydoc_error(y, n, "%s: empty path", field);
		return -1;
	}
	*out = resolve(cfgpath, s);
	if (!*out) {
		ydoc_error(y, n, "%s: out of memory", field);
		return -1;
	}
	if (must_exist && access(*out, R_OK) != 0) {
		ydoc_error(y, n, "%s: cannot read '%s'", field, *out);
		return -1;
	}
	return 0;
}

/* "127.0.0.1:8443", "[::1]:8443" or "0.0.0.0:8443". */
static int parse_listen(struct ydoc *y, yaml_node_t *n, struct gw_listen *l)
{
	const char *s = ydoc_str(y, n, "listen");
	const char *colon, *host;
	size_t hostlen;
	char hostbuf[64];
	unsigned char addr[16];
	char *end;
	unsigned long port;

	if (!s)
		return -1;
	colon = strrchr(s, ':');
	if (!colon) {
		ydoc_error(y, n, "listen: '%s' needs ADDRESS:PORT", s);
		return -1;
	}
	host = s;
	hostlen = (size_t)(colon - s);
	if (hostlen >= 2 && host[0] == '[' && host[hostlen - 1] == ']') {
		host++;
		hostlen -= 2;
	}
	if (hostlen == 0 || hostlen >= sizeof(hostbuf)) {
		ydoc_error(y, n, "listen: '%s' has no address", s);
		return -1;
	}
	memcpy(hostbuf, host, hostlen);
	hostbuf[hostlen] = '\0';
	if (inet_pton(AF_INET, hostbuf, addr) != 1 && inet_pton(AF_INET6, hostbuf, addr) != 1) {
		ydoc_error(y, n, "listen: '%s' is not a numeric IPv4 or IPv6 address", hostbuf);
		return -1;
	}
	port = strtoul(colon + 1, &end, 10);
	if (colon[1] < '0' || colon[1] > '9' || *end || port > 65535) {
		ydoc_error(y, n, "listen: '%s' is not a port (0-65535)", colon + 1);
		return -1;
	}
	memcpy(l->host, hostbuf, hostlen + 1);
	l->port = (uint16_t)port;
	return 0;
}

static int parse_tls(struct ydoc *y, yaml_node_t *n, struct gw_config *c)
{
	struct ykey k[] = {
		{ "certificate", 1, NULL }, { "key", 1, NULL },
		{ "client_ca", 1, NULL }, { "crl", 0, NULL },
	};
	int bad = ydoc_map(y, n, "tls", k, 4) < 0;

	if (k[0].value && parse_path(y, k[0].value, "tls.certificate", c->path, &c->cert_file, 1) < 0)
		bad = 1;
	if (k[1].value && parse_path(y, k[1].value, "tls.key", c->path, &c->key_file, 1) < 0)
		bad = 1;
	if (k[2].value && parse_path(y, k[2].value, "tls.client_ca", c->path, &c->client_ca_file, 1) < 0)
		bad = 1;
	if (k[3].value && parse_path(y, k[3].value, "tls.crl", c->path, &c->crl_file, 1) < 0)
		bad = 1;
	if (n && n->type == YAML_MAPPING_NODE && !k[3].value)
		ydoc_warn(y, n, "tls: no 'crl' given; revoked client certificates will be accepted");
	return bad ? -1 : 0;
}

static int set_u32(struct ydoc *y, yaml_node_t *n, const char *field,
		   uint64_t min, uint64_t max, uint32_t *out)
{
	uint64_t v;

	if (!n)
		return 0;
	if (ydoc_uint(y, n, field, min, max, &v) < 0)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int set_ms(struct ydoc *y, yaml_node_t *n, const char *field,
		  uint64_t min, uint64_t max, uint32_t *out)
{
	uint64_t v;

	if (!n)
		return 0;
	if (ydoc_duration_ms(y, n, field, min, max, &v) < 0)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int parse_limits(struct ydoc *y, yaml_node_t *n, struct gw_config *c)
{
	struct ykey k[] = {
		{ "max_connections", 0, NULL }, { "max_concurrent_streams", 0, NULL },
		{ "max_header_list_bytes", 0, NULL }, { "max_header_fields", 0, NULL },
		{ "max_body_bytes", 0, NULL }, { "abuse_budget", 0, NULL },
	};
	int bad = ydoc_map(y, n, "limits", k, 6) < 0;
	uint64_t v;

	bad |= set_u32(y, k[0].value, "limits.max_connections", 1, 1000000, &c->limits.max_connections) < 0;
	bad |= set_u32(y, k[1].value, "limits.max_concurrent_streams", 1, 1000, &c->limits.max_concurrent_streams) < 0;
	if (k[2].value) {
		if (ydoc_bytes(y, k[2].value, "limits.max_header_list_bytes", 1024, 1024 * 1024, &v) < 0)
			bad = 1;
		else
			c->limits.max_header_list_bytes = (uint32_t)v;
	}
	bad |= set_u32(y, k[3].value, "limits.max_header_fields", 8, 10000, &c->limits.max_header_fields) < 0;
	if (k[4].value &&
	    ydoc_bytes(y, k[4].value, "limits.max_body_bytes", 1024, 1024ull * 1024 * 1024,
		       &c->limits.max_body_bytes) < 0)
		bad = 1;
	bad |= set_u32(y, k[5].value, "limits.abuse_budget", 1, 1000000, &c->limits.abuse_budget) < 0;
	return bad ? -1 : 0;
}

static int parse_timeouts(struct ydoc *y, yaml_node_t *n, struct gw_config *c)
{
	struct ykey k[] = {
		{ "handshake", 0, NULL }, { "idle", 0, NULL },
		{ "request", 0, NULL }, { "drain", 0, NULL },
	};
	int bad = ydoc_map(y, n, "timeouts", k, 4) < 0;
	const uint64_t day = 24 * 3600 * 1000ull;

	bad |= set_ms(y, k[0].value, "timeouts.handshake", 100, 600000, &c->timeouts.handshake_ms) < 0;
	bad |= set_ms(y, k[1].value, "timeouts.idle", 100, day, &c->timeouts.idle_ms) < 0;
	bad |= set_ms(y, k[2].value, "timeouts.request", 100, 3600000, &c->timeouts.request_ms) < 0;
	bad |= set_ms(y, k[3].value, "timeouts.drain", 0, 3600000, &c->timeouts.drain_ms) < 0;
	return bad ? -1 : 0;
}

static int parse_log(struct ydoc *y, yaml_node_t *n, struct gw_config *c)
{
	struct ykey k[] = { { "destination", 0, NULL } };
	const char *s;

	if (ydoc_map(y, n, "log", k, 1) < 0)
		return -1;
	if (!k[0].value)
		return 0;
	s = ydoc_str(y, k[0].value, "log.destination");
	if (!s)
		return -1;
	free(c->log_destination);
	c->log_destination = NULL;
	if (strcmp(s, "stderr") == 0)
		c->log_destination = strdup(s);
	else if (parse_path(y, k[0].value, "log.destination", c->path, &c->log_destination, 0) < 0)
		return -1;
	return c->log_destination ? 0 : -1;
}

static int parse_str(struct ydoc *y, yaml_node_t *n, const char *field, char **out)
{
	const char *s = ydoc_str(y, n, field);

	if (!s)
		return -1;
	if (!*s) {
		ydoc_error(y, n, "%s: empty", field);
		return -1;
	}
	*out = strdup(s);
	return *out ? 0 : -1;
}

static int parse_config_roles(struct ydoc *y, yaml_node_t *n, struct gw_config *c)
{
	yaml_node_item_t *it;
	int bad = 0;

	if (n->type != YAML_SEQUENCE_NODE) {
		ydoc_error(y, n, "roles: expected a list such as [node]");
		return -1;
	}
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
		yaml_node_t *r = ydoc_item(y, *it);
		const char *s = ydoc_str(y, r, "roles");

		if (!s)
			bad = 1;
		else if (strcmp(s, "node") == 0)
			c->roles |= GW_CFG_NODE;
		else if (strcmp(s, "hub") == 0)
			c->roles |= GW_CFG_HUB;
		else {
			ydoc_error(y, r, "roles: unknown role '%s' (node or hub)", s);
			bad = 1;
		}
	}
	return bad ? -1 : 0;
}

static int parse_policies(struct ydoc *y, yaml_node_t *n, struct gw_config *c)
{
	yaml_node_item_t *it;
	int bad = 0;

	if (n->type != YAML_SEQUENCE_NODE) {
		ydoc_error(y, n, "policies: expected a list of policy files");
		return -1;
	}
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
		if (c->policies.nfiles == GW_MAX_POLICY_FILES) {
			ydoc_error(y, n, "policies: at most %d files", GW_MAX_POLICY_FILES);
			return -1;
		}
		bad |= parse_path(y, ydoc_item(y, *it), "policies", c->path,
				  &c->policies.files[c->policies.nfiles++], 1) < 0;
	}
	return bad ? -1 : 0;
}

static int parse_source(struct ydoc *y, yaml_node_t *n, const char *what, struct gw_dataset_cfg *ds,
			const char *cfgpath)
{
	struct ykey k[] = {
		{ "type", 1, NULL }, { "path", 1, NULL }, { "on_bad_row", 0, NULL },
		{ "header", 0, NULL }, { "delimiter", 0, NULL }, { "table", 0, NULL },
		{ "query", 0, NULL }, { "in_memory", 0, NULL },
	};
	int bad = ydoc_map(y, n, what, k, 8) < 0;
	const char *s;
	char field[96];

	ds->delimiter = ',';
	snprintf(field, sizeof(field), "%s.type", what);
	if (k[0].value && (s = ydoc_str(y, k[0].value, field))) {
		if (strcmp(s, "sqlite") == 0)
			ds->sqlite = 1;
		else if (strcmp(s, "csv") != 0) {
			ydoc_error(y, k[0].value, "%s: '%s' is not csv or sqlite", field, s);
			bad = 1;
		}
	}
	snprintf(field, sizeof(field), "%s.path", what);
	if (k[1].value)
		bad |= parse_path(y, k[1].value, field, cfgpath, &ds->path, 1) < 0;
	snprintf(field, sizeof(field), "%s.on_bad_row", what);
	if (k[2].value && (s = ydoc_str(y, k[2].value, field))) {
		if (strcmp(s, "skip") == 0)
			ds->skip_bad_rows = 1;
		else if (strcmp(s, "fail") != 0) {
			ydoc_error(y, k[2].value, "%s: '%s' is not skip or fail", field, s);
			bad = 1;
		}
	}
	if (k[3].value) {
		int header = 1;
		snprintf(field, sizeof(field), "%s.header", what);
		bad |= ydoc_bool(y, k[3].value, field, &header) < 0;
		ds->headerless = !header;
	}
	snprintf(field, sizeof(field), "%s.delimiter", what);
	if (k[4].value && (s = ydoc_str(y, k[4].value, field))) {
		if (strlen(s) != 1 || s[0] == '"' || s[0] == '\n' || s[0] == '\r') {
			ydoc_error(y, k[4].value, "%s: give one character such as ',' or ';'", field);
			bad = 1;
		} else {
			ds->delimiter = s[0];
		}
	}
	snprintf(field, sizeof(field), "%s.table", what);
	if (k[5].value)
		bad |= parse_str(y, k[5].value, field, &ds->table) < 0;
	snprintf(field, sizeof(field), "%s.query", what);
	if (k[6].value)
		bad |= parse_str(y, k[6].value, field, &ds->query) < 0;
	if (k[7].value) {
		int in_memory = 1;
		snprintf(field, sizeof(field), "%s.in_memory", what);
		bad |= ydoc_bool(y, k[7].value, field, &in_memory) < 0;
		ds->disk_only = !in_memory;
	}
	if (!bad && ds->sqlite && !!ds->table == !!ds->query) {
		ydoc_error(y, n, "%s: a sqlite source needs exactly one of 'table' or 'query'", what);
		bad = 1;
	}
	if (!bad && !ds->sqlite && (ds->table || ds->query)) {
		ydoc_error(y, n, "%s: 'table' and 'query' are for sqlite sources", what);
		bad = 1;
	}
	/* Said rather than ignored: whoever writes it expects it to do something. */
	if (!bad && ds->sqlite && k[7].value) {
		ydoc_error(y, k[7].value, "%s.in_memory: only for csv sources (SQLite has its own page cache)",
			   what);
		bad = 1;
	}
	return bad ? -1 : 0;
}

static int parse_node(struct ydoc *y, yaml_node_t *n, struct gw_config *c)
{
	struct ykey k[] = {
		{ "organisation", 1, NULL }, { "master_key", 1, NULL }, { "datasets", 1, NULL },
		{ "lookups_per_minute", 0, NULL }, { "lookup_burst", 0, NULL },
		{ "hub_public_key", 0, NULL },
	};
	int bad = ydoc_map(y, n, "node", k, 6) < 0;
	yaml_node_item_t *it;

	if (k[0].value)
		bad |= parse_str(y, k[0].value, "node.organisation", &c->node.organisation) < 0;
	if (k[1].value)
		bad |= parse_path(y, k[1].value, "node.master_key", c->path, &c->node.master_key, 1) < 0;
	if (k[2].value && k[2].value->type != YAML_SEQUENCE_NODE) {
		ydoc_error(y, k[2].value, "node.datasets: expected a list of datasets");
		bad = 1;
	} else if (k[2].value) {
		yaml_node_t *seq = k[2].value;
		for (it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
			struct ykey dk[] = { { "id", 1, NULL }, { "source", 1, NULL } };
			struct gw_dataset_cfg *ds;
			char what[48];

			if (c->node.ndatasets == GW_MAX_DATASETS) {
				ydoc_error(y, seq, "node.datasets: at most %d", GW_MAX_DATASETS);
				bad = 1;
				break;
			}
			ds = &c->node.datasets[c->node.ndatasets];
			snprintf(what, sizeof(what), "node.datasets[%d]", c->node.ndatasets++);
			if (ydoc_map(y, ydoc_item(y, *it), what, dk, 2) < 0) {
				bad = 1;
				continue;
			}
			bad |= parse_str(y, dk[0].value, "id", &ds->id) < 0;
			strncat(what, ".source", sizeof(what) - strlen(what) - 1);
			bad |= parse_source(y, dk[1].value, what, ds, c->path) < 0;
		}
	}
	bad |= set_u32(y, k[3].value, "node.lookups_per_minute", 0, 1000000, &c->node.lookups_per_minute) < 0;
	bad |= set_u32(y, k[4].value, "node.lookup_burst", 1, 1000000, &c->node.lookup_burst) < 0;
	if (k[5].value)
		bad |= parse_path(y, k[5].value, "node.hub_public_key", c->path, &c->node.hub_public_key, 1) < 0;
	return bad ? -1 : 0;
}

static int parse_hub(struct ydoc *y, yaml_node_t *n, struct gw_config *c)
{
	struct ykey k[] = {
		{ "box_key", 1, NULL }, { "client_certificate", 1, NULL }, { "client_key", 1, NULL },
		{ "ledger", 1, NULL }, { "node_timeout", 0, NULL }, { "jobs", 0, NULL },
	};
	int bad = ydoc_map(y, n, "hub", k, 6) < 0;

	if (k[0].value)
		bad |= parse_path(y, k[0].value, "hub.box_key", c->path, &c->hub.box_key, 1) < 0;
	if (k[1].value)
		bad |= parse_path(y, k[1].value, "hub.client_certificate", c->path, &c->hub.client_certificate, 1) < 0;
	if (k[2].value)
		bad |= parse_path(y, k[2].value, "hub.client_key", c->path, &c->hub.client_key, 1) < 0;
	if (k[3].value)
		bad |= parse_path(y, k[3].value, "hub.ledger", c->path, &c->hub.ledger, 0) < 0;
	bad |= set_ms(y, k[4].value, "hub.node_timeout", 100, 600000, &c->hub.node_timeout_ms) < 0;
	bad |= set_u32(y, k[5].value, "hub.jobs", 1, 256, &c->hub.jobs) < 0;
	return bad ? -1 : 0;
}

static int parse_audit(struct ydoc *y, yaml_node_t *n, struct gw_config *c)
{
	struct ykey k[] = {
		{ "path", 1, NULL }, { "sign_key", 0, NULL }, { "fsync_every_records", 0, NULL },
		{ "fsync_every_ms", 0, NULL }, { "checkpoint_every_records", 0, NULL },
		{ "refusals_per_minute", 0, NULL },
	};
	int bad = ydoc_map(y, n, "audit", k, 6) < 0;

	if (k[0].value)
		bad |= parse_path(y, k[0].value, "audit.path", c->path, &c->audit.path, 0) < 0;
	if (k[1].value)
		bad |= parse_path(y, k[1].value, "audit.sign_key", c->path, &c->audit.sign_key, 1) < 0;
	bad |= set_u32(y, k[2].value, "audit.fsync_every_records", 1, 100000, &c->audit.fsync_every_records) < 0;
	bad |= set_u32(y, k[3].value, "audit.fsync_every_ms", 1, 60000, &c->audit.fsync_every_ms) < 0;
	bad |= set_u32(y, k[4].value, "audit.checkpoint_every_records", 1, 10000000,
		       &c->audit.checkpoint_every_records) < 0;
	bad |= set_u32(y, k[5].value, "audit.refusals_per_minute", 1, 100000,
		       &c->audit.refusals_per_minute) < 0;
	return bad ? -1 : 0;
}

/*
 * user: NAME. Looked up now, so a typo is a config error with its position
 * rather than a start that fails after the ports are bound. Root is refused:
 * "switching" to uid 0 would only hide that nothing is dropped.
 */
static int parse_user(struct ydoc *y, yaml_node_t *n, struct gw_config *c)
{
	const char *s = ydoc_str(y, n, "user");
	struct passwd *pw;

	if (!s)
		return -1;
	if (!*s) {
		ydoc_error(y, n, "user: empty; name the account to run as (e.g. noordpoort)");
		return -1;
	}
	errno = 0;
	pw = getpwnam(s);
	if (!pw) {
		/* getpwnam(3): "not found" may come back as 0, ENOENT, ESRCH,
		 * EBADF or EPERM; anything else is a failing lookup (NSS). */
		int e = errno;
		int notfound = e == 0 || e == ENOENT || e == ESRCH || e == EBADF || e == EPERM;

		ydoc_error(y, n, "user: no such user '%s' on this system%s%s", s,
			   notfound ? "" : ": ", notfound ? "" : strerror(e));
		return -1;
	}
	if (pw->pw_uid == 0) {
		ydoc_error(y, n, "user: '%s' is uid 0; name an unprivileged account", s);
		return -1;
	}
	c->user = strdup(s);
	c->user_uid = pw->pw_uid;
	c->user_gid = pw->pw_gid;
	return c->user ? 0 : -1;
}

/* An existing folder: the gateway does not create it, so its owner and
 * mode are the operator's choice (docs/config.md, "state_dir"). */
static int parse_state_dir(struct ydoc *y, yaml_node_t *n, struct gw_config *c)
{
	struct stat st;

	if (parse_path(y, n, "state_dir", c->path, &c->state_dir, 0) < 0)
		return -1;
	if (stat(c->state_dir, &st) != 0) {
		ydoc_error(y, n, "state_dir: '%s': %s (create it, owned by the gateway's user)",
			   c->state_dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		ydoc_error(y, n, "state_dir: '%s' is not a folder", c->state_dir);
		return -1;
	}
	return 0;
}

static int parse_root(struct ydoc *y, struct gw_config *c)
{
	struct ykey k[] = {
		{ "listen", 1, NULL }, { "tls", 1, NULL }, { "members", 1, NULL },
		{ "workers", 0, NULL }, { "limits", 0, NULL }, { "timeouts", 0, NULL },
		{ "log", 0, NULL }, { "roles", 0, NULL }, { "catalog", 0, NULL },
		{ "policies", 0, NULL }, { "node", 0, NULL }, { "audit", 0, NULL },
		{ "require_signed_policies", 0, NULL }, { "policy_signing_key", 0, NULL },
		{ "hub", 0, NULL }, { "user", 0, NULL }, { "state_dir", 0, NULL },
	};
	int bad = ydoc_map(y, ydoc_root(y), "config", k, 17) < 0;
	yaml_node_t *n;

	if ((n = k[0].value)) {
		if (n->type == YAML_SCALAR_NODE) {
			bad |= parse_listen(y, n, &c->listen[c->nlisten++]) < 0;
		} else if (n->type == YAML_SEQUENCE_NODE) {
			yaml_node_item_t *it;
			for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
				if (c->nlisten == GW_MAX_LISTEN) {
					ydoc_error(y, ydoc_item(y, *it), "listen: at most %d addresses", GW_MAX_LISTEN);
					bad = 1;
					break;
				}
				bad |= parse_listen(y, ydoc_item(y, *it), &c->listen[c->nlisten++]) < 0;
			}
			if (c->nlisten == 0) {
				ydoc_error(y, n, "listen: give at least one ADDRESS:PORT");
				bad = 1;
			}
		} else {
			ydoc_error(y, n, "listen: expected ADDRESS:PORT or a list of them");
			bad = 1;
		}
	}
	if (k[1].value)
		bad |= parse_tls(y, k[1].value, c) < 0;
	if (k[2].value)
		bad |= parse_path(y, k[2].value, "members", c->path, &c->members_file, 1) < 0;
	if (k[3].value) {
		uint64_t w;
		if (ydoc_uint(y, k[3].value, "workers", 0, 256, &w) < 0)
			bad = 1;
		else
			c->workers = (unsigned)w;
	}
	if (k[4].value)
		bad |= parse_limits(y, k[4].value, c) < 0;
	if (k[5].value)
		bad |= parse_timeouts(y, k[5].value, c) < 0;
	if (k[6].value)
		bad |= parse_log(y, k[6].value, c) < 0;
	if (k[7].value)
		bad |= parse_config_roles(y, k[7].value, c) < 0;
	if (k[8].value)
		bad |= parse_path(y, k[8].value, "catalog", c->path, &c->catalog_file, 1) < 0;
	if (k[9].value)
		bad |= parse_policies(y, k[9].value, c) < 0;
	if (k[10].value)
		bad |= parse_node(y, k[10].value, c) < 0;
	if (k[11].value)
		bad |= parse_audit(y, k[11].value, c) < 0;
	if (k[12].value)
		bad |= ydoc_bool(y, k[12].value, "require_signed_policies", &c->policies.require_signed) < 0;
	if (k[13].value)
		bad |= parse_path(y, k[13].value, "policy_signing_key", c->path, &c->policies.signing_key, 1) < 0;
	if (k[14].value)
		bad |= parse_hub(y, k[14].value, c) < 0;
	if (k[15].value)
		bad |= parse_user(y, k[15].value, c) < 0;
	if (k[16].value)
		bad |= parse_state_dir(y, k[16].value, c) < 0;
	if (bad)
		return -1;
	/* Signed policies by default: whoever can write a policy file (a
	 * compromised account, a careless deploy, a restored backup) must not
	 * decide what leaves a partner. Unsigned is said explicitly, in the
	 * file, where a reviewer sees it (docs/config.md). */
	if (!k[12].value)
		c->policies.require_signed = c->policies.nfiles > 0;
	if ((c->roles & GW_CFG_HUB) && !k[14].value) {
		ydoc_error(y, k[7].value, "roles: a hub needs a 'hub' section (its keys and ledger)");
		bad = 1;
	}
	if (k[14].value && !(c->roles & GW_CFG_HUB)) {
		ydoc_error(y, k[14].value, "hub: this section needs 'roles: [hub]'");
		bad = 1;
	}
	if ((c->roles & GW_CFG_HUB) && (!c->audit.path || !c->policies.nfiles)) {
		ydoc_error(y, k[7].value, "roles: a hub needs 'policies' and an 'audit' log");
		bad = 1;
	}
	if (c->policies.require_signed && !c->policies.signing_key) {
		if (k[12].value)
			ydoc_error(y, k[12].value, "require_signed_policies: needs 'policy_signing_key' "
				   "(the privacy officer's public key)");
		else
			ydoc_error(y, k[9].value, "policies: signed policies are required by default: "
				   "name the privacy officer's public key in 'policy_signing_key' (and a "
				   "'state_dir'), or say 'require_signed_policies: false' to run unsigned "
				   "policies (development and demos only)");
		bad = 1;
	}
	if (c->policies.require_signed && !c->state_dir) {
		ydoc_error(y, k[12].value ? k[12].value : k[9].value,
			   "require_signed_policies: needs 'state_dir': the gateway records there the "
			   "highest policy serial it accepted, so an older signed policy cannot be put back");
		bad = 1;
	}
	/* What a role needs, said once here rather than failing later. */
	if ((c->roles & GW_CFG_NODE) && !k[10].value) {
		ydoc_error(y, k[7].value, "roles: a node needs a 'node' section (its datasets and key)");
		bad = 1;
	}
	if (k[10].value && !(c->roles & GW_CFG_NODE)) {
		ydoc_error(y, k[10].value, "node: this section needs 'roles: [node]'");
		bad = 1;
	}
	if ((c->roles & GW_CFG_NODE) && (!c->audit.path || !c->policies.nfiles)) {
		ydoc_error(y, k[7].value, "roles: a node needs 'policies' and an 'audit' log: "
			   "nothing leaves a node undecided or unrecorded");
		bad = 1;
	}
	if ((c->policies.nfiles || k[10].value) && !c->catalog_file) {
		ydoc_error(y, ydoc_root(y), "config: policies and datasets need a 'catalog'");
		bad = 1;
	}
	return bad ? -1 : 0;
}

int gw_config_load(const char *path, struct gw_config **out, struct diag *d)
{
	struct gw_config *c = calloc(1, sizeof(*c));
	struct ydoc y;
	int rc = -1;

	*out = NULL;
	if (!c) {
		diag_error(d, path, 0, 0, "out of memory");
		return -1;
	}
	set_defaults(c);
	c->path = strdup(path);
	c->log_destination = strdup("stderr");
	if (!c->path || !c->log_destination) {
		diag_error(d, path, 0, 0, "out of memory");
		goto out;
	}
	if (ydoc_load_file(&y, path, d) == 0 && parse_root(&y, c) == 0)
		rc = 0;
	ydoc_fini(&y);
	if (rc == 0 && c->workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		c->workers = n > 0 ? (unsigned)n : 1;
	}
out:
	if (rc < 0) {
		gw_config_free(c);
		return -1;
	}
	*out = c;
	return 0;
}

void gw_config_free(struct gw_config *c)
{
	if (!c)
		return;
	free(c->path);
	free(c->cert_file);
	free(c->key_file);
	free(c->client_ca_file);
	free(c->crl_file);
	free(c->members_file);
	free(c->log_destination);
	free(c->user);
	free(c->catalog_file);
	for (int i = 0; i < c->policies.nfiles; i++)
		free(c->policies.files[i]);
	free(c->policies.signing_key);
	free(c->state_dir);
	free(c->node.organisation);
	free(c->node.master_key);
	for (int i = 0; i < c->node.ndatasets; i++) {
		struct gw_dataset_cfg *ds = &c->node.datasets[i];
		free(ds->id);
		free(ds->path);
		free(ds->table);
		free(ds->query);
	}
	free(c->audit.path);
	free(c->audit.sign_key);
	free(c->node.hub_public_key);
	free(c->hub.box_key);
	free(c->hub.client_certificate);
	free(c->hub.client_key);
	free(c->hub.ledger);
	free(c);
}
