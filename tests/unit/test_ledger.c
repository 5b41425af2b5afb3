/* Unit tests for aggregate/ledger.c: periods, rounding, limits, concurrency
 * across threads and processes, a locked and a corrupt file. */
#define CHECK_FILE "test_ledger"
#include "check.h"
#include "../../aggregate/ledger.c"

#include <math.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

static char dir[] = "/tmp/np-ledger-XXXXXX";
static char err[512];

#define M LEDGER_MICRO
#define MONTH POLICY_PER_MONTH
#define QUARTER POLICY_PER_QUARTER
#define YEAR POLICY_PER_YEAR

/* 2024-02-15T12:00:00Z, a time in the middle of a leap February. */
#define FEB15 1707998400LL

static char *path_in(const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	snprintf(p, n, "%s/%s", dir, name);
	unlink(p);
	return p;
}

static void remove_db(const char *p)
{
	char side[600];

	unlink(p);
	snprintf(side, sizeof(side), "%s-wal", p);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", p);
	unlink(side);
}

/* Total recorded for |requester| over all time, straight from the file. */
static uint64_t recorded(const char *p, const char *requester, int64_t *rows)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	uint64_t total = 0;

	*rows = -1;
	if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db,
			       "SELECT coalesce(sum(amount_micro), 0), count(*) FROM ledger_debit"
			       " WHERE requester = ?",
			       -1, &s, NULL) == SQLITE_OK) {
		sqlite3_bind_text(s, 1, requester, -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW) {
			total = (uint64_t)sqlite3_column_int64(s, 0);
			*rows = sqlite3_column_int64(s, 1);
		}
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	return total;
}

static void period_is(int64_t t, enum policy_period per, int64_t start, int64_t reset)
{
	int64_t s = 0, r = 0;

	CHECK(ledger_period(t, per, &s, &r) == 0);
	if (s != start || r != reset)
		printf("#   t=%lld per=%d: got [%lld, %lld), want [%lld, %lld)\n", (long long)t,
		       (int)per, (long long)s, (long long)r, (long long)start, (long long)reset);
	CHECK(s == start && r == reset);
}

static void period_boundaries(void)
{
	int64_t s, r;
	char buf[LEDGER_TIME_LEN];

	/* Last second of January, first of February. */
	period_is(1706745599, MONTH, 1704067200, 1706745600);
	period_is(1706745600, MONTH, 1706745600, 1709251200);
	/* Feb 29 in a leap year: the last second of February 2024. */
	period_is(1709251199, MONTH, 1706745600, 1709251200);
	period_is(1709251199, QUARTER, 1704067200, 1711929600);
	period_is(1709251200, MONTH, 1709251200, 1711929600);
	/* Non-leap Februaries: 2023, and 2100 (divisible by 100); 2000 is leap. */
	period_is(1675209600 + 27 * 86400 + 86399, MONTH, 1675209600, 1677628800);
	period_is(4105123200, MONTH, 4105123200, 4107542400);
	CHECK(4107542400 - 4105123200 == 28 * 86400);
	period_is(949363200 + 28 * 86400, MONTH, 949363200, 951868800);
	/* Quarter: last second of Q1, first of Q2. */
	period_is(1711929599, QUARTER, 1704067200, 1711929600);
	period_is(1711929600, QUARTER, 1711929600, 1719792000);
	period_is(1727740800, QUARTER, 1727740800, 1735689600);
	/* December → January, for every period kind. */
	period_is(1735689599, MONTH, 1733011200, 1735689600);
	period_is(1735689599, QUARTER, 1727740800, 1735689600);
	period_is(1735689599, YEAR, 1704067200, 1735689600);
	period_is(1735689600, MONTH, 1735689600, 1735689600 + 31 * 86400);
	period_is(1735689600, YEAR, 1735689600, 1735689600 + 365 * 86400);
	/* Before the epoch: floor, not truncation. */
	period_is(-1, MONTH, -2678400, 0);
	period_is(-1, YEAR, -31536000, 0);
	/* Bad arguments. */
	CHECK(ledger_period(0, (enum policy_period)0, &s, &r) == NP_ERR_ARG);
	CHECK(ledger_period(0, (enum policy_period)4, &s, &r) == NP_ERR_ARG);
	CHECK(ledger_period(LEDGER_TIME_MAX + 1, MONTH, &s, &r) == NP_ERR_ARG);
	CHECK(ledger_period(LEDGER_TIME_MIN - 1, MONTH, &s, &r) == NP_ERR_ARG);
	CHECK(ledger_period(LEDGER_TIME_MAX, YEAR, &s, &r) == 0);
	CHECK(s == 253370764800LL && r == LEDGER_TIME_MAX + 1); /* 9999-01-01, 10000-01-01 */
	CHECK(ledger_period(LEDGER_TIME_MIN, MONTH, &s, &r) == 0 && s == LEDGER_TIME_MIN);
	CHECK_STR(ledger_format_time(1709251199, buf), "2024-02-29T23:59:59Z");
	CHECK_STR(ledger_format_time(-1, buf), "1969-12-31T23:59:59Z");
	CHECK_STR(ledger_format_time(LEDGER_TIME_MAX + 1, buf), "-");
}

/* Every 3h7m from 1999 to 2031 against glibc's timegm as an oracle. */
static void period_matches_timegm(void)
{
	int bad = 0;

	for (int64_t t = 915148800; t < 1924992000 && bad < 5; t += 3 * 3600 + 7 * 60) {
		time_t tt = (time_t)t;
		struct tm tm, first;
		int64_t want[3][2], s, r;

		gmtime_r(&tt, &tm);
		for (int k = 0; k < 3; k++) {
			int mon = k == 0 ? tm.tm_mon : k == 1 ? tm.tm_mon / 3 * 3 : 0;
			int len = k == 0 ? 1 : k == 1 ? 3 : 12;

			memset(&first, 0, sizeof(first));
			first.tm_year = tm.tm_year;
			first.tm_mon = mon;
			first.tm_mday = 1;
			want[k][0] = (int64_t)timegm(&first);
			first.tm_mon = mon + len; /* timegm normalises month 12 → next January */
			first.tm_mday = 1;
			want[k][1] = (int64_t)timegm(&first);
			if (ledger_period(t, (enum policy_period)(k + 1), &s, &r) != 0 ||
			    s != want[k][0] || r != want[k][1]) {
				printf("#   t=%lld per=%d: [%lld, %lld) want [%lld, %lld)\n", (long long)t,
				       k + 1, (long long)s, (long long)r, (long long)want[k][0],
				       (long long)want[k][1]);
				bad++;
			}
		}
	}
	CHECK(bad == 0);
}

static void rounding(void)
{
	uint64_t u = 0;
	char buf[LEDGER_EPS_LEN];

	CHECK(ledger_micro_up(0.1, &u) == 0 && u == 100000);
	CHECK(ledger_micro_down(0.1, &u) == 0 && u == 100000);
	CHECK(ledger_micro_up(0.3, &u) == 0 && u == 300000);
	CHECK(ledger_micro_down(0.7, &u) == 0 && u == 700000);
	CHECK(ledger_micro_up(1.0, &u) == 0 && u == 1000000);
	CHECK(ledger_micro_up(2.675, &u) == 0 && u == 2675000);
	/* Finer than a micro-ε: debits round up, limits down. */
	CHECK(ledger_micro_up(0.1234567, &u) == 0 && u == 123457);
	CHECK(ledger_micro_down(0.1234567, &u) == 0 && u == 123456);
	CHECK(ledger_micro_up(1e-7, &u) == 0 && u == 1);
	CHECK(ledger_micro_down(1e-7, &u) == 0 && u == 0);
	CHECK(ledger_micro_up(1.0 / 3, &u) == 0 && u == 333334);
	CHECK(ledger_micro_down(1.0 / 3, &u) == 0 && u == 333333);
	CHECK(ledger_micro_up(0, &u) == 0 && u == 0);
	CHECK(ledger_micro_up(LEDGER_EPSILON_MAX, &u) == 0 && u == 1000000000000000ULL);
	CHECK(ledger_micro_up(-0.1, &u) == NP_ERR_ARG);
	CHECK(ledger_micro_up(NAN, &u) == NP_ERR_ARG);
	CHECK(ledger_micro_down(INFINITY, &u) == NP_ERR_ARG);
	CHECK(ledger_micro_down(LEDGER_EPSILON_MAX * 2, &u) == NP_ERR_ARG);
	/* Every decimal with at most 6 places converts exactly, both ways. */
	for (uint64_t k = 0; k <= 3000000; k += 7) {
		uint64_t a = 0, b = 0;
		double eps = (double)k / 1e6;

		ledger_micro_up(eps, &a);
		ledger_micro_down(eps, &b);
		if (a != k || b != k) {
			printf("#   %" PRIu64 " micro: up %" PRIu64 " down %" PRIu64 "\n", k, a, b);
			CHECK(0);
			break;
		}
	}
	CHECK_STR(ledger_format_eps(1000000, buf), "1");
	CHECK_STR(ledger_format_eps(50000, buf), "0.05");
	CHECK_STR(ledger_format_eps(0, buf), "0");
	CHECK_STR(ledger_format_eps(1, buf), "0.000001");
	CHECK_STR(ledger_format_eps(123456789, buf), "123.456789");
	CHECK_STR(ledger_format_eps(UINT64_MAX, buf), "18446744073709.551615");
}

static struct ledger *open_fresh(const char *name, char **pathp)
{
	struct ledger *l = NULL;
	char *p = path_in(name);

	remove_db(p);
	if (ledger_create(p, err, sizeof(err)) != 0 || ledger_open(p, &l, err, sizeof(err)) != 0)
		printf("#   %s\n", err);
	CHECK(l != NULL);
	*pathp = p;
	return l;
}

static void exhausted_exactly_at_limit(void)
{
	char *p;
	struct ledger *l = open_fresh("limit.db", &p);
	struct ledger_status st;
	uint64_t lim = 0, q = 0;

	CHECK(ledger_micro_down(1.0, &lim) == 0);
	CHECK(ledger_micro_up(0.1, &q) == 0);
	/* Ten queries of 0.1 fit a budget of 1, the eleventh does not. */
	for (int i = 0; i < 10; i++) {
		CHECK(ledger_debit(l, "gemeente-groningen", "monitoring", MONTH, lim, q, FEB15 + i, &st,
				   err, sizeof(err)) == 0);
		CHECK(st.spent_micro == (uint64_t)(i + 1) * q && st.debit_id > 0);
	}
	CHECK(st.remaining_micro == 0 && st.spent_micro == lim);
	CHECK(st.period_start == 1706745600 && st.reset == 1709251200);
	CHECK(ledger_debit(l, "gemeente-groningen", "monitoring", MONTH, lim, 1, FEB15 + 20, &st, err,
			   sizeof(err)) == LEDGER_EXHAUSTED);
	CHECK(st.spent_micro == lim && st.remaining_micro == 0 && st.reset == 1709251200);
	CHECK(st.debit_id == 0);
	CHECK_CONTAINS(err, "privacy budget exhausted for gemeente-groningen, purpose monitoring");
	CHECK_CONTAINS(err, "0 of 1 is left this month; it resets at 2024-03-01T00:00:00Z");

	/* One micro-ε over the limit, on both sides of it. */
	CHECK(ledger_debit(l, "uwv", "monitoring", MONTH, lim, lim + 1, FEB15, &st, err,
			   sizeof(err)) == LEDGER_EXHAUSTED);
	CHECK(st.spent_micro == 0 && st.remaining_micro == lim);
	CHECK_CONTAINS(err, "needs epsilon 1.000001, 1 of 1 is left");
	CHECK(ledger_debit(l, "uwv", "monitoring", MONTH, lim, lim - 1, FEB15, &st, err,
			   sizeof(err)) == 0);
	CHECK(st.remaining_micro == 1);
	CHECK(ledger_debit(l, "uwv", "monitoring", MONTH, lim, 2, FEB15, &st, err, sizeof(err)) ==
	      LEDGER_EXHAUSTED);
	CHECK(st.remaining_micro == 1);
	CHECK_CONTAINS(err, "needs epsilon 0.000002, 0.000001 of 1 is left");
	CHECK(ledger_debit(l, "uwv", "monitoring", MONTH, lim, 1, FEB15, &st, err, sizeof(err)) == 0);
	CHECK(st.remaining_micro == 0 && st.spent_micro == lim);

	/* A lowered limit below what was spent: nothing left, nothing negative. */
	CHECK(ledger_status(l, "uwv", "monitoring", MONTH, lim / 2, FEB15, &st, err, sizeof(err)) == 0);
	CHECK(st.spent_micro == lim && st.remaining_micro == 0);
	CHECK(ledger_debit(l, "uwv", "monitoring", MONTH, lim / 2, 1, FEB15, &st, err, sizeof(err)) ==
	      LEDGER_EXHAUSTED);
	/* A limit of zero refuses everything. */
	CHECK(ledger_debit(l, "nobody", "monitoring", YEAR, 0, 1, FEB15, &st, err, sizeof(err)) ==
	      LEDGER_EXHAUSTED);

	/* Bad arguments record nothing. */
	CHECK(ledger_debit(l, "uwv", "x", MONTH, lim, 0, FEB15, &st, err, sizeof(err)) == NP_ERR_ARG);
	CHECK(ledger_debit(l, NULL, "x", MONTH, lim, 1, FEB15, &st, err, sizeof(err)) == NP_ERR_ARG);
	CHECK(ledger_debit(l, "uwv", "x", (enum policy_period)9, lim, 1, FEB15, &st, err,
			   sizeof(err)) == NP_ERR_ARG);
	CHECK(ledger_debit(NULL, "uwv", "x", MONTH, lim, 1, FEB15, &st, err, sizeof(err)) == NP_ERR_ARG);
	CHECK(ledger_status(l, "uwv", "x", MONTH, lim, FEB15, NULL, err, sizeof(err)) == NP_ERR_ARG);
	ledger_close(l);
	ledger_close(NULL);
	free(p);
}

static void periods_and_keys_are_independent(void)
{
	char *p;
	struct ledger *l = open_fresh("indep.db", &p);
	struct ledger_status st;
	const int64_t jan_last = 1706745599, feb_first = 1706745600;

	CHECK(ledger_debit(l, "a", "p", MONTH, M, M, jan_last, &st, err, sizeof(err)) == 0);
	CHECK(ledger_debit(l, "a", "p", MONTH, M, 1, jan_last, &st, err, sizeof(err)) ==
	      LEDGER_EXHAUSTED);
	CHECK(st.reset == feb_first);
	/* One second later is a new month with a full budget. */
	CHECK(ledger_status(l, "a", "p", MONTH, M, feb_first, &st, err, sizeof(err)) == 0);
	CHECK(st.spent_micro == 0 && st.remaining_micro == M && st.period_start == feb_first);
	CHECK(ledger_debit(l, "a", "p", MONTH, M, M, feb_first, &st, err, sizeof(err)) == 0);
	/* January is still spent. */
	CHECK(ledger_status(l, "a", "p", MONTH, M, jan_last - 86400 * 10, &st, err, sizeof(err)) == 0);
	CHECK(st.spent_micro == M);
	/* Other requester, other purpose: untouched. */
	CHECK(ledger_debit(l, "b", "p", MONTH, M, M, jan_last, &st, err, sizeof(err)) == 0);
	CHECK(ledger_debit(l, "a", "q", MONTH, M, M, jan_last, &st, err, sizeof(err)) == 0);
	/* Requester and purpose are not confused by concatenation. */
	CHECK(ledger_debit(l, "ap", "", MONTH, M, M, jan_last, &st, err, sizeof(err)) == 0);
	/* A policy that widens its period to a quarter counts both months. */
	CHECK(ledger_status(l, "a", "p", QUARTER, 3 * M, feb_first, &st, err, sizeof(err)) == 0);
	CHECK(st.spent_micro == 2 * M && st.remaining_micro == M);
	CHECK(ledger_debit(l, "a", "p", YEAR, 2 * M, 1, feb_first, &st, err, sizeof(err)) ==
	      LEDGER_EXHAUSTED);
	ledger_close(l);
	free(p);
}

static void reopen_persists_and_no_refunds(void)
{
	char *p;
	struct ledger *l = open_fresh("persist.db", &p);
	struct ledger_status st;
	sqlite3 *db = NULL;
	int64_t rows;

	CHECK(ledger_debit(l, "a", "p", YEAR, M, 400000, FEB15, &st, err, sizeof(err)) == 0);
	ledger_close(l);
	l = NULL;
	CHECK(ledger_open(p, &l, err, sizeof(err)) == 0);
	CHECK(ledger_status(l, "a", "p", YEAR, M, FEB15 + 86400 * 100, &st, err, sizeof(err)) == 0);
	CHECK(st.spent_micro == 400000 && st.remaining_micro == 600000);
	CHECK(ledger_debit(l, "a", "p", YEAR, M, 600001, FEB15, &st, err, sizeof(err)) ==
	      LEDGER_EXHAUSTED);
	/* Even with the file in hand, a debit cannot be taken back by accident. */
	CHECK(sqlite3_open(p, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "DELETE FROM ledger_debit", NULL, NULL, NULL) == SQLITE_CONSTRAINT);
	CHECK_CONTAINS(sqlite3_errmsg(db), "append-only");
	CHECK(sqlite3_exec(db, "UPDATE ledger_debit SET amount_micro = 1", NULL, NULL, NULL) ==
	      SQLITE_CONSTRAINT);
	sqlite3_close(db);
	CHECK(recorded(p, "a", &rows) == 400000 && rows == 1);
	ledger_close(l);
	free(p);
}

/* ---- concurrency --------------------------------------------------------- */

struct spender {
	struct ledger *l;
	const char *requester;
	uint64_t limit, piece;
	pthread_barrier_t *go;
	unsigned ok, busy, other;
};

static void *spend(void *arg)
{
	struct spender *s = arg;
	char e[512];

	pthread_barrier_wait(s->go);
	for (;;) {
		int rc = ledger_debit(s->l, s->requester, "monitoring", QUARTER, s->limit, s->piece,
				      FEB15, NULL, e, sizeof(e));

		if (rc == 0)
			s->ok++;
		else if (rc == LEDGER_BUSY)
			s->busy++; /* the hub would answer 503; here we try again */
		else if (rc == LEDGER_EXHAUSTED)
			break;
		else if (++s->other > 3)
			break;
	}
	return NULL;
}

/* 4 threads: two share one handle (the hub's way), two have their own. */
static void threads_never_overspend(void)
{
	char *p = path_in("threads.db");
	struct ledger *shared = NULL, *own[2] = { NULL, NULL };
	const struct { const char *who; uint64_t piece; } runs[2] = {
		{ "divides", 10000 },   /* 100 pieces make exactly the limit */
		{ "remainder", 30000 }, /* 33 pieces, 10000 left over */
	};

	remove_db(p);
	CHECK(ledger_create(p, err, sizeof(err)) == 0);
	CHECK(ledger_open(p, &shared, err, sizeof(err)) == 0);
	CHECK(ledger_open(p, &own[0], err, sizeof(err)) == 0);
	CHECK(ledger_open(p, &own[1], err, sizeof(err)) == 0);
	for (int r = 0; r < 2; r++) {
		pthread_t th[4];
		pthread_barrier_t go;
		struct spender sp[4];
		unsigned ok = 0, other = 0, busy = 0;
		int64_t rows;
		uint64_t total;

		pthread_barrier_init(&go, NULL, 4);
		for (int i = 0; i < 4; i++) {
			sp[i] = (struct spender){ i < 2 ? shared : own[i - 2], runs[r].who, M,
						  runs[r].piece, &go, 0, 0, 0 };
			pthread_create(&th[i], NULL, spend, &sp[i]);
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
			ok += sp[i].ok;
			other += sp[i].other;
			busy += sp[i].busy;
		}
		pthread_barrier_destroy(&go);
		total = recorded(p, runs[r].who, &rows);
		CHECK(other == 0);
		CHECK(total <= M);
		CHECK(ok == M / runs[r].piece && total == ok * runs[r].piece &&
		      rows == (int64_t)ok);
		if (r == 0)
			CHECK(total == M);
		printf("#   %s: %u debits of %" PRIu64 ", %u busy retries\n", runs[r].who, ok,
		       runs[r].piece, busy);
	}
	ledger_close(own[1]);
	ledger_close(own[0]);
	ledger_close(shared);
	free(p);
}

/* Two processes on one file, each trying to spend the whole budget. */
static void processes_never_overspend(void)
{
	char *p = path_in("procs.db");
	int go[2], res[2];
	pid_t pid[2];
	unsigned ok = 0, busy = 0;
	int64_t rows;
	uint64_t total;

	remove_db(p);
	CHECK(ledger_create(p, err, sizeof(err)) == 0);
	CHECK(pipe(go) == 0 && pipe(res) == 0);
	fflush(stdout);
	for (int i = 0; i < 2; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			struct ledger *l = NULL;
			pthread_barrier_t one;
			struct spender s = { NULL, "procs", M, 10000, &one, 0, 0, 0 };
			char c;
			unsigned out[3];

			close(go[1]);
			close(res[0]);
			if (read(go[0], &c, 1) != 1)
				_exit(2);
			if (ledger_open(p, &l, err, sizeof(err)) != 0) {
				printf("#   child %d: %s\n", i, err);
				fflush(stdout);
				_exit(2);
			}
			s.l = l;
			pthread_barrier_init(&one, NULL, 1);
			spend(&s);
			ledger_close(l);
			out[0] = s.ok;
			out[1] = s.other;
			out[2] = s.busy;
			if (write(res[1], out, sizeof(out)) != (ssize_t)sizeof(out))
				_exit(3);
			_exit(0);
		}
	}
	/* Both children open at the same moment: the schema race is tested too.
	 * The parent keeps no write end, so a child that dies cannot hang it. */
	close(res[1]);
	close(go[0]);
	CHECK(write(go[1], "gg", 2) == 2);
	close(go[1]);
	for (int i = 0; i < 2; i++) {
		int status = -1;
		unsigned out[3] = { 0, 99, 0 };

		CHECK(read(res[0], out, sizeof(out)) == (ssize_t)sizeof(out));
		ok += out[0];
		busy += out[2];
		CHECK(out[1] == 0);
		CHECK(waitpid(pid[i], &status, 0) == pid[i] && WIFEXITED(status) &&
		      WEXITSTATUS(status) == 0);
	}
	close(res[0]);
	total = recorded(p, "procs", &rows);
	CHECK(ok == 100 && total == M && rows == 100);
	printf("#   2 processes: %u debits, %u busy retries\n", ok, busy);
	free(p);
}

/* Another process holds the write lock for longer than the busy timeout. */
static void locked_by_another_process(void)
{
	char *p = path_in("locked.db");
	struct ledger *l = NULL;
	struct ledger_status st;
	int ready[2], release[2];
	pid_t pid;
	struct timespec t0, t1;
	double ms;
	char c = 0;
	int status = -1, rc;
	int64_t rows;

	remove_db(p);
	CHECK(ledger_create(p, err, sizeof(err)) == 0);
	CHECK(ledger_open(p, &l, err, sizeof(err)) == 0);
	ledger_close(l); /* no connection may cross the fork */
	l = NULL;
	CHECK(pipe(ready) == 0 && pipe(release) == 0);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		sqlite3 *db = NULL;

		close(ready[0]);
		close(release[1]);
		if (sqlite3_open(p, &db) != SQLITE_OK ||
		    sqlite3_exec(db,
				 "BEGIN EXCLUSIVE;"
				 "INSERT INTO ledger_debit (requester, purpose, period, period_start,"
				 " time, amount_micro, limit_micro)"
				 " VALUES ('a', 'p', 'month', 1706745600, 1707998400, 1, 1000000)",
				 NULL, NULL, NULL) != SQLITE_OK)
			_exit(2);
		if (write(ready[1], "r", 1) != 1 || read(release[0], &c, 1) != 1)
			_exit(3);
		/* The holder dies without committing: its row must vanish. */
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		sqlite3_close(db);
		_exit(0);
	}
	close(ready[1]);
	close(release[0]);
	CHECK(read(ready[0], &c, 1) == 1);
	if (ledger_open(p, &l, err, sizeof(err)) != 0) /* opening needs no write lock */
		printf("#   %s\n", err);
	CHECK(l != NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = ledger_debit(l, "a", "p", MONTH, M, 1000, FEB15, &st, err, sizeof(err));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	CHECK(rc == LEDGER_BUSY);
	CHECK_CONTAINS(err, "the budget ledger is locked by another process");
	CHECK_CONTAINS(err, "250 ms");
	CHECK(ms >= LEDGER_BUSY_MS * 0.8 && ms < 3000);
	CHECK(st.spent_micro == 0 && st.debit_id == 0);
	/* Readers are not blocked by the writer (WAL). */
	CHECK(ledger_status(l, "a", "p", MONTH, M, FEB15, &st, err, sizeof(err)) == 0);
	CHECK(st.spent_micro == 0);
	CHECK(write(release[1], "x", 1) == 1);
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* Neither the refused debit nor the holder's uncommitted row was recorded. */
	CHECK(recorded(p, "a", &rows) == 0 && rows == 0);
	CHECK(ledger_debit(l, "a", "p", MONTH, M, M, FEB15, &st, err, sizeof(err)) == 0);
	CHECK(recorded(p, "a", &rows) == M && rows == 1);
	ledger_close(l);
	close(ready[0]);
	close(release[1]);
	free(p);
}

/* ---- the ledger cannot vanish ------------------------------------------- */

static void never_created_by_open(void)
{
	char *p = path_in("vanish.db"), *q = path_in("other.db");
	struct ledger *l = (struct ledger *)1, *m = NULL;
	struct ledger_status st;
	char id[LEDGER_ID_LEN];
	struct stat sb;
	int64_t last = -1;
	FILE *f;

	/* Missing: refused, and nothing is created. */
	remove_db(p);
	CHECK(ledger_open(p, &l, err, sizeof(err)) == LEDGER_MISSING && l == NULL);
	CHECK_CONTAINS(err, "noordpoort ledger init");
	CHECK(stat(p, &sb) != 0 && errno == ENOENT);
	/* An empty file (truncated, or touched): refused, left empty. */
	f = fopen(p, "w");
	CHECK(f != NULL);
	if (f)
		fclose(f);
	CHECK(ledger_open(p, &l, err, sizeof(err)) == LEDGER_MISSING && l == NULL);
	CHECK(stat(p, &sb) == 0 && sb.st_size == 0);
	/* create refuses any existing file, empty or not */
	CHECK(ledger_create(p, err, sizeof(err)) == LEDGER_EXISTS);
	remove_db(p);
	CHECK(ledger_create(p, err, sizeof(err)) == 0);
	CHECK(stat(p, &sb) == 0 && (sb.st_mode & 077) == 0);
	CHECK(ledger_create(p, err, sizeof(err)) == LEDGER_EXISTS);
	CHECK_CONTAINS(err, "already exists");
	/* A random id, fixed for the file's life; another ledger has another. */
	CHECK(ledger_open(p, &l, err, sizeof(err)) == 0);
	CHECK(strlen(ledger_id(l)) == 32);
	memcpy(id, ledger_id(l), sizeof(id));
	CHECK(ledger_last_debit(l, &last, err, sizeof(err)) == 0 && last == 0);
	CHECK(ledger_debit(l, "a", "p", YEAR, M, 1000, FEB15, &st, err, sizeof(err)) == 0);
	CHECK(ledger_debit(l, "a", "p", YEAR, M, 1000, FEB15, &st, err, sizeof(err)) == 0);
	CHECK(ledger_last_debit(l, &last, err, sizeof(err)) == 0 && last == st.debit_id && last == 2);
	CHECK(ledger_same_file(l, err, sizeof(err)) == 0);
	ledger_close(l);
	l = NULL;
	CHECK(ledger_open(p, &l, err, sizeof(err)) == 0 && l && strcmp(ledger_id(l), id) == 0);
	remove_db(q);
	CHECK(ledger_create(q, err, sizeof(err)) == 0 && ledger_open(q, &m, err, sizeof(err)) == 0);
	CHECK(m && strcmp(ledger_id(m), id) != 0);
	ledger_close(m);
	/* Deleted under a running hub: noticed. */
	remove_db(p);
	CHECK(ledger_same_file(l, err, sizeof(err)) == LEDGER_MISSING);
	CHECK_CONTAINS(err, "gone");
	/* Replaced (another ledger moved in): noticed. */
	CHECK(rename(q, p) == 0);
	CHECK(ledger_same_file(l, err, sizeof(err)) == LEDGER_REPLACED);
	CHECK_CONTAINS(err, "replaced");
	ledger_close(l);
	/* The id cannot be edited. */
	{
		sqlite3 *db = NULL;

		CHECK(sqlite3_open(p, &db) == SQLITE_OK);
		CHECK(sqlite3_exec(db, "UPDATE ledger_meta SET ledger_id = 'x'", NULL, NULL, NULL) ==
		      SQLITE_CONSTRAINT);
		sqlite3_close(db);
	}
	remove_db(p);
	/* A version-1 ledger (before ids) gets one when opened, once. */
	{
		sqlite3 *db = NULL;

		CHECK(sqlite3_open(p, &db) == SQLITE_OK);
		CHECK(sqlite3_exec(db, "CREATE TABLE ledger_schema (version INTEGER NOT NULL);"
				   "INSERT INTO ledger_schema (version) VALUES (1);"
				   "CREATE TABLE ledger_debit (id INTEGER PRIMARY KEY, requester TEXT NOT NULL,"
				   " purpose TEXT NOT NULL, period TEXT NOT NULL, period_start INTEGER NOT NULL,"
				   " time INTEGER NOT NULL, amount_micro INTEGER NOT NULL,"
				   " limit_micro INTEGER NOT NULL)", NULL, NULL, NULL) == SQLITE_OK);
		sqlite3_close(db);
		l = NULL;
		CHECK(ledger_open(p, &l, err, sizeof(err)) == 0 && l && strlen(ledger_id(l)) == 32);
		memcpy(id, l ? ledger_id(l) : "", sizeof(id));
		ledger_close(l);
		l = NULL;
		CHECK(ledger_open(p, &l, err, sizeof(err)) == 0 && l && strcmp(ledger_id(l), id) == 0);
		ledger_close(l);
	}
	remove_db(p);
	free(p);
	free(q);
}

/* ---- per-dataset budgets ------------------------------------------------- */

/* Spent on |dataset| over all time, straight from the file. */
static uint64_t dataset_recorded(const char *p, const char *dataset, int64_t *rows)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	uint64_t total = 0;

	*rows = -1;
	if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db,
			       "SELECT coalesce(sum(amount_micro), 0), count(*) FROM ledger_dataset_debit"
			       " WHERE dataset = ?",
			       -1, &s, NULL) == SQLITE_OK) {
		sqlite3_bind_text(s, 1, dataset, -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW) {
			total = (uint64_t)sqlite3_column_int64(s, 0);
			*rows = sqlite3_column_int64(s, 1);
		}
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	return total;
}

/* Exactly at the dataset's limit succeeds, one micro-ε more does not; two
 * requesters with their own purpose budgets share the dataset's. */
static void dataset_budget_shared_and_exact(void)
{
	char *p;
	struct ledger *l = open_fresh("dataset.db", &p);
	struct ledger_status st;
	struct ledger_charge ch[2];
	size_t which = 0;
	int64_t rows = 0;

	memset(ch, 0, sizeof(ch));
	ch[0] = (struct ledger_charge){ .dataset = "uwv/ww-uitkeringen", .per = YEAR, .limit_micro = 5 * M };
	ch[1] = (struct ledger_charge){ .dataset = "fonds/inschrijvingen", .per = MONTH, .limit_micro = 100 * M };
	/* Each requester × purpose may spend 3; together they reach the
	 * dataset's 5 exactly: 3 (A) + 1.5 (B) + 0.5 (B). */
	CHECK(ledger_debit_datasets(l, "provincie-a", "monitoring", YEAR, 3 * M, 3 * M, ch, 2, FEB15,
				    &st, &which, err, sizeof(err)) == 0);
	CHECK(st.debit_id > 0 && ch[0].st.debit_id == st.debit_id && ch[0].st.spent_micro == 3 * M);
	CHECK(ch[0].st.remaining_micro == 2 * M && ch[1].st.spent_micro == 3 * M);
	CHECK(ledger_debit_datasets(l, "provincie-b", "evaluatie", YEAR, 3 * M, 3 * M / 2, ch, 2,
				    FEB15 + 1, &st, &which, err, sizeof(err)) == 0);
	CHECK(ch[0].st.remaining_micro == M / 2);
	/* One micro-ε over what is left: refused for B although B's own
	 * purpose budget has 1.5 left, and naming the dataset. */
	CHECK(ledger_debit_datasets(l, "provincie-b", "evaluatie", YEAR, 3 * M, M / 2 + 1, ch, 2,
				    FEB15 + 2, &st, &which, err, sizeof(err)) == LEDGER_EXHAUSTED);
	CHECK(which == 0 && st.debit_id == 0 && ch[0].st.remaining_micro == M / 2);
	CHECK(ch[0].st.reset == 1735689600); /* 2025-01-01 */
	CHECK_CONTAINS(err, "privacy budget of dataset uwv/ww-uitkeringen exhausted: this query needs"
			    " epsilon 0.500001, 0.5 of 5 is left this year");
	CHECK_CONTAINS(err, "it resets at 2025-01-01T00:00:00Z");
	/* Exactly what is left: accepted, the dataset is then at its limit. */
	CHECK(ledger_debit_datasets(l, "provincie-b", "evaluatie", YEAR, 3 * M, M / 2, ch, 2,
				    FEB15 + 3, &st, &which, err, sizeof(err)) == 0);
	CHECK(ch[0].st.spent_micro == 5 * M && ch[0].st.remaining_micro == 0);
	/* The next smallest debit fails, for any requester and purpose. */
	CHECK(ledger_debit_datasets(l, "provincie-c", "andere", MONTH, 3 * M, 1, ch, 1, FEB15 + 4,
				    &st, &which, err, sizeof(err)) == LEDGER_EXHAUSTED);
	CHECK(which == 0);
	/* A question not touching that dataset is not held back by it. */
	CHECK(ledger_debit_datasets(l, "provincie-c", "andere", MONTH, 3 * M, 1, &ch[1], 1, FEB15 + 5,
				    &st, &which, err, sizeof(err)) == 0);
	/* The purpose's own budget is checked too (and named as such). */
	CHECK(ledger_debit_datasets(l, "provincie-a", "monitoring", YEAR, 3 * M, 1, &ch[1], 1,
				    FEB15 + 6, &st, &which, err, sizeof(err)) == LEDGER_EXHAUSTED);
	CHECK(which == SIZE_MAX);
	CHECK_CONTAINS(err, "privacy budget exhausted for provincie-a, purpose monitoring");
	/* Status: spent by everyone together. */
	CHECK(ledger_dataset_status(l, ch, 2, FEB15 + 7, err, sizeof(err)) == 0);
	CHECK(ch[0].st.spent_micro == 5 * M && ch[0].st.remaining_micro == 0);
	CHECK(ch[1].st.spent_micro == 5 * M + 1);
	/* Next year the dataset's budget is whole again. */
	CHECK(ledger_debit_datasets(l, "provincie-c", "andere", YEAR, 3 * M, M, ch, 1,
				    1735689600 + 10, &st, &which, err, sizeof(err)) == 0);
	CHECK(ch[0].st.spent_micro == M);
	/* A dataset named twice in one debit is a caller's bug. */
	ch[1].dataset = ch[0].dataset;
	CHECK(ledger_debit_datasets(l, "provincie-c", "andere", YEAR, 3 * M, 1, ch, 2, FEB15, &st,
				    &which, err, sizeof(err)) == NP_ERR_ARG);
	ledger_close(l);
	CHECK(dataset_recorded(p, "uwv/ww-uitkeringen", &rows) == 6 * M && rows == 4);
	remove_db(p);
	free(p);
}

/* When the dataset's budget refuses, the purpose's debit is not taken
 * either (nor any other dataset's): one transaction, all or nothing. */
static void dataset_budget_atomic(void)
{
	char *p;
	struct ledger *l = open_fresh("atomic.db", &p);
	struct ledger_status st;
	struct ledger_charge ch[2];
	size_t which = 0;
	int64_t rows = 0, last = 0;

	ch[0] = (struct ledger_charge){ .dataset = "fonds/inschrijvingen", .per = YEAR, .limit_micro = 10 * M };
	ch[1] = (struct ledger_charge){ .dataset = "uwv/ww-uitkeringen", .per = QUARTER, .limit_micro = M };
	CHECK(ledger_debit_datasets(l, "provincie-a", "monitoring", YEAR, 10 * M, M, ch, 2, FEB15, &st,
				    &which, err, sizeof(err)) == 0);
	CHECK(ledger_last_debit(l, &last, err, sizeof(err)) == 0 && last == st.debit_id);
	/* The second (listed last) dataset refuses: nothing recorded at all. */
	CHECK(ledger_debit_datasets(l, "provincie-a", "monitoring", YEAR, 10 * M, M, ch, 2, FEB15 + 1,
				    &st, &which, err, sizeof(err)) == LEDGER_EXHAUSTED);
	CHECK(which == 1 && st.debit_id == 0);
	CHECK_CONTAINS(err, "dataset uwv/ww-uitkeringen exhausted");
	CHECK(ledger_status(l, "provincie-a", "monitoring", YEAR, 10 * M, FEB15, &st, err,
			    sizeof(err)) == 0 && st.spent_micro == M);
	CHECK(ledger_dataset_status(l, ch, 2, FEB15, err, sizeof(err)) == 0);
	CHECK(ch[0].st.spent_micro == M && ch[1].st.spent_micro == M);
	CHECK(ledger_last_debit(l, &rows, err, sizeof(err)) == 0 && rows == last);
	ledger_close(l);
	CHECK(recorded(p, "provincie-a", &rows) == M && rows == 1);
	CHECK(dataset_recorded(p, "fonds/inschrijvingen", &rows) == M && rows == 1);
	/* Append-only, like the debits. */
	{
		sqlite3 *db = NULL;

		CHECK(sqlite3_open(p, &db) == SQLITE_OK);
		CHECK(sqlite3_exec(db, "DELETE FROM ledger_dataset_debit", NULL, NULL, NULL) ==
		      SQLITE_CONSTRAINT);
		CHECK(sqlite3_exec(db, "UPDATE ledger_dataset_debit SET amount_micro = 1", NULL, NULL,
				   NULL) == SQLITE_CONSTRAINT);
		sqlite3_close(db);
	}
	remove_db(p);
	free(p);
}

struct ds_spender {
	struct ledger *l;
	const char *requester;
	pthread_barrier_t *go;
	unsigned ok, other;
};

static void *ds_spend(void *arg)
{
	struct ds_spender *s = arg;
	struct ledger_charge ch = { .dataset = "uwv/ww-uitkeringen", .per = YEAR, .limit_micro = M };
	char e[512];

	pthread_barrier_wait(s->go);
	for (;;) {
		int rc = ledger_debit_datasets(s->l, s->requester, "monitoring", YEAR, M, 10000, &ch, 1,
					       FEB15, NULL, NULL, e, sizeof(e));

		if (rc == 0)
			s->ok++;
		else if (rc == LEDGER_EXHAUSTED)
			break;
		else if (rc != LEDGER_BUSY && ++s->other > 3)
			break;
	}
	return NULL;
}

/* 4 requesters, each with a purpose budget of 1, race for one dataset
 * budget of 1 (two share a handle, two have their own): together they
 * spend exactly 1 on it. */
static void dataset_budget_threads(void)
{
	char *p = path_in("dsthreads.db");
	struct ledger *h[3] = { NULL, NULL, NULL };
	const char *who[4] = { "a", "b", "c", "d" };
	struct ds_spender sp[4];
	pthread_t th[4];
	pthread_barrier_t go;
	unsigned ok = 0, other = 0;
	int64_t rows = 0;

	remove_db(p);
	CHECK(ledger_create(p, err, sizeof(err)) == 0);
	for (int i = 0; i < 3; i++)
		CHECK(ledger_open(p, &h[i], err, sizeof(err)) == 0);
	pthread_barrier_init(&go, NULL, 4);
	for (int i = 0; i < 4; i++) {
		sp[i] = (struct ds_spender){ h[i < 2 ? 0 : i - 1], who[i], &go, 0, 0 };
		pthread_create(&th[i], NULL, ds_spend, &sp[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		ok += sp[i].ok;
		other += sp[i].other;
	}
	pthread_barrier_destroy(&go);
	CHECK(other == 0 && ok == 100);
	CHECK(dataset_recorded(p, "uwv/ww-uitkeringen", &rows) == M && rows == 100);
	printf("#   %u/%u/%u/%u debits of 0.01 shared one dataset budget of 1\n", sp[0].ok, sp[1].ok,
	       sp[2].ok, sp[3].ok);
	for (int i = 0; i < 3; i++)
		ledger_close(h[i]);
	remove_db(p);
	free(p);
}

/* A version-2 ledger (before dataset budgets) is migrated to 3 when
 * opened: its id and debits stay, and its datasets have spent nothing. */
static void dataset_budget_migrates_v2(void)
{
	char *p = path_in("v2.db");
	struct ledger *l = NULL;
	struct ledger_charge ch = { .dataset = "uwv/ww-uitkeringen", .per = YEAR, .limit_micro = M };
	struct ledger_status st;
	sqlite3 *db = NULL;
	char id[LEDGER_ID_LEN] = "";
	int64_t v = 0, rows = 0;
	int n = 0;

	remove_db(p);
	CHECK(ledger_create(p, err, sizeof(err)) == 0);
	CHECK(ledger_open(p, &l, err, sizeof(err)) == 0);
	memcpy(id, l ? ledger_id(l) : "", sizeof(id));
	CHECK(ledger_debit(l, "provincie-a", "monitoring", YEAR, M, M / 4, FEB15, &st, err,
			   sizeof(err)) == 0);
	ledger_close(l);
	l = NULL;
	/* Make it what a version-2 hub wrote. */
	CHECK(sqlite3_open(p, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "DROP TABLE ledger_dataset_debit; UPDATE ledger_schema SET version = 2",
			   NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);
	CHECK(ledger_open(p, &l, err, sizeof(err)) == 0 && l && strcmp(ledger_id(l), id) == 0);
	CHECK(query_int(l->db, "SELECT version FROM ledger_schema", &v, &n) == SQLITE_OK && v == 3);
	CHECK(ledger_dataset_status(l, &ch, 1, FEB15, err, sizeof(err)) == 0);
	CHECK(ch.st.spent_micro == 0 && ch.st.remaining_micro == M);
	CHECK(ledger_status(l, "provincie-a", "monitoring", YEAR, M, FEB15, &st, err, sizeof(err)) == 0);
	CHECK(st.spent_micro == M / 4);
	CHECK(ledger_debit_datasets(l, "provincie-a", "monitoring", YEAR, M, M / 4, &ch, 1, FEB15, &st,
				    NULL, err, sizeof(err)) == 0);
	ledger_close(l);
	CHECK(dataset_recorded(p, "uwv/ww-uitkeringen", &rows) == M / 4 && rows == 1);
	remove_db(p);
	free(p);
}

/* ---- bad files ----------------------------------------------------------- */

static void bad_files(void)
{
	char *p = path_in("garbage.db");
	struct ledger *l = (struct ledger *)1;
	sqlite3 *db = NULL;
	FILE *f;
	char block[4096];

	/* Not SQLite at all. */
	f = fopen(p, "w");
	for (int i = 0; i < 300; i++)
		fputs("this is not a database, it is a budget spreadsheet\n", f);
	fclose(f);
	CHECK(ledger_open(p, &l, err, sizeof(err)) == LEDGER_CORRUPT && l == NULL);
	CHECK_CONTAINS(err, "garbage.db: not a usable budget ledger (file is not a database");
	remove_db(p);

	/* SQLite, but someone else's database. */
	CHECK(sqlite3_open(p, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "CREATE TABLE persons (bsn TEXT)", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);
	CHECK(ledger_open(p, &l, err, sizeof(err)) == LEDGER_CORRUPT && l == NULL);
	CHECK_CONTAINS(err, "a SQLite database, but not a budget ledger");
	remove_db(p);

	/* A ledger from the future. */
	CHECK(ledger_create(p, err, sizeof(err)) == 0);
	CHECK(sqlite3_open(p, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "UPDATE ledger_schema SET version = 4", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);
	CHECK(ledger_open(p, &l, err, sizeof(err)) == LEDGER_VERSION && l == NULL);
	CHECK_CONTAINS(err, "schema version 4 was written by a newer Noordpoort");
	remove_db(p);

	/* A ledger with a damaged page in the middle. */
	CHECK(ledger_create(p, err, sizeof(err)) == 0);
	CHECK(sqlite3_open(p, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db,
			   "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)"
			   " INSERT INTO ledger_debit (requester, purpose, period, period_start, time,"
			   " amount_micro, limit_micro)"
			   " SELECT 'gemeente-' || (i % 40), 'purpose-' || (i % 7), 'month', 0, i, 1, 9 FROM n",
			   NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db); /* last connection: the WAL is checkpointed into the file */
	memset(block, 0xa5, sizeof(block));
	f = fopen(p, "r+");
	CHECK(f && fseek(f, 4096L * 6, SEEK_SET) == 0 && fwrite(block, 1, sizeof(block), f) == sizeof(block));
	if (f)
		fclose(f);
	CHECK(ledger_open(p, &l, err, sizeof(err)) == LEDGER_CORRUPT && l == NULL);
	CHECK_CONTAINS(err, "restore it from a backup");
	printf("#   damaged page: %s\n", err);
	remove_db(p);

	/* A directory that does not exist. */
	CHECK(ledger_open("/nonexistent/dir/ledger.db", &l, err, sizeof(err)) == LEDGER_MISSING);
	CHECK_CONTAINS(err, "/nonexistent/dir/ledger.db: no budget ledger");
	CHECK(ledger_create("/nonexistent/dir/ledger.db", err, sizeof(err)) == LEDGER_IO);
	CHECK(ledger_create("", err, sizeof(err)) == NP_ERR_ARG);
	CHECK(ledger_open("", &l, err, sizeof(err)) == NP_ERR_ARG);
	free(p);
}

/* ---- out of memory: fail each SQLite allocation in turn ------------------ */

static sqlite3_mem_methods real_mem;
static atomic_int fail_countdown; /* 0: off; n: the n-th allocation fails */

static int should_fail(void)
{
	int n = atomic_load(&fail_countdown);

	if (n <= 0)
		return 0;
	if (atomic_fetch_sub(&fail_countdown, 1) == 1)
		return 1;
	return 0;
}

static void *failing_malloc(int n)
{
	return should_fail() ? NULL : real_mem.xMalloc(n);
}

static void *failing_realloc(void *p, int n)
{
	return should_fail() ? NULL : real_mem.xRealloc(p, n);
}

static void out_of_memory(void)
{
	char *p = path_in("oom.db");
	struct ledger *l = NULL;
	struct ledger_status st;
	int n, rc = -1, failed = 0, ok_debits = 0;
	int64_t rows;

	remove_db(p);
	/* Create, then open, with the n-th allocation failing: a failed
	 * create leaves nothing behind, so the next try starts clean. */
	for (n = 1; n < 5000; n++) {
		struct stat st_;

		atomic_store(&fail_countdown, n);
		rc = ledger_create(p, err, sizeof(err));
		atomic_store(&fail_countdown, 0);
		if (rc == 0)
			break;
		failed++;
		CHECK(stat(p, &st_) != 0);
		if (rc != NP_ERR_NOMEM && rc != LEDGER_IO) {
			printf("#   create, allocation %d: %d %s\n", n, rc, err);
			CHECK(0);
		}
		remove_db(p);
	}
	for (n = 1; n < 5000; n++) {
		atomic_store(&fail_countdown, n);
		rc = ledger_open(p, &l, err, sizeof(err));
		atomic_store(&fail_countdown, 0);
		if (rc == 0)
			break;
		failed++;
		if (rc != NP_ERR_NOMEM && rc != LEDGER_IO) {
			printf("#   open, allocation %d: %d %s\n", n, rc, err);
			CHECK(0);
		}
	}
	CHECK(rc == 0 && failed > 10);
	/* Debits and status under failure: each either records whole or not at all. */
	for (n = 1; n < 200 && l; n++) {
		atomic_store(&fail_countdown, n);
		rc = ledger_debit(l, "oom", "p", MONTH, 1000 * M, 1, FEB15, &st, err, sizeof(err));
		atomic_store(&fail_countdown, 0);
		if (rc == 0)
			ok_debits++;
		else if (rc != NP_ERR_NOMEM && rc != LEDGER_IO) {
			printf("#   debit, allocation %d: %d %s\n", n, rc, err);
			CHECK(0);
		}
	}
	CHECK(ledger_status(l, "oom", "p", MONTH, 1000 * M, FEB15, &st, err, sizeof(err)) == 0);
	CHECK(st.spent_micro == (uint64_t)ok_debits);
	ledger_close(l);
	CHECK(recorded(p, "oom", &rows) == (uint64_t)ok_debits && rows == ok_debits);
	printf("#   open survived %d failed allocations; %d of 199 debits under failure recorded\n",
	       failed, ok_debits);
	remove_db(p);
	free(p);
}

int main(void)
{
	sqlite3_mem_methods mine;

	/* Before SQLite initialises: route its allocations through the failer. */
	sqlite3_config(SQLITE_CONFIG_GETMALLOC, &real_mem);
	mine = real_mem;
	mine.xMalloc = failing_malloc;
	mine.xRealloc = failing_realloc;
	if (sqlite3_config(SQLITE_CONFIG_MALLOC, &mine) != SQLITE_OK)
		return 2;
	if (!mkdtemp(dir))
		return 2;
	RUN(period_boundaries);
	RUN(period_matches_timegm);
	RUN(rounding);
	RUN(exhausted_exactly_at_limit);
	RUN(periods_and_keys_are_independent);
	RUN(reopen_persists_and_no_refunds);
	RUN(threads_never_overspend);
	RUN(processes_never_overspend);
	RUN(locked_by_another_process);
	RUN(never_created_by_open);
	RUN(dataset_budget_shared_and_exact);
	RUN(dataset_budget_atomic);
	RUN(dataset_budget_threads);
	RUN(dataset_budget_migrates_v2);
	RUN(bad_files);
	RUN(out_of_memory);
	if (!check_total_failed) {
		char cmd[64];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			return 1;
	}
	return check_total_failed ? 1 : 0;
}
