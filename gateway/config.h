/*
 * The gateway's configuration file (YAML, documented in docs/config.md):
 * parsed once into a plain struct that the runtime only reads.
 */
#ifndef NOORDPOORT_CONFIG_H
#define NOORDPOORT_CONFIG_H

#include <stdint.h>
#include <sys/types.h>

#include "../common/diag.h"

#define GW_MAX_LISTEN 8
#define GW_MAX_POLICY_FILES 64
#define GW_MAX_DATASETS 32

enum gw_config_role { GW_CFG_NODE = 1u << 0, GW_CFG_HUB = 1u << 1 };

/* Where a node reads one dataset (adapters/adapter.h has the meaning). */
struct gw_dataset_cfg {
	char *id;          /* OWNER/NAME, in the catalog */
	int sqlite;        /* 0: CSV, 1: SQLite */
	char *path;
	int skip_bad_rows; /* on_bad_row: skip (default fail) */
	int headerless;    /* CSV: header: false */
	char delimiter;    /* CSV: ',' unless given */
	int disk_only;     /* CSV: in_memory: false */
	char *table;       /* SQLite: table or view ... */
	char *query;       /* ... or a SELECT */
};

struct gw_listen {
	char host[64]; /* numeric address: 127.0.0.1, ::1, 0.0.0.0 */
	uint16_t port; /* 0 = the kernel picks one (tests) */
};

struct gw_config {
	char *path;          /* as given */
	struct gw_listen listen[GW_MAX_LISTEN];
	int nlisten;

	/* Absolute or relative to the config file's folder, resolved at load. */
	char *cert_file;
	char *key_file;
	char *client_ca_file;
	char *crl_file; /* NULL: no revocation list (a warning at load) */
	char *members_file;

	unsigned workers; /* 0 in the file = one per core, resolved at load */

	struct {
		uint32_t max_connections;
		uint32_t max_concurrent_streams;
		uint32_t max_header_list_bytes;
		uint32_t max_header_fields;
		uint64_t max_body_bytes;
		uint32_t abuse_budget;
	} limits;

	struct {
		uint32_t handshake_ms;
		uint32_t idle_ms;
		uint32_t request_ms;
		uint32_t drain_ms;
	} timeouts;

	char *log_destination; /* "stderr" or a file path */

	/* The account to become after binding (gateway/privdrop.c); NULL: stay
	 * who we were started as (a warning when that is root). Resolved with
	 * getpwnam() at load: an unknown name or uid 0 is a config error. */
	char *user;
	uid_t user_uid;
	gid_t user_gid;

	unsigned roles;     /* enum gw_config_role bits; 0 = authentication only */
	char *catalog_file; /* the dataset catalog; required with policies or node */

	struct {
		char *files[GW_MAX_POLICY_FILES];
		int nfiles;
		/* Default: true when policies are named (docs/config.md); a
		 * config must say false to run unsigned policies. */
		int require_signed;
		char *signing_key; /* the privacy officer's public key */
	} policies;

	/* A folder the gateway owns (gateway/polstate.c keeps policy-serials
	 * there); required with require_signed_policies. NULL: none. */
	char *state_dir;

	struct {
		char *organisation; /* member id this node speaks for */
		char *master_key;
		struct gw_dataset_cfg datasets[GW_MAX_DATASETS];
		int ndatasets;
		uint32_t lookups_per_minute; /* per requester; 0 = unlimited */
		uint32_t lookup_burst;
		char *hub_public_key; /* X25519 key linked answers are sealed to */
	} node;

	struct {
		char *box_key;            /* X25519 secret key (keygen --box) */
		char *client_certificate; /* the hub's mTLS identity towards nodes */
		char *client_key;
		char *ledger;             /* SQLite privacy budget ledger */
		uint32_t node_timeout_ms;
		uint32_t jobs;            /* questions answered at once */
	} hub;

	struct {
		char *path; /* NULL: no audit log (refused with a node role) */
		char *sign_key;
		uint32_t fsync_every_records;
		uint32_t fsync_every_ms;
		uint32_t checkpoint_every_records;
		uint32_t refusals_per_minute; /* refused requests audited per member */
	} audit;
};

/*
 * Reads and validates |path|. Returns 0 and a new config in |*out| (free with
 * gw_config_free), or -1 with every problem in |d| as "file:line:col: ...".
 * Warnings (no CRL) go to |d| too and do not fail the load.
 */
int gw_config_load(const char *path, struct gw_config **out, struct diag *d);
void gw_config_free(struct gw_config *cfg);

#endif
