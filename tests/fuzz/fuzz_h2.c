/*
 * libFuzzer target: the HTTP/2 request path. Bytes go to
 * nghttp2_session_mem_recv() with the gateway's own callbacks, limits and
 * request engine, as if they had come out of TLS; whatever the session
 * wants to send is drained.
 *
 * The first byte is not sent: it chooses who the peer is and what the
 * gateway holds, so routes past the authentication and role checks are
 * reached (with one fixed peer, a node, every aggregate and most lookups
 * ended at the role check):
 *   bits 0-3  the peer: 0-7 a member whose roles are those bits (node 1,
 *             hub 2, coordinator 4; 0 = a member without roles), 8-13 the
 *             member with roles (value - 6), 14 an OIN that is no member,
 *             15 a certificate without an OIN
 *   bit 4     the gateway has a catalog and policies (tests/fuzz/hub_fixture.h's)
 *   bit 5     the peer's certificate expired yesterday (not_after in the past)
 *   bit 6     the gateway is a node (bit 4 then ignored): one CSV dataset of
 *             fonds-a, its own catalog and lookup policy, a master key and
 *             an audit log in /dev/shm (started afresh every 1024 node runs,
 *             removed at exit), so /v1/lookup and the subquery route run
 *             their engine (decide, fetch, pseudonymise, audit)
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../crypto/pseudo.h"
#include "../../gateway/conn.h"
#include "hub_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct gw_config cfg;
static struct gw_state plain, full, node; /* bare; catalog and policies; a node */
static struct gw_node *nd;
static struct gw_node_worker *ndw;
static struct audit_log *nlog; /* the node's audit log (srv.audit on node runs only) */
static char ndir[64], audit_path[128];
static unsigned node_runs;

/* The node's catalog and policy: no anchors or aliases (issue 10 refuses them). */
static const char node_catalog[] =
	"datasets:\n"
	"  fonds-a/inschrijvingen:\n"
	"    description: fuzz\n"
	"    fields:\n"
	"      bsn: {type: bsn, role: identifier}\n"
	"      programme: {type: category, role: attribute, categories: [nld-1, nld-2, kv]}\n"
	"      completed: {type: bool, role: attribute}\n"
	"      start_year: {type: int, role: attribute}\n"
	"      birth_date: {type: date, role: quasi_identifier}\n";
static const char node_policy[] =
	"purposes:\n"
	"  - id: fuzz-lookup\n"
	"    description: fuzzing\n"
	"    legal_basis: {text: test}\n"
	"    valid: {from: 2020-01-01, until: 2099-12-31}\n"
	"    grants:\n"
	"      - id: fuzz-lookup-grant\n"
	"        requesters: [peer-1, peer-3, peer-5, peer-7]\n"
	"        operations: [lookup]\n"
	"        datasets:\n"
	"          fonds-a/inschrijvingen:\n"
	"            programme: exact\n"
	"            completed: exact\n"
	"            start_year: exact\n"
	"            birth_date: year\n"
	"        identifiers: pseudonym\n";
static const char node_csv[] =
	"bsn,programme,completed,start_year,birth_date\n"
	"111222333,nld-1,true,2024,1980-02-03\n"
	"441205069,kv,false,2023,1975-12-31\n"
	"869479167,,true,,\n";

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		abort();
}

/* The node's audit log, afresh. */
static void node_audit(void)
{
	struct audit_options ao = { 1000, 1000, 1000 };
	char err[512];

	if (nlog)
		audit_close(nlog);
	nlog = NULL;
	unlink(audit_path);
	if (audit_open(audit_path, NULL, &ao, &nlog, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_h2: audit: %s\n", err);
		abort();
	}
}

static void node_cleanup(void)
{
	char p[160];

	gw_node_worker_free(ndw);
	gw_node_free(nd);
	if (nlog)
		audit_close(nlog);
	unlink(audit_path);
	snprintf(p, sizeof(p), "%s/catalog.yaml", ndir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/fonds.csv", ndir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/master.key", ndir);
	unlink(p);
	rmdir(ndir);
}

static void node_setup(void)
{
	static char cat_path[160], csv_path[160], key_path[160];
	static struct gw_config ncfg; /* the node keeps a pointer to it */
	struct policy_refs refs = { 0 };
	struct diag d = { 0 };
	char err[512];

	snprintf(ndir, sizeof(ndir), "/dev/shm/fuzz-h2-%ld", (long)getpid());
	if (access("/dev/shm", W_OK) != 0)
		snprintf(ndir, sizeof(ndir), "/tmp/fuzz-h2-%ld", (long)getpid());
	if (mkdir(ndir, 0700) != 0 && errno != EEXIST)
		abort();
	snprintf(cat_path, sizeof(cat_path), "%s/catalog.yaml", ndir);
	snprintf(csv_path, sizeof(csv_path), "%s/fonds.csv", ndir);
	snprintf(key_path, sizeof(key_path), "%s/master.key", ndir);
	snprintf(audit_path, sizeof(audit_path), "%s/audit.log", ndir);
	write_file(cat_path, node_catalog);
	write_file(csv_path, node_csv);
	unlink(key_path);
	if (pseudo_master_generate(key_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_h2: master key: %s\n", err);
		abort();
	}
	memset(&ncfg, 0, sizeof(ncfg));
	ncfg.catalog_file = cat_path;
	ncfg.node.organisation = (char *)"fonds-a";
	ncfg.node.master_key = key_path;
	ncfg.node.datasets[0].id = (char *)"fonds-a/inschrijvingen";
	ncfg.node.datasets[0].path = csv_path;
	ncfg.node.datasets[0].delimiter = ',';
	ncfg.node.ndatasets = 1;
	ncfg.node.lookups_per_minute = 0; /* unlimited: a 429 after 30 runs would hide the rest */
	if (gw_node_open(&ncfg, &nd, &d) < 0) {
		fprintf(stderr, "fuzz_h2: node: %s\n", diag_text(&d));
		abort();
	}
	diag_clear(&d);
	if (gw_node_worker_open(nd, &ndw, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_h2: node worker: %s\n", err);
		abort();
	}
	node.members = plain.members;
	if (policy_catalog_load_mem("catalog.yaml", (const unsigned char *)node_catalog, sizeof(node_catalog) - 1,
				    &node.catalog, &d) < 0)
		abort();
	refs.catalog = node.catalog;
	if (policy_set_load_mem("policy.yaml", (const unsigned char *)node_policy, sizeof(node_policy) - 1, &refs,
				&node.policies, &d) < 0) {
		fprintf(stderr, "fuzz_h2: node policy: %s\n", diag_text(&d));
		abort();
	}
	diag_clear(&d);
	node_audit();
	atexit(node_cleanup);
}
static struct gw_server srv;
static struct gw_worker worker;
static struct gw_metrics *all[1];

/* One member per set of roles: OIN 0000000100000000RR00, RR the roles bits. */
static void oin_of(unsigned roles, char out[GW_OIN_LEN + 1])
{
	snprintf(out, GW_OIN_LEN + 1, "0000000100000000%02u%02u", roles, 0);
}

static void setup(void)
{
	static const char *const names[8] = { "[]", "[node]", "[hub]", "[node, hub]", "[coordinator]",
					       "[node, coordinator]", "[hub, coordinator]",
					       "[node, hub, coordinator]" };
	/* the policies' requesters (amt) and owners must be members too */
	char members[4096] = "members:\n"
			     "  - {id: amt, name: AMT, oin: \"00000001000000000001\", roles: [coordinator]}\n"
			     "  - {id: fonds-a, name: A, oin: \"00000001000000000003\", roles: [node]}\n"
			     "  - {id: fonds-b, name: B, oin: \"00000001000000000004\", roles: [node]}\n"
			     "  - {id: uwv, name: UWV, oin: \"00000001000000000005\", roles: [node]}\n"
			     "  - {id: fonds-c, name: C, oin: \"00000001000000000006\", roles: [node]}\n"
			     "  - {id: geen-node, name: G, oin: \"00000001000000000007\", roles: [node]}\n";
	char path[] = "/tmp/fuzz-members-XXXXXX";
	struct policy_refs refs = { 0 };
	struct diag d = { 0 };
	size_t o = strlen(members);
	int fd;

	for (unsigned r = 0; r < 8; r++) {
		char oin[GW_OIN_LEN + 1];

		oin_of(r, oin);
		o += (size_t)snprintf(members + o, sizeof(members) - o,
				      "  - {id: peer-%u, name: Peer %u, oin: \"%s\", roles: %s}\n", r, r, oin, names[r]);
	}
	fd = mkstemp(path);
	if (fd < 0 || write(fd, members, o) != (ssize_t)o)
		abort();
	close(fd);
	if (gw_members_load(path, &plain.members, &d) < 0) {
		fprintf(stderr, "fuzz_h2: members: %s\n", diag_text(&d));
		abort();
	}
	unlink(path);
	diag_clear(&d);
	full.members = plain.members;
	if (policy_catalog_load_mem("catalog.yaml", (const unsigned char *)fx_catalog, sizeof(fx_catalog) - 1,
				    &full.catalog, &d) < 0)
		abort();
	refs.catalog = full.catalog;
	if (policy_set_load_mem("policy.yaml", (const unsigned char *)fx_policy, sizeof(fx_policy) - 1, &refs,
				&full.policies, &d) < 0)
		abort();
	diag_clear(&d);
	node_setup();
	cfg.limits.max_concurrent_streams = 100;
	cfg.limits.max_header_list_bytes = 16384;
	cfg.limits.max_header_fields = 100;
	cfg.limits.max_body_bytes = 65536;
	cfg.limits.abuse_budget = 200;
	srv.cfg = &cfg;
	srv.nworkers = 1;
	all[0] = &worker.metrics;
	srv.metrics = all;
	worker.srv = &srv;
	worker.state = &plain;
	gw_log_init(&worker.log);
	nghttp2_session_callbacks_new(&worker.cbs);
	nghttp2_option_new(&worker.opt);
	gw_h2_callbacks(worker.cbs);
	gw_h2_option(worker.opt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	struct gw_conn c;
	const uint8_t *out;
	unsigned who;

	if (!worker.srv)
		setup();
	if (size < 1)
		return 0;
	who = data[0] & 0x0F;
	worker.state = data[0] & 0x10 ? &full : &plain;
	worker.node = NULL;
	srv.audit = NULL;
	if (data[0] & 0x40) {
		if (++node_runs % 1024 == 0)
			node_audit(); /* so the log does not grow without end */
		worker.state = &node;
		worker.node = ndw;
		srv.audit = nlog;
	}
	memset(&c, 0, sizeof(c));
	c.w = &worker;
	if (who < 8)
		oin_of(who, c.peer.oin);
	else if (who < 14)
		oin_of(who - 6, c.peer.oin);
	else if (who == 14)
		memcpy(c.peer.oin, "00000001999999999999", GW_OIN_LEN + 1);
	/* 15: no OIN, c.peer.oin stays "" */
	memcpy(c.peer.fingerprint, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 65);
	memcpy(c.peer.not_after, data[0] & 0x20 ? "2020-01-01T00:00:00Z" : "2099-01-01T00:00:00Z", 21);
	data++;
	size--;
	if (gw_h2_start(&c) < 0)
		return 0;
	/* Most inputs should reach the frame parser, not die at the preface. */
	if (nghttp2_session_mem_recv(c.h2, (const uint8_t *)preface, sizeof(preface) - 1) >= 0)
		nghttp2_session_mem_recv(c.h2, data, size);
	while (nghttp2_session_mem_send(c.h2, &out) > 0)
		;
	nghttp2_session_del(c.h2);
	while (c.streams) {
		struct gw_stream *s = c.streams;
		c.streams = s->next;
		gw_stream_free(s);
	}
	worker.log.len = 0; /* keep the fuzzer's output quiet */
	return 0;
}
