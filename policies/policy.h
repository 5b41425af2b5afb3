/*
 * Purpose-bound policies: what may leave a partner, for which purpose, to
 * whom and how coarse. Files are YAML (docs/policy.md); a loaded set is
 * immutable, and policy_decide() is a pure function over it, safe to call
 * from every worker at once without locks.
 */
#ifndef NOORDPOORT_POLICY_H
#define NOORDPOORT_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "../common/diag.h"

#define POLICY_HASH_HEX 64      /* lower-hex SHA-256 */
#define POLICY_MAX_FIELDS 64    /* fields one request may name */
#define POLICY_RULE_MAX 160     /* rule ids are at most 159 bytes */
#define POLICY_TEXT_MAX 1024    /* human-readable reasons; truncated past it */

enum policy_op {
	POLICY_OP_LOOKUP = 1u << 0,           /* one subject in one dataset */
	POLICY_OP_AGGREGATE = 1u << 1,        /* a table from one node */
	POLICY_OP_LINKED_AGGREGATE = 1u << 2, /* a table over datasets linked on person */
};

/*
 * How coarse a field may be used. Each generalisation has a kind (dates,
 * postcodes) and a rank within it; a higher rank is coarser. EXACT is the
 * value as stored and is finer than everything. NONE only appears in
 * requests: "whatever the policy requires" (the decision then says which).
 */
enum policy_gen {
	POLICY_GEN_NONE = 0,
	POLICY_GEN_EXACT,
	POLICY_GEN_MONTH,
	POLICY_GEN_QUARTER,
	POLICY_GEN_YEAR,
	POLICY_GEN_BIRTH_YEAR,        /* same rank as YEAR, named for birth dates */
	POLICY_GEN_AGE_BAND_5,
	POLICY_GEN_AGE_BAND_10,
	POLICY_GEN_AGE_BAND_20,
	POLICY_GEN_POSTCODE4,         /* 9712 of 9712 AB */
	POLICY_GEN_GEMEENTE,          /* municipality */
	POLICY_GEN_ARBEIDSMARKTREGIO, /* labour-market region */
	POLICY_GEN_PROVINCIE,
	POLICY_GEN_COUNT
};

/* What identifies a person in an answer; ordered from strictest. */
enum policy_ident {
	POLICY_IDENT_NEVER = 0,  /* nothing: counts and tables only (the default) */
	POLICY_IDENT_PSEUDONYM,  /* a pseudonym per recipient, never the BSN */
	POLICY_IDENT_BSN,        /* the BSN itself */
};

enum policy_period { POLICY_PER_MONTH = 1, POLICY_PER_QUARTER, POLICY_PER_YEAR };

enum policy_reason {
	POLICY_OK = 0,
	POLICY_BAD_REQUEST,            /* malformed request: too many fields, ... */
	POLICY_UNKNOWN_PURPOSE,
	POLICY_PURPOSE_NOT_YET_VALID,
	POLICY_PURPOSE_EXPIRED,
	POLICY_NOTHING_GRANTED,        /* the purpose has no grants */
	POLICY_REQUESTER_NOT_LISTED,
	POLICY_OPERATION_NOT_GRANTED,
	POLICY_DATASET_NOT_GRANTED,
	POLICY_FIELD_NOT_GRANTED,
	POLICY_GENERALISATION_TOO_FINE,
	POLICY_IDENTIFIERS_NOT_GRANTED,
	POLICY_FORBIDDEN,
	POLICY_REASON_COUNT
};

/* The output controls the gateway must apply to a permitted answer. */
struct policy_output {
	unsigned min_cell;             /* suppress cells with 0 < n < min_cell; default 10 */
	int noise;                     /* 1: discrete Laplace with |epsilon|; 0: none */
	double epsilon;
	unsigned round_to;             /* round counts to a multiple; 1 = not rounded */
	unsigned max_cells_per_person; /* default 1 */
	int has_budget;                /* 0: no budget ledger for this purpose */
	double budget_epsilon;
	enum policy_period budget_per;
	enum policy_ident identifiers; /* default NEVER */
	int partial_ok;                /* on_node_failure: 0 fail (default), 1 partial */
};

/* One field a request uses: "uwv/ww-uitkeringen" . "end_reason". */
struct policy_field {
	const char *dataset;
	const char *field;
	enum policy_gen gen; /* NONE: let the policy decide */
};

struct policy_request {
	const char *requester; /* member id of the caller, from its certificate */
	const char *purpose;
	enum policy_op operation;
	const char *const *datasets;
	size_t ndatasets;
	const struct policy_field *fields;
	size_t nfields;
	enum policy_ident identifiers; /* what the caller wants back; NEVER if none */
	int64_t time;                  /* unix seconds; the caller reads the clock */
};

struct policy_decision {
	int permit;
	enum policy_reason reason;
	char rule[POLICY_RULE_MAX];       /* the deciding grant or forbid; "" if none */
	char message[POLICY_TEXT_MAX];    /* one sentence naming what is missing */
	unsigned napplied;                /* grants that applied (strictest won) */
	struct policy_output out;         /* valid when permit */
	enum policy_gen gen[POLICY_MAX_FIELDS]; /* per request field, when permit */
	char nearest[POLICY_RULE_MAX];    /* deny: the grant closest to the request */
	char missing[POLICY_TEXT_MAX];    /* deny: everything that grant lacks */
	char policy_hash[POLICY_HASH_HEX + 1];
};

/* The dataset catalog (docs/policy.md, "Dataset catalog"). */
struct policy_catalog;

/* What a set is validated against; every member may be NULL/0. */
struct policy_refs {
	const char *const *members;         /* known member ids */
	size_t nmembers;                    /* 0: organisations are not checked */
	const struct policy_catalog *catalog; /* NULL: datasets are not checked */
	const unsigned char *signing_key;   /* 32-byte Ed25519 key: every file needs FILE.sig */
	int64_t now;                        /* unix seconds for expiry warnings; 0: none */
	/* A requester or dataset owner that is not in |members|: 1, an error
	 * (policy check: the privacy officer's typo); 0, a warning, and the
	 * grant never applies to that name (the gateway: a member removed
	 * from the members file is cut off at the next reload even while
	 * other parties' policies still name it). */
	int unknown_member_is_error;
	int require_serial;                 /* every file needs serial: and valid_until: */
};

struct policy_set;

/*
 * Reads, verifies (when refs->signing_key is set), parses and validates
 * |files| as one set. Returns 0 with the set in |*out| (warnings may be in
 * |d|), or -1 with every problem in |d| as "file:line:col: ..." and |*out|
 * NULL. The caller owns the set. The bytes are read once, so what is
 * verified is what is parsed.
 */
int policy_set_load(const char *const *files, size_t nfiles, const struct policy_refs *refs,
		    struct policy_set **out, struct diag *d);
/* As policy_set_load() for one file held in memory; |name| is used in messages. */
int policy_set_load_mem(const char *name, const unsigned char *buf, size_t len,
			const struct policy_refs *refs, struct policy_set **out, struct diag *d);
void policy_set_free(struct policy_set *s);
/* Lower-hex SHA-256 of the files' bytes concatenated in load order. */
const char *policy_set_hash(const struct policy_set *s);

/*
 * What each file of a set says about itself (docs/policy.md, "Serial and
 * validity"): the top-level `serial:` and `valid_until:`, inside the signed
 * bytes, so an older signed file put back can be told from the newer one.
 */
#define POLICY_SERIAL_MAX 9007199254740991ull /* 2^53 - 1: exact in every tool */
struct policy_file_info {
	const char *name;        /* as given to the loader */
	uint64_t serial;         /* 0: the file has none */
	unsigned serial_line;    /* where it is written, for messages; 0 if absent */
	int64_t valid_end;       /* 00:00 UTC of the day after valid_until; 0: none */
	char valid_until[11];    /* "YYYY-MM-DD", "" if absent */
	unsigned valid_line;
	char sha256[POLICY_HASH_HEX + 1]; /* of this file's bytes */
};
/* Number of files in |s|, and the i-th (load order); NULL past the end. */
size_t policy_set_nfiles(const struct policy_set *s);
const struct policy_file_info *policy_set_file(const struct policy_set *s, size_t i);

/*
 * Decides |req| against |s|: default deny, a matching forbid overrides every
 * grant, and where several grants apply the strictest output controls win.
 * Fills |*out| completely. Returns 0 (read out->permit), or -1 if an argument
 * is NULL. Pure: no I/O, no allocation, no clock, no shared state.
 */
int policy_decide(const struct policy_set *s, const struct policy_request *req,
		  struct policy_decision *out);

/*
 * Strictest wins, control by control (docs/policy.md, "Several grants"):
 * largest min_cell and round_to, smallest epsilon and max_cells_per_person,
 * the smallest budget over the longest period, the strictest identifiers,
 * partial answers only if both allow them. policy_decide() merges the
 * grants of one decision with it; the hub merges the decisions of every
 * dataset a question touches.
 */
void policy_output_merge(struct policy_output *o, const struct policy_output *g);

/*
 * The per-dataset budget of |dataset| (docs/policy.md, "Per-dataset
 * budgets"): the cap its owner set on the ε spent on it per period by every
 * requester and purpose together. Where several files set one, the
 * strictest: the smallest epsilon over the longest period. Returns 0 with
 * |*epsilon| and |*per| filled, or -1 when no file sets one (or an
 * argument is NULL).
 */
int policy_dataset_budget(const struct policy_set *s, const char *dataset, double *epsilon,
			  enum policy_period *per);

/* Stable lower-case names ("field_not_granted"), for logs and test files. */
const char *policy_reason_name(enum policy_reason r);
int policy_reason_parse(const char *name, enum policy_reason *out);
const char *policy_op_name(enum policy_op op);
int policy_op_parse(const char *name, enum policy_op *out);
const char *policy_gen_name(enum policy_gen g);
int policy_gen_parse(const char *name, enum policy_gen *out);
const char *policy_ident_name(enum policy_ident i);
int policy_ident_parse(const char *name, enum policy_ident *out);
const char *policy_period_name(enum policy_period p);

/* Parses "YYYY-MM-DD" (a real calendar date) to unix seconds at 00:00 UTC. */
int policy_parse_date(const char *s, int64_t *out);

/* Loads a dataset catalog; 0, or -1 with every problem in |d|. */
int policy_catalog_load(const char *path, struct policy_catalog **out, struct diag *d);
int policy_catalog_load_mem(const char *name, const unsigned char *buf, size_t len,
			    struct policy_catalog **out, struct diag *d);
void policy_catalog_free(struct policy_catalog *c);

/*
 * Catalog contents, for the node's adapters and GET /v1/catalog. Every
 * pointer handed out lives as long as the catalog.
 */
enum policy_field_type { POLICY_T_BSN, POLICY_T_CATEGORY, POLICY_T_INT, POLICY_T_DATE, POLICY_T_BOOL, POLICY_T_STRING };
enum policy_field_role { POLICY_ROLE_IDENTIFIER, POLICY_ROLE_QUASI_IDENTIFIER, POLICY_ROLE_ATTRIBUTE };
struct policy_catalog_field {
	const char *name;
	enum policy_field_type type;
	enum policy_field_role role;
	const char *const *categories; /* category fields only */
	size_t ncategories;
	/* The declared domain (docs/disclosure.md, "Declared domains"). */
	const int64_t *bins;  /* int: strictly increasing bin edges */
	size_t nbins;         /* number of edges, 0 or at least 2 */
	int has_range;        /* date: range_from..range_until, days since 1970 */
	int32_t range_from, range_until;
	int has_ages;         /* date: ages age_from <= age < age_until */
	int age_from, age_until;
};
/*
 * Declared domains: the keys a group-by field may take under the
 * generalisation |g|, from the catalog alone, never from data. Category:
 * its categories; bool: false, true; int with bins: one key per bin
 * ("[0,1000)", or "2023" for a bin one wide) and "other"; date with a range
 * at month/quarter/year/birth_year: every period the range touches and
 * "other"; date with ages at an age band: every band that fits in the ages
 * and "other". Anything else (strings, exact dates, ints without bins) has
 * no domain and cannot be grouped. POLICY_GEN_NONE reads as EXACT.
 */
#define POLICY_DOMAIN_KEY_LEN 48
#define POLICY_DOMAIN_OTHER "other"
#define POLICY_DOMAIN_MAX 100000
/* The number of keys ("other" included), or 0 when there is no domain. */
size_t policy_domain_size(const struct policy_catalog_field *f, enum policy_gen g);
/* Key |i| (< policy_domain_size()): a category name, or text in |buf|. */
const char *policy_domain_key(const struct policy_catalog_field *f, enum policy_gen g, size_t i,
			      char buf[POLICY_DOMAIN_KEY_LEN]);
/*
 * The key of a value as the node generalises it (|len| bytes, not
 * NUL-terminated: "1234", "2023", "2023-Q2", "2023-05", "30-39", a category,
 * "true"): its index, the index of "other" when it lies outside the domain,
 * or -1 when the field has no domain or the text is not of its shape (or is
 * a category or bool outside the list: those domains have no "other").
 */
long policy_domain_index(const struct policy_catalog_field *f, enum policy_gen g, const char *v,
			 size_t len);
/* 1 when |f| can be grouped under some generalisation of |g|'s kind that
 * |g| allows (what `policy check --catalog` asks of an aggregate grant). */
int policy_domain_declared(const struct policy_catalog_field *f, enum policy_gen g);
/* Number of datasets, and the id of the i-th (catalog order); NULL past the end. */
size_t policy_catalog_count(const struct policy_catalog *c);
const char *policy_catalog_dataset(const struct policy_catalog *c, size_t i);
/* The description of |dataset| ("" if none), or NULL when unknown. */
const char *policy_catalog_description(const struct policy_catalog *c, const char *dataset);
/* Points |*fields| at the fields of |dataset| (valid while the catalog lives,
 * in catalog order) and returns their number, or -1 when the dataset is
 * unknown or an argument is NULL. */
int policy_catalog_fields(const struct policy_catalog *c, const char *dataset,
			  const struct policy_catalog_field **fields);
const char *policy_field_type_name(enum policy_field_type t);   /* "bsn", ...; "?" if invalid */
const char *policy_field_role_name(enum policy_field_role r);   /* "identifier", "quasi_identifier", "attribute" */

/* One dataset of one grant, as policy_grants_for() hands it out. The
 * pointers are valid during the callback only. */
struct policy_grant_view {
	const char *purpose;
	const char *purpose_description;
	const char *legal_basis;
	const char *rule;          /* the grant's id */
	unsigned operations;       /* enum policy_op bits */
	const char *dataset;
	size_t nfields;
	const char *const *field_names;
	const enum policy_gen *field_gens;
	struct policy_output out;  /* the grant's own output controls */
};
/*
 * What |requester| may do at |time| (unix seconds): calls |fn| once per
 * (grant, dataset) that lists the requester and whose purpose is valid at
 * |time|, in set order. Forbids are NOT applied: the view says what grants
 * offer, policy_decide() stays the authority. For GET /v1/catalog.
 * Returns 0, or -1 on a NULL argument or when out of memory (only possible
 * for a grant dataset of more than POLICY_MAX_FIELDS fields); on -1 after
 * some calls, |fn| has seen a prefix of the view.
 */
int policy_grants_for(const struct policy_set *s, const char *requester, int64_t time,
		      void (*fn)(void *arg, const struct policy_grant_view *v), void *arg);

/*
 * Signatures: Ed25519 (libsodium), detached, over the file's exact bytes.
 * Keys and signatures are one line of lower-case hex (docs/policy.md).
 * Each returns 0, or -1 with one sentence in |err|.
 */
/* Writes PREFIX.sec (mode 0600) and PREFIX.pub; refuses to overwrite either. */
int policy_keygen(const char *prefix, char *err, size_t errlen);
/* Signs |file| with the secret key file |keyfile|, writing FILE.sig. Refuses
 * a key file that group or others may access, or that another user than
 * this one or root owns (common/keyfile.h). The file must be a valid policy
 * with `serial:` and `valid_until:`, and its serial must be above the last
 * one this key signed for the same base name, as recorded in
 * policy_serials_path(keyfile) (the same serial with the same bytes is
 * signed again). On success |*info| (if not NULL) holds the file's serial
 * and validity. */
int policy_sign_file(const char *file, const char *keyfile, struct policy_file_info *info,
		     char *err, size_t errlen);
/*
 * Serial records (policies/serial.c): one line per policy base name,
 * "NAME SERIAL SHA256". policy_serials_read() takes a missing file as
 * empty and refuses anything malformed; policy_serials_write() replaces
 * the file atomically (temporary file, fsync, rename, fsync of the
 * folder). Each returns 0, or -1 with one sentence in |err|;
 * policy_serials_set() returns -1 when out of memory or given a name with
 * white space, serial 0 or a malformed hash.
 */
struct policy_serials;
struct policy_serial_rec {
	char name[256];
	uint64_t serial;
	char sha256[POLICY_HASH_HEX + 1];
};
int policy_serials_read(const char *path, struct policy_serials **out, char *err, size_t errlen);
const struct policy_serial_rec *policy_serials_find(const struct policy_serials *s, const char *name);
int policy_serials_set(struct policy_serials *s, const char *name, uint64_t serial,
		       const char *sha256);
int policy_serials_write(const struct policy_serials *s, const char *path, char *err, size_t errlen);
void policy_serials_free(struct policy_serials *s);
/* The file name without folders: what records are keyed by. */
const char *policy_base_name(const char *path);
/* 1 when |name| can be a record key: 1-255 bytes, no white space or controls. */
int policy_serial_name_ok(const char *name);

/* KEY.serials, with a trailing ".sec" of |keyfile| dropped: "officer.sec" ->
 * "officer.serials". 0, or -1 when it does not fit |outlen|. */
int policy_serials_path(const char *keyfile, char *out, size_t outlen);
/* Reads a public key file into |pub|. */
int policy_read_pub(const char *pubfile, unsigned char pub[32], char *err, size_t errlen);
/* Checks FILE.sig against |file|'s bytes; -1 when missing, malformed or bad. */
int policy_verify_file(const char *file, const unsigned char pub[32], char *err, size_t errlen);
/* The same over bytes already in memory, with the signature file |sigfile|. */
int policy_verify_mem(const unsigned char *buf, size_t len, const char *sigfile,
		      const unsigned char pub[32], char *err, size_t errlen);

#endif
