/*
 * The budget ledger's tie to the hub's audit log (docs/ledger.md, "The
 * ledger cannot vanish"): what the audit log says about the ledger, checked
 * when the hub starts, and `noordpoort ledger init|verify`.
 */
#ifndef NOORDPOORT_LEDGER_CLI_H
#define NOORDPOORT_LEDGER_CLI_H

#include <stddef.h>
#include <stdint.h>

/* What an audit log records about budget ledgers. */
struct gw_ledger_seen {
	char last_id[33];   /* the last ledger id recorded ("" if none) */
	int64_t max_debit;  /* the highest budget_debit recorded while last_id was in use */
	unsigned long attaches; /* "ledger_attach" records of last_id */
};

/*
 * Reads the audit log |path| (a missing file records nothing). Each
 * "ledger_attach" line (written by the hub at start) names the ledger in
 * use from there on; each budget_debit after it is that ledger's.
 * Returns 0, or -1 with |err| set when the file cannot be read.
 */
int gw_ledger_audit_scan(const char *path, struct gw_ledger_seen *seen, char *err, size_t errlen);

/*
 * Whether ledger |id| with last debit |last_debit| is the ledger the audit
 * log knows: 0, or -1 with |err| saying why not (another ledger id: it was
 * replaced; a last debit behind the audit log's: it was rolled back).
 */
int gw_ledger_matches(const struct gw_ledger_seen *seen, const char *id, int64_t last_debit, char *err,
		      size_t errlen);

/* `noordpoort ledger ...` (argv[0] = "ledger"): init and verify. Returns
 * the exit status: 0 ok, 1 failed or not consistent, 2 bad usage. */
int ledger_cli(int argc, char **argv);

#endif
