/*
 * The federation members file: which organisations take part, known by the
 * OIN (Organisatie-identificatienummer) in their PKIoverheid certificate's
 * subject serialNumber, and the roles each may play.
 */
#ifndef NOORDPOORT_MEMBERS_H
#define NOORDPOORT_MEMBERS_H

#include <stddef.h>

#include "../common/diag.h"

#define GW_OIN_LEN 20

enum gw_role {
	GW_ROLE_NODE = 1u << 0,        /* holds partner data */
	GW_ROLE_HUB = 1u << 1,         /* fans federated questions out */
	GW_ROLE_COORDINATOR = 1u << 2, /* asks aggregate questions */
	GW_ROLE_OPERATOR = 1u << 3,    /* reads /metrics (every partner's request counts) */
};

struct gw_member {
	char *id;   /* "provincie-groningen": [a-z0-9-], used in policies */
	char *name; /* display name, UTF-8 */
	char oin[GW_OIN_LEN + 1];
	unsigned roles; /* enum gw_role bits */
	char *endpoint; /* "https://host:port" of its node; NULL if none */
};

struct gw_members;

/*
 * Loads and validates |path| (unknown keys, duplicate ids or OINs, OINs that
 * are not 20 digits are errors). Returns 0 and the set in |*out|, or -1 with
 * every problem in |d|.
 */
int gw_members_load(const char *path, struct gw_members **out, struct diag *d);
void gw_members_free(struct gw_members *m);

/* The member whose OIN is |oin| (|len| bytes, not NUL-terminated), or NULL. */
const struct gw_member *gw_members_by_oin(const struct gw_members *m,
					  const char *oin, size_t len);
const struct gw_member *gw_members_by_id(const struct gw_members *m, const char *id);
size_t gw_members_count(const struct gw_members *m);
/* The |i|-th member (0 <= i < count), in OIN order. */
const struct gw_member *gw_members_at(const struct gw_members *m, size_t i);

/* Writes the JSON array of role names of |roles| into |out|; returns its length. */
size_t gw_roles_json(unsigned roles, char *out, size_t outlen);

#endif
