/*
 * The audit log: one JSON line per policy decision (permit and deny),
 * hash-chained, written with write(2) before a response leaves, fsync'd in
 * groups, with Ed25519-signed checkpoints. Format and guarantees:
 * docs/audit.md. Library code: it never logs or exits.
 */
#ifndef NOORDPOORT_AUDIT_H
#define NOORDPOORT_AUDIT_H

#include <stddef.h>

#include <cjson/cJSON.h>

struct audit_log;

/* 0 in a field means its default (see docs/audit.md, "fsync policy"). */
struct audit_options {
	unsigned fsync_every_records;      /* default 64 */
	unsigned fsync_every_ms;           /* default 100 */
	unsigned checkpoint_every_records; /* default 1000; only when signing */
};

/*
 * A record line is at most this long; a longer one is refused (-E2BIG, so
 * the request gets 503 and nothing is answered). The longest line the
 * gateway writes is a lookup naming 32 fields of 128 bytes (about 5 KiB):
 * every string in a line is either the gateway's own or a requester's
 * identifier of at most 128 bytes (gateway/ident.h), so the cap is never
 * reached by a well-formed request and bounds what a malformed one costs.
 */
#define AUDIT_LINE_MAX (16 * 1024)

/*
 * Refused requests (4xx other than 404) of one requester that get a line
 * each, per window of AUDIT_REFUSAL_WINDOW_MS from its first refusal. Past
 * it, refusals are answered 429 and recorded by one summary line per window,
 * so one member cannot fill the disk (and so stop everyone: a log that
 * cannot be written refuses every request) with refusals at line rate:
 * 60 lines of at most a few KiB per minute per member.
 */
#define AUDIT_REFUSALS_PER_MINUTE 60
#define AUDIT_REFUSAL_WINDOW_MS 60000

/*
 * Opens (creates with mode 0640) |path| for appending and takes an exclusive
 * flock(2) on it, so two processes cannot interleave their chains. Reads the
 * tail of the file to continue the chain; if the file does not end in '\n'
 * (a write torn by a crash or a full disk) it appends a "recovery" record
 * that names the torn line (offset, length, hash) and chains to the last
 * complete line. It does not verify the whole chain: audit_verify() does.
 * |sign_key_path| is an Ed25519 secret key file (docs/audit.md, "Keys"),
 * mode 0600 or stricter, or NULL for no checkpoints. |opt| may be NULL.
 * Returns 0 and a handle in |*out| (the caller frees it with audit_close()),
 * or a negative errno-style code with a reason in |err|:
 * -ENOENT/-EACCES/... (open), -EWOULDBLOCK (in use by another process),
 * -EPERM (key file accessible by group or others, or owned by another
 * user than this one or root), -EINVAL (key file not a regular file, key
 * file or last line malformed), -ENODATA/-EFBIG (key file empty or over
 * 256 bytes), -ENOMEM (common/keyfile.h).
 */
int audit_open(const char *path, const char *sign_key_path, const struct audit_options *opt,
	       struct audit_log **out, char *err, size_t errlen);

/*
 * Appends one record. |json_fields| (borrowed) is a JSON object with the
 * caller's fields (docs/audit.md lists the conventional names; the data
 * subject only as "subject": a keyed audit pseudonym). The module adds
 * "seq", "time", "audit_id" and "prev"; the caller may not use those names
 * nor "type". The audit id is copied to |audit_id| (32 hex + NUL) when not
 * NULL. Thread-safe: appends are serialised by a mutex whose critical
 * section is formatting the line, hashing it and one write(2).
 * Returns 0 only when the whole line was accepted by write(2); otherwise the
 * file is truncated back to the last complete line, the chain is unchanged,
 * and it returns -ENOSPC/-EIO/... (write), -EIO (an earlier fsync failed:
 * the log no longer accepts records), -EINVAL (not an object, reserved or
 * raw member), -E2BIG, -ENOMEM. On error the caller must answer 503.
 */
int audit_append(struct audit_log *log, const cJSON *json_fields, char audit_id[33]);

/*
 * To be called before the line of a refused request of |requester| (a
 * member id) is written. Returns 0 when that line may be written (it is
 * counted); a positive number of seconds until the requester's window ends
 * when it is over refusals_per_minute: the caller answers 429
 * (too_many_refusals, Retry-After) and writes no line of its own, and the
 * first such refusal of a window writes one summary line here
 * ({"operation":"refusals", "requester", "limit", "window_s", "decision":
 * "deny", "outcome": "too_many_refusals", "status": 429}, with
 * "suppressed_before": how many refusals the previous window answered
 * without a line). Returns a negative audit_append() code when that summary
 * line could not be written (the caller answers 503). Thread-safe.
 */
int audit_refusal_admit(struct audit_log *log, const char *requester);

/* Sets the refusals per window (0: AUDIT_REFUSALS_PER_MINUTE). For tests
 * and for a configuration key; call before the log is shared. */
void audit_set_refusal_limit(struct audit_log *log, unsigned per_minute);

/* Writes a final checkpoint when signing, fsyncs, closes and frees (the key
 * is wiped). No append may run concurrently or later (stop the workers first). Returns 0, or a negative code if the checkpoint or the fsync
 * failed (the handle is freed anyway). NULL is a no-op returning 0. */
int audit_close(struct audit_log *log);

/* Test hook: the next |n| appends write half their line and then fail as if
 * write(2) had returned ENOSPC (exercises the roll-back). */
void audit_fail_next_writes(struct audit_log *log, unsigned n);
/* Test hook: the same, after |skip| appends that succeed (the hub writes a
 * budget intent and then its answer's line: fail only the second). */
void audit_fail_writes_after(struct audit_log *log, unsigned skip, unsigned n);

/*
 * Verification. Reads |path| and checks for every line: JSON, seq continuity,
 * the chain hash, and (with |pub|, 32 bytes) every checkpoint signature;
 * |pub| NULL skips signatures. Fills |r| (line numbers are 1-based lines of
 * the file). Returns 0 if intact (|r->warning| may report a recovered torn
 * line), -EBADMSG if not (|r->first_bad_line| and |r->problem| say where and
 * what, as specifically as the evidence allows), or -errno if the file
 * cannot be read (|r->problem| says why).
 */
struct audit_report {
	unsigned long lines;          /* lines read, torn ones included */
	unsigned long checkpoints;
	unsigned long first_bad_line; /* 0 when intact or when the problem is the
	                               * whole file ("no checkpoint") */
	char problem[512];
	int torn_tail;                /* the file ends in an unrecovered torn line */
	/* Additions beyond the first draft: */
	unsigned long records;        /* decision records (not checkpoints/recovery) */
	unsigned long recoveries;     /* recovered torn lines */
	unsigned long unsigned_tail;  /* lines after the last checkpoint */
	char warning[512];
};
int audit_verify(const char *path, const unsigned char *pub, struct audit_report *r);

/* Reads an Ed25519 public key file (docs/audit.md, "Keys") into |pub|.
 * Returns 0, or a negative code with a reason in |err|. */
int audit_pubkey_load(const char *path, unsigned char pub[32], char *err, size_t errlen);

/* `noordpoort audit ...` (argv[0] = "audit"): verify and subject. Returns
 * the exit status: 0 ok, 1 not intact or unreadable, 2 bad usage. */
int audit_cli(int argc, char **argv);

#endif
