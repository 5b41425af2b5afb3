/*
 * The privacy budget ledger (aggregate/ledger.h): one row per debit in a
 * SQLite file in WAL mode; a debit is a sum and an insert inside one
 * BEGIN IMMEDIATE transaction, so hubs sharing the file cannot overspend
 * together. Why each choice was made: docs/ledger.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "ledger.h"

struct ledger {
	pthread_mutex_t mu; /* one connection, shared by the workers */
	sqlite3 *db;
	sqlite3_stmt *begin, *sum, *insert, *commit, *rollback;
	sqlite3_stmt *ds_sum, *ds_insert; /* the per-dataset budgets (version 3) */
	char *path;         /* for messages */
	int busy_ms;        /* the busy timeout in force, for messages */
	char id[LEDGER_ID_LEN]; /* the random id ledger_create() stored */
	dev_t dev;          /* the file opened, to notice it deleted or replaced */
	ino_t ino;
	int fd;             /* held open on it: its link count says "deleted" even
			     * where the path cannot be looked up (privileges dropped) */
};

/*
 * Schema version 3 (2 plus ledger_dataset_debit). Debits are append-only:
 * a trigger refuses UPDATE and DELETE, so "giving budget back" takes a deliberate act outside the hub.
 * Spent is summed over debit times, not over period_start, so a policy that
 * changes its period still counts every debit that falls in the new period.
 * ledger_meta holds the ledger's random id (version 2): the hub records it
 * in its audit log, so a ledger deleted and created again, or swapped for
 * another, is noticed (docs/ledger.md, "The ledger cannot vanish").
 */
static const char meta_sql[] =
	"CREATE TABLE ledger_meta (ledger_id TEXT NOT NULL, created INTEGER NOT NULL);"
	"CREATE TRIGGER ledger_meta_fixed_u BEFORE UPDATE ON ledger_meta BEGIN"
	" SELECT RAISE(ABORT, 'the budget ledger id never changes'); END;"
	"CREATE TRIGGER ledger_meta_fixed_d BEFORE DELETE ON ledger_meta BEGIN"
	" SELECT RAISE(ABORT, 'the budget ledger id never changes'); END;";
/*
 * Version 3: what each debit charged to the datasets it touched, against
 * their owners' per-dataset budgets (docs/ledger.md, "Per-dataset
 * budgets"). A row per dataset per debit, written in the debit's own
 * transaction; append-only like the debits.
 */
static const char dataset_sql[] =
	"CREATE TABLE ledger_dataset_debit ("
	" debit_id INTEGER NOT NULL REFERENCES ledger_debit (id),"
	" dataset TEXT NOT NULL,"
	" period TEXT NOT NULL CHECK (period IN ('month', 'quarter', 'year')),"
	" period_start INTEGER NOT NULL,"
	" time INTEGER NOT NULL,"
	" amount_micro INTEGER NOT NULL CHECK (amount_micro > 0),"
	" limit_micro INTEGER NOT NULL CHECK (limit_micro >= 0),"
	" PRIMARY KEY (debit_id, dataset));"
	"CREATE INDEX ledger_dataset_debit_key ON ledger_dataset_debit (dataset, time);"
	"CREATE TRIGGER ledger_dataset_no_update BEFORE UPDATE ON ledger_dataset_debit BEGIN"
	" SELECT RAISE(ABORT, 'the budget ledger is append-only: no refunds'); END;"
	"CREATE TRIGGER ledger_dataset_no_delete BEFORE DELETE ON ledger_dataset_debit BEGIN"
	" SELECT RAISE(ABORT, 'the budget ledger is append-only: no refunds'); END;";
static const char schema_sql[] =
	"CREATE TABLE ledger_schema (version INTEGER NOT NULL);"
	"INSERT INTO ledger_schema (version) VALUES (3);"
	"CREATE TABLE ledger_debit ("
	" id INTEGER PRIMARY KEY,"
	" requester TEXT NOT NULL,"
	" purpose TEXT NOT NULL,"
	" period TEXT NOT NULL CHECK (period IN ('month', 'quarter', 'year')),"
	" period_start INTEGER NOT NULL,"
	" time INTEGER NOT NULL,"
	" amount_micro INTEGER NOT NULL CHECK (amount_micro > 0),"
	" limit_micro INTEGER NOT NULL CHECK (limit_micro >= 0));"
	"CREATE INDEX ledger_debit_key ON ledger_debit (requester, purpose, time);"
	"CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger_debit BEGIN"
	" SELECT RAISE(ABORT, 'the budget ledger is append-only: no refunds'); END;"
	"CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger_debit BEGIN"
	" SELECT RAISE(ABORT, 'the budget ledger is append-only: no refunds'); END;";

static const char sum_sql[] =
	"SELECT coalesce(sum(amount_micro), 0) FROM ledger_debit"
	" WHERE requester = ?1 AND purpose = ?2 AND time >= ?3 AND time < ?4";
static const char ds_sum_sql[] =
	"SELECT coalesce(sum(amount_micro), 0) FROM ledger_dataset_debit"
	" WHERE dataset = ?1 AND time >= ?2 AND time < ?3";
static const char ds_insert_sql[] =
	"INSERT INTO ledger_dataset_debit (debit_id, dataset, period, period_start, time,"
	" amount_micro, limit_micro) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
static const char insert_sql[] =
	"INSERT INTO ledger_debit (requester, purpose, period, period_start, time,"
	" amount_micro, limit_micro) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/* ---- calendar arithmetic (proleptic Gregorian, UTC) ----------------------- */

/* Days since 1970-01-01 of y-m-d (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d)
{
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

int ledger_period(int64_t t, enum policy_period per, int64_t *start, int64_t *reset)
{
	int64_t y, m, d, first, next_y, next_m;

	if (!start || !reset || t < LEDGER_TIME_MIN || t > LEDGER_TIME_MAX)
		return NP_ERR_ARG;
	civil_from_days(floor_div(t, 86400), &y, &m, &d);
	switch (per) {
	case POLICY_PER_MONTH:
		first = m;
		next_m = m + 1;
		break;
	case POLICY_PER_QUARTER:
		first = (m - 1) / 3 * 3 + 1;
		next_m = first + 3;
		break;
	case POLICY_PER_YEAR:
		first = 1;
		next_m = 13;
		break;
	default:
		return NP_ERR_ARG;
	}
	next_y = y;
	if (next_m > 12) {
		next_m -= 12;
		next_y++;
	}
	*start = days_from_civil(y, first, 1) * 86400;
	*reset = days_from_civil(next_y, next_m, 1) * 86400;
	return 0;
}

static const char *period_name(enum policy_period per)
{
	switch (per) {
	case POLICY_PER_MONTH: return "month";
	case POLICY_PER_QUARTER: return "quarter";
	case POLICY_PER_YEAR: return "year";
	}
	return "?";
}

char *ledger_format_time(int64_t t, char buf[LEDGER_TIME_LEN])
{
	int64_t y, m, d, s;

	if (t < LEDGER_TIME_MIN || t > LEDGER_TIME_MAX) {
		snprintf(buf, LEDGER_TIME_LEN, "-");
		return buf;
	}
	civil_from_days(floor_div(t, 86400), &y, &m, &d);
	s = t - floor_div(t, 86400) * 86400;
	/* The modulos cannot change a value in range; they tell the compiler
	 * that the text fits. */
	snprintf(buf, LEDGER_TIME_LEN, "%04u-%02u-%02uT%02u:%02u:%02uZ", (unsigned)y % 10000u,
		 (unsigned)m % 100u, (unsigned)d % 100u, (unsigned)(s / 3600) % 100u,
		 (unsigned)(s / 60 % 60), (unsigned)(s % 60));
	return buf;
}

/* ---- amounts ------------------------------------------------------------- */

char *ledger_format_eps(uint64_t micro, char buf[LEDGER_EPS_LEN])
{
	unsigned frac = (unsigned)(micro % LEDGER_MICRO);
	int n;

	n = snprintf(buf, LEDGER_EPS_LEN, "%" PRIu64, micro / LEDGER_MICRO);
	if (frac && n > 0 && n < LEDGER_EPS_LEN - 8) {
		int digits = 6;

		while (frac % 10 == 0) {
			frac /= 10;
			digits--;
		}
		snprintf(buf + n, (size_t)(LEDGER_EPS_LEN - n), ".%0*u", digits, frac);
	}
	return buf;
}

/*
 * |dir| > 0 rounds up, < 0 down. eps * 1e6 carries a relative error of at
 * most about 2^-52 (eps was rounded once when parsed, the product once
 * more), so a product within 4 DBL_EPSILON of an integer is that integer:
 * the policy author wrote a decimal with at most six places.
 */
static int to_micro(double eps, int dir, uint64_t *out)
{
	double x, frac, tol;
	uint64_t lo;

	if (!out || !(eps >= 0) || eps > LEDGER_EPSILON_MAX)
		return NP_ERR_ARG;
	x = eps * LEDGER_MICRO;
	lo = (uint64_t)x;          /* x < 2^53: lo and x - lo are exact */
	frac = x - (double)lo;
	tol = 4 * DBL_EPSILON * x;
	if (frac <= tol)
		*out = lo;
	else if (1 - frac <= tol)
		*out = lo + 1;
	else
		*out = dir > 0 ? lo + 1 : lo;
	return 0;
}

int ledger_micro_up(double eps, uint64_t *out)
{
	return to_micro(eps, 1, out);
}

int ledger_micro_down(double eps, uint64_t *out)
{
	return to_micro(eps, -1, out);
}

/* ---- errors -------------------------------------------------------------- */

/* Maps a SQLite result to a ledger code and says what happened in |err|. */
static int fail(const struct ledger *l, int rc, const char *what, char *err, size_t errlen)
{
	const char *msg = l->db ? sqlite3_errmsg(l->db) : sqlite3_errstr(rc);
	const char *path = l->path;

	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		snprintf(err, errlen,
			 "the budget ledger is locked by another process (%s: still busy after %d ms"
			 " while %s)",
			 path, l->busy_ms, what);
		return LEDGER_BUSY;
	case SQLITE_NOMEM:
		snprintf(err, errlen, "%s: out of memory while %s", path, what);
		return NP_ERR_NOMEM;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		snprintf(err, errlen,
			 "%s: not a usable budget ledger (%s while %s); restore it from a backup,"
			 " the hub will not guess what was spent",
			 path, msg, what);
		return LEDGER_CORRUPT;
	default:
		snprintf(err, errlen, "%s: budget ledger %s failed: %s", path, what, msg);
		return LEDGER_IO;
	}
}

/* Runs one statement that returns no rows (or whose rows are ignored). */
static int exec_step(sqlite3_stmt *s)
{
	int rc;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		;
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* ---- open and close ------------------------------------------------------ */

/* PRAGMA |sql| whose first result column must be |want| (case-insensitive). */
static int pragma_expect(sqlite3 *db, const char *sql, const char *want, char *got, size_t gotlen)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);

	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const char *v = (const char *)sqlite3_column_text(s, 0);

		snprintf(got, gotlen, "%s", v ? v : "(null)");
		for (char *c = got; *c; c++) /* quick_check answers in lines; err is one */
			if (*c == '\n')
				*c = ' ';
		rc = v && sqlite3_stricmp(v, want) == 0 ? SQLITE_OK : SQLITE_MISMATCH;
	} else if (rc == SQLITE_DONE) {
		snprintf(got, gotlen, "(no answer)");
		rc = SQLITE_MISMATCH;
	}
	sqlite3_finalize(s);
	return rc;
}

/* One-row integer query; *out is -1 when there is no row. */
static int query_int(sqlite3 *db, const char *sql, int64_t *out, int *nrows)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);

	*out = -1;
	*nrows = 0;
	if (rc != SQLITE_OK)
		return rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (!*nrows)
			*out = sqlite3_column_int64(s, 0);
		++*nrows;
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* A fresh random ledger id: 16 bytes from libsodium, as 32 hex digits. */
static void new_id(char id[LEDGER_ID_LEN])
{
	unsigned char raw[16];

	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(id, LEDGER_ID_LEN, raw, sizeof(raw));
}

/* Inserts the id row (inside the caller's transaction). */
static int insert_meta(struct ledger *l)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_exec(l->db, meta_sql, NULL, NULL, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(l->db, "INSERT INTO ledger_meta (ledger_id, created) VALUES (?1, ?2)",
					-1, &s, NULL);
	if (rc == SQLITE_OK) {
		new_id(l->id);
		sqlite3_bind_text(s, 1, l->id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, (int64_t)time(NULL));
		rc = sqlite3_step(s) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(l->db);
	}
	sqlite3_finalize(s);
	return rc;
}

/* Reads the id row into l->id; SQLITE_MISMATCH when it is not one 32-hex row. */
static int read_meta(struct ledger *l)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(l->db, "SELECT ledger_id FROM ledger_meta", -1, &s, NULL), rows = 0;

	if (rc != SQLITE_OK)
		return rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *v = (const char *)sqlite3_column_text(s, 0);

		if (!rows++ && v && strlen(v) == LEDGER_ID_LEN - 1)
			memcpy(l->id, v, LEDGER_ID_LEN);
		else
			l->id[0] = '\0';
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return rc;
	return rows == 1 && l->id[0] ? SQLITE_OK : SQLITE_MISMATCH;
}

/*
 * Checks the version of an existing ledger and reads its id. Only
 * ledger_create() (|create|) writes a schema into an empty file: a hub that
 * finds no ledger refuses rather than starting from nothing, so deleting
 * the file cannot reset the budget. A version-1 file (no id yet) gets one,
 * inside one BEGIN IMMEDIATE transaction that looks again, so two hubs
 * migrating one file at once cannot both do it.
 */
static int check_schema(struct ledger *l, int create, char *err, size_t errlen)
{
	int64_t v = -1, ntables = 0;
	int rows = 0, rc = SQLITE_OK, ret = 0;

	for (int immediate = 0; immediate < 2; immediate++) {
		rc = sqlite3_exec(l->db, immediate ? "BEGIN IMMEDIATE" : "BEGIN", NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			rc = query_int(l->db, "SELECT count(*) FROM sqlite_master", &ntables, &rows);
		if (rc == SQLITE_OK)
			rc = query_int(l->db,
				       "SELECT count(*) FROM sqlite_master WHERE name = 'ledger_schema'",
				       &v, &rows);
		if (rc == SQLITE_OK && v == 1)
			rc = query_int(l->db, "SELECT version FROM ledger_schema", &v, &rows);
		else if (rc == SQLITE_OK)
			v = 0;
		if (rc != SQLITE_OK)
			break;
		if (v == 0 && ntables != 0) {
			snprintf(err, errlen,
				 "%s: a SQLite database, but not a budget ledger (no ledger_schema"
				 " table); refusing to write into it",
				 l->path);
			ret = LEDGER_CORRUPT;
			goto out;
		}
		if (v == 0 && !create) {
			snprintf(err, errlen,
				 "%s: an empty file, not a budget ledger; the hub never creates one (a"
				 " deleted ledger must not reset the budget): create it with"
				 " 'noordpoort ledger init %s'",
				 l->path, l->path);
			ret = LEDGER_MISSING;
			goto out;
		}
		if (v != 0 && (create || v < 1 || v >= LEDGER_SCHEMA_VERSION || rows != 1))
			break; /* an existing ledger: checked below */
		if (!immediate) {
			sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
			continue; /* look again under the write lock */
		}
		/* Create (v == 0), or migrate forward in one transaction: version 1
		 * gets its id (version 2), versions 1 and 2 the per-dataset table
		 * (version 3). Every debit already in the file stays as it was; no
		 * dataset was charged before version 3, so none has spent anything. */
		rc = sqlite3_exec(l->db, v == 0 ? schema_sql : "UPDATE ledger_schema SET version = 3",
				  NULL, NULL, NULL);
		if (rc == SQLITE_OK && v <= 1)
			rc = insert_meta(l);
		else if (rc == SQLITE_OK)
			rc = read_meta(l);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(l->db, dataset_sql, NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(l->db, "COMMIT", NULL, NULL, NULL);
		if (rc == SQLITE_MISMATCH) {
			snprintf(err, errlen, "%s: budget ledger id is missing or damaged", l->path);
			ret = LEDGER_CORRUPT;
		} else if (rc != SQLITE_OK) {
			ret = fail(l, rc, v == 0 ? "creating the schema" : "migrating the schema to version 3",
				   err, errlen);
		}
		goto out;
	}
	if (rc != SQLITE_OK) {
		ret = fail(l, rc, "reading the schema version", err, errlen);
		goto out;
	}
	if (create) {
		snprintf(err, errlen, "%s: already holds a budget ledger; refusing to start another", l->path);
		ret = LEDGER_EXISTS;
	} else if (rows == 1 && v > LEDGER_SCHEMA_VERSION) {
		snprintf(err, errlen,
			 "%s: budget ledger schema version %" PRId64 " was written by a newer"
			 " Noordpoort; this build knows version %d and will not touch it",
			 l->path, v, LEDGER_SCHEMA_VERSION);
		ret = LEDGER_VERSION;
	} else if (rows != 1 || v != LEDGER_SCHEMA_VERSION) {
		snprintf(err, errlen,
			 "%s: budget ledger schema table is damaged (%d rows, version %" PRId64 ")",
			 l->path, rows, v);
		ret = LEDGER_CORRUPT;
	} else if ((rc = read_meta(l)) != SQLITE_OK) {
		if (rc == SQLITE_MISMATCH) {
			snprintf(err, errlen, "%s: budget ledger id is missing or damaged", l->path);
			ret = LEDGER_CORRUPT;
		} else {
			ret = fail(l, rc, "reading the ledger id", err, errlen);
		}
	}
out:
	if (!sqlite3_get_autocommit(l->db))
		sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
	return ret;
}

/* Journal mode, durability, schema and integrity: everything ledger_open()
 * checks before it prepares the statements. */
static int setup(struct ledger *l, int create, char *err, size_t errlen)
{
	char got[128];
	int rc, ret;

	/* WAL: readers (ledger_status) never wait for a debit, and a debit's
	 * commit is one append. FULL: a debit is durable before the answer that
	 * it pays for is released, even across a power cut. */
	rc = pragma_expect(l->db, "PRAGMA journal_mode = WAL", "wal", got, sizeof(got));
	if (rc == SQLITE_MISMATCH) {
		snprintf(err, errlen,
			 "%s: the budget ledger needs WAL mode but SQLite gave '%s' (a network or"
			 " read-only file system?)",
			 l->path, got);
		return LEDGER_IO;
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(l->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return fail(l, rc, "setting WAL mode", err, errlen);
	ret = check_schema(l, create, err, errlen);
	if (ret)
		return ret;
	rc = pragma_expect(l->db, "PRAGMA quick_check", "ok", got, sizeof(got));
	if (rc == SQLITE_MISMATCH) {
		snprintf(err, errlen,
			 "%s: the budget ledger fails its integrity check (%s); restore it from a"
			 " backup, the hub will not guess what was spent",
			 l->path, got);
		return LEDGER_CORRUPT;
	}
	if (rc != SQLITE_OK)
		return fail(l, rc, "checking integrity", err, errlen);
	return 0;
}

static int open_ledger(const char *path, int create, struct ledger **out, char *err, size_t errlen)
{
	struct ledger *l;
	struct timespec t0;
	struct stat st;
	int rc, ret;

	if (out)
		*out = NULL;
	if (!path || !*path || !out) {
		snprintf(err, errlen, "budget ledger: no file name");
		return NP_ERR_ARG;
	}
	l = calloc(1, sizeof(*l));
	if (!l || !(l->path = strdup(path))) {
		free(l);
		snprintf(err, errlen, "%s: out of memory", path);
		return NP_ERR_NOMEM;
	}
	pthread_mutex_init(&l->mu, NULL);
	l->fd = -1;
	/* Never SQLITE_OPEN_CREATE: only ledger_create() makes the file (with
	 * O_EXCL), so a ledger that was deleted is refused, not made anew. */
	if (stat(path, &st) != 0) {
		int e = errno;

		if (e == ENOENT)
			snprintf(err, errlen,
				 "%s: no budget ledger; the hub never creates one (a deleted ledger must"
				 " not reset the budget): create it with 'noordpoort ledger init %s'",
				 path, path);
		else
			snprintf(err, errlen, "%s: budget ledger: %s", path, strerror(e));
		ret = e == ENOENT ? LEDGER_MISSING : LEDGER_IO;
		goto bad;
	}
	if (!create && st.st_size == 0) {
		/* Before SQLite writes a header into it (WAL mode would). */
		snprintf(err, errlen,
			 "%s: an empty file, not a budget ledger; the hub never creates one (a"
			 " deleted ledger must not reset the budget): create it with"
			 " 'noordpoort ledger init %s'",
			 path, path);
		ret = LEDGER_MISSING;
		goto bad;
	}
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	l->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (l->fd < 0) {
		snprintf(err, errlen, "%s: budget ledger: %s", path, strerror(errno));
		ret = LEDGER_IO;
		goto bad;
	}
	/* NOMUTEX: the handle's own mutex serialises every use of the connection. */
	rc = sqlite3_open_v2(path, &l->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		ret = fail(l, rc, "opening", err, errlen);
		goto bad;
	}
	sqlite3_extended_result_codes(l->db, 1);
	/* Starting up may wait longer than a debit: no request is waiting yet. */
	l->busy_ms = LEDGER_OPEN_BUSY_MS;
	sqlite3_busy_timeout(l->db, l->busy_ms);
	/* SQLite returns BUSY at once, without waiting, where waiting could
	 * deadlock (two connections both upgrading from a read lock, as two hubs
	 * starting on one new file do), so starting up retries as a whole. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while ((ret = setup(l, create, err, errlen)) == LEDGER_BUSY) {
		struct timespec now, pause = { 0, 20 * 1000 * 1000 };

		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 >=
		    LEDGER_OPEN_BUSY_MS)
			break;
		nanosleep(&pause, NULL);
	}
	if (ret)
		goto bad;
	rc = sqlite3_prepare_v3(l->db, "BEGIN IMMEDIATE", -1, SQLITE_PREPARE_PERSISTENT,
					&l->begin, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v3(l->db, sum_sql, -1, SQLITE_PREPARE_PERSISTENT, &l->sum, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v3(l->db, insert_sql, -1, SQLITE_PREPARE_PERSISTENT,
					&l->insert, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v3(l->db, ds_sum_sql, -1, SQLITE_PREPARE_PERSISTENT, &l->ds_sum,
					NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v3(l->db, ds_insert_sql, -1, SQLITE_PREPARE_PERSISTENT,
					&l->ds_insert, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v3(l->db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &l->commit,
					NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v3(l->db, "ROLLBACK", -1, SQLITE_PREPARE_PERSISTENT,
					&l->rollback, NULL);
	if (rc != SQLITE_OK) {
		ret = fail(l, rc, "preparing statements", err, errlen);
		goto bad;
	}
	l->busy_ms = LEDGER_BUSY_MS;
	sqlite3_busy_timeout(l->db, l->busy_ms);
	*out = l;
	return 0;
bad:
	ledger_close(l);
	return ret;
}

int ledger_open(const char *path, struct ledger **out, char *err, size_t errlen)
{
	return open_ledger(path, 0, out, err, errlen);
}

int ledger_create(const char *path, char *err, size_t errlen)
{
	struct ledger *l = NULL;
	int fd, ret;

	if (!path || !*path) {
		snprintf(err, errlen, "budget ledger: no file name");
		return NP_ERR_ARG;
	}
	/* O_EXCL: never over an existing file, whatever it holds. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;

		snprintf(err, errlen, "%s: %s", path,
			 e == EEXIST ? "already exists; refusing to start another budget ledger over it"
				     : strerror(e));
		return e == EEXIST ? LEDGER_EXISTS : LEDGER_IO;
	}
	close(fd);
	ret = open_ledger(path, 1, &l, err, errlen);
	ledger_close(l);
	if (ret < 0)
		unlink(path); /* made here, empty or half-made: nothing to keep */
	return ret;
}

const char *ledger_id(const struct ledger *l)
{
	return l ? l->id : "";
}

int ledger_last_debit(struct ledger *l, int64_t *id, char *err, size_t errlen)
{
	int64_t v = 0;
	int rows = 0, rc, ret = 0;

	if (!l || !id) {
		snprintf(err, errlen, "budget ledger: missing handle");
		return NP_ERR_ARG;
	}
	pthread_mutex_lock(&l->mu);
	rc = query_int(l->db, "SELECT coalesce(max(id), 0) FROM ledger_debit", &v, &rows);
	if (rc != SQLITE_OK)
		ret = fail(l, rc, "reading the last debit", err, errlen);
	pthread_mutex_unlock(&l->mu);
	*id = v > 0 ? v : 0;
	return ret;
}

int ledger_same_file(const struct ledger *l, char *err, size_t errlen)
{
	struct stat st;

	if (!l)
		return NP_ERR_ARG;
	if (stat(l->path, &st) != 0) {
		int e = errno;

		/* Privileges dropped below the folder: the path cannot be looked
		 * up, but a file deleted or renamed over has no link left. */
		if (e == EACCES && l->fd >= 0 && fstat(l->fd, &st) == 0 && st.st_nlink > 0)
			return 0;
		snprintf(err, errlen, "%s: the budget ledger is gone (%s) since the hub opened it",
			 l->path, e == EACCES ? "deleted or replaced" : strerror(e));
		return LEDGER_MISSING;
	}
	if (st.st_dev != l->dev || st.st_ino != l->ino) {
		snprintf(err, errlen, "%s: the budget ledger was replaced by another file since the hub"
			 " opened it", l->path);
		return LEDGER_REPLACED;
	}
	return 0;
}

void ledger_close(struct ledger *l)
{
	if (!l)
		return;
	sqlite3_finalize(l->rollback);
	sqlite3_finalize(l->commit);
	sqlite3_finalize(l->ds_insert);
	sqlite3_finalize(l->ds_sum);
	sqlite3_finalize(l->insert);
	sqlite3_finalize(l->sum);
	sqlite3_finalize(l->begin);
	sqlite3_close(l->db);
	if (l->fd >= 0)
		close(l->fd);
	pthread_mutex_destroy(&l->mu);
	free(l->path);
	free(l);
}

/* ---- debit and status ---------------------------------------------------- */

/* Steps a bound sum statement (one row, one column) into *spent and
 * resets it for the next use; SQLITE_OK or the step's error. */
static int step_sum(sqlite3_stmt *s, uint64_t *spent)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW) {
		int64_t v = sqlite3_column_int64(s, 0);

		*spent = v > 0 ? (uint64_t)v : 0;
		rc = SQLITE_OK;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc;
}

/* Spent in [start, reset) for requester × purpose, into *spent. */
static int sum_spent(struct ledger *l, const char *requester, const char *purpose, int64_t start,
		     int64_t reset, uint64_t *spent)
{
	sqlite3_bind_text(l->sum, 1, requester, -1, SQLITE_STATIC);
	sqlite3_bind_text(l->sum, 2, purpose, -1, SQLITE_STATIC);
	sqlite3_bind_int64(l->sum, 3, start);
	sqlite3_bind_int64(l->sum, 4, reset);
	return step_sum(l->sum, spent);
}

static void fill_status(struct ledger_status *st, uint64_t limit, uint64_t spent, int64_t start,
			int64_t reset, int64_t id)
{
	if (!st)
		return;
	st->limit_micro = limit;
	st->spent_micro = spent;
	st->remaining_micro = spent < limit ? limit - spent : 0;
	st->period_start = start;
	st->reset = reset;
	st->debit_id = id;
}

static int check_args(struct ledger *l, const char *requester, const char *purpose,
		      enum policy_period per, uint64_t limit, int64_t now, int64_t *start,
		      int64_t *reset, char *err, size_t errlen)
{
	if (!l || !requester || !purpose) {
		snprintf(err, errlen, "budget ledger: missing handle, requester or purpose");
		return NP_ERR_ARG;
	}
	if (limit > (uint64_t)(LEDGER_EPSILON_MAX * LEDGER_MICRO)) {
		snprintf(err, errlen, "budget ledger: limit of %" PRIu64 " micro-epsilon is too large",
			 limit);
		return NP_ERR_ARG;
	}
	if (ledger_period(now, per, start, reset) != 0) {
		snprintf(err, errlen, "budget ledger: no period %d at time %" PRId64, (int)per, now);
		return NP_ERR_ARG;
	}
	return 0;
}

/* Spent in [start, reset) on |dataset| by every requester and purpose. */
static int sum_dataset(struct ledger *l, const char *dataset, int64_t start, int64_t reset,
		       uint64_t *spent)
{
	sqlite3_bind_text(l->ds_sum, 1, dataset, -1, SQLITE_STATIC);
	sqlite3_bind_int64(l->ds_sum, 2, start);
	sqlite3_bind_int64(l->ds_sum, 3, reset);
	return step_sum(l->ds_sum, spent);
}

/* The periods and limits of every charge, checked before the lock. */
static int check_charges(struct ledger_charge *ds, size_t nds, int64_t now, int64_t *start,
			 int64_t *reset, char *err, size_t errlen)
{
	if (nds > LEDGER_MAX_CHARGES || (nds && !ds)) {
		snprintf(err, errlen, "budget ledger: at most %d dataset budgets per debit",
			 LEDGER_MAX_CHARGES);
		return NP_ERR_ARG;
	}
	for (size_t i = 0; i < nds; i++) {
		memset(&ds[i].st, 0, sizeof(ds[i].st));
		if (!ds[i].dataset || !*ds[i].dataset ||
		    ds[i].limit_micro > (uint64_t)(LEDGER_EPSILON_MAX * LEDGER_MICRO) ||
		    ledger_period(now, ds[i].per, &start[i], &reset[i]) != 0) {
			snprintf(err, errlen, "budget ledger: dataset budget %zu is malformed", i);
			return NP_ERR_ARG;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(ds[i].dataset, ds[j].dataset) == 0) {
				snprintf(err, errlen, "budget ledger: dataset %s charged twice in one debit",
					 ds[i].dataset);
				return NP_ERR_ARG;
			}
	}
	return 0;
}

int ledger_debit(struct ledger *l, const char *requester, const char *purpose,
		 enum policy_period per, uint64_t limit_micro, uint64_t amount_micro, int64_t now,
		 struct ledger_status *st, char *err, size_t errlen)
{
	return ledger_debit_datasets(l, requester, purpose, per, limit_micro, amount_micro, NULL, 0,
				     now, st, NULL, err, errlen);
}

int ledger_debit_datasets(struct ledger *l, const char *requester, const char *purpose,
			  enum policy_period per, uint64_t limit_micro, uint64_t amount_micro,
			  struct ledger_charge *ds, size_t nds, int64_t now, struct ledger_status *st,
			  size_t *exhausted, char *err, size_t errlen)
{
	int64_t start, reset, id = 0, ds_start[LEDGER_MAX_CHARGES], ds_reset[LEDGER_MAX_CHARGES];
	uint64_t spent = 0, ds_spent[LEDGER_MAX_CHARGES];
	char left[LEDGER_EPS_LEN], lim[LEDGER_EPS_LEN], want[LEDGER_EPS_LEN], when[LEDGER_TIME_LEN];
	int rc, ret;

	if (st)
		memset(st, 0, sizeof(*st));
	if (exhausted)
		*exhausted = SIZE_MAX;
	ret = check_args(l, requester, purpose, per, limit_micro, now, &start, &reset, err, errlen);
	if (ret)
		return ret;
	if (amount_micro == 0 || amount_micro > (uint64_t)(LEDGER_EPSILON_MAX * LEDGER_MICRO)) {
		snprintf(err, errlen, "budget ledger: a debit must be between 1 micro-epsilon and %g",
			 LEDGER_EPSILON_MAX);
		return NP_ERR_ARG;
	}
	ret = check_charges(ds, nds, now, ds_start, ds_reset, err, errlen);
	if (ret)
		return ret;
	pthread_mutex_lock(&l->mu);
	/* IMMEDIATE takes the write lock before the sums are read, so no other
	 * connection in any process can commit a debit between our reads and
	 * our inserts; the sums always see the newest committed state. */
	rc = exec_step(l->begin);
	if (rc != SQLITE_OK) {
		ret = fail(l, rc, "starting a debit", err, errlen);
		goto out;
	}
	rc = sum_spent(l, requester, purpose, start, reset, &spent);
	if (rc != SQLITE_OK) {
		ret = fail(l, rc, "reading the spent budget", err, errlen);
		goto out;
	}
	if (spent > limit_micro || amount_micro > limit_micro - spent) {
		fill_status(st, limit_micro, spent, start, reset, 0);
		snprintf(err, errlen,
			 "privacy budget exhausted for %s, purpose %s: this query needs epsilon %s,"
			 " %s of %s is left this %s; it resets at %s",
			 requester, purpose, ledger_format_eps(amount_micro, want),
			 ledger_format_eps(spent < limit_micro ? limit_micro - spent : 0, left),
			 ledger_format_eps(limit_micro, lim), period_name(per),
			 ledger_format_time(reset, when));
		ret = LEDGER_EXHAUSTED;
		goto out;
	}
	/* Every dataset's budget, under the same lock: all pass, or nothing
	 * is recorded anywhere. */
	for (size_t i = 0; i < nds; i++) {
		rc = sum_dataset(l, ds[i].dataset, ds_start[i], ds_reset[i], &ds_spent[i]);
		if (rc != SQLITE_OK) {
			ret = fail(l, rc, "reading a dataset's spent budget", err, errlen);
			goto out;
		}
		fill_status(&ds[i].st, ds[i].limit_micro, ds_spent[i], ds_start[i], ds_reset[i], 0);
		if (ds_spent[i] > ds[i].limit_micro || amount_micro > ds[i].limit_micro - ds_spent[i]) {
			fill_status(st, limit_micro, spent, start, reset, 0);
			if (exhausted)
				*exhausted = i;
			snprintf(err, errlen,
				 "privacy budget of dataset %s exhausted: this query needs epsilon %s,"
				 " %s of %s is left this %s for every requester together; it resets at %s",
				 ds[i].dataset, ledger_format_eps(amount_micro, want),
				 ledger_format_eps(ds[i].st.remaining_micro, left),
				 ledger_format_eps(ds[i].limit_micro, lim), period_name(ds[i].per),
				 ledger_format_time(ds_reset[i], when));
			ret = LEDGER_EXHAUSTED;
			goto out;
		}
	}
	sqlite3_bind_text(l->insert, 1, requester, -1, SQLITE_STATIC);
	sqlite3_bind_text(l->insert, 2, purpose, -1, SQLITE_STATIC);
	sqlite3_bind_text(l->insert, 3, period_name(per), -1, SQLITE_STATIC);
	sqlite3_bind_int64(l->insert, 4, start);
	sqlite3_bind_int64(l->insert, 5, now);
	sqlite3_bind_int64(l->insert, 6, (int64_t)amount_micro);
	sqlite3_bind_int64(l->insert, 7, (int64_t)limit_micro);
	rc = exec_step(l->insert);
	sqlite3_clear_bindings(l->insert);
	if (rc != SQLITE_OK) {
		ret = fail(l, rc, "recording a debit", err, errlen);
		goto out;
	}
	id = sqlite3_last_insert_rowid(l->db);
	for (size_t i = 0; i < nds; i++) {
		sqlite3_bind_int64(l->ds_insert, 1, id);
		sqlite3_bind_text(l->ds_insert, 2, ds[i].dataset, -1, SQLITE_STATIC);
		sqlite3_bind_text(l->ds_insert, 3, period_name(ds[i].per), -1, SQLITE_STATIC);
		sqlite3_bind_int64(l->ds_insert, 4, ds_start[i]);
		sqlite3_bind_int64(l->ds_insert, 5, now);
		sqlite3_bind_int64(l->ds_insert, 6, (int64_t)amount_micro);
		sqlite3_bind_int64(l->ds_insert, 7, (int64_t)ds[i].limit_micro);
		rc = exec_step(l->ds_insert);
		sqlite3_clear_bindings(l->ds_insert);
		if (rc != SQLITE_OK) {
			ret = fail(l, rc, "recording a dataset debit", err, errlen);
			goto out;
		}
	}
	rc = exec_step(l->commit);
	if (rc != SQLITE_OK) {
		ret = fail(l, rc, "committing a debit", err, errlen);
		goto out;
	}
	fill_status(st, limit_micro, spent + amount_micro, start, reset, id);
	for (size_t i = 0; i < nds; i++)
		fill_status(&ds[i].st, ds[i].limit_micro, ds_spent[i] + amount_micro, ds_start[i],
			    ds_reset[i], id);
out:
	/* On any failure the transaction (if still open) is rolled back: the
	 * debit and its dataset rows are committed whole or not at all. */
	if (!sqlite3_get_autocommit(l->db))
		exec_step(l->rollback);
	pthread_mutex_unlock(&l->mu);
	return ret;
}

int ledger_dataset_status(struct ledger *l, struct ledger_charge *ds, size_t nds, int64_t now,
			  char *err, size_t errlen)
{
	int64_t start[LEDGER_MAX_CHARGES], reset[LEDGER_MAX_CHARGES];
	uint64_t spent = 0;
	int rc = SQLITE_OK, ret;

	if (!l) {
		snprintf(err, errlen, "budget ledger: missing handle");
		return NP_ERR_ARG;
	}
	ret = check_charges(ds, nds, now, start, reset, err, errlen);
	if (ret)
		return ret;
	pthread_mutex_lock(&l->mu);
	for (size_t i = 0; i < nds && rc == SQLITE_OK; i++) {
		rc = sum_dataset(l, ds[i].dataset, start[i], reset[i], &spent);
		if (rc == SQLITE_OK)
			fill_status(&ds[i].st, ds[i].limit_micro, spent, start[i], reset[i], 0);
	}
	if (rc != SQLITE_OK)
		ret = fail(l, rc, "reading a dataset's spent budget", err, errlen);
	pthread_mutex_unlock(&l->mu);
	return ret;
}

int ledger_status(struct ledger *l, const char *requester, const char *purpose,
		  enum policy_period per, uint64_t limit_micro, int64_t now,
		  struct ledger_status *st, char *err, size_t errlen)
{
	int64_t start, reset;
	uint64_t spent = 0;
	int rc, ret;

	if (st)
		memset(st, 0, sizeof(*st));
	ret = check_args(l, requester, purpose, per, limit_micro, now, &start, &reset, err, errlen);
	if (ret)
		return ret;
	if (!st) {
		snprintf(err, errlen, "budget ledger: no status to fill");
		return NP_ERR_ARG;
	}
	pthread_mutex_lock(&l->mu);
	rc = sum_spent(l, requester, purpose, start, reset, &spent);
	if (rc == SQLITE_OK)
		fill_status(st, limit_micro, spent, start, reset, 0);
	else
		ret = fail(l, rc, "reading the spent budget", err, errlen);
	pthread_mutex_unlock(&l->mu);
	return ret;
}
