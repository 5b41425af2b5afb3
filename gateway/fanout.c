/*
 * The hub's fan-out: one POST /v1/federation/subquery per node, all at once,
 * over mutual-TLS HTTP/2 with libcurl's multi interface, on connections that
 * stay open between questions.
 *
 * Reuse and threads: libcurl keeps its connection cache in the multi handle,
 * and a multi handle may be driven by one thread at a time. So a gw_fanout
 * holds a small stack of idle multi handles ("lanes"); a call takes one (or
 * makes one when all are busy), runs its transfers on it and puts it back.
 * Sequential questions therefore reuse the same lane and its open
 * connections; N questions at once use N lanes, each with its own
 * connections. That is simpler to get right than a CURLSH connection cache
 * shared between multi handles (whose HTTP/2 multiplexing across multi
 * handles libcurl does not do) and costs at most one connection per node per
 * concurrent question. Lanes are never freed before gw_fanout_free, so there
 * are at most as many as questions ever ran at once (the hub's workers).
 */
#include "../common/errbuf.h"
#include "fanout.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sodium.h>

#define SUBQUERY_PATH "/v1/federation/subquery"
#define MAX_FILE_BYTES (1u << 20)      /* a PEM certificate, key or CA bundle */
#define MAX_ENDPOINT 255               /* as gateway/members.c allows */
/* How many open connections one lane keeps: more than the nodes of any
 * federation we know (the demo has nine). */
#define LANE_MAX_CONNECTS 64L
/* Do not reuse a connection idle for longer than this. Gateways close idle
 * connections after 120 s (timeouts.idle); reusing one at that moment would
 * race its close. */
#define CONN_MAX_AGE_S 100L

struct lane {
	CURLM *multi;
	struct lane *next;
};

struct gw_fanout {
	/* PEM text, read once; handed to libcurl as blobs (CURL_BLOB_NOCOPY). The
	 * key lives in sodium_malloc memory and is wiped on free. */
	char *cert, *ca;
	unsigned char *key;
	size_t cert_len, key_len, ca_len;
	struct curl_slist *headers; /* read-only after new: shared by all calls */
	pthread_mutex_t lock;       /* guards idle and connects */
	struct lane *idle;
	unsigned long connects;
};

/* One subquery in flight. */
struct xfer {
	CURL *easy;
	char *buf;
	size_t len, cap;
	int too_big, done;
	char url[MAX_ENDPOINT + sizeof(SUBQUERY_PATH)];
};

/* Reads |path| whole (at most MAX_FILE_BYTES) into malloc'd or, when
 * |secret|, sodium_malloc'd memory. A secret file must not be accessible by
 * group or others (as gateway/tls.c demands of the server key). */
static int read_pem(const char *what, const char *path, int secret, void **out, size_t *outlen,
		    char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	int fd, rc = GW_FANOUT_ERR_FILE;

	*out = NULL;
	*outlen = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		err_set(err, errlen, "%s '%s': %s", what, path, strerror(errno));
		goto done;
	}
	if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (uintmax_t)st.st_size > MAX_FILE_BYTES) {
		err_set(err, errlen, "%s '%s': not a regular file of 1 byte to 1 MiB", what, path);
		goto done;
	}
	if (secret && (st.st_mode & (S_IRWXG | S_IRWXO))) {
		err_set(err, errlen, "%s '%s' is accessible by group or others (mode %03o); "
			"run: chmod 600 '%s'", what, path, (unsigned)(st.st_mode & 0777), path);
		goto done;
	}
	buf = secret ? sodium_malloc((size_t)st.st_size + 1) : malloc((size_t)st.st_size + 1);
	if (!buf) {
		err_set(err, errlen, "%s '%s': out of memory", what, path);
		rc = GW_FANOUT_ERR_NOMEM;
		goto done;
	}
	while (n < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			err_set(err, errlen, "%s '%s': %s", what, path,
				r < 0 ? strerror(errno) : "shorter than its size");
			goto done;
		}
		n += (size_t)r;
	}
	buf[n] = '\0';
	*out = buf;
	*outlen = n;
	buf = NULL;
	rc = 0;
done:
	if (buf) {
		if (secret)
			sodium_free(buf);
		else
			free(buf);
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Parses the three PEM texts so that a wrong file fails at start, not at the
 * first question: the certificate, a private key matching it, and at least
 * one CA certificate. */
static int check_pems(const struct gw_fanout *f, const char *cert, const char *key,
		      const char *ca, char *err, size_t errlen)
{
	BIO *b = NULL;
	X509 *x = NULL, *cax = NULL;
	EVP_PKEY *pk = NULL;
	int rc = GW_FANOUT_ERR_FILE;

	if (!(b = BIO_new_mem_buf(f->cert, (int)f->cert_len)) ||
	    !(x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
		err_set(err, errlen, "client certificate '%s': not a PEM certificate", cert);
		goto done;
	}
	BIO_free(b);
	if (!(b = BIO_new_mem_buf(f->key, (int)f->key_len)) ||
	    !(pk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL))) {
		err_set(err, errlen, "client key '%s': not a PEM private key (or encrypted)", key);
		goto done;
	}
	if (X509_check_private_key(x, pk) != 1) {
		err_set(err, errlen, "client key '%s' does not belong to certificate '%s'", key, cert);
		goto done;
	}
	BIO_free(b);
	if (!(b = BIO_new_mem_buf(f->ca, (int)f->ca_len)) ||
	    !(cax = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
		err_set(err, errlen, "CA file '%s': no PEM certificate in it", ca);
		goto done;
	}
	rc = 0;
done:
	ERR_clear_error(); /* our message says it; keep OpenSSL's queue clean for others */
	X509_free(cax);
	EVP_PKEY_free(pk);
	X509_free(x);
	BIO_free(b);
	return rc;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int gw_fanout_new(const char *cert, const char *key, const char *ca, struct gw_fanout **out,
		  char *err, size_t errlen)
{
	struct gw_fanout *f = NULL;
	struct curl_slist *h;
	void *p;
	int rc;

	if (out)
		*out = NULL;
	if (!cert || !key || !ca || !out || !*cert || !*key || !*ca) {
		err_set(err, errlen, "fan-out: certificate, key and CA files are all required");
		return GW_FANOUT_ERR_ARG;
	}
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_rc != CURLE_OK || sodium_init() < 0) {
		err_set(err, errlen, "fan-out: libcurl or libsodium failed to initialise");
		return GW_FANOUT_ERR_CURL;
	}
	if (!(f = calloc(1, sizeof(*f)))) {
		err_set(err, errlen, "fan-out: out of memory");
		return GW_FANOUT_ERR_NOMEM;
	}
	if (pthread_mutex_init(&f->lock, NULL) != 0) {
		free(f);
		err_set(err, errlen, "fan-out: cannot create a mutex");
		return GW_FANOUT_ERR_NOMEM;
	}
	if ((rc = read_pem("client certificate", cert, 0, &p, &f->cert_len, err, errlen)) < 0)
		goto fail;
	f->cert = p;
	if ((rc = read_pem("client key", key, 1, &p, &f->key_len, err, errlen)) < 0)
		goto fail;
	f->key = p;
	if ((rc = read_pem("CA file", ca, 0, &p, &f->ca_len, err, errlen)) < 0)
		goto fail;
	f->ca = p;
	if ((rc = check_pems(f, cert, key, ca, err, errlen)) < 0)
		goto fail;
	sodium_mprotect_readonly(f->key);
	/* "Expect:" off: no 100-continue round trip before a subquery's body. */
	rc = GW_FANOUT_ERR_NOMEM;
	if (!(h = curl_slist_append(NULL, "Content-Type: application/json")))
		goto nomem;
	f->headers = h;
	if (!(h = curl_slist_append(f->headers, "Accept: application/json")))
		goto nomem;
	if (!(h = curl_slist_append(f->headers, "Expect:")))
		goto nomem;
	*out = f;
	return 0;
nomem:
	err_set(err, errlen, "fan-out: out of memory");
fail:
	gw_fanout_free(f);
	return rc;
}

void gw_fanout_free(struct gw_fanout *f)
{
	struct lane *l, *next;

	if (!f)
		return;
	for (l = f->idle; l; l = next) {
		next = l->next;
		curl_multi_cleanup(l->multi);
		free(l);
	}
	curl_slist_free_all(f->headers);
	free(f->cert);
	free(f->ca);
	sodium_free(f->key); /* wipes */
	pthread_mutex_destroy(&f->lock);
	free(f);
}

unsigned long gw_fanout_connections(struct gw_fanout *f)
{
	unsigned long n;

	pthread_mutex_lock(&f->lock);
	n = f->connects;
	pthread_mutex_unlock(&f->lock);
	return n;
}

static struct lane *lane_get(struct gw_fanout *f)
{
	struct lane *l;

	pthread_mutex_lock(&f->lock);
	l = f->idle;
	if (l)
		f->idle = l->next;
	pthread_mutex_unlock(&f->lock);
	if (l)
		return l;
	if (!(l = calloc(1, sizeof(*l))))
		return NULL;
	if (!(l->multi = curl_multi_init())) {
		free(l);
		return NULL;
	}
	curl_multi_setopt(l->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, LANE_MAX_CONNECTS);
	return l;
}

/* Last in, first out: a lone caller always gets the lane with its
 * connections. */
static void lane_put(struct gw_fanout *f, struct lane *l, unsigned long connects)
{
	pthread_mutex_lock(&f->lock);
	l->next = f->idle;
	f->idle = l;
	f->connects += connects;
	pthread_mutex_unlock(&f->lock);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;

	if (n > GW_FANOUT_MAX_BODY - x->len) {
		x->too_big = 1;
		return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
	}
	if (x->len + n + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 16384;
		char *p;

		while (cap < x->len + n + 1)
			cap = cap > GW_FANOUT_MAX_BODY / 2 ? GW_FANOUT_MAX_BODY + 1 : cap * 2;
		if (!(p = realloc(x->buf, cap)))
			return 0;
		x->buf = p;
		x->cap = cap;
	}
	memcpy(x->buf + x->len, data, n);
	x->len += n;
	x->buf[x->len] = '\0';
	return n;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Every option that matters for privacy or security is set here, with the
 * reason. */
static int setup(const struct gw_fanout *f, struct xfer *x, const struct gw_hub_subquery *q,
		 size_t i, unsigned timeout_ms)
{
	struct curl_blob cert = { f->cert, f->cert_len, CURL_BLOB_NOCOPY };
	struct curl_blob key = { f->key, f->key_len, CURL_BLOB_NOCOPY };
	struct curl_blob ca = { f->ca, f->ca_len, CURL_BLOB_NOCOPY };
	CURL *e = x->easy;
	CURLcode c = CURLE_OK;

#define OPT(o, v) do { if (c == CURLE_OK) c = curl_easy_setopt(e, o, v); } while (0)
	OPT(CURLOPT_URL, x->url);
	OPT(CURLOPT_PRIVATE, (void *)(uintptr_t)i);
	/* Nodes speak https only; no redirects (a node's answer comes from it). */
	OPT(CURLOPT_PROTOCOLS_STR, "https");
	OPT(CURLOPT_FOLLOWLOCATION, 0L);
	/* Never through a proxy from the environment: subqueries go straight to
	 * the node the members file names. */
	OPT(CURLOPT_PROXY, "");
	OPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	OPT(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	/* The node must prove it is a federation member: always verified. */
	OPT(CURLOPT_SSL_VERIFYPEER, 1L);
	OPT(CURLOPT_SSL_VERIFYHOST, 2L);
	OPT(CURLOPT_CAINFO_BLOB, &ca);
	OPT(CURLOPT_CAPATH, (char *)NULL); /* only the federation CA, not the system's */
	OPT(CURLOPT_SSLCERT_BLOB, &cert);
	OPT(CURLOPT_SSLKEY_BLOB, &key);
	OPT(CURLOPT_SSLCERTTYPE, "PEM");
	OPT(CURLOPT_SSLKEYTYPE, "PEM");
	/* Wait for an HTTP/2 connection to the same node rather than open a
	 * second one: subqueries of one question to one node share it. */
	OPT(CURLOPT_PIPEWAIT, 1L);
	OPT(CURLOPT_MAXAGE_CONN, CONN_MAX_AGE_S);
	OPT(CURLOPT_TCP_KEEPALIVE, 1L);
	OPT(CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS timeouts */
	OPT(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	OPT(CURLOPT_POST, 1L);
	OPT(CURLOPT_POSTFIELDS, q->body);
	OPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->len);
	OPT(CURLOPT_HTTPHEADER, f->headers);
	OPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)GW_FANOUT_MAX_BODY);
	OPT(CURLOPT_WRITEFUNCTION, on_body);
	OPT(CURLOPT_WRITEDATA, x);
#undef OPT
	return c == CURLE_OK ? 0 : -1;
}

/* Records the outcome of a finished transfer. */
static void finish(struct xfer *x, CURLcode rc, struct gw_hub_answer *a, const char **why)
{
	long status = 0;

	x->done = 1;
	if (rc == CURLE_OK && curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
	    status > 0) {
		a->status = (int)status;
		if (!x->buf)
			x->buf = calloc(1, 1); /* an empty body is "", not NULL */
		if (x->buf) {
			a->body = x->buf;
			a->len = x->len;
			x->buf = NULL;
			return;
		}
		a->status = 0;
		if (why)
			*why = "out of memory";
		return;
	}
	if (rc == CURLE_OPERATION_TIMEDOUT) {
		a->timed_out = 1;
	}
	if (why) {
		if (x->too_big || rc == CURLE_FILESIZE_EXCEEDED)
			*why = "answer larger than 512 MiB";
		else if (rc == CURLE_WRITE_ERROR)
			*why = "out of memory";
		else
			*why = curl_easy_strerror(rc);
	}
}

int gw_fanout_exchange(struct gw_fanout *f, const struct gw_hub_subquery *q, size_t n,
		       struct gw_hub_answer *a, const char **why, unsigned timeout_ms)
{
	struct xfer *x = NULL;
	struct lane *l = NULL;
	unsigned long connects = 0;
	uint64_t deadline;
	int running = 0, rc = GW_FANOUT_ERR_ARG;

	if (!a && n)
		return GW_FANOUT_ERR_ARG;
	for (size_t i = 0; i < n; i++) {
		a[i] = (struct gw_hub_answer){ .node = q ? q[i].node : NULL };
		if (why)
			why[i] = NULL;
	}
	if (!f || (!q && n))
		return GW_FANOUT_ERR_ARG;
	for (size_t i = 0; i < n; i++) {
		if (!q[i].endpoint || strncmp(q[i].endpoint, "https://", 8) != 0 ||
		    strlen(q[i].endpoint) > MAX_ENDPOINT || (!q[i].body && q[i].len))
			return GW_FANOUT_ERR_ARG;
	}
	if (n == 0)
		return 0;
	if (timeout_ms == 0)
		timeout_ms = GW_FANOUT_DEFAULT_TIMEOUT_MS;
	deadline = now_ms() + timeout_ms;
	rc = GW_FANOUT_ERR_NOMEM;
	if (!(x = calloc(n, sizeof(*x))) || !(l = lane_get(f)))
		goto done;
	for (size_t i = 0; i < n; i++) {
		size_t el = strlen(q[i].endpoint);

		if (q[i].endpoint[el - 1] == '/')
			el--; /* members.c refuses this; be lenient anyway */
		memcpy(x[i].url, q[i].endpoint, el);
		memcpy(x[i].url + el, SUBQUERY_PATH, sizeof(SUBQUERY_PATH));
		if (!(x[i].easy = curl_easy_init()))
			goto done;
		rc = GW_FANOUT_ERR_CURL;
		if (setup(f, &x[i], &q[i], i, timeout_ms) < 0 ||
		    curl_multi_add_handle(l->multi, x[i].easy) != CURLM_OK) {
			curl_easy_cleanup(x[i].easy);
			x[i].easy = NULL;
			goto done;
		}
		rc = GW_FANOUT_ERR_NOMEM;
	}
	rc = GW_FANOUT_ERR_CURL;
	for (;;) {
		CURLMsg *msg;
		int left_msgs;
		uint64_t now;

		if (curl_multi_perform(l->multi, &running) != CURLM_OK)
			goto done;
		while ((msg = curl_multi_info_read(l->multi, &left_msgs))) {
			void *priv = NULL;
			size_t i;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
			i = (size_t)(uintptr_t)priv;
			if (i < n && !x[i].done)
				finish(&x[i], msg->data.result, &a[i], why ? &why[i] : NULL);
		}
		now = now_ms();
		if (running == 0 || now >= deadline)
			break;
		if (curl_multi_poll(l->multi, NULL, 0, (int)(deadline - now < 1000 ? deadline - now : 1000),
				    NULL) != CURLM_OK)
			goto done;
	}
	/* Past the deadline: whatever is still running timed out. */
	for (size_t i = 0; i < n; i++) {
		if (!x[i].done) {
			x[i].done = 1;
			a[i].timed_out = 1;
			if (why)
				why[i] = curl_easy_strerror(CURLE_OPERATION_TIMEDOUT);
		}
	}
	rc = 0;
done:
	for (size_t i = 0; x && i < n; i++) {
		long c = 0;

		if (!x[i].easy)
			continue;
		if (curl_easy_getinfo(x[i].easy, CURLINFO_NUM_CONNECTS, &c) == CURLE_OK && c > 0)
			connects += (unsigned long)c;
		curl_multi_remove_handle(l->multi, x[i].easy);
		curl_easy_cleanup(x[i].easy);
		free(x[i].buf);
	}
	if (rc < 0) {
		for (size_t i = 0; i < n; i++) {
			free(a[i].body);
			a[i] = (struct gw_hub_answer){ .node = q[i].node };
		}
	}
	if (l)
		lane_put(f, l, connects);
	free(x);
	return rc;
}

int gw_fanout_run(void *fanout, const struct gw_hub_subquery *q, size_t n, struct gw_hub_answer *a,
		  unsigned timeout_ms)
{
	return gw_fanout_exchange(fanout, q, n, a, NULL, timeout_ms);
}
