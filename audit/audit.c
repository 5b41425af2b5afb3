/*
 * The audit log: hash-chained JSON lines, one write(2) per record under one
 * mutex, group fsync on a background thread, Ed25519-signed checkpoints, and
 * the verifier that the CLI and the tests use. Format: docs/audit.md.
 */
#include "audit.h"
#include "../common/jsonput.h"
#include "../common/keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * Defaults. Group fsync bounds what a power loss can take: the records of
 * at most the last 100 ms (or 64 records, whichever fills first); a process
 * crash loses nothing that write(2) accepted. A checkpoint every 1000
 * records keeps a signature within reach of any line without signing on the
 * request path more than once per thousand requests (~25 us each).
 */
#define DEFAULT_FSYNC_RECORDS 64
#define DEFAULT_FSYNC_MS 100
#define DEFAULT_CHECKPOINT 1000

/* The tail of a log is read backwards in growing windows up to this size to
 * find its last complete line (a crash can leave a long run of NUL bytes). */
#define TAIL_MAX (64L * 1024 * 1024)

/* Checkpoint signatures cover this prefix and then the line's bytes up to
 * the "sig" member, so a key that also signs other things (policies) can
 * never be made to sign a checkpoint by accident, nor the reverse. */
static const char sign_domain[] = "noordpoort audit checkpoint v1\n";

#define HASHLEN 32
#define CHECKPOINT_MAX 512

/* Refusal windows kept (audit_refusal_admit): members are a few dozen;
 * past the table, the entry whose window started longest ago is reused
 * (at worst a requester gets a fresh window early). */
#define REFUSAL_SLOTS 256

struct refusal_window {
	char who[65];             /* member id ("" = free) */
	uint64_t start_ms;        /* CLOCK_MONOTONIC */
	unsigned count;           /* refusals in this window */
	unsigned long suppressed; /* of them, answered without a line */
	unsigned long suppressed_before; /* the previous window's */
};

struct audit_log {
	int fd;
	pthread_mutex_t mu; /* the chain: seq, prev, size, dirty, buf */
	unsigned long long seq; /* of the last chained line; 0 = none */
	unsigned char prev[HASHLEN]; /* hash of the last chained line */
	off_t size; /* bytes of complete lines in the file */
	int dirty; /* a failed write could not be truncated away yet */
	unsigned fail_writes; /* test hook */
	unsigned fail_skip;   /* test hook: writes that succeed before those */
	unsigned since_checkpoint;
	char *buf;
	size_t cap;
	unsigned char *sk; /* sodium_malloc'd, read-only; NULL: no signing */
	char pubhex[2 * crypto_sign_PUBLICKEYBYTES + 1];
	struct audit_options opt;

	/* Group fsync: appenders count, the syncer thread fdatasync()s. */
	pthread_mutex_t sync_mu;
	pthread_cond_t sync_cv;
	pthread_t syncer;
	int syncer_started;
	unsigned pending;
	struct timespec first_pending;
	int stop;
	unsigned long fsyncs;
	atomic_int sync_err;

	/* Refused requests per requester (audit_refusal_admit). */
	pthread_mutex_t refusal_mu;
	unsigned refusal_limit;
	struct refusal_window refusals[REFUSAL_SLOTS];
};

/* What one line says, as far as the chain is concerned. */
enum { L_BAD, L_RECORD, L_CHECKPOINT, L_RECOVERY };
struct lineinfo {
	int kind;
	char why[160]; /* L_BAD */
	unsigned long long seq;
	unsigned char prev[HASHLEN];
	unsigned long long torn_off, torn_len; /* L_RECOVERY */
	unsigned char torn_hash[HASHLEN];
	unsigned char key[crypto_sign_PUBLICKEYBYTES]; /* L_CHECKPOINT */
};

static void set_err(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
	if (err && errlen)
		snprintf(err, errlen, fmt, a, b);
}

static void timestamp(char out[32])
{
	struct timespec ts;
	struct tm tm;
	char s[24];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 32, "%s.%03uZ", s, (unsigned)(ts.tv_nsec / 1000000) % 1000u);
}

static void hash_bytes(unsigned char out[HASHLEN], const void *p, size_t n)
{
	crypto_generichash(out, HASHLEN, p, n, NULL, 0);
}

static int hex_decode(unsigned char *out, size_t outlen, const char *hex, size_t hexlen)
{
	size_t got = 0;

	if (hexlen != 2 * outlen)
		return -1;
	if (sodium_hex2bin(out, outlen, hex, hexlen, NULL, &got, NULL) != 0 || got != outlen)
		return -1;
	return 0;
}

/* ---- Keys ------------------------------------------------------------ */

/*
 * The one place that knows the key file format: "TAG <hex>\n", one line.
 * Decodes into |out| (|outlen| bytes); 0 or -1. Change only this when
 * `noordpoort keygen --sign` settles on another format.
 */
/* The format of `noordpoort keygen --sign` (docs/policy.md): one line of
 * lower-case hex, the same key files the privacy officer signs policies with. */
static int key_parse(const char *text, size_t len, unsigned char *out, size_t outlen)
{
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
	if (len != 2 * outlen)
		return -1;
	return hex_decode(out, outlen, text, 2 * outlen);
}

#define KEY_FILE_MAX 256 /* a key line is 129 bytes at most; room for CRLF and slack */

/* Loads the secret key into read-only sodium_malloc memory. */
static int secret_key_load(const char *path, unsigned char **out, char *err, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	unsigned char *sk = NULL;
	unsigned char seed[crypto_sign_SEEDBYTES], pk[crypto_sign_PUBLICKEYBYTES];
	unsigned char *skcheck = NULL;
	int rc = keyfile_read(path, KEYFILE_SECRET, KEY_FILE_MAX, &text, &len, err, errlen);

	*out = NULL;
	if (rc < 0)
		goto done;
	sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
	skcheck = sodium_malloc(crypto_sign_SECRETKEYBYTES);
	if (!sk || !skcheck) {
		rc = -ENOMEM;
		set_err(err, errlen, "%s: %s", path, "out of memory");
		goto done;
	}
	if (key_parse(text, len, sk, crypto_sign_SECRETKEYBYTES) < 0) {
		rc = -EINVAL;
		set_err(err, errlen, "%s: %s", path,
			"not a secret key made by 'noordpoort keygen --sign' (128 hex digits)");
		goto done;
	}
	/* The secret key embeds its public half; a file whose halves disagree
	 * would sign checkpoints nobody can verify. */
	crypto_sign_ed25519_sk_to_seed(seed, sk);
	crypto_sign_seed_keypair(pk, skcheck, seed);
	if (sodium_memcmp(skcheck, sk, crypto_sign_SECRETKEYBYTES) != 0) {
		rc = -EINVAL;
		set_err(err, errlen, "%s: %s", path, "corrupt key: its public half does not match");
		goto done;
	}
	sodium_mprotect_readonly(sk);
	*out = sk;
	sk = NULL;
done:
	keyfile_free(text, KEYFILE_SECRET);
	sodium_memzero(seed, sizeof(seed));
	sodium_free(skcheck);
	sodium_free(sk);
	return rc;
}

int audit_pubkey_load(const char *path, unsigned char pub[32], char *err, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	int rc = keyfile_read(path, 0, KEY_FILE_MAX, &text, &len, err, errlen);

	if (rc < 0)
		return rc;
	if (key_parse(text, len, pub, crypto_sign_PUBLICKEYBYTES) < 0) {
		set_err(err, errlen, "%s: %s", path,
			"not a public key made by 'noordpoort keygen --sign' (64 hex digits)");
		rc = -EINVAL;
	}
	keyfile_free(text, 0);
	return rc;
}

/* ---- Reading lines --------------------------------------------------- */

static const cJSON *member(const cJSON *o, const char *name, int type)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, name);

	return m && (m->type & 0xff) == type ? m : NULL;
}

static int get_count(const cJSON *o, const char *name, unsigned long long *v)
{
	const cJSON *m = member(o, name, cJSON_Number);

	/* Integers up to 2^53 are exact in the double cJSON keeps. */
	if (!m || m->valuedouble < 0 || m->valuedouble > 9007199254740992.0 ||
	    m->valuedouble != (double)(unsigned long long)m->valuedouble)
		return -1;
	*v = (unsigned long long)m->valuedouble;
	return 0;
}

static int get_hex(const cJSON *o, const char *name, unsigned char *out, size_t n)
{
	const cJSON *m = member(o, name, cJSON_String);

	return m ? hex_decode(out, n, m->valuestring, strlen(m->valuestring)) : -1;
}

/* Parses one line (without its '\n') into |li|; never fails, L_BAD says why. */
static void line_parse(const char *p, size_t n, struct lineinfo *li)
{
	const char *end = NULL;
	const cJSON *type;
	cJSON *j = NULL;
	unsigned char id[16];

	memset(li, 0, sizeof(*li));
	li->kind = L_BAD;
	if (memchr(p, '\0', n)) {
		snprintf(li->why, sizeof(li->why), "it contains a NUL byte");
		return;
	}
	j = cJSON_ParseWithLengthOpts(p, n, &end, 0);
	if (!j || end != p + n || !cJSON_IsObject(j)) {
		snprintf(li->why, sizeof(li->why), "it is not a JSON object on one line");
		goto done;
	}
	if (get_count(j, "seq", &li->seq) < 0 || li->seq == 0) {
		snprintf(li->why, sizeof(li->why), "no valid \"seq\"");
		goto done;
	}
	if (get_hex(j, "prev", li->prev, HASHLEN) < 0) {
		snprintf(li->why, sizeof(li->why), "no valid \"prev\" (64 hex digits)");
		goto done;
	}
	if (!member(j, "time", cJSON_String)) {
		snprintf(li->why, sizeof(li->why), "no \"time\"");
		goto done;
	}
	type = cJSON_GetObjectItemCaseSensitive(j, "type");
	if (!type) {
		if (get_hex(j, "audit_id", id, sizeof(id)) < 0) {
			snprintf(li->why, sizeof(li->why), "no valid \"audit_id\"");
			goto done;
		}
		li->kind = L_RECORD;
	} else if (cJSON_IsString(type) && strcmp(type->valuestring, "checkpoint") == 0) {
		unsigned char sig[crypto_sign_BYTES];
		if (get_hex(j, "key", li->key, sizeof(li->key)) < 0 ||
		    get_hex(j, "sig", sig, sizeof(sig)) < 0) {
			snprintf(li->why, sizeof(li->why), "checkpoint without a valid \"key\" and \"sig\"");
			goto done;
		}
		li->kind = L_CHECKPOINT;
	} else if (cJSON_IsString(type) && strcmp(type->valuestring, "recovery") == 0) {
		const cJSON *t = member(j, "torn", cJSON_Object);
		if (!t || get_count(t, "offset", &li->torn_off) < 0 ||
		    get_count(t, "bytes", &li->torn_len) < 0 ||
		    get_hex(t, "hash", li->torn_hash, HASHLEN) < 0) {
			snprintf(li->why, sizeof(li->why), "recovery record without a valid \"torn\"");
			goto done;
		}
		li->kind = L_RECOVERY;
	} else {
		snprintf(li->why, sizeof(li->why), "unknown \"type\"");
	}
done:
	cJSON_Delete(j);
}

/* Checks a checkpoint line's signature with |pub|: its last member must be
 * "sig", and it signs sign_domain followed by the bytes before ,"sig". */
static int checkpoint_sig_ok(const char *p, size_t n, const unsigned char *pub)
{
	static const char sigkey[] = ",\"sig\":\"";
	const size_t siglen = 8 + 2 * crypto_sign_BYTES + 2; /* ,"sig":"<hex>"} */
	unsigned char sig[crypto_sign_BYTES];
	unsigned char msg[sizeof(sign_domain) + CHECKPOINT_MAX];
	size_t pre;

	if (n <= siglen || n - siglen > CHECKPOINT_MAX)
		return 0;
	pre = n - siglen;
	if (memcmp(p + pre, sigkey, 8) != 0 || memcmp(p + n - 2, "\"}", 2) != 0 ||
	    hex_decode(sig, sizeof(sig), p + pre + 8, 2 * crypto_sign_BYTES) < 0)
		return 0;
	memcpy(msg, sign_domain, sizeof(sign_domain) - 1);
	memcpy(msg + sizeof(sign_domain) - 1, p, pre);
	return crypto_sign_verify_detached(sig, msg, sizeof(sign_domain) - 1 + pre, pub) == 0;
}

/* ---- Writing --------------------------------------------------------- */

static int reserve(struct audit_log *log, size_t need)
{
	char *nb;
	size_t ncap = log->cap ? log->cap : 4096;

	if (need <= log->cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	nb = realloc(log->buf, ncap);
	if (!nb)
		return -ENOMEM;
	log->buf = nb;
	log->cap = ncap;
	return 0;
}

/*
 * Writes |n| bytes as the next complete line(s), under log->mu. Either all
 * of them reach write(2) and log->size grows, or the file is truncated back
 * to log->size and a negative errno returns: a torn line is never left
 * behind by a failure we see (a crash can still leave one; open recovers).
 */
static int write_locked(struct audit_log *log, const char *p, size_t n)
{
	size_t done = 0;
	int e;

	if (log->dirty) {
		if (ftruncate(log->fd, log->size) < 0)
			return -EIO;
		log->dirty = 0;
	}
	if (log->fail_writes > 0 && log->fail_skip > 0) {
		log->fail_skip--;
	} else if (log->fail_writes > 0) {
		log->fail_writes--;
		done = n / 2; /* a real partial write, then "the disk is full" */
		if (write(log->fd, p, done) < 0)
			done = 0;
		e = ENOSPC;
		goto rollback;
	}
	while (done < n) {
		ssize_t w = write(log->fd, p + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			e = w < 0 ? errno : ENOSPC;
			goto rollback;
		}
		done += (size_t)w;
	}
	log->size += (off_t)n;
	return 0;
rollback:
	if (ftruncate(log->fd, log->size) < 0)
		log->dirty = 1; /* retried before the next write; until then, fail */
	return -e;
}

/* Formats a signed checkpoint line with |seq| chaining to |prev| at |out|
 * (room for CHECKPOINT_MAX bytes); returns its length, hash in |h|. */
static size_t checkpoint_format(const struct audit_log *log, char *out, unsigned long long seq,
				const unsigned char prev[HASHLEN], const char *ts,
				unsigned char h[HASHLEN])
{
	unsigned char msg[sizeof(sign_domain) + CHECKPOINT_MAX];
	unsigned char sig[crypto_sign_BYTES];
	char prevhex[2 * HASHLEN + 1];
	size_t n;

	sodium_bin2hex(prevhex, sizeof(prevhex), prev, HASHLEN);
	n = (size_t)snprintf(out, CHECKPOINT_MAX,
			     "{\"seq\":%llu,\"time\":\"%s\",\"type\":\"checkpoint\",\"prev\":\"%s\","
			     "\"key\":\"%s\"", seq, ts, prevhex, log->pubhex);
	memcpy(msg, sign_domain, sizeof(sign_domain) - 1);
	memcpy(msg + sizeof(sign_domain) - 1, out, n);
	crypto_sign_detached(sig, NULL, msg, sizeof(sign_domain) - 1 + n, log->sk);
	memcpy(out + n, ",\"sig\":\"", 8);
	n += 8;
	sodium_bin2hex(out + n, 2 * crypto_sign_BYTES + 1, sig, sizeof(sig));
	n += 2 * crypto_sign_BYTES;
	memcpy(out + n, "\"}\n", 3);
	n += 3;
	hash_bytes(h, out, n);
	return n;
}

/* Appends a checkpoint now (close); under log->mu. */
static int checkpoint_locked(struct audit_log *log)
{
	unsigned char h[HASHLEN];
	char ts[32];
	size_t n;
	int rc;

	if (reserve(log, CHECKPOINT_MAX) < 0)
		return -ENOMEM;
	timestamp(ts);
	n = checkpoint_format(log, log->buf, log->seq + 1, log->prev, ts, h);
	rc = write_locked(log, log->buf, n);
	if (rc < 0)
		return rc;
	log->seq++;
	memcpy(log->prev, h, HASHLEN);
	log->since_checkpoint = 0;
	return 1;
}

/* Tells the syncer that |lines| more lines wait for an fsync. */
static void sync_note(struct audit_log *log, unsigned lines)
{
	pthread_mutex_lock(&log->sync_mu);
	if (log->pending == 0)
		clock_gettime(CLOCK_MONOTONIC, &log->first_pending);
	log->pending += lines;
	/* Wake it when its timer must start, and when the group is full. */
	if (log->pending == lines || log->pending >= log->opt.fsync_every_records)
		pthread_cond_signal(&log->sync_cv);
	pthread_mutex_unlock(&log->sync_mu);
}

/*
 * The group-fsync thread: a line that write(2) accepted is fdatasync()ed
 * within fsync_every_ms of being written, or as soon as
 * fsync_every_records lines wait. fdatasync runs outside the chain mutex,
 * so appends go on meanwhile. A failed fsync means the kernel may have
 * dropped pages it could not write (and marked them clean): the log stops
 * accepting records (fail closed).
 */
static void *syncer_main(void *arg)
{
	struct audit_log *log = arg;

	pthread_mutex_lock(&log->sync_mu);
	for (;;) {
		struct timespec deadline;
		int rc, e;

		while (!log->stop && log->pending == 0)
			pthread_cond_wait(&log->sync_cv, &log->sync_mu);
		if (log->pending == 0)
			break; /* stopping, nothing left */
		deadline = log->first_pending;
		deadline.tv_sec += log->opt.fsync_every_ms / 1000;
		deadline.tv_nsec += (long)(log->opt.fsync_every_ms % 1000) * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
		while (!log->stop && log->pending < log->opt.fsync_every_records)
			if (pthread_cond_timedwait(&log->sync_cv, &log->sync_mu, &deadline) == ETIMEDOUT)
				break;
		log->pending = 0;
		pthread_mutex_unlock(&log->sync_mu);
		rc = fdatasync(log->fd);
		e = errno;
		pthread_mutex_lock(&log->sync_mu);
		log->fsyncs++;
		if (rc < 0)
			atomic_store(&log->sync_err, e);
	}
	pthread_mutex_unlock(&log->sync_mu);
	return NULL;
}

/* ---- Open ------------------------------------------------------------ */

struct tail {
	int have_line; /* a last complete line exists */
	struct lineinfo li;
	unsigned char hash[HASHLEN]; /* of that line, '\n' included */
	int torn;
	off_t torn_off;
	size_t torn_len;
	unsigned char torn_hash[HASHLEN];
};

static int pread_full(int fd, char *buf, size_t n, off_t off)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = pread(fd, buf + done, n - done, off + (off_t)done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO; /* shrank under us */
		done += (size_t)r;
	}
	return 0;
}

/* Finds the last complete line and a torn tail after it, reading backwards
 * in growing windows. */
static int tail_read(int fd, off_t size, struct tail *t, const char *path, char *err,
		     size_t errlen)
{
	size_t win = 65536;
	char *buf = NULL;
	int rc = 0;

	memset(t, 0, sizeof(*t));
	if (size == 0)
		return 0;
	for (;;) {
		off_t start;
		char *nl, *nl2, *nb;
		size_t ls;

		if ((off_t)win > size)
			win = (size_t)size;
		start = size - (off_t)win;
		nb = realloc(buf, win);
		if (!nb) {
			rc = -ENOMEM;
			set_err(err, errlen, "%s: %s", path, "out of memory");
			goto done;
		}
		buf = nb;
		rc = pread_full(fd, buf, win, start);
		if (rc < 0) {
			set_err(err, errlen, "%s: %s", path, strerror(-rc));
			goto done;
		}
		nl = memrchr(buf, '\n', win);
		if (!nl && start > 0)
			goto grow;
		t->torn_off = nl ? start + (nl + 1 - buf) : 0;
		t->torn_len = nl ? (size_t)(buf + win - (nl + 1)) : win;
		t->torn = t->torn_len > 0;
		if (t->torn)
			hash_bytes(t->torn_hash, buf + (t->torn_off - start), t->torn_len);
		if (!nl)
			break; /* the whole file is one torn line */
		nl2 = memrchr(buf, '\n', (size_t)(nl - buf));
		if (!nl2 && start > 0)
			goto grow;
		ls = nl2 ? (size_t)(nl2 + 1 - buf) : 0;
		line_parse(buf + ls, (size_t)(nl - buf) - ls, &t->li);
		hash_bytes(t->hash, buf + ls, (size_t)(nl + 1 - buf) - ls);
		t->have_line = 1;
		break;
grow:
		if ((off_t)win >= size || win >= (size_t)TAIL_MAX) {
			rc = -EINVAL;
			set_err(err, errlen, "%s: %s", path,
				"the last line is longer than 64 MiB; run 'noordpoort audit verify'");
			goto done;
		}
		win *= 4;
	}
done:
	free(buf);
	return rc;
}

/* Appends the recovery record for a torn tail: the '\n' that ends the torn
 * line and the record travel in one write(2). */
static int recover(struct audit_log *log, const struct tail *t)
{
	char prevhex[2 * HASHLEN + 1], hhex[2 * HASHLEN + 1], ts[32];
	int n;

	if (reserve(log, 512) < 0)
		return -ENOMEM;
	sodium_bin2hex(prevhex, sizeof(prevhex), log->prev, HASHLEN);
	sodium_bin2hex(hhex, sizeof(hhex), t->torn_hash, HASHLEN);
	timestamp(ts);
	n = snprintf(log->buf, log->cap,
		     "\n{\"seq\":%llu,\"time\":\"%s\",\"type\":\"recovery\",\"prev\":\"%s\","
		     "\"torn\":{\"offset\":%lld,\"bytes\":%zu,\"hash\":\"%s\"}}\n",
		     log->seq + 1, ts, prevhex, (long long)t->torn_off, t->torn_len, hhex);
	if (write_locked(log, log->buf, (size_t)n) < 0)
		return -EIO;
	log->seq++;
	hash_bytes(log->prev, log->buf + 1, (size_t)n - 1);
	log->since_checkpoint++;
	return 0;
}

int audit_open(const char *path, const char *sign_key_path, const struct audit_options *opt,
	       struct audit_log **out, char *err, size_t errlen)
{
	struct audit_log *log = NULL;
	struct stat st;
	struct tail t;
	pthread_condattr_t ca;
	int rc = 0;

	*out = NULL;
	if (sodium_init() < 0) {
		set_err(err, errlen, "%s: %s", path, "libsodium could not be initialised");
		return -EIO;
	}
	log = calloc(1, sizeof(*log));
	if (!log) {
		set_err(err, errlen, "%s: %s", path, "out of memory");
		return -ENOMEM;
	}
	log->fd = -1;
	pthread_mutex_init(&log->mu, NULL);
	pthread_mutex_init(&log->sync_mu, NULL);
	pthread_mutex_init(&log->refusal_mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&log->sync_cv, &ca);
	pthread_condattr_destroy(&ca);
	atomic_init(&log->sync_err, 0);
	log->opt.fsync_every_records = opt && opt->fsync_every_records ? opt->fsync_every_records
								      : DEFAULT_FSYNC_RECORDS;
	log->opt.fsync_every_ms = opt && opt->fsync_every_ms ? opt->fsync_every_ms : DEFAULT_FSYNC_MS;
	log->opt.checkpoint_every_records = opt && opt->checkpoint_every_records
						    ? opt->checkpoint_every_records
						    : DEFAULT_CHECKPOINT;
	log->refusal_limit = AUDIT_REFUSALS_PER_MINUTE;

	if (sign_key_path) {
		rc = secret_key_load(sign_key_path, &log->sk, err, errlen);
		if (rc < 0)
			goto fail;
		sodium_bin2hex(log->pubhex, sizeof(log->pubhex),
			       log->sk + crypto_sign_SECRETKEYBYTES - crypto_sign_PUBLICKEYBYTES,
			       crypto_sign_PUBLICKEYBYTES);
	}
	log->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	if (log->fd < 0) {
		rc = -errno;
		set_err(err, errlen, "%s: %s", path, strerror(-rc));
		goto fail;
	}
	if (flock(log->fd, LOCK_EX | LOCK_NB) < 0) {
		rc = -errno;
		set_err(err, errlen, "%s: %s", path,
			rc == -EWOULDBLOCK ? "in use by another process" : strerror(-rc));
		goto fail;
	}
	if (fstat(log->fd, &st) < 0) {
		rc = -errno;
		set_err(err, errlen, "%s: %s", path, strerror(-rc));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		set_err(err, errlen, "%s: %s", path, "not a regular file");
		goto fail;
	}
	log->size = st.st_size;
	rc = tail_read(log->fd, st.st_size, &t, path, err, errlen);
	if (rc < 0)
		goto fail;
	if (t.have_line) {
		if (t.li.kind == L_BAD) {
			/* Chaining to a line we do not understand would bless it. */
			char why[256];
			snprintf(why, sizeof(why), "the last complete line is not an audit record (%s); "
				 "run 'noordpoort audit verify'", t.li.why);
			rc = -EINVAL;
			set_err(err, errlen, "%s: %s", path, why);
			goto fail;
		}
		log->seq = t.li.seq;
		memcpy(log->prev, t.hash, HASHLEN);
		log->since_checkpoint = t.li.kind == L_CHECKPOINT ? 0 : 1;
	}
	if (t.torn) {
		/* The torn bytes stay as evidence; the recovery record ends them. */
		rc = recover(log, &t);
		if (rc < 0) {
			set_err(err, errlen, "%s: %s", path,
				"torn last line, and the recovery record could not be written");
			goto fail;
		}
	}
	if (pthread_create(&log->syncer, NULL, syncer_main, log) != 0) {
		rc = -EAGAIN;
		set_err(err, errlen, "%s: %s", path, "could not start the fsync thread");
		goto fail;
	}
	log->syncer_started = 1;
	*out = log;
	return 0;
fail:
	audit_close(log);
	return rc;
}

/* ---- Append ---------------------------------------------------------- */

static int has_raw(const cJSON *item)
{
	for (; item; item = item->next) {
		if (cJSON_IsRaw(item) || has_raw(item->child))
			return 1;
	}
	return 0;
}

static int reserved_name(const char *s)
{
	static const char *const names[] = { "seq", "time", "audit_id", "prev", "type" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i]) == 0)
			return 1;
	return 0;
}

/* Length of the valid UTF-8 sequence at |s| (RFC 3629: no overlongs, no
 * surrogates, at most U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/*
 * cJSON escapes control characters and quotes in strings but copies bytes
 * >= 0x80 as they are. A line must stay one valid UTF-8 JSON line, so an
 * invalid byte becomes U+FFFD. Returns 0 with |*clean| NULL (|s| is fine)
 * or a new string, -EINVAL if a raw control byte appears (it cannot come
 * from cJSON's own printing), -ENOMEM.
 */
static int utf8_clean(const char *s, size_t n, char **clean, size_t *cleanlen)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i, o = 0, bad = 0;
	char *out;

	*clean = NULL;
	for (i = 0; i < n;) {
		size_t l = utf8_seq(u + i, n - i);
		if (u[i] < 0x20)
			return -EINVAL;
		if (l == 0) {
			bad++;
			l = 1;
		}
		i += l;
	}
	if (!bad)
		return 0;
	out = malloc(n + 2 * bad + 1);
	if (!out)
		return -ENOMEM;
	for (i = 0; i < n;) {
		size_t l = utf8_seq(u + i, n - i);
		if (l == 0) {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(out + o, s + i, l);
			o += l;
			i += l;
		}
	}
	out[o] = '\0';
	*clean = out;
	*cleanlen = o;
	return 0;
}

/* Formats, hashes and writes one record (and a due checkpoint) under
 * log->mu: the critical section. Returns the lines written (1 or 2) or a
 * negative errno; on error the chain state is untouched. */
static int append_locked(struct audit_log *log, const char *id, const char *inner,
			 size_t innerlen)
{
	unsigned char h[HASHLEN], h2[HASHLEN];
	char ts[32], prevhex[2 * HASHLEN + 1];
	size_t n, total;
	int rc, cp = 0;

	rc = reserve(log, 256 + innerlen + CHECKPOINT_MAX);
	if (rc < 0)
		return rc;
	timestamp(ts);
	sodium_bin2hex(prevhex, sizeof(prevhex), log->prev, HASHLEN);
	n = (size_t)snprintf(log->buf, 256,
			     "{\"seq\":%llu,\"time\":\"%s\",\"audit_id\":\"%s\",\"prev\":\"%s\"",
			     log->seq + 1, ts, id, prevhex);
	if (innerlen) {
		log->buf[n++] = ',';
		memcpy(log->buf + n, inner, innerlen);
		n += innerlen;
	}
	log->buf[n++] = '}';
	log->buf[n++] = '\n';
	hash_bytes(h, log->buf, n);
	total = n;
	/* A due checkpoint rides in the same write(2) as the record. */
	if (log->sk && log->since_checkpoint + 1 >= log->opt.checkpoint_every_records) {
		total += checkpoint_format(log, log->buf + n, log->seq + 2, h, ts, h2);
		cp = 1;
	}
	rc = write_locked(log, log->buf, total);
	if (rc < 0)
		return rc;
	log->seq += 1 + (unsigned)cp;
	memcpy(log->prev, cp ? h2 : h, HASHLEN);
	log->since_checkpoint = cp ? 0 : log->since_checkpoint + 1;
	return 1 + cp;
}

int audit_append(struct audit_log *log, const cJSON *json_fields, char audit_id[33])
{
	char *body = NULL, *clean = NULL;
	const char *inner;
	size_t innerlen, blen;
	unsigned char idb[16];
	char id[33];
	int rc;

	if (!log || !cJSON_IsObject(json_fields))
		return -EINVAL;
	if (atomic_load(&log->sync_err))
		return -EIO;
	for (const cJSON *c = json_fields->child; c; c = c->next)
		if (!c->string || reserved_name(c->string))
			return -EINVAL;
	if (has_raw(json_fields->child))
		return -EINVAL;
	/* Printing, cleaning and the random id happen outside the lock. */
	body = cJSON_PrintUnformatted(json_fields);
	if (!body)
		return -ENOMEM;
	blen = strlen(body);
	rc = utf8_clean(body, blen, &clean, &blen);
	if (rc < 0)
		goto done;
	inner = (clean ? clean : body) + 1; /* inside the braces */
	innerlen = blen - 2;
	if (innerlen > AUDIT_LINE_MAX - 256) {
		rc = -E2BIG;
		goto done;
	}
	randombytes_buf(idb, sizeof(idb));
	sodium_bin2hex(id, sizeof(id), idb, sizeof(idb));

	pthread_mutex_lock(&log->mu);
	rc = append_locked(log, id, inner, innerlen);
	pthread_mutex_unlock(&log->mu);
	if (rc > 0) {
		sync_note(log, (unsigned)rc);
		if (audit_id)
			memcpy(audit_id, id, sizeof(id));
		rc = 0;
	}
done:
	free(clean);
	cJSON_free(body);
	return rc;
}

static uint64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int audit_refusal_admit(struct audit_log *log, const char *requester)
{
	struct refusal_window *w = NULL;
	uint64_t now = monotonic_ms();
	unsigned long before = 0;
	unsigned wait, limit;
	int summary = 0, ok, rc;
	cJSON *o;

	if (!log)
		return 0;
	/* One name for "no member id", so the lookup below finds its slot
	 * (the slot's who is never empty: "" marks a free slot). */
	if (!requester || !requester[0])
		requester = "-";
	pthread_mutex_lock(&log->refusal_mu);
	for (size_t i = 0; i < REFUSAL_SLOTS && !w; i++)
		if (log->refusals[i].who[0] && strncmp(log->refusals[i].who, requester, 64) == 0)
			w = &log->refusals[i];
	if (!w) {
		w = &log->refusals[0];
		for (size_t i = 0; i < REFUSAL_SLOTS; i++) {
			if (!log->refusals[i].who[0]) {
				w = &log->refusals[i];
				break;
			}
			if (log->refusals[i].start_ms < w->start_ms)
				w = &log->refusals[i];
		}
		memset(w, 0, sizeof(*w));
		snprintf(w->who, sizeof(w->who), "%s", requester);
		w->start_ms = now;
	}
	if (now - w->start_ms >= AUDIT_REFUSAL_WINDOW_MS) {
		w->suppressed_before = w->suppressed;
		w->start_ms = now;
		w->count = 0;
		w->suppressed = 0;
	}
	limit = log->refusal_limit;
	if (w->count < limit) {
		w->count++;
		pthread_mutex_unlock(&log->refusal_mu);
		return 0;
	}
	summary = w->suppressed++ == 0;
	before = w->suppressed_before;
	wait = (unsigned)((AUDIT_REFUSAL_WINDOW_MS - (now - w->start_ms) + 999) / 1000);
	pthread_mutex_unlock(&log->refusal_mu);
	if (!summary)
		return wait ? (int)wait : 1;

	/* One line per window says the requester is being refused without
	 * one line each. */
	o = cJSON_CreateObject();
	ok = o != NULL;
	json_put_str(&ok, o, "operation", "refusals");
	json_put_str(&ok, o, "requester", requester);
	json_put_num(&ok, o, "limit", limit);
	json_put_num(&ok, o, "window_s", AUDIT_REFUSAL_WINDOW_MS / 1000);
	if (before)
		json_put_num(&ok, o, "suppressed_before", (double)before);
	json_put_str(&ok, o, "decision", "deny");
	json_put_str(&ok, o, "outcome", "too_many_refusals");
	json_put_num(&ok, o, "status", 429);
	rc = ok ? audit_append(log, o, NULL) : -ENOMEM;
	cJSON_Delete(o);
	if (rc < 0) {
		/* not written: the next refusal of this window tries again */
		pthread_mutex_lock(&log->refusal_mu);
		if (strncmp(w->who, requester, 64) == 0 && w->suppressed > 0)
			w->suppressed--;
		pthread_mutex_unlock(&log->refusal_mu);
		return rc;
	}
	return wait ? (int)wait : 1;
}

void audit_set_refusal_limit(struct audit_log *log, unsigned per_minute)
{
	pthread_mutex_lock(&log->refusal_mu);
	log->refusal_limit = per_minute ? per_minute : AUDIT_REFUSALS_PER_MINUTE;
	pthread_mutex_unlock(&log->refusal_mu);
}

void audit_fail_next_writes(struct audit_log *log, unsigned n)
{
	pthread_mutex_lock(&log->mu);
	log->fail_writes = n;
	log->fail_skip = 0;
	pthread_mutex_unlock(&log->mu);
}

void audit_fail_writes_after(struct audit_log *log, unsigned skip, unsigned n)
{
	pthread_mutex_lock(&log->mu);
	log->fail_writes = n;
	log->fail_skip = skip;
	pthread_mutex_unlock(&log->mu);
}

int audit_close(struct audit_log *log)
{
	int rc = 0;

	if (!log)
		return 0;
	if (log->fd >= 0 && log->sk && log->syncer_started) {
		pthread_mutex_lock(&log->mu);
		if (log->since_checkpoint > 0 && checkpoint_locked(log) < 0)
			rc = -EIO;
		pthread_mutex_unlock(&log->mu);
	}
	if (log->syncer_started) {
		pthread_mutex_lock(&log->sync_mu);
		log->stop = 1;
		pthread_cond_signal(&log->sync_cv);
		pthread_mutex_unlock(&log->sync_mu);
		pthread_join(log->syncer, NULL);
		if (atomic_load(&log->sync_err))
			rc = -EIO;
	}
	if (log->fd >= 0) {
		if (log->syncer_started && fsync(log->fd) < 0)
			rc = -EIO;
		close(log->fd);
	}
	sodium_free(log->sk); /* wipes */
	free(log->buf);
	pthread_cond_destroy(&log->sync_cv);
	pthread_mutex_destroy(&log->sync_mu);
	pthread_mutex_destroy(&log->refusal_mu);
	pthread_mutex_destroy(&log->mu);
	free(log);
	return rc;
}

/* ---- Verify ---------------------------------------------------------- */

struct vline {
	unsigned long no; /* 1-based line number */
	long long off;
	size_t len; /* without '\n' */
	int nl; /* ends in '\n' */
	struct lineinfo li;
	unsigned char hash[HASHLEN]; /* with '\n' */
	unsigned char frag[HASHLEN]; /* without: how a recovery names it */
	int sig_ok;
};

struct vreader {
	FILE *f;
	char *line;
	size_t cap;
	long long off;
	unsigned long no;
	const unsigned char *pub;
};

/* Reads the next line into |v|: 1, 0 at the end, -errno. */
static int vread(struct vreader *rd, struct vline *v)
{
	crypto_generichash_state st, st2;
	ssize_t n;

	errno = 0;
	n = getline(&rd->line, &rd->cap, rd->f);
	if (n < 0)
		return errno ? -errno : 0;
	memset(v, 0, sizeof(*v));
	v->no = ++rd->no;
	v->off = rd->off;
	rd->off += n;
	v->nl = rd->line[n - 1] == '\n';
	v->len = (size_t)n - (size_t)v->nl;
	crypto_generichash_init(&st, NULL, 0, HASHLEN);
	crypto_generichash_update(&st, (const unsigned char *)rd->line, v->len);
	st2 = st;
	crypto_generichash_final(&st2, v->frag, HASHLEN);
	crypto_generichash_update(&st, (const unsigned char *)"\n", 1);
	crypto_generichash_final(&st, v->hash, HASHLEN);
	line_parse(rd->line, v->len, &v->li);
	if (v->li.kind == L_CHECKPOINT && rd->pub)
		v->sig_ok = checkpoint_sig_ok(rd->line, v->len, rd->pub);
	return 1;
}

static int chained(const struct vline *v)
{
	return v && v->nl && v->li.kind != L_BAD;
}

/* Names the first line at fault when |cur| does not follow the last chained
 * line (|p|, NULL at the start), looking at up to two lines after it. */
static void diagnose(struct audit_report *r, const struct vline *p, const struct vline *cur,
		     const struct vline *n1, const struct vline *n2, int chain_ok,
		     unsigned long long expect)
{
	unsigned long pno = p ? p->no : 0;
	unsigned long long s = cur->li.seq;

	if (!chained(n1))
		n1 = NULL;
	if (!chained(n2))
		n2 = NULL;
	r->first_bad_line = cur->no;
	if (chain_ok) {
		snprintf(r->problem, sizeof(r->problem),
			 "line %lu: altered: its seq is %llu where %llu was expected, "
			 "though its chain hash matches the line before it", cur->no, s, expect);
	} else if (s == expect) {
		if (n1 && n1->li.seq == s) {
			snprintf(r->problem, sizeof(r->problem),
				 "line %lu: inserted: line %lu has the same seq %llu", cur->no, n1->no, s);
		} else if (!p) {
			snprintf(r->problem, sizeof(r->problem),
				 "line %lu: altered: the first record must have a \"prev\" of zeros",
				 cur->no);
		} else if (n1 && memcmp(n1->li.prev, cur->hash, HASHLEN) == 0) {
			r->first_bad_line = pno;
			snprintf(r->problem, sizeof(r->problem),
				 "line %lu: altered: its hash no longer matches the \"prev\" recorded in "
				 "line %lu", pno, cur->no);
		} else if (n1) {
			snprintf(r->problem, sizeof(r->problem),
				 "line %lu: altered: its \"prev\" does not match line %lu, and line %lu's "
				 "\"prev\" does not match it", cur->no, pno, n1->no);
		} else {
			r->first_bad_line = pno;
			snprintf(r->problem, sizeof(r->problem),
				 "line %lu: chain broken: line %lu or line %lu was altered (line %lu is "
				 "the last, so nothing after it tells which)",
				 pno, pno, cur->no, cur->no);
		}
	} else if (s > expect) {
		if ((n1 && n1->li.seq == expect) || (n2 && n2->li.seq == expect)) {
			snprintf(r->problem, sizeof(r->problem),
				 "line %lu: out of order: seq %llu comes before seq %llu "
				 "(lines were moved or swapped)", cur->no, s, expect);
		} else if (s - expect == 1) {
			snprintf(r->problem, sizeof(r->problem),
				 "line %lu: chain broken: the record with seq %llu before it was removed "
				 "(or moved further down)", cur->no, expect);
		} else {
			snprintf(r->problem, sizeof(r->problem),
				 "line %lu: chain broken: %llu records (seq %llu to %llu) before it were "
				 "removed", cur->no, s - expect, expect, s - 1);
		}
	} else if (p && s == p->li.seq && memcmp(cur->li.prev, p->li.prev, HASHLEN) == 0 && n1 &&
		   memcmp(n1->li.prev, cur->hash, HASHLEN) == 0) {
		/* Two lines claim the same place; the chain goes on from the
		 * second, so the first is the one that was slipped in. */
		r->first_bad_line = pno;
		snprintf(r->problem, sizeof(r->problem),
			 "line %lu: inserted: lines %lu and %lu both claim seq %llu after the same "
			 "line, and the chain continues from line %lu", pno, pno, cur->no, s, cur->no);
	} else {
		int confirmed = n1 && p && n1->li.seq == expect &&
				memcmp(n1->li.prev, p->hash, HASHLEN) == 0;
		snprintf(r->problem, sizeof(r->problem),
			 "line %lu: inserted: its seq %llu repeats or goes back (after seq %llu)%s",
			 cur->no, s, expect - 1,
			 confirmed ? "; the chain continues past it" : "");
	}
}

/* Where verification stands: the last line in the chain, and what the next
 * one must say. */
struct vstate {
	const unsigned char *pub;
	struct vline last;
	int have_last;
	int torn_pending; /* the line before was a recovered torn line */
	unsigned long long expect; /* seq */
	unsigned long long last_cp; /* seq of the last checkpoint */
};

/* Checks q[0] with up to two lines of look-ahead (|have| lines in q);
 * 0, or -EBADMSG with the report filled. */
static int verify_line(struct vstate *vs, const struct vline *q, int have,
		       struct audit_report *r)
{
	static const unsigned char zero[HASHLEN];
	const struct vline *cur = &q[0];
	int chain_ok;

	r->lines++;
	if (!cur->nl) {
		r->torn_tail = 1;
		r->first_bad_line = cur->no;
		snprintf(r->problem, sizeof(r->problem),
			 "line %lu: torn: the last line (%zu bytes at offset %lld) has no newline: "
			 "a write was interrupted by a crash or a full disk; the gateway adds a "
			 "recovery record when it next opens the log", cur->no, cur->len, cur->off);
		return -EBADMSG;
	}
	if (have > 1 && q[1].nl && q[1].li.kind == L_RECOVERY &&
	    q[1].li.torn_off == (unsigned long long)cur->off && q[1].li.torn_len == cur->len &&
	    memcmp(q[1].li.torn_hash, cur->frag, HASHLEN) == 0) {
		r->recoveries++;
		if (!r->warning[0])
			snprintf(r->warning, sizeof(r->warning),
				 "line %lu: torn line (a write interrupted by a crash or a full "
				 "disk), recovered by line %lu; a record that was being written "
				 "then may be incomplete", cur->no, q[1].no);
		vs->torn_pending = 1;
		return 0; /* outside the chain: the recovery record skips it */
	}
	r->first_bad_line = cur->no;
	if (cur->li.kind == L_BAD) {
		snprintf(r->problem, sizeof(r->problem),
			 "line %lu: not an audit record (%s): the line was altered or inserted",
			 cur->no, cur->li.why);
		return -EBADMSG;
	}
	if (cur->li.kind == L_RECOVERY && !vs->torn_pending) {
		snprintf(r->problem, sizeof(r->problem),
			 "line %lu: a recovery record that does not follow the torn line it names "
			 "(offset %llu, %llu bytes): lines were altered, removed or inserted",
			 cur->no, cur->li.torn_off, cur->li.torn_len);
		return -EBADMSG;
	}
	vs->torn_pending = 0;
	chain_ok = memcmp(cur->li.prev, vs->have_last ? vs->last.hash : zero, HASHLEN) == 0;
	if (!chain_ok || cur->li.seq != vs->expect) {
		diagnose(r, vs->have_last ? &vs->last : NULL, cur, have > 1 ? &q[1] : NULL,
			 have > 2 ? &q[2] : NULL, chain_ok, vs->expect);
		return -EBADMSG;
	}
	if (cur->li.kind == L_CHECKPOINT) {
		r->checkpoints++;
		vs->last_cp = cur->li.seq;
		if (vs->pub && sodium_memcmp(cur->li.key, vs->pub, 32) != 0) {
			snprintf(r->problem, sizeof(r->problem),
				 "line %lu: checkpoint signed by another key", cur->no);
			return -EBADMSG;
		}
		if (vs->pub && !cur->sig_ok) {
			snprintf(r->problem, sizeof(r->problem),
				 "line %lu: checkpoint signature does not verify: the checkpoint "
				 "was altered or forged", cur->no);
			return -EBADMSG;
		}
	} else if (cur->li.kind == L_RECORD) {
		r->records++;
	}
	r->first_bad_line = 0;
	vs->last = *cur;
	vs->have_last = 1;
	vs->expect = cur->li.seq + 1;
	return 0;
}

int audit_verify(const char *path, const unsigned char *pub, struct audit_report *r)
{
	struct vreader rd = { 0 };
	struct vstate vs;
	struct vline q[3]; /* q[0] is the current line, q[1] and q[2] the look-ahead */
	int have = 0, rc = 0;

	memset(r, 0, sizeof(*r));
	memset(&vs, 0, sizeof(vs));
	vs.pub = pub;
	vs.expect = 1;
	if (sodium_init() < 0) {
		snprintf(r->problem, sizeof(r->problem), "libsodium could not be initialised");
		return -EIO;
	}
	rd.pub = pub;
	rd.f = fopen(path, "re");
	if (!rd.f) {
		rc = -errno;
		snprintf(r->problem, sizeof(r->problem), "%s", strerror(-rc));
		return rc;
	}
	for (;;) {
		while (have < 3) {
			int k = vread(&rd, &q[have]);
			if (k < 0) {
				rc = k;
				snprintf(r->problem, sizeof(r->problem), "%s", strerror(-k));
				goto done;
			}
			if (k == 0)
				break;
			have++;
		}
		if (have == 0)
			break;
		rc = verify_line(&vs, q, have, r);
		if (rc < 0)
			goto done;
		memmove(&q[0], &q[1], sizeof(q[0]) * (size_t)(have - 1));
		have--;
	}
	r->unsigned_tail = (unsigned long)(vs.expect - 1 - vs.last_cp);
	if (pub && vs.expect > 1 && r->checkpoints == 0) {
		snprintf(r->problem, sizeof(r->problem),
			 "no checkpoint: nothing in this file is signed (was the gateway run "
			 "without a signing key?)");
		rc = -EBADMSG;
	}
done:
	free(rd.line);
	fclose(rd.f);
	return rc;
}
