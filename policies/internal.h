/*
 * The shape of a loaded policy set, shared by the loader (load.c), the
 * evaluator (decide.c), the read-only views (query.c), the diff (diff.c) and
 * the tools (cli.c). Nothing
 * outside policies/ includes this: the public view is policy.h.
 */
#ifndef NOORDPOORT_POLICY_INTERNAL_H
#define NOORDPOORT_POLICY_INTERNAL_H

#include "policy.h"

/* Where a rule was written, for messages and explain. */
struct pol_pos {
	const char *file;
	unsigned line, col;
};

struct pol_field {
	const char *name;
	enum policy_gen gen; /* EXACT: as stored */
	struct pol_pos pos;
};

struct pol_dataset {
	const char *id; /* "uwv/ww-uitkeringen": owner member id / name */
	struct pol_field *fields;
	size_t nfields; /* forbid only: 0 = the whole dataset */
	struct pol_pos pos;
	int inert;      /* grant only: its owner is not a member, so it is never granted */
};

struct pol_purpose;

struct pol_grant {
	const char *id; /* given, or "PURPOSE/grant[i]" */
	struct pol_pos pos;
	const char **requesters; /* members only: names that are not members are dropped (inert) */
	size_t nrequesters;
	unsigned ops; /* enum policy_op bits */
	struct pol_dataset *datasets;
	size_t ndatasets;
	struct policy_output out;
	const struct pol_purpose *purpose;
};

struct pol_forbid {
	const char *id; /* given, or "PURPOSE/forbid[i]" or "FILE/forbid[i]" */
	const char *reason;
	struct pol_pos pos;
	const char **requesters; /* 0: everyone */
	size_t nrequesters;
	const char **purposes; /* top-level forbids only; 0: every purpose */
	size_t npurposes;
	unsigned ops; /* 0: every operation */
	struct pol_dataset *datasets; /* 0: all data */
	size_t ndatasets;
};

struct pol_purpose {
	const char *id;
	const char *description;
	const char *legal_basis;
	const char *register_ref; /* processing register entry; may be NULL */
	struct pol_pos pos;
	char from_s[11], until_s[11];
	int64_t from;      /* 00:00:00 UTC of the first day */
	int64_t until_end; /* 00:00:00 UTC of the day after the last day */
	struct pol_grant *grants;
	size_t ngrants;
	struct pol_forbid *forbids;
	size_t nforbids;
};

/* An arena: a set (or catalog) is freed in one call, and a parser that
 * fails half-way leaks nothing. Allocations are zeroed. */
struct pol_block;
void *pol_alloc(struct pol_block **a, size_t n);
char *pol_strdup(struct pol_block **a, const char *s);
void pol_arena_free(struct pol_block *a);

/* dataset_budgets: one entry per file per dataset (the strictest applies). */
struct pol_ds_budget {
	const char *dataset;
	double epsilon;
	enum policy_period per;
	struct pol_pos pos;
};

struct policy_set {
	struct pol_block *arena; /* every string and array below lives here */
	struct pol_ds_budget *ds_budgets; /* from every file's dataset_budgets */
	size_t nds_budgets;
	struct pol_purpose *purposes;
	size_t npurposes;
	struct pol_forbid *forbids; /* top-level, from every file */
	size_t nforbids;
	struct policy_file_info *files; /* one per file, load order */
	size_t nfiles;
	char hash[POLICY_HASH_HEX + 1];
};

/* The generalisation table: kind 0 fits every field (EXACT). */
int pol_gen_kind(enum policy_gen g);
int pol_gen_rank(enum policy_gen g);
/* 1 if a field granted as |granted| may be used as |wanted|. */
int pol_gen_allows(enum policy_gen granted, enum policy_gen wanted);
void pol_date_str(int64_t t, char out[11]);

/*
 * Catalog lookups for validation; NULL when unknown. |identifier| repeats
 * role == POLICY_ROLE_IDENTIFIER because load.c's checks read it.
 */
struct pol_cat_field {
	const char *name;
	enum policy_field_type type;
	enum policy_field_role role;
	int identifier;
	const char **categories;
	size_t ncategories;
	int64_t *bins;
	size_t nbins;
	int has_range, has_ages;
	int32_t range_from, range_until;
	int age_from, age_until;
};
struct pol_cat_dataset {
	const char *id;
	const char *description; /* "" if none */
	struct pol_cat_field *fields;
	size_t nfields;
	struct policy_catalog_field *pub; /* the same fields, as policy.h shows them */
};

struct policy_catalog {
	struct pol_block *arena;
	struct pol_cat_dataset *v;
	size_t n;
};

const struct pol_cat_field *pol_catalog_field(const struct policy_catalog *c,
					      const char *dataset, const char *field);
int pol_catalog_has_dataset(const struct policy_catalog *c, const char *dataset);
/* Parses YYYY-MM-DD (a real calendar day, any year 0000..9999) into days
 * since 1970-01-01 and its year; 0 or -1. policy_parse_date() and
 * pol_domain_day() apply their own year ranges on top. */
int pol_civil_day(const char *s, int64_t *day, unsigned *year);
/* Days since 1970-01-01 back to year, month 1..12 and day 1..31 (the
 * inverse of pol_civil_day, any day). */
void pol_civil_from_days(int64_t day, int64_t *year, unsigned *month, unsigned *mday);
/* A day YYYY-MM-DD from 1900 to 2199 as days since 1970; 0 or -1. */
int pol_domain_day(const char *s, int32_t *day);
/* |f| as policy.h shows it (for the declared-domain checks). */
void pol_cat_public(const struct pol_cat_field *f, struct policy_catalog_field *out);
int pol_cat_type_is_date(enum policy_field_type type);
int pol_cat_type_is_string(enum policy_field_type type);

/* A growing text buffer for the diff; on out-of-memory it stops growing and
 * sets |oom|. */
struct pol_text {
	char *buf;
	size_t len, cap;
	int oom;
};
void pol_text_add(struct pol_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pol_text_free(struct pol_text *t);

/*
 * What NEW allows that OLD did not (|loose|), what it takes away or makes
 * stricter (|tight|) and neutral changes (|other|), one line each.
 * Returns 1 if anything differs, 0 if not, -1 when out of memory.
 */
int pol_diff(const struct policy_set *old, const struct policy_set *cur,
	     struct pol_text *loose, struct pol_text *tight, struct pol_text *other);

#endif
