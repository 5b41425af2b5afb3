/*
 * The privacy budget ledger: how much ε each requester × purpose has spent in
 * the current calendar period (UTC), kept in a SQLite file that several hub
 * processes may share. Debits are atomic and never refunded. Schema, rounding
 * and guarantees: docs/ledger.md. Library code: it never logs or exits.
 */
#ifndef NOORDPOORT_LEDGER_H
#define NOORDPOORT_LEDGER_H

#include "../common/err.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "../policies/policy.h"

/*
 * Return codes besides 0, NP_ERR_ARG (a bad argument) and NP_ERR_NOMEM (common/err.h). The gateway
 * answers LEDGER_EXHAUSTED with 429 and every other error with 503; in no
 * case is anything released.
 */
#define LEDGER_EXHAUSTED (-620)         /* the debit would pass the limit */
#define LEDGER_BUSY      NP_ERR_BUSY        /* locked by another process past LEDGER_BUSY_MS */
#define LEDGER_IO        NP_ERR_IO        /* cannot open, read, write or sync the file */
#define LEDGER_CORRUPT   (-621)        /* not a ledger, or a damaged one */
#define LEDGER_VERSION   (-622) /* written by a newer Noordpoort */
#define LEDGER_MISSING   NP_ERR_NOT_FOUND       /* no ledger at the path (or an empty file) */
#define LEDGER_EXISTS    NP_ERR_EXISTS       /* ledger_create(): the path exists */
#define LEDGER_REPLACED  (-623)       /* the file at the path is not the one opened */

/* How long a debit waits for another hub's transaction before LEDGER_BUSY.
 * A debit holds the lock for well under a millisecond plus one fsync, so a
 * wait this long means something is wrong with the other holder; a worker
 * should fail fast (503) rather than queue behind it. */
#define LEDGER_BUSY_MS 250
/* ledger_open() waits longer: no request is waiting yet, and a hub that
 * starts while another is creating the file should not fail for it. */
#define LEDGER_OPEN_BUSY_MS 5000

/* The schema version this build writes and reads (docs/ledger.md). */
#define LEDGER_SCHEMA_VERSION 3

/* A ledger id: 32 hex digits (16 random bytes) plus NUL. */
#define LEDGER_ID_LEN 33

/* ε is stored in integer micro-ε; the largest ε the ledger accepts. Below
 * 2^53 micro-ε, so every whole micro-ε value is exact in a double. */
#define LEDGER_MICRO 1000000u
#define LEDGER_EPSILON_MAX 1e9

/* Periods are computed for years 1 to 9999 (unix seconds, UTC). */
#define LEDGER_TIME_MIN (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define LEDGER_TIME_MAX 253402300799LL   /* 9999-12-31T23:59:59Z */

/* "2024-03-01T00:00:00Z" plus NUL; ε as "0.05" (at most 6 decimals) plus NUL. */
#define LEDGER_TIME_LEN 21
#define LEDGER_EPS_LEN 24

struct ledger;

/* Where a requester × purpose stands in one period. All amounts in micro-ε. */
struct ledger_status {
	uint64_t limit_micro;     /* the limit the caller passed */
	uint64_t spent_micro;     /* debited in this period (this debit included on success) */
	uint64_t remaining_micro; /* limit - spent; 0 when spent exceeds a lowered limit */
	int64_t period_start;     /* unix seconds UTC, first instant of the period */
	int64_t reset;            /* unix seconds UTC, first instant of the next period */
	int64_t debit_id;         /* ledger_debit() success: the row id (put it in the
				   * audit record); otherwise 0 */
};

/*
 * Creates a new ledger at |path| (which must not exist: O_EXCL), with the
 * schema and a fresh random ledger id, mode 0600. This is
 * `noordpoort ledger init`; the hub never creates a ledger, so deleting one
 * cannot reset the budget (docs/ledger.md). Returns 0, or LEDGER_EXISTS,
 * LEDGER_IO, LEDGER_BUSY, NP_ERR_ARG, NP_ERR_NOMEM with one sentence in |err|; on
 * failure nothing is left at |path|.
 */
int ledger_create(const char *path, char *err, size_t errlen);

/*
 * Opens the existing ledger |path| (waiting up to LEDGER_OPEN_BUSY_MS for
 * another hub); never creates one: a missing or empty file is
 * LEDGER_MISSING. An older ledger is migrated forward here, in one
 * transaction: version 1 gets its ledger id, versions 1 and 2 the table of
 * per-dataset debits (version 3). Sets WAL mode,
 * synchronous=FULL and a busy timeout of LEDGER_BUSY_MS for later calls, and
 * runs PRAGMA quick_check, so a damaged file is refused here rather than
 * under-counting spent budget later.
 * Returns 0 with a handle in |*out| (the caller frees it with ledger_close()),
 * or, with one sentence in |err| naming |path|: LEDGER_MISSING (no file, or
 * an empty one), LEDGER_IO (cannot open), LEDGER_CORRUPT (not a SQLite file, a SQLite file that is not a
 * ledger, or one that fails the check), LEDGER_VERSION (schema version newer
 * than LEDGER_SCHEMA_VERSION), LEDGER_BUSY, NP_ERR_ARG, NP_ERR_NOMEM.
 * One handle per process is meant to be shared by all worker threads: calls
 * on it are serialised by a mutex. A handle must not cross fork(2); a child
 * opens its own.
 */
int ledger_open(const char *path, struct ledger **out, char *err, size_t errlen);

/* Closes and frees; NULL is a no-op. No call may run concurrently or later. */
void ledger_close(struct ledger *l);

/* The ledger's random id (32 hex digits), fixed when it was created; the
 * hub records it in its audit log. "" for NULL. */
const char *ledger_id(const struct ledger *l);

/* The id of the last debit (0 when there is none) into |*id|. Returns 0,
 * or LEDGER_BUSY, LEDGER_IO, LEDGER_CORRUPT, NP_ERR_ARG with |err| set. */
int ledger_last_debit(struct ledger *l, int64_t *id, char *err, size_t errlen);

/* Whether the file at the ledger's path is still the one opened (same
 * device and inode): 0, LEDGER_MISSING (deleted or moved away) or
 * LEDGER_REPLACED (another file there now), with |err| set. A hub that
 * keeps writing into a deleted file would lose every debit at restart. */
int ledger_same_file(const struct ledger *l, char *err, size_t errlen);

/*
 * The calendar period of |per| (month, quarter or year, in UTC) that holds
 * |t|: |*start| is its first second, |*reset| the first second of the next.
 * Returns 0, or NP_ERR_ARG for an unknown |per| or |t| outside
 * [LEDGER_TIME_MIN, LEDGER_TIME_MAX].
 */
int ledger_period(int64_t t, enum policy_period per, int64_t *start, int64_t *reset);

/*
 * ε to micro-ε: ledger_micro_up() for what a query costs (rounds up),
 * ledger_micro_down() for a limit (rounds down), so rounding can never let a
 * requester spend more than the policy allows. A value within double
 * precision of a whole micro-ε (0.1, 0.3, ...) is taken as that value, so
 * ten queries of 0.1 fit a budget of 1. Returns 0, or NP_ERR_ARG for NaN, a
 * negative value or more than LEDGER_EPSILON_MAX.
 */
int ledger_micro_up(double eps, uint64_t *out);
int ledger_micro_down(double eps, uint64_t *out);

/*
 * Debits |amount_micro| (> 0) from |requester| × |purpose| in the period of
 * |per| that holds |now| (unix seconds; the caller reads the clock), against
 * |limit_micro|. In one BEGIN IMMEDIATE transaction it sums what was debited
 * in [start, reset) and, if spent + amount <= limit, records the debit and
 * commits (synchronously: it is on disk when this returns 0). Exactly
 * reaching the limit succeeds. |requester| is the member id from the
 * certificate and |purpose| a purpose id policy_decide() accepted; both
 * NUL-terminated. |st| (may be NULL) is filled on 0 and on LEDGER_EXHAUSTED;
 * on other errors it is zeroed.
 * Call this BEFORE releasing the answer: a crash after the debit wastes the
 * budget, but nothing is ever released unpaid. There is no refund.
 * Returns 0, LEDGER_EXHAUSTED (nothing recorded; |err| says what is left and
 * when it resets), LEDGER_BUSY ("the budget ledger is locked by another
 * process"; nothing recorded), LEDGER_IO, LEDGER_CORRUPT, NP_ERR_ARG, NP_ERR_NOMEM.
 */
int ledger_debit(struct ledger *l, const char *requester, const char *purpose,
		 enum policy_period per, uint64_t limit_micro, uint64_t amount_micro, int64_t now,
		 struct ledger_status *st, char *err, size_t errlen);

/*
 * Per-dataset budgets (docs/ledger.md): a data owner's cap on the ε spent on
 * one dataset per period by every requester and purpose together. One
 * charge per dataset a question touches; the caller fills dataset, per and
 * limit_micro, the ledger fills st.
 */
#define LEDGER_MAX_CHARGES 16
struct ledger_charge {
	const char *dataset;       /* "uwv/ww-uitkeringen"; NUL-terminated */
	enum policy_period per;
	uint64_t limit_micro;      /* the owner's limit in force (ledger_micro_down) */
	struct ledger_status st;   /* filled on 0 and on LEDGER_EXHAUSTED (for the
				    * charges checked before the one that failed and
				    * that one), zeroed otherwise */
};

/*
 * ledger_debit() plus |nds| (at most LEDGER_MAX_CHARGES, distinct datasets)
 * dataset charges of the same |amount_micro|, all in the one BEGIN
 * IMMEDIATE transaction: the requester × purpose debit and every dataset
 * debit are recorded together, or none is. Spent on a dataset is what every
 * requester and purpose debited against it in its period that holds |now|;
 * exactly reaching a limit succeeds. On LEDGER_EXHAUSTED |*exhausted| (may
 * be NULL) is the index of the dataset whose budget would be passed, or
 * SIZE_MAX when it is the requester × purpose budget, and |err| names it
 * with what is left and when it resets; nothing is recorded. A purpose
 * without a budget of its own passes LEDGER_EPSILON_MAX as its limit (the
 * debit row still ties the audit line to the dataset rows).
 * Returns as ledger_debit().
 */
int ledger_debit_datasets(struct ledger *l, const char *requester, const char *purpose,
			  enum policy_period per, uint64_t limit_micro, uint64_t amount_micro,
			  struct ledger_charge *ds, size_t nds, int64_t now, struct ledger_status *st,
			  size_t *exhausted, char *err, size_t errlen);

/* Read-only: fills each charge's st (debit_id 0) with where its dataset
 * stands at |now|. Returns 0, or LEDGER_BUSY, LEDGER_IO, LEDGER_CORRUPT,
 * NP_ERR_ARG, NP_ERR_NOMEM with |err| set. */
int ledger_dataset_status(struct ledger *l, struct ledger_charge *ds, size_t nds, int64_t now,
			  char *err, size_t errlen);

/*
 * Read-only: where |requester| × |purpose| stands at |now| against
 * |limit_micro|. Readers do not wait for a writer (WAL). Returns 0 with |st|
 * filled (debit_id 0), or LEDGER_BUSY, LEDGER_IO, LEDGER_CORRUPT, NP_ERR_ARG,
 * NP_ERR_NOMEM with |err| set.
 */
int ledger_status(struct ledger *l, const char *requester, const char *purpose,
		  enum policy_period per, uint64_t limit_micro, int64_t now,
		  struct ledger_status *st, char *err, size_t errlen);

/* Formats micro-ε as a decimal without trailing zeros ("1", "0.05"), for the
 * 429 body and messages; always NUL-terminates. Returns |buf|. */
char *ledger_format_eps(uint64_t micro, char buf[LEDGER_EPS_LEN]);
/* Formats unix seconds as "YYYY-MM-DDTHH:MM:SSZ" (UTC); "-" out of range. */
char *ledger_format_time(int64_t t, char buf[LEDGER_TIME_LEN]);

#endif
