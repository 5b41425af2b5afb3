/*
 * Requester identifiers: the well-formedness check and the marker that
 * stands in the audit log for anything not well-formed or not declared
 * (gateway/ident.h, docs/audit.md "Requester strings").
 */
#include "ident.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../policies/policy.h"

/* The marker key: random, per process, never written anywhere. Markers of
 * two processes (or before and after a restart) do not compare; within one
 * they do, which is what an auditor needs to see a requester repeating
 * itself. */
static unsigned char mark_key[crypto_generichash_KEYBYTES];
static pthread_once_t mark_once = PTHREAD_ONCE_INIT;

static void mark_key_init(void)
{
	if (sodium_init() < 0)
		return; /* randombytes_buf would abort; the key stays zero */
	randombytes_buf(mark_key, sizeof(mark_key));
}

int gw_ident_ok(const char *s, size_t max, const char *extra)
{
	size_t n;

	if (!s || !*s)
		return 0;
	for (n = 0; s[n]; n++) {
		unsigned char c = (unsigned char)s[n];

		if (n == max)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		      (extra && strchr(extra, c))))
			return 0;
	}
	return 1;
}

const char *gw_ident_audit(const char *s, size_t max, const char *extra, int known,
			   char buf[GW_IDENT_MARK_SIZE])
{
	unsigned char h[crypto_generichash_BYTES_MIN];
	int ok = gw_ident_ok(s, max, extra);

	if (ok && known)
		return s;
	pthread_once(&mark_once, mark_key_init);
	crypto_generichash(h, sizeof(h), (const unsigned char *)(s ? s : ""), s ? strlen(s) : 0,
			   mark_key, sizeof(mark_key));
	snprintf(buf, GW_IDENT_MARK_SIZE, "%s:%02x%02x%02x%02x", ok ? "unknown" : "invalid", h[0], h[1],
		 h[2], h[3]);
	sodium_memzero(h, sizeof(h));
	return buf;
}

int gw_ident_purpose_declared(const struct policy_set *policies, const char *purpose)
{
	struct policy_request req = { 0 };
	struct policy_decision dec;

	if (!policies || !purpose || !*purpose)
		return 0;
	req.requester = "-";
	req.purpose = purpose;
	req.operation = POLICY_OP_LOOKUP;
	req.time = (int64_t)time(NULL);
	if (policy_decide(policies, &req, &dec) < 0)
		return 0;
	return dec.reason != POLICY_UNKNOWN_PURPOSE && dec.reason != POLICY_BAD_REQUEST;
}
