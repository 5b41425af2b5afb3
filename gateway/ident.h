/*
 * Identifiers a requester sends (purpose, dataset, field, generalisation,
 * member ids): checked against what the policy language allows before
 * anything is audited, and written to the audit log as a fixed marker plus
 * a short keyed hash when they are not well-formed, or not declared in this
 * gateway's configuration, so a requester can never put its own bytes (a
 * BSN, a megabyte) into a log line. docs/audit.md, "Requester strings".
 */
#ifndef NOORDPOORT_IDENT_H
#define NOORDPOORT_IDENT_H

#include <stddef.h>

struct policy_set;

/* The longest identifier a requester may send, in bytes. The policy
 * language's ids are at most 64 bytes (purposes, members, dataset names,
 * fields; policies/load.c), a dataset id OWNER/NAME at most 129; the
 * hub's DATASET.FIELD:GEN references are longer and are checked part by
 * part. 128 leaves room without letting a line grow. */
#define GW_IDENT_MAX 128

/* What may appear besides [a-z0-9_-] (lower-case letters, digits, '_' and
 * '-'), per kind of identifier. */
#define GW_IDENT_NAME "."      /* purposes, fields, members, generalisations */
#define GW_IDENT_DATASET "./"  /* OWNER/NAME */
#define GW_IDENT_REF "./:"     /* the hub's DATASET.FIELD[:GEN], present_in.DATASET */

/* The hub's references join a dataset id, a field and a generalisation. */
#define GW_IDENT_REF_MAX (2 * GW_IDENT_MAX + 32)

/* "invalid:" or "unknown:" and 8 hex digits, and a NUL. */
#define GW_IDENT_MARK_SIZE 17

/*
 * 1 when |s| is 1 to |max| bytes (GW_IDENT_MAX or GW_IDENT_REF_MAX) of
 * [a-z0-9_-] and the characters of |extra|; 0 otherwise (NULL, empty, too
 * long, anything else). |s| is NUL-terminated; at most |max| + 1 bytes of
 * it are read.
 */
int gw_ident_ok(const char *s, size_t max, const char *extra);

/*
 * The text the audit log gets for a requester's identifier: |s| itself when
 * |known| (the caller checked it is well-formed and declared: a purpose of
 * the policy set, a dataset this node holds, a field of it, a member);
 * otherwise "invalid:" (not well-formed per gw_ident_ok(|s|, |max|,
 * |extra|)) or "unknown:" (well-formed, not declared) and the first 8 hex
 * digits of a BLAKE2b of |s| keyed with a random key drawn once per process
 * (kept in memory only), written into |buf|. The hash lets an auditor see
 * that two refused requests named the same thing without the log holding
 * it; it cannot be reversed without the key. NULL |s| is "invalid:".
 */
const char *gw_ident_audit(const char *s, size_t max, const char *extra, int known,
			   char buf[GW_IDENT_MARK_SIZE]);

/* 1 when |purpose| is declared in |policies| (whatever its grants), else
 * 0. Asks policy_decide(), the authority on purposes, with an empty
 * request. */
int gw_ident_purpose_declared(const struct policy_set *policies, const char *purpose);

#endif
