/*
 * The federation's HTTP/2 client (h2client.h): nghttp2's client session fed
 * by hand (mem_recv / mem_send) over OpenSSL on non-blocking sockets, one
 * poll() loop for every connection of a call. It replaces libcurl, whose
 * dependency tree (gnutls, krb5, ldap, ssh2, ...) cost every start of the
 * binary ~4 ms and was attack surface we do not use.
 *
 * A connection goes IDLE (no socket) -> CONNECTING (TCP, one address after
 * the other) -> [PROXY (HTTP CONNECT)] -> HANDSHAKE (TLS) -> OPEN (HTTP/2),
 * or to FAILED, where its requests got their outcome. Requests live in the
 * caller's memory; a stream points at its request only while h2c_run runs,
 * and a connection that gives up with streams open is never written to
 * again (see conn_fail).
 */
#include "../common/errbuf.h"
#include "../common/keyfile.h"
#include "h2client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#define MAX_FILE_BYTES (1u << 20) /* a PEM certificate, key or CA bundle */
#define MAX_URL 255               /* as gateway/members.c allows an endpoint */
#define MAX_HOST 253              /* a DNS name */
/* What we let a server send ahead of our reading, per stream and on the
 * connection: with HTTP/2's default of 64 KiB a multi-MB answer would wait
 * for a WINDOW_UPDATE every 64 KiB (a round trip each). libcurl advertised
 * the same 32 MiB. */
#define WINDOW ((int32_t)32 << 20)
/* Frames gathered into one TLS write: small requests go out in one record. */
#define OUT_GATHER 65536
/* A declared content-length is allocated up front only this far; past it
 * the buffer doubles as bytes arrive, so a lying server costs nothing. */
#define PREALLOC_MAX ((size_t)16 << 20)
/* TLS records read per wakeup of a connection (~1 MiB): then back to the
 * poll loop, which checks the deadline and serves the other connections.
 * Frames that need no answer and no flow-control window (unknown types,
 * WINDOW_UPDATE, empty DATA) would otherwise keep a server that never stops
 * sending in conn_read for as long as it likes. */
#define READ_BURST 64
/* The head of a proxy's answer to CONNECT; a real one is a line or two. */
#define PROXY_HEAD_MAX 2048

enum conn_state { CONN_IDLE, CONN_CONNECTING, CONN_PROXY, CONN_HANDSHAKE, CONN_OPEN, CONN_FAILED };

struct h2c_tls {
	SSL_CTX *ctx;
	BIO_METHOD *bio;
	nghttp2_session_callbacks *cbs;
};

struct h2c_conn {
	struct h2c_tls *tls;
	char host[MAX_HOST + 1]; /* an IPv6 address without its brackets */
	char port[6];
	char authority[MAX_HOST + 9];
	int host_is_ip;
	char proxy_host[MAX_HOST + 1]; /* "" when connecting directly */
	char proxy_port[6];
	size_t proxy_sent; /* bytes of the CONNECT request written */
	char proxy_head[PROXY_HEAD_MAX]; /* the proxy's answer so far */
	size_t proxy_head_len;
	enum conn_state state;
	int fd;
	struct addrinfo *addrs, *next_addr;
	const struct addrinfo *trying; /* the address of the connect() in progress */
	SSL *ssl;
	nghttp2_session *h2;
	short events; /* what poll() waits for */
	unsigned char *out;
	size_t out_len, out_off, out_cap;
	struct h2c_request *reqs; /* queued until h2c_run gives each its outcome */
	int reused;    /* open before this run: the server may have closed it meanwhile */
	int retried;   /* reconnected once in this run already */
	int goaway;    /* the server sent GOAWAY */
	int broken;    /* gave up on a stream or on the connection: not reused, and not
			* written to after the run (a stream may point at a freed request) */
	int got_frame; /* a frame came since the handshake (for telling TLS refusals apart) */
	int eof;       /* the socket read 0 */
	int sock_errno;
	unsigned long opened;
	char detail[320];
};

uint64_t h2c_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

const char *h2c_fail_phrase(enum h2c_fail f)
{
	/* Where libcurl had a phrase for the same thing, it is kept: users and
	 * tests know "Couldn't connect to server". */
	switch (f) {
	case H2C_FAIL_NONE:
		return "no error";
	case H2C_FAIL_RESOLVE:
		return "Couldn't resolve host name";
	case H2C_FAIL_CONNECT:
		return "Couldn't connect to server";
	case H2C_FAIL_VERIFY:
		return "Server certificate did not verify";
	case H2C_FAIL_TLS:
		return "TLS handshake failed";
	case H2C_FAIL_NO_H2:
		return "Server did not select HTTP/2 (ALPN h2)";
	case H2C_FAIL_TIMEOUT:
		return "Timeout was reached";
	case H2C_FAIL_RESET:
		return "Stream reset by the server";
	case H2C_FAIL_CLOSED:
		return "Connection closed before the answer was complete";
	case H2C_FAIL_PROTOCOL:
		return "HTTP/2 protocol error";
	case H2C_FAIL_TOO_BIG:
		return "Answer too large";
	case H2C_FAIL_NOMEM:
		return "Out of memory";
	}
	return "unknown error";
}

/* ---- certificate, key and CA ----------------------------------------- */

/* Reads a PEM file whole (common/keyfile.c: at most MAX_FILE_BYTES; a
 * secret in sodium_malloc memory, refused when group or others may access
 * it or another user owns it). */
static int read_pem(const char *path, int flags, char **out, size_t *outlen, char *err,
		    size_t errlen)
{
	int rc = keyfile_read(path, flags, MAX_FILE_BYTES, out, outlen, err, errlen);

	return rc == -ENOMEM ? H2C_ERR_NOMEM : rc < 0 ? H2C_ERR_FILE : 0;
}

/* An encrypted key fails instead of asking for a passphrase on the
 * terminal (OpenSSL's default): the hub has no one to ask. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

/* The client certificate (and the chain after it) and its key. */
static int load_identity(SSL_CTX *ctx, const char *cert_pem, size_t cert_len, const char *key_pem,
			 size_t key_len, const char *cert, const char *key, char *err, size_t errlen)
{
	BIO *b = NULL;
	X509 *x = NULL, *y;
	EVP_PKEY *pk = NULL;
	int rc = H2C_ERR_FILE;

	if (!(b = BIO_new_mem_buf(cert_pem, (int)cert_len)) ||
	    !(x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL)) || SSL_CTX_use_certificate(ctx, x) != 1) {
		err_set(err, errlen, "client certificate '%s': not a PEM certificate", cert);
		goto done;
	}
	while ((y = PEM_read_bio_X509(b, NULL, no_passphrase, NULL))) {
		if (SSL_CTX_add0_chain_cert(ctx, y) != 1) {
			X509_free(y);
			err_set(err, errlen, "client certificate '%s': cannot use its chain", cert);
			goto done;
		}
	}
	BIO_free(b);
	if (!(b = BIO_new_mem_buf(key_pem, (int)key_len)) ||
	    !(pk = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL))) {
		err_set(err, errlen, "client key '%s': not a PEM private key (or encrypted)", key);
		goto done;
	}
	if (X509_check_private_key(x, pk) != 1 || SSL_CTX_use_PrivateKey(ctx, pk) != 1) {
		err_set(err, errlen, "client key '%s' does not belong to certificate '%s'", key, cert);
		goto done;
	}
	rc = 0;
done:
	EVP_PKEY_free(pk);
	X509_free(x);
	BIO_free(b);
	return rc;
}

/* Every certificate in the CA file is a trust anchor, and nothing else (a
 * client SSL_CTX loads no system store unless asked). */
static int load_ca(SSL_CTX *ctx, const char *pem, size_t len, const char *ca, char *err,
		   size_t errlen)
{
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	X509 *x;
	int n = 0;

	while (b && (x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL))) {
		if (X509_STORE_add_cert(store, x) == 1)
			n++;
		X509_free(x);
	}
	BIO_free(b);
	if (n == 0) {
		err_set(err, errlen, "CA file '%s': no PEM certificate in it", ca);
		return H2C_ERR_FILE;
	}
	/* An intermediate CA in the file is an anchor too (libcurl's default
	 * since 7.68, which this client replaces): a federation may hand out
	 * its issuing CA alone. */
	X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
	return 0;
}

/* The client's TLS policy in one place; there is deliberately no switch to
 * skip verification or to allow TLS below 1.2. */
static int make_ctx(struct h2c_tls *t, const char *cert_pem, size_t cert_len, const char *key_pem,
		    size_t key_len, const char *ca_pem, size_t ca_len, const char *cert,
		    const char *key, const char *ca, char *err, size_t errlen)
{
	/* Forward secrecy and AEAD only, as the gateway offers; TLS 1.3
	 * suites are OpenSSL's defaults. */
	static const char tls12_ciphers[] =
		"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
		"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
		"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
	int rc;

	if (!(t->ctx = SSL_CTX_new(TLS_client_method())) ||
	    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(t->ctx, tls12_ciphers) != 1) {
		err_set(err, errlen, "cannot create a TLS context");
		return H2C_ERR_INIT;
	}
	SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if ((rc = load_identity(t->ctx, cert_pem, cert_len, key_pem, key_len, cert, key, err,
				errlen)) < 0 ||
	    (rc = load_ca(t->ctx, ca_pem, ca_len, ca, err, errlen)) < 0)
		return rc;
	/* The server must prove it is the one we mean: chain to the CA, and
	 * (per connection, conn_tls_start) name the host we dialled. */
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	/* h2 or nothing (checked after the handshake: conn_handshake). */
	if (SSL_CTX_set_alpn_protos(t->ctx, (const unsigned char *)"\x02h2", 3) != 0) {
		err_set(err, errlen, "out of memory");
		return H2C_ERR_NOMEM;
	}
	return 0;
}

/* ---- the socket under OpenSSL ------------------------------------------ */

/*
 * A BIO of our own instead of OpenSSL's socket BIO, which write()s: a write
 * to a connection the server reset would raise SIGPIPE and kill a process
 * that did not ignore it. send(MSG_NOSIGNAL) cannot; and the errno is kept
 * for the message.
 */
static int bio_write(BIO *b, const char *buf, int len)
{
	struct h2c_conn *c = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	do
		n = send(c->fd, buf, (size_t)len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		return (int)n;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		BIO_set_retry_write(b);
	else
		c->sock_errno = errno;
	return -1;
}

static int bio_read(BIO *b, char *buf, int len)
{
	struct h2c_conn *c = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	do
		n = recv(c->fd, buf, (size_t)len, 0);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		return (int)n;
	if (n == 0) {
		c->eof = 1;
		return 0;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		BIO_set_retry_read(b);
	else
		c->sock_errno = errno;
	return -1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct h2c_conn *c = BIO_get_data(b);

	(void)num, (void)ptr;
	if (cmd == BIO_CTRL_FLUSH)
		return 1; /* nothing is buffered here */
	if (cmd == BIO_CTRL_EOF)
		return c && c->eof;
	return 0;
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static BIO_METHOD *make_bio_method(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "noordpoort socket");

	if (m && (BIO_meth_set_write(m, bio_write) != 1 || BIO_meth_set_read(m, bio_read) != 1 ||
		  BIO_meth_set_ctrl(m, bio_ctrl) != 1 || BIO_meth_set_create(m, bio_create) != 1)) {
		BIO_meth_free(m);
		m = NULL;
	}
	return m;
}

/* ---- HTTP/2 ------------------------------------------------------------ */

static struct h2c_request *stream_request(nghttp2_session *s, int32_t id)
{
	return nghttp2_session_get_stream_user_data(s, id);
}

/* Room for |need| bytes in |r->answer|: doubles, never past max_body + 1,
 * and from half of max_body straight to max_body + 1 (not via max_body: a
 * last copy of the whole cap for one byte). Not realloc: it would free the
 * old copy unwiped, and the hub's answers hold sealed tokens or exact
 * counts (its heap keeps freed blocks for the next question:
 * docs/architecture.md). */
static int answer_reserve(struct h2c_request *r, size_t need)
{
	size_t cap = r->cap ? r->cap : 16384;
	char *p;

	if (need <= r->cap)
		return 0;
	while (cap < need)
		cap = cap >= r->max_body / 2 ? r->max_body + 1 : cap * 2;
	if (!(p = malloc(cap)))
		return -1;
	if (r->answer) {
		memcpy(p, r->answer, r->answer_len);
		sodium_memzero(r->answer, r->answer_len);
		free(r->answer);
	}
	p[r->answer_len] = '\0'; /* NUL-terminated even before the first byte */
	r->answer = p;
	r->cap = cap;
	return 0;
}

/* A request without an answer: nothing of what came is kept, in memory
 * either. */
static void forget_answer(struct h2c_request *r)
{
	if (r->answer)
		sodium_memzero(r->answer, r->answer_len);
	free(r->answer);
	r->answer = NULL;
	r->answer_len = r->cap = 0;
	r->status = 0;
}

/* Drops what the answer had and cancels its stream. The connection is not
 * kept after the run: a server that sent too much may have more in flight. */
static int give_up_stream(nghttp2_session *s, struct h2c_conn *c, struct h2c_request *r,
			  enum h2c_fail why)
{
	c->broken = 1;
	r->fail = why;
	forget_answer(r);
	if (nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, r->stream_id, NGHTTP2_CANCEL) != 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return 0;
}

/* Bytes from a peer: nghttp2 has checked the header block (field syntax,
 * :status of three digits, content-length a number) before this runs. */
static int on_header(nghttp2_session *s, const nghttp2_frame *fr, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
	struct h2c_request *r;
	size_t n = 0;

	(void)flags;
	if (fr->hd.type != NGHTTP2_HEADERS || !(r = stream_request(s, fr->hd.stream_id)) || r->fail)
		return 0;
	if (namelen == 7 && memcmp(name, ":status", 7) == 0 && valuelen == 3) {
		int st = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');

		r->got_headers = 1;
		if (st >= 200) /* 1xx: an interim answer; the real one follows */
			r->status = st;
	} else if (namelen == 14 && memcmp(name, "content-length", 14) == 0) {
		for (size_t i = 0; i < valuelen && n <= r->max_body; i++)
			n = n * 10 + (size_t)(value[i] - '0');
		if (n > r->max_body)
			return give_up_stream(s, user, r, H2C_FAIL_TOO_BIG);
		/* Best effort: growing as bytes arrive works too. */
		answer_reserve(r, (n < PREALLOC_MAX ? n : PREALLOC_MAX) + 1);
	}
	return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		   void *user)
{
	struct h2c_request *r = stream_request(s, id);

	(void)flags;
	if (!r || r->fail)
		return 0;
	if (len > r->max_body - r->answer_len)
		return give_up_stream(s, user, r, H2C_FAIL_TOO_BIG);
	if (answer_reserve(r, r->answer_len + len + 1) < 0)
		return give_up_stream(s, user, r, H2C_FAIL_NOMEM);
	memcpy(r->answer + r->answer_len, data, len);
	r->answer_len += len;
	r->answer[r->answer_len] = '\0';
	return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *fr, void *user)
{
	struct h2c_conn *c = user;
	struct h2c_request *r = fr->hd.stream_id ? stream_request(s, fr->hd.stream_id) : NULL;

	c->got_frame = 1;
	if (fr->hd.type == NGHTTP2_GOAWAY)
		c->goaway = 1;
	if (!r)
		return 0;
	if (fr->hd.type == NGHTTP2_RST_STREAM)
		r->reset_by_peer = 1;
	if ((fr->hd.type == NGHTTP2_DATA || fr->hd.type == NGHTTP2_HEADERS) &&
	    (fr->hd.flags & NGHTTP2_FLAG_END_STREAM))
		r->ended = 1;
	return 0;
}

/* A request nghttp2 could not even start (GOAWAY came first): the server
 * never saw it, so it may go out again on a new connection. */
static int on_frame_not_send(nghttp2_session *s, const nghttp2_frame *fr, int lib_error, void *user)
{
	struct h2c_conn *c = user;

	(void)s, (void)lib_error;
	if (fr->hd.type != NGHTTP2_HEADERS)
		return 0;
	for (struct h2c_request *r = c->reqs; r; r = r->next)
		if (r->stream_id == fr->hd.stream_id && !r->done && !r->got_headers)
			r->refused = 1;
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
	struct h2c_request *r = stream_request(s, id);

	if (!r || r->done)
		return 0;
	if (!r->fail && code == NGHTTP2_REFUSED_STREAM && !r->got_headers) {
		r->refused = 1; /* unprocessed, says RFC 9113 8.7: may go out again */
		return 0;
	}
	r->done = 1;
	if (r->fail == H2C_FAIL_NONE && (!r->ended || r->status == 0)) {
		struct h2c_conn *c = user;

		r->fail = r->reset_by_peer ? H2C_FAIL_RESET : H2C_FAIL_PROTOCOL;
		snprintf(c->detail, sizeof(c->detail), "%s%s", r->reset_by_peer ? "RST_STREAM " :
			 "the stream ended without a complete answer: ", nghttp2_http2_strerror(code));
	}
	else if (r->fail == H2C_FAIL_NONE && !r->answer && !(r->answer = calloc(1, 1)))
		r->fail = H2C_FAIL_NOMEM; /* an empty body is "", not NULL */
	if (r->fail) /* also: too big, or out of memory, and we cancelled it */
		forget_answer(r);
	return 0;
}

/* nghttp2 allocates through these, so that the allocation-failure tests
 * (tests/unit/test_h2client.c) reach its allocations too. */
static void *mem_malloc(size_t n, void *u)
{
	(void)u;
	return malloc(n);
}
static void mem_free(void *p, void *u)
{
	(void)u;
	free(p);
}
static void *mem_calloc(size_t n, size_t size, void *u)
{
	(void)u;
	return calloc(n, size);
}
static void *mem_realloc(void *p, size_t n, void *u)
{
	(void)u;
	return realloc(p, n);
}
/* not const only because nghttp2's prototype is not; it copies it */
static nghttp2_mem h2_mem = { NULL, mem_malloc, mem_free, mem_calloc, mem_realloc };

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
			 nghttp2_data_source *src, void *user)
{
	struct h2c_request *r = src->ptr;
	size_t left = r->len - r->sent;

	(void)s, (void)id, (void)user;
	if (len > left)
		len = left;
	if (len)
		memcpy(buf, (const char *)r->body + r->sent, len);
	r->sent += len;
	if (r->sent == r->len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)len;
}

static void submit(struct h2c_conn *c, struct h2c_request *r)
{
	char length[24];
	nghttp2_nv nv[7];
	size_t n = 0;
	nghttp2_data_provider prd = { .source.ptr = r, .read_callback = read_body };
	int32_t id;

#define NV(k, v) \
	nv[n++] = (nghttp2_nv){ (uint8_t *)(uintptr_t)(k), (uint8_t *)(uintptr_t)(v), sizeof(k) - 1, \
				strlen(v), NGHTTP2_NV_FLAG_NO_COPY_NAME }
	snprintf(length, sizeof(length), "%zu", r->len);
	NV(":method", "POST");
	NV(":scheme", "https");
	NV(":authority", c->authority);
	NV(":path", r->path);
	NV("content-type", "application/json");
	NV("accept", "application/json");
	NV("content-length", length);
#undef NV
	r->sent = 0;
	id = nghttp2_submit_request(c->h2, NULL, nv, n, &prd, r);
	if (id < 0) {
		/* Out of memory, or the connection's 2^30 stream ids are used up. */
		r->fail = id == NGHTTP2_ERR_NOMEM ? H2C_FAIL_NOMEM : H2C_FAIL_PROTOCOL;
		r->done = 1;
		c->broken = 1;
		return;
	}
	r->stream_id = id;
}

/* Starts HTTP/2 on a connection whose TLS handshake is done. */
static int session_start(struct h2c_conn *c)
{
	const nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)WINDOW },
	};

	if (nghttp2_session_client_new3(&c->h2, c->tls->cbs, c, NULL, &h2_mem) != 0) {
		c->h2 = NULL;
		return -1;
	}
	if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
	    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, WINDOW) != 0)
		return -1;
	return 0;
}

/* ---- one connection ---------------------------------------------------- */

static int pending(const struct h2c_conn *c)
{
	for (const struct h2c_request *r = c->reqs; r; r = r->next)
		if (!r->done)
			return 1;
	return 0;
}

/* Closes the socket and forgets TLS and HTTP/2 (nghttp2_session_del calls
 * no callbacks); the addresses stay for a reconnect. */
static void teardown(struct h2c_conn *c)
{
	nghttp2_session_del(c->h2);
	c->h2 = NULL;
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	/* OpenSSL's error queue is per thread: an error left in it would make
	 * the next SSL_get_error() of this thread report a failure. */
	ERR_clear_error();
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->out_len = c->out_off = c->proxy_sent = c->proxy_head_len = 0;
	c->eof = c->sock_errno = c->goaway = c->got_frame = 0;
	c->next_addr = c->addrs;
	c->state = CONN_IDLE;
}

/* Every request still waiting fails with |f|; the connection is done for
 * this run and not reused. */
static void conn_fail(struct h2c_conn *c, enum h2c_fail f)
{
	for (struct h2c_request *r = c->reqs; r; r = r->next) {
		if (r->done)
			continue;
		r->done = 1;
		r->fail = r->refused && f != H2C_FAIL_NOMEM ? H2C_FAIL_RESET : f;
		forget_answer(r);
	}
	teardown(c);
	c->broken = 1;
	c->state = CONN_FAILED;
}

static void conn_connect(struct h2c_conn *c);

/*
 * The connection died (|f|) under requests still waiting. Those that got
 * no answer yet go out once more on a new connection when that is safe and
 * likely to help: the server refused them unprocessed, or the connection
 * was an old one that the server may have closed as we used it (an idle
 * timeout racing our request; libcurl retries then too).
 */
static void conn_died(struct h2c_conn *c, enum h2c_fail f)
{
	int again = 0;

	for (struct h2c_request *r = c->reqs; r; r = r->next)
		if (!r->done && !r->got_headers && (r->refused || c->reused))
			again = 1;
	if (!again || c->retried || f == H2C_FAIL_NOMEM) {
		conn_fail(c, f);
		return;
	}
	for (struct h2c_request *r = c->reqs; r; r = r->next) {
		if (r->done)
			continue;
		if (r->got_headers || !(r->refused || c->reused)) {
			r->done = 1;
			r->fail = f;
			forget_answer(r);
			continue;
		}
		r->stream_id = 0;
		r->refused = r->reset_by_peer = r->ended = 0;
	}
	teardown(c);
	c->retried = 1;
	c->reused = 0;
	conn_connect(c);
}

/* Sends what is buffered, then what nghttp2 has queued. */
static enum h2c_fail conn_flush(struct h2c_conn *c)
{
	c->events = POLLIN;
	for (;;) {
		while (c->out_off < c->out_len) {
			int n;

			ERR_clear_error();
			n = SSL_write(c->ssl, c->out + c->out_off, (int)(c->out_len - c->out_off));
			if (n <= 0) {
				int e = SSL_get_error(c->ssl, n);

				if (e == SSL_ERROR_WANT_WRITE) {
					c->events |= POLLOUT;
					return H2C_FAIL_NONE;
				}
				if (e == SSL_ERROR_WANT_READ)
					return H2C_FAIL_NONE;
				snprintf(c->detail, sizeof(c->detail), "%s",
					 c->sock_errno ? strerror(c->sock_errno) : "the TLS write failed");
				return H2C_FAIL_CLOSED;
			}
			c->out_off += (size_t)n;
		}
		c->out_off = c->out_len = 0;
		while (c->out_len < OUT_GATHER) {
			const uint8_t *data;
			ssize_t k = nghttp2_session_mem_send(c->h2, &data);

			if (k < 0)
				return k == NGHTTP2_ERR_NOMEM ? H2C_FAIL_NOMEM : H2C_FAIL_PROTOCOL;
			if (k == 0)
				break;
			if (c->out_len + (size_t)k > c->out_cap) {
				size_t cap = c->out_cap ? c->out_cap : 16384;
				unsigned char *p;

				while (cap < c->out_len + (size_t)k)
					cap *= 2;
				if (!(p = realloc(c->out, cap)))
					return H2C_FAIL_NOMEM;
				c->out = p;
				c->out_cap = cap;
			}
			memcpy(c->out + c->out_len, data, (size_t)k);
			c->out_len += (size_t)k;
		}
		if (c->out_len == 0)
			return H2C_FAIL_NONE;
	}
}

/* Why reading failed, in a phrase and |c->detail|. A TLS alert before any
 * HTTP/2 frame is the server refusing the handshake (with TLS 1.3 the
 * server checks our certificate after our side of the handshake is done). */
static enum h2c_fail read_failure(struct h2c_conn *c, int ssl_error)
{
	unsigned long e = ERR_peek_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	if (ssl_error == SSL_ERROR_SSL && reason && !c->got_frame && !c->eof) {
		snprintf(c->detail, sizeof(c->detail), "%s", reason);
		return H2C_FAIL_TLS;
	}
	if (c->sock_errno)
		snprintf(c->detail, sizeof(c->detail), "%s", strerror(c->sock_errno));
	else
		snprintf(c->detail, sizeof(c->detail), "the server closed the connection");
	return H2C_FAIL_CLOSED;
}

/* Reads what has arrived, into nghttp2: at most READ_BURST records, the
 * rest on the next wakeup (the socket stays readable). */
static enum h2c_fail conn_read(struct h2c_conn *c, int *wants_write)
{
	unsigned char buf[16384];

	for (int burst = 0;; burst++) {
		int n, e;

		/* Decrypted bytes OpenSSL holds would not wake poll(): take them. */
		if (burst >= READ_BURST && SSL_pending(c->ssl) == 0)
			return H2C_FAIL_NONE;

		ERR_clear_error();
		n = SSL_read(c->ssl, buf, (int)sizeof(buf));
		if (n > 0) {
			ssize_t rv = nghttp2_session_mem_recv(c->h2, buf, (size_t)n);

			if (rv < 0) {
				snprintf(c->detail, sizeof(c->detail), "%s", nghttp2_strerror((int)rv));
				return rv == NGHTTP2_ERR_NOMEM ? H2C_FAIL_NOMEM : H2C_FAIL_PROTOCOL;
			}
			continue;
		}
		e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ)
			return H2C_FAIL_NONE;
		if (e == SSL_ERROR_WANT_WRITE) {
			*wants_write = 1;
			return H2C_FAIL_NONE;
		}
		return read_failure(c, e);
	}
}

/* 1 when requests wait and the server refused every one of them
 * unprocessed: nothing more will come for them on this connection. */
static int all_waiting_refused(const struct h2c_conn *c)
{
	int any = 0;

	for (const struct h2c_request *r = c->reqs; r; r = r->next) {
		if (r->done)
			continue;
		if (!r->refused)
			return 0;
		any = 1;
	}
	return any;
}

/* An open connection is readable or writable. */
static void conn_io(struct h2c_conn *c)
{
	int wants_write = 0;
	enum h2c_fail f = conn_read(c, &wants_write);

	if (f == H2C_FAIL_NONE)
		f = conn_flush(c);
	if (wants_write)
		c->events |= POLLOUT;
	/* After a GOAWAY, nghttp2 wants nothing more once the streams the
	 * server kept are done: what is left waiting was refused. */
	if (f == H2C_FAIL_NONE && !nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)) {
		snprintf(c->detail, sizeof(c->detail), "the server ended the connection (GOAWAY)");
		f = H2C_FAIL_CLOSED;
	}
	/* RST_STREAM REFUSED_STREAM on a connection the server keeps open:
	 * what waits would wait for the deadline; it goes out again on a new
	 * connection instead (conn_died), or fails as reset. */
	if (f == H2C_FAIL_NONE && all_waiting_refused(c)) {
		snprintf(c->detail, sizeof(c->detail), "the server refused the request (REFUSED_STREAM)");
		f = H2C_FAIL_RESET;
	}
	if (f != H2C_FAIL_NONE && pending(c))
		conn_died(c, f);
	else if (f != H2C_FAIL_NONE)
		conn_fail(c, f); /* nothing waits on it; just not reusable */
}

static void submit_queued(struct h2c_conn *c)
{
	for (struct h2c_request *r = c->reqs; r; r = r->next)
		if (!r->done && r->stream_id == 0)
			submit(c, r);
}

/* Why the handshake failed. */
static void handshake_failed(struct h2c_conn *c, int ssl_error)
{
	long vr = SSL_get_verify_result(c->ssl);
	unsigned long e = ERR_peek_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;
	enum h2c_fail f = H2C_FAIL_TLS;

	if (vr != X509_V_OK) {
		f = H2C_FAIL_VERIFY;
		snprintf(c->detail, sizeof(c->detail), "%s", X509_verify_cert_error_string(vr));
	} else if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
		   ERR_GET_REASON(e) == SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL) {
		f = H2C_FAIL_NO_H2;
		snprintf(c->detail, sizeof(c->detail), "the server speaks no protocol we offered");
	} else if (ssl_error == SSL_ERROR_SSL && reason) {
		snprintf(c->detail, sizeof(c->detail), "%s", reason);
	} else if (c->sock_errno) {
		snprintf(c->detail, sizeof(c->detail), "%s", strerror(c->sock_errno));
	} else {
		snprintf(c->detail, sizeof(c->detail), "the server closed the connection");
	}
	conn_fail(c, f);
}

static void conn_handshake(struct h2c_conn *c)
{
	const unsigned char *alpn = NULL;
	unsigned int alpnlen = 0;
	int r;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r != 1) {
		int e = SSL_get_error(c->ssl, r);

		if (e == SSL_ERROR_WANT_READ) {
			c->events = POLLIN;
			return;
		}
		if (e == SSL_ERROR_WANT_WRITE) {
			c->events = POLLOUT;
			return;
		}
		handshake_failed(c, e);
		return;
	}
	SSL_get0_alpn_selected(c->ssl, &alpn, &alpnlen);
	if (alpnlen != 2 || memcmp(alpn, "h2", 2) != 0) {
		snprintf(c->detail, sizeof(c->detail), "the server selected %s%.*s%s",
			 alpnlen ? "'" : "no protocol", (int)alpnlen, (const char *)alpn,
			 alpnlen ? "'" : "");
		conn_fail(c, H2C_FAIL_NO_H2);
		return;
	}
	if (session_start(c) < 0) {
		conn_fail(c, H2C_FAIL_NOMEM);
		return;
	}
	c->state = CONN_OPEN;
	submit_queued(c);
	conn_io(c);
}

/* TCP is up: TLS, verifying the server against the host we dialled. */
static void conn_tls_start(struct h2c_conn *c)
{
	BIO *b = NULL;

	if (!(c->ssl = SSL_new(c->tls->ctx)) || !(b = BIO_new(c->tls->bio))) {
		conn_fail(c, H2C_FAIL_NOMEM);
		return;
	}
	BIO_set_data(b, c);
	SSL_set_bio(c->ssl, b, b);
	SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (c->host_is_ip) {
		/* No SNI for an address (RFC 6066); its certificate must list it. */
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host) != 1) {
			conn_fail(c, H2C_FAIL_NOMEM);
			return;
		}
	} else if (SSL_set_tlsext_host_name(c->ssl, c->host) != 1 || SSL_set1_host(c->ssl, c->host) != 1) {
		conn_fail(c, H2C_FAIL_NOMEM);
		return;
	}
	SSL_set_connect_state(c->ssl);
	c->state = CONN_HANDSHAKE;
	conn_handshake(c);
}

/* "127.0.0.1 port 1: Connection refused" ("proxy 10.0.0.1 port 3128: ...") */
static void connect_detail(struct h2c_conn *c, const struct addrinfo *a, int e)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	getnameinfo(a->ai_addr, a->ai_addrlen, ip, sizeof(ip), NULL, 0, NI_NUMERICHOST);
	snprintf(c->detail, sizeof(c->detail), "%s%s port %s: %s", c->proxy_host[0] ? "proxy " : "",
		 ip, c->proxy_host[0] ? c->proxy_port : c->port, strerror(e));
}

/* The proxy said no, or something else than HTTP: its status line, masked
 * (peer text), in the detail. */
static void proxy_refused(struct h2c_conn *c, const char *head, size_t n)
{
	char line[96];
	size_t i;

	for (i = 0; i < n && i < sizeof(line) - 1 && head[i] != '\r' && head[i] != '\n'; i++)
		line[i] = head[i] >= 0x20 && head[i] < 0x7f ? head[i] : '?';
	line[i] = '\0';
	snprintf(c->detail, sizeof(c->detail), "the proxy answered '%s'", line);
	conn_fail(c, H2C_FAIL_CONNECT);
}

/* Sends the CONNECT request; 1 when it is out, 0 to wait, -1 failed. */
static int proxy_send(struct h2c_conn *c)
{
	char req[2 * sizeof(c->authority) + 48];
	int n = snprintf(req, sizeof(req), "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", c->authority,
			 c->authority);

	while (c->proxy_sent < (size_t)n) {
		ssize_t k = send(c->fd, req + c->proxy_sent, (size_t)n - c->proxy_sent, MSG_NOSIGNAL);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			c->events = POLLOUT;
			return 0;
		}
		if (k < 0) {
			snprintf(c->detail, sizeof(c->detail), "proxy: %s", strerror(errno));
			return -1;
		}
		c->proxy_sent += (size_t)k;
	}
	return 1;
}

/*
 * Reads the head of the proxy's answer, and not a byte past it: what follows
 * is the server's TLS. So each read peeks first and takes only up to the
 * blank line. 1 when the head is in proxy_head, 0 to wait, -1 failed.
 */
static int proxy_read_head(struct h2c_conn *c)
{
	for (;;) {
		size_t room = sizeof(c->proxy_head) - c->proxy_head_len, from, take;
		char *buf = c->proxy_head + c->proxy_head_len;
		const char *end;
		ssize_t k;

		if (room == 0) {
			snprintf(c->detail, sizeof(c->detail), "proxy: its answer has no end");
			return -1;
		}
		do
			k = recv(c->fd, buf, room, MSG_PEEK);
		while (k < 0 && errno == EINTR);
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			c->events = POLLIN;
			return 0;
		}
		if (k <= 0) {
			snprintf(c->detail, sizeof(c->detail), "proxy: %s",
				 k < 0 ? strerror(errno) : "it closed the connection");
			return -1;
		}
		from = c->proxy_head_len > 3 ? c->proxy_head_len - 3 : 0;
		end = memmem(c->proxy_head + from, c->proxy_head_len + (size_t)k - from, "\r\n\r\n", 4);
		take = end ? (size_t)(end + 4 - buf) : (size_t)k;
		if (recv(c->fd, buf, take, 0) != (ssize_t)take) {
			snprintf(c->detail, sizeof(c->detail), "proxy: %s", strerror(errno));
			return -1;
		}
		c->proxy_head_len += take;
		if (end)
			return 1;
	}
}

/*
 * Through an HTTP proxy: CONNECT to the server, then TLS end to end as
 * without one (the proxy sees neither the client certificate nor the
 * question). Any 2xx opens the tunnel; anything else is its refusal.
 */
static void conn_proxy(struct h2c_conn *c)
{
	const char *h = c->proxy_head;
	int r = proxy_send(c);

	if (r > 0)
		r = proxy_read_head(c);
	if (r == 0)
		return;
	if (r < 0) {
		conn_fail(c, H2C_FAIL_CONNECT);
		return;
	}
	if (c->proxy_head_len < 12 || strncmp(h, "HTTP/1.", 7) != 0 || h[8] != ' ' || h[9] != '2') {
		proxy_refused(c, h, c->proxy_head_len);
		return;
	}
	conn_tls_start(c);
}

/* TCP is up (to the server, or to the proxy). */
static void conn_tcp_up(struct h2c_conn *c)
{
	c->opened++;
	if (!c->proxy_host[0]) {
		conn_tls_start(c);
		return;
	}
	c->state = CONN_PROXY;
	conn_proxy(c);
}

/* Tries the next address (the first after a resolve); no address left: the
 * requests fail. One address at a time: members name their nodes by
 * address or by a name with one address, so racing them would buy little. */
static void conn_connect(struct h2c_conn *c)
{
	if (!c->addrs) {
		struct addrinfo hints = {
			.ai_family = AF_UNSPEC,
			.ai_socktype = SOCK_STREAM,
			.ai_flags = AI_NUMERICSERV | (c->host_is_ip ? AI_NUMERICHOST : 0),
		};
		const char *host = c->proxy_host[0] ? c->proxy_host : c->host;
		int e;

		if (c->proxy_host[0])
			hints.ai_flags = AI_NUMERICSERV;
		e = getaddrinfo(host, c->proxy_host[0] ? c->proxy_port : c->port, &hints, &c->addrs);
		if (e != 0) {
			c->addrs = NULL;
			snprintf(c->detail, sizeof(c->detail), "%s%s: %s", c->proxy_host[0] ? "proxy " : "", host,
				 e == EAI_SYSTEM ? strerror(errno) : gai_strerror(e));
			conn_fail(c, e == EAI_MEMORY ? H2C_FAIL_NOMEM : H2C_FAIL_RESOLVE);
			return;
		}
		c->next_addr = c->addrs;
	}
	while (c->next_addr) {
		const struct addrinfo *a = c->next_addr;
		int one = 1, fd;

		c->next_addr = a->ai_next;
		c->trying = a;
		fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0) {
			connect_detail(c, a, errno);
			continue;
		}
		/* Frames are written whole; Nagle would only delay them. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		c->fd = fd;
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
			conn_tcp_up(c);
			return;
		}
		if (errno == EINPROGRESS) {
			c->state = CONN_CONNECTING;
			c->events = POLLOUT;
			return;
		}
		connect_detail(c, a, errno);
		close(fd);
		c->fd = -1;
	}
	conn_fail(c, H2C_FAIL_CONNECT);
}

/* The socket of a pending connect() became writable: connected or not. */
static void conn_connected(struct h2c_conn *c)
{
	int e = 0;
	socklen_t len = sizeof(e);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		e = errno;
	if (e == 0) {
		conn_tcp_up(c);
		return;
	}
	connect_detail(c, c->trying, e);
	close(c->fd);
	c->fd = -1;
	conn_connect(c);
}

/* A connection kept from an earlier run: reads what the server sent
 * meanwhile. 0 when it is still good to use. */
static int conn_alive(struct h2c_conn *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	int wants_write = 0;

	if (c->broken || c->goaway)
		return 0;
	if (poll(&p, 1, 0) > 0 && conn_read(c, &wants_write) != H2C_FAIL_NONE)
		return 0;
	return !c->goaway && nghttp2_session_want_read(c->h2);
}

/* The start of a run for one connection. */
static void conn_begin(struct h2c_conn *c)
{
	c->detail[0] = '\0'; /* an earlier run's failure is not this one's */
	c->retried = 0;
	c->reused = c->state == CONN_OPEN;
	if (c->state == CONN_OPEN && !conn_alive(c)) {
		/* Closed by the server while kept (its idle timeout): nothing was
		 * sent on it in this run, so just connect anew. */
		teardown(c);
		c->reused = 0;
	}
	if (c->state != CONN_OPEN && c->state != CONN_IDLE)
		teardown(c);
	c->broken = 0;
	if (!pending(c))
		return;
	if (c->state == CONN_IDLE) {
		conn_connect(c);
		return;
	}
	submit_queued(c);
	conn_io(c);
}

static void conn_step(struct h2c_conn *c)
{
	switch (c->state) {
	case CONN_CONNECTING:
		conn_connected(c);
		break;
	case CONN_PROXY:
		conn_proxy(c);
		break;
	case CONN_HANDSHAKE:
		conn_handshake(c);
		break;
	case CONN_OPEN:
		conn_io(c);
		break;
	case CONN_IDLE:
	case CONN_FAILED:
		break;
	}
}

/* ---- the API ----------------------------------------------------------- */

int h2c_tls_new(const char *cert, const char *key, const char *ca, struct h2c_tls **out, char *err,
		size_t errlen)
{
	struct h2c_tls *t = NULL;
	char *cert_pem = NULL, *key_pem = NULL, *ca_pem = NULL;
	size_t cert_len, key_len, ca_len;
	int rc;

	if (out)
		*out = NULL;
	if (!cert || !key || !ca || !out || !*cert || !*key || !*ca) {
		err_set(err, errlen, "certificate, key and CA files are all required");
		return H2C_ERR_ARG;
	}
	if (sodium_init() < 0) {
		err_set(err, errlen, "libsodium failed to initialise");
		return H2C_ERR_INIT;
	}
	if ((rc = read_pem(cert, 0, &cert_pem, &cert_len, err, errlen)) < 0 ||
	    (rc = read_pem(key, KEYFILE_SECRET, &key_pem, &key_len, err, errlen)) < 0 ||
	    (rc = read_pem(ca, 0, &ca_pem, &ca_len, err, errlen)) < 0)
		goto done;
	rc = H2C_ERR_NOMEM;
	if (!(t = calloc(1, sizeof(*t)))) {
		err_set(err, errlen, "out of memory");
		goto done;
	}
	if ((rc = make_ctx(t, cert_pem, cert_len, key_pem, key_len, ca_pem, ca_len, cert, key, ca, err,
			   errlen)) < 0)
		goto done;
	rc = H2C_ERR_NOMEM;
	if (!(t->bio = make_bio_method()) || nghttp2_session_callbacks_new(&t->cbs) != 0) {
		t->cbs = NULL;
		err_set(err, errlen, "out of memory");
		goto done;
	}
	nghttp2_session_callbacks_set_on_header_callback(t->cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(t->cbs, on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(t->cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(t->cbs, on_frame_not_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(t->cbs, on_stream_close);
	*out = t;
	t = NULL;
	rc = 0;
done:
	ERR_clear_error(); /* our message says it; keep OpenSSL's queue clean for others */
	h2c_tls_free(t);
	keyfile_free(ca_pem, 0);
	keyfile_free(key_pem, KEYFILE_SECRET); /* wipes; the key now lives in the SSL_CTX only */
	keyfile_free(cert_pem, 0);
	return rc;
}

void h2c_tls_free(struct h2c_tls *t)
{
	if (!t)
		return;
	nghttp2_session_callbacks_del(t->cbs);
	BIO_meth_free(t->bio);
	SSL_CTX_free(t->ctx);
	free(t);
}

static int host_char(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '.' || ch == '_';
}

/* Splits "HOST[:PORT][/]" (from |p| on) into its parts; H2C_ERR_ARG for
 * anything else (user info, a path, a query, an IPv6 zone, a port out of
 * range). */
static int parse_hostport(const char *p, unsigned long pn, char *host, char *port, char *authority,
			  int *is_ip)
{
	const char *h, *he, *end = p + strlen(p);
	size_t hl;
	struct in6_addr a6;
	struct in_addr a4;
	int bracketed = 0;

	if (end > p && end[-1] == '/')
		end--; /* members.c refuses this; be lenient anyway, as before */
	if (p < end && *p == '[') {
		h = p + 1;
		if (!(he = memchr(h, ']', (size_t)(end - h))))
			return H2C_ERR_ARG;
		p = he + 1;
		bracketed = 1;
	} else {
		for (h = he = p; he < end && *he != ':'; he++)
			if (!host_char((unsigned char)*he))
				return H2C_ERR_ARG;
		p = he;
	}
	hl = (size_t)(he - h);
	if (hl == 0 || hl > MAX_HOST)
		return H2C_ERR_ARG;
	if (p < end) {
		if (*p++ != ':' || p == end || end - p > 5)
			return H2C_ERR_ARG;
		for (pn = 0; p < end; p++) {
			if (*p < '0' || *p > '9')
				return H2C_ERR_ARG;
			pn = pn * 10 + (unsigned long)(*p - '0');
		}
		if (pn == 0 || pn > 65535)
			return H2C_ERR_ARG;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	for (size_t i = 0; i < hl; i++)
		if (host[i] >= 'A' && host[i] <= 'Z')
			host[i] = (char)(host[i] - 'A' + 'a');
	if (bracketed && inet_pton(AF_INET6, host, &a6) != 1)
		return H2C_ERR_ARG;
	*is_ip = bracketed || inet_pton(AF_INET, host, &a4) == 1;
	snprintf(port, 6, "%lu", pn);
	snprintf(authority, MAX_HOST + 9, bracketed ? "[%s]:%s" : "%s:%s", host, port);
	return 0;
}

/* "https://HOST[:PORT][/]", 443 by default. */
static int parse_url(const char *url, char *host, char *port, char *authority, int *is_ip)
{
	if (!url || strncmp(url, "https://", 8) != 0 || strlen(url) > MAX_URL)
		return H2C_ERR_ARG;
	return parse_hostport(url + 8, 443, host, port, authority, is_ip);
}

/* Whether |host| is in |list| as no_proxy means it: entries separated by
 * commas or spaces, each a host name, a domain (with or without a leading
 * dot, matching its subdomains) or an address; "*" matches everything. */
static int no_proxy_matches(const char *list, const char *host)
{
	size_t hl = strlen(host);

	while (list && *list) {
		size_t n = strcspn(list, ", ");
		const char *e = list;
		size_t en = n;

		if (n == 1 && *e == '*')
			return 1;
		if (en && *e == '.')
			e++, en--;
		if (en >= 2 && e[0] == '[' && e[en - 1] == ']')
			e++, en -= 2;
		if (en && en <= hl && strncasecmp(host + hl - en, e, en) == 0 &&
		    (en == hl || host[hl - en - 1] == '.'))
			return 1;
		list += n;
		list += strspn(list, ", ");
	}
	return 0;
}

int h2c_conn_set_proxy(struct h2c_conn *c, const char *proxy, const char *no_proxy)
{
	char authority[MAX_HOST + 9];
	int is_ip;

	c->proxy_host[0] = '\0';
	if (!proxy || !*proxy || no_proxy_matches(no_proxy, c->host))
		return 0;
	if (strncasecmp(proxy, "http://", 7) == 0)
		proxy += 7;
	else if (strstr(proxy, "://"))
		return H2C_ERR_ARG; /* https:// or socks: not supported */
	/* curl's default proxy port */
	if (strlen(proxy) > MAX_URL ||
	    parse_hostport(proxy, 1080, c->proxy_host, c->proxy_port, authority, &is_ip) < 0) {
		c->proxy_host[0] = '\0';
		return H2C_ERR_ARG;
	}
	return 0;
}

int h2c_url_check(const char *url)
{
	char host[MAX_HOST + 1], port[6], authority[MAX_HOST + 9];
	int is_ip;

	return parse_url(url, host, port, authority, &is_ip);
}

int h2c_conn_new(struct h2c_tls *t, const char *url, struct h2c_conn **out)
{
	struct h2c_conn *c;
	char host[MAX_HOST + 1], port[6], authority[MAX_HOST + 9];
	int is_ip;

	if (out)
		*out = NULL;
	if (!t || !out || parse_url(url, host, port, authority, &is_ip) < 0)
		return H2C_ERR_ARG;
	if (!(c = calloc(1, sizeof(*c))))
		return H2C_ERR_NOMEM;
	c->tls = t;
	memcpy(c->host, host, sizeof(host));
	memcpy(c->port, port, sizeof(port));
	memcpy(c->authority, authority, sizeof(authority));
	c->host_is_ip = is_ip;
	c->fd = -1;
	c->state = CONN_IDLE;
	*out = c;
	return 0;
}

const char *h2c_conn_authority(const struct h2c_conn *c)
{
	return c->authority;
}

void h2c_conn_add(struct h2c_conn *c, struct h2c_request *r)
{
	struct h2c_request **tail = &c->reqs;

	while (*tail)
		tail = &(*tail)->next;
	r->next = NULL;
	r->status = 0;
	r->answer = NULL;
	r->answer_len = r->cap = r->sent = 0;
	r->fail = H2C_FAIL_NONE;
	r->stream_id = 0;
	r->done = r->got_headers = r->ended = r->refused = r->reset_by_peer = 0;
	*tail = r;
}

int h2c_run(struct h2c_conn *const *conns, size_t n, uint64_t connect_deadline_ms,
	    uint64_t deadline_ms)
{
	struct pollfd *pfd;

	if (n == 0)
		return 0;
	if (!(pfd = calloc(n, sizeof(*pfd))))
		return H2C_ERR_NOMEM;
	for (size_t i = 0; i < n; i++)
		conn_begin(conns[i]);
	for (;;) {
		uint64_t now = h2c_now_ms(), until = deadline_ms;
		int busy = 0, rc;

		for (size_t i = 0; i < n; i++) {
			struct h2c_conn *c = conns[i];

			pfd[i] = (struct pollfd){ .fd = -1 };
			if (!pending(c))
				continue;
			if (c->state != CONN_OPEN && now >= connect_deadline_ms && now < deadline_ms) {
				snprintf(c->detail, sizeof(c->detail), "no connection within the time allowed");
				conn_fail(c, H2C_FAIL_TIMEOUT);
				continue;
			}
			if (c->state != CONN_OPEN && connect_deadline_ms < until)
				until = connect_deadline_ms;
			pfd[i].fd = c->fd;
			pfd[i].events = c->events;
			busy = 1;
		}
		if (!busy || now >= deadline_ms)
			break;
		rc = poll(pfd, n, until - now > INT_MAX ? INT_MAX : (int)(until - now));
		if (rc < 0 && errno != EINTR)
			break; /* cannot happen with valid descriptors; the rest times out */
		for (size_t i = 0; rc > 0 && i < n; i++)
			if (pfd[i].fd >= 0 && pfd[i].revents)
				conn_step(conns[i]);
	}
	/* Past the deadline: what still waits timed out. A connection with
	 * streams open is given up, never written to again: those streams
	 * point at requests the caller is about to free. */
	for (size_t i = 0; i < n; i++) {
		struct h2c_conn *c = conns[i];

		if (pending(c)) {
			snprintf(c->detail, sizeof(c->detail), "the deadline passed");
			for (struct h2c_request *r = c->reqs; r; r = r->next) {
				if (r->done)
					continue;
				r->done = 1;
				r->fail = H2C_FAIL_TIMEOUT;
				forget_answer(r);
			}
			c->broken = 1;
		}
		c->reqs = NULL;
	}
	free(pfd);
	return 0;
}

int h2c_conn_reusable(const struct h2c_conn *c)
{
	return c && c->state == CONN_OPEN && !c->broken && !c->goaway && c->h2 &&
	       nghttp2_session_want_read(c->h2);
}

unsigned long h2c_conn_opened(const struct h2c_conn *c)
{
	return c->opened;
}

const char *h2c_conn_detail(const struct h2c_conn *c)
{
	return c->detail;
}

void h2c_conn_free(struct h2c_conn *c)
{
	if (!c)
		return;
	if (c->state == CONN_OPEN && !c->broken) {
		/* Goodbye in one try, never waiting: GOAWAY, then close_notify. */
		c->reqs = NULL;
		if (nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR) == 0)
			conn_flush(c);
		ERR_clear_error();
		SSL_shutdown(c->ssl);
	}
	teardown(c);
	freeaddrinfo(c->addrs);
	free(c->out);
	free(c);
}
