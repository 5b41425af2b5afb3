/*
 * Refuses rolled-back or expired policy files: a signature over the bytes
 * alone cannot tell an old file from a new one, the serial inside them can,
 * if the gateway remembers the highest it accepted (THREATS.md, "State
 * rollback"). The record lives in the state_dir, outside the policy folder.
 */
#include "polstate.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static void date_of(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || strftime(out, 32, "%Y-%m-%d", &tm) == 0)
		snprintf(out, 32, "?");
}

int gw_polstate_check(const struct gw_config *cfg, const struct policy_set *set, int64_t now,
		      int record, struct diag *d)
{
	struct policy_serials *rec = NULL;
	char path[4200], err[600], today[32];
	size_t n = policy_set_nfiles(set);
	int errors = d->errors, changed = 0;

	date_of(now, today);
	for (size_t i = 0; i < n; i++) {
		const struct policy_file_info *fi = policy_set_file(set, i);

		/* A signed file that ran out is refused whole, even if a purpose
		 * in it would still run: renewing it is the officer's decision. */
		if (fi->valid_end && now >= fi->valid_end)
			diag_error(d, fi->name, fi->valid_line, 1, "policy valid until %s has expired "
				   "(today is %s UTC): refused; sign a new version with a higher serial",
				   fi->valid_until, today);
	}
	if (!cfg->state_dir || n == 0)
		return d->errors == errors ? 0 : -1;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", cfg->state_dir, GW_POLSTATE_FILE) >=
	    sizeof(path)) {
		diag_error(d, cfg->state_dir, 0, 0, "state_dir: path too long");
		return -1;
	}
	if (policy_serials_read(path, &rec, err, sizeof(err)) < 0) {
		diag_error(d, NULL, 0, 0, "%s", err);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const struct policy_file_info *fi = policy_set_file(set, i);
		const char *base = policy_base_name(fi->name);
		const struct policy_serial_rec *r = policy_serials_find(rec, base);

		for (size_t j = 0; j < i; j++)
			if (strcmp(policy_base_name(policy_set_file(set, j)->name), base) == 0)
				diag_error(d, fi->name, 0, 0, "two policy files are named '%s' (also %s): "
					   "serials are recorded per file name", base,
					   policy_set_file(set, j)->name);
		if (!policy_serial_name_ok(base)) {
			diag_error(d, fi->name, 0, 0, "a policy file name must not contain spaces or "
				   "control characters");
			continue;
		}
		if (!fi->serial) {
			if (r)
				diag_error(d, fi->name, 1, 1, "no serial, but serial %llu was accepted for "
					   "'%s' before (%s): refused as a possible rollback",
					   (unsigned long long)r->serial, base, path);
			continue;
		}
		if (r && fi->serial < r->serial) {
			diag_error(d, fi->name, fi->serial_line, 1, "serial %llu is lower than serial "
				   "%llu accepted before for '%s' (%s): an older policy was put back; "
				   "refused", (unsigned long long)fi->serial,
				   (unsigned long long)r->serial, base, path);
		} else if (r && fi->serial == r->serial && strcmp(fi->sha256, r->sha256) != 0) {
			diag_error(d, fi->name, fi->serial_line, 1, "serial %llu was accepted before for "
				   "'%s' with other content (sha256 %.12s..., now %.12s...; %s): refused; "
				   "a changed policy needs a higher serial", (unsigned long long)fi->serial,
				   base, r->sha256, fi->sha256, path);
		} else if (!r || fi->serial > r->serial) {
			if (record && policy_serials_set(rec, base, fi->serial, fi->sha256) < 0)
				diag_error(d, fi->name, 0, 0, "out of memory");
			changed = 1;
		}
	}
	/* Recorded before the set takes effect: a gateway that dies after
	 * this still refuses the older file on its next start. */
	if (d->errors == errors && record && changed &&
	    policy_serials_write(rec, path, err, sizeof(err)) < 0)
		diag_error(d, NULL, 0, 0, "%s (the policy serials cannot be recorded; the policies "
			   "are refused)", err);
	policy_serials_free(rec);
	return d->errors == errors ? 0 : -1;
}
