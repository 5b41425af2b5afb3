/* Unit tests for gateway/config.c and gateway/members.c. */
#define CHECK_FILE "test_config"
#include "check.h"
#include "../../common/diag.c"
#include "../../common/yamldoc.c"
#include "../../gateway/config.c"
#include "../../gateway/members.c"

static char dir[] = "/tmp/np-config-XXXXXX";

static const char members_ok[] =
	"members:\n"
	"  - id: provincie-groningen\n"
	"    name: Provincie Groningen\n"
	"    oin: \"00000001001589623000\"\n"
	"    roles: [node]\n"
	"  - id: hub\n"
	"    name: Hub\n"
	"    oin: \"00000001009876544000\"\n"
	"    roles: [hub, coordinator]\n";

static char *conf(const char *name, const char *extra)
{
	char text[4096];

	snprintf(text, sizeof(text),
		 "listen:\n  - 127.0.0.1:8443\n  - \"[::1]:8443\"\n"
		 "tls:\n  certificate: f.crt\n  key: f.key\n  client_ca: f.crt\n  crl: f.crt\n"
		 "members: members.yaml\n%s", extra);
	return check_write(dir, name, text);
}

static void defaults_and_paths(void)
{
	char *p = conf("a.yaml", "");
	struct gw_config *c;
	struct diag d = { 0 };

	CHECK(gw_config_load(p, &c, &d) == 0);
	if (c) {
		CHECK(c->nlisten == 2);
		CHECK_STR(c->listen[1].host, "::1");
		CHECK(c->listen[0].port == 8443);
		CHECK(c->limits.max_concurrent_streams == 100);
		CHECK(c->limits.max_body_bytes == 1048576);
		CHECK(c->timeouts.handshake_ms == 10000);
		CHECK(c->workers >= 1);
		CHECK(strncmp(c->cert_file, dir, strlen(dir)) == 0); /* relative to the file */
		CHECK_STR(c->log_destination, "stderr");
		CHECK(c->audit.refusals_per_minute == AUDIT_REFUSALS_PER_MINUTE);
	}
	CHECK(d.errors == 0);
	gw_config_free(c);
	diag_clear(&d);
	free(p);
}

static void every_error_reported_with_position(void)
{
	char *p = conf("b.yaml",
		       "workers: many\n"
		       "limits:\n  max_body_bytes: 1MB\n  max_concurrent_streams: 0\n"
		       "timeouts:\n  idle: 5x\n"
		       "colour: blue\n");
	struct gw_config *c;
	struct diag d = { 0 };

	CHECK(gw_config_load(p, &c, &d) < 0);
	CHECK(c == NULL);
	CHECK_CONTAINS(diag_text(&d), "b.yaml:10:10: error: workers: 'many' is not a whole number");
	CHECK_CONTAINS(diag_text(&d), "b.yaml:12:19: error: limits.max_body_bytes: '1MB' is not a size");
	CHECK_CONTAINS(diag_text(&d), "b.yaml:13:27: error: limits.max_concurrent_streams: 0 is out of range");
	CHECK_CONTAINS(diag_text(&d), "b.yaml:15:9: error: timeouts.idle: '5x' is not a duration");
	CHECK_CONTAINS(diag_text(&d), "b.yaml:16:1: error: config: unknown key 'colour'");
	CHECK(d.errors == 5);
	diag_clear(&d);
	free(p);
}

static void listen_and_files(void)
{
	char *p = check_write(dir, "c.yaml",
			      "listen: localhost:8443\n"
			      "tls:\n  certificate: missing.crt\n  key: f.key\n  client_ca: f.crt\n"
			      "members: members.yaml\n");
	struct gw_config *c;
	struct diag d = { 0 };

	CHECK(gw_config_load(p, &c, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "c.yaml:1:9: error: listen: 'localhost' is not a numeric");
	CHECK_CONTAINS(diag_text(&d), "c.yaml:3:16: error: tls.certificate: cannot read");
	CHECK_CONTAINS(diag_text(&d), "warning: tls: no 'crl' given");
	diag_clear(&d);
	free(p);

	p = check_write(dir, "d.yaml", "listen: 127.0.0.1:65536\n");
	CHECK(gw_config_load(p, &c, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "'65536' is not a port");
	CHECK_CONTAINS(diag_text(&d), "missing required key 'tls'");
	diag_clear(&d);
	free(p);
}

/* Found by fuzz_config: an empty log.destination freed it twice. */
static void empty_log_destination(void)
{
	char *p = conf("e.yaml", "log:\n  destination:\n");
	struct gw_config *c;
	struct diag d = { 0 };

	CHECK(gw_config_load(p, &c, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "e.yaml:11:15: error: log.destination: empty path");
	diag_clear(&d);
	free(p);
}

static const char node_section[] =
	"roles: [node]\ncatalog: f.crt\npolicies: [f.crt]\naudit:\n  path: audit.log\n"
	"require_signed_policies: false\n"
	"node:\n  organisation: uwv\n  master_key: f.key\n  datasets:\n";

/* in_memory: a CSV source's copy of its rows, on unless switched off. */
static void dataset_in_memory(void)
{
	char text[1024];
	char *p;
	struct gw_config *c;
	struct diag d = { 0 };

	snprintf(text, sizeof(text), "%s"
		 "    - id: a/default\n      source: {type: csv, path: f.crt}\n"
		 "    - id: a/off\n      source: {type: csv, path: f.crt, in_memory: false}\n"
		 "    - id: a/on\n      source:\n        type: csv\n        path: f.crt\n        in_memory: true\n",
		 node_section);
	p = conf("n.yaml", text);
	CHECK(gw_config_load(p, &c, &d) == 0);
	if (d.errors)
		printf("#   %s", diag_text(&d));
	if (c) {
		CHECK(c->node.ndatasets == 3);
		CHECK(c->node.datasets[0].disk_only == 0);
		CHECK(c->node.datasets[1].disk_only == 1);
		CHECK(c->node.datasets[2].disk_only == 0);
	}
	gw_config_free(c);
	diag_clear(&d);
	free(p);

	snprintf(text, sizeof(text), "%s"
		 "    - id: a/typo\n      source: {type: csv, path: f.crt, in_memory: nee}\n"
		 "    - id: a/db\n      source: {type: sqlite, path: f.crt, table: t, in_memory: false}\n",
		 node_section);
	p = conf("n2.yaml", text);
	CHECK(gw_config_load(p, &c, &d) < 0 && c == NULL);
	CHECK_CONTAINS(diag_text(&d), "n2.yaml:21:51: error: node.datasets[0].source.in_memory: "
		       "expected true or false, found 'nee'");
	CHECK_CONTAINS(diag_text(&d), "n2.yaml:23:64: error: node.datasets[1].source.in_memory: "
		       "only for csv sources (SQLite has its own page cache)");
	CHECK(d.errors == 2);
	diag_clear(&d);
	free(p);
}

/* audit.refusals_per_minute: 1 is the smallest limit, 0 would audit no
 * refusal at all and is refused with its position. */
static void audit_refusals_per_minute(void)
{
	char *p = conf("r.yaml", "audit:\n  path: audit.log\n  refusals_per_minute: 1\n");
	struct gw_config *c;
	struct diag d = { 0 };

	CHECK(gw_config_load(p, &c, &d) == 0);
	CHECK(c && c->audit.refusals_per_minute == 1);
	gw_config_free(c);
	diag_clear(&d);
	free(p);

	p = conf("r0.yaml", "audit:\n  path: audit.log\n  refusals_per_minute: 0\n");
	CHECK(gw_config_load(p, &c, &d) < 0 && c == NULL);
	CHECK_CONTAINS(diag_text(&d), "r0.yaml:12:24: error: audit.refusals_per_minute");
	diag_clear(&d);
	free(p);
}

static void members_load_and_lookup(void)
{
	char *p = check_write(dir, "m.yaml", members_ok);
	struct gw_members *m;
	struct diag d = { 0 };
	const struct gw_member *x;
	char roles[64];

	CHECK(gw_members_load(p, &m, &d) == 0);
	if (!m)
		return;
	CHECK(gw_members_count(m) == 2);
	x = gw_members_by_oin(m, "00000001009876544000", 20);
	CHECK(x && strcmp(x->id, "hub") == 0);
	CHECK(x && x->roles == (GW_ROLE_HUB | GW_ROLE_COORDINATOR));
	CHECK(gw_members_by_oin(m, "00000001001589623000", 20) != NULL);
	CHECK(gw_members_by_oin(m, "00000001001589623001", 20) == NULL);
	CHECK(gw_members_by_oin(m, "0000000100158962300", 19) == NULL);
	CHECK(gw_members_by_id(m, "provincie-groningen") != NULL);
	gw_roles_json(GW_ROLE_HUB | GW_ROLE_COORDINATOR, roles, sizeof(roles));
	CHECK_STR(roles, "[\"hub\",\"coordinator\"]");
	gw_roles_json(0, roles, sizeof(roles));
	CHECK_STR(roles, "[]");
	gw_members_free(m);
	diag_clear(&d);
	free(p);
}

static void members_errors(void)
{
	char *p = check_write(dir, "bad.yaml",
			      "members:\n"
			      "  - id: Provincie\n    name: X\n    oin: \"123\"\n    roles: [node, boss]\n"
			      "  - id: a\n    name: A\n    oin: \"00000001001589623000\"\n    roles: [node]\n    extra: 1\n"
			      "  - id: b\n    name: B\n    oin: \"00000001001589623000\"\n    roles: [node]\n");
	struct gw_members *m;
	struct diag d = { 0 };

	CHECK(gw_members_load(p, &m, &d) < 0);
	CHECK(m == NULL);
	CHECK_CONTAINS(diag_text(&d), "bad.yaml:2:9: error: members[0].id: 'Provincie' must be lower-case");
	CHECK_CONTAINS(diag_text(&d), "bad.yaml:4:10: error: members[0].oin: '123' is not a 20-digit OIN");
	CHECK_CONTAINS(diag_text(&d), "bad.yaml:5:19: error: members[0].roles: unknown role 'boss'");
	CHECK_CONTAINS(diag_text(&d), "bad.yaml:10:5: error: members[1]: unknown key 'extra'");
	diag_clear(&d);
	free(p);

	p = check_write(dir, "dup.yaml",
			"members:\n"
			"  - {id: a, name: A, oin: \"00000001001589623000\", roles: [node]}\n"
			"  - {id: b, name: B, oin: \"00000001001589623000\", roles: [node]}\n");
	CHECK(gw_members_load(p, &m, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "dup.yaml:3:5: error: members[1]: OIN 00000001001589623000 is listed twice");
	diag_clear(&d);
	free(p);

	p = check_write(dir, "empty.yaml", "members: []\n");
	CHECK(gw_members_load(p, &m, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "members: the list is empty");
	diag_clear(&d);
	free(p);
}

/* Issue 10 (section 3): signed policies unless the file says otherwise. */
static void signed_policies_by_default(void)
{
	struct gw_config *c = NULL;
	struct diag d = { 0 };
	char *p;

	/* policies, no key, nothing said: refused, pointing at 'policies' */
	p = conf("s1.yaml", "catalog: f.crt\npolicies: [f.crt]\n");
	CHECK(gw_config_load(p, &c, &d) < 0 && c == NULL);
	CHECK_CONTAINS(diag_text(&d), "s1.yaml:11:11: error: policies: signed policies are required "
		       "by default: name the privacy officer's public key in 'policy_signing_key' (and "
		       "a 'state_dir'), or say 'require_signed_policies: false'");
	gw_config_free(c); /* NULL unless a CHECK failed */
	c = NULL;
	diag_clear(&d);
	free(p);
	/* said explicitly: unsigned */
	p = conf("s2.yaml", "catalog: f.crt\npolicies: [f.crt]\nrequire_signed_policies: false\n");
	CHECK(gw_config_load(p, &c, &d) == 0 && c && c->policies.require_signed == 0);
	gw_config_free(c);
	c = NULL;
	diag_clear(&d);
	free(p);
	/* a key but no state_dir: refused (the serials need a home) */
	p = conf("s3.yaml", "catalog: f.crt\npolicies: [f.crt]\npolicy_signing_key: f.crt\n");
	CHECK(gw_config_load(p, &c, &d) < 0 && c == NULL);
	CHECK_CONTAINS(diag_text(&d), "s3.yaml:11:11: error: require_signed_policies: needs "
		       "'state_dir'");
	gw_config_free(c); /* NULL unless a CHECK failed */
	c = NULL;
	diag_clear(&d);
	free(p);
	p = conf("s4.yaml", "catalog: f.crt\npolicies: [f.crt]\nrequire_signed_policies: true\n"
		 "policy_signing_key: f.crt\n");
	CHECK(gw_config_load(p, &c, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "s4.yaml:12:26: error: require_signed_policies: needs "
		       "'state_dir'");
	gw_config_free(c); /* NULL unless a CHECK failed */
	c = NULL;
	diag_clear(&d);
	free(p);
	/* key and state_dir: signed, by default */
	p = conf("s5.yaml", "catalog: f.crt\npolicies: [f.crt]\npolicy_signing_key: f.crt\n"
		 "state_dir: state\n");
	CHECK(gw_config_load(p, &c, &d) == 0 && c && c->policies.require_signed == 1 &&
	      c->state_dir && strstr(c->state_dir, "/state"));
	gw_config_free(c);
	c = NULL;
	diag_clear(&d);
	free(p);
	/* state_dir must be an existing folder */
	p = conf("s6.yaml", "state_dir: f.crt\n");
	CHECK(gw_config_load(p, &c, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "s6.yaml:10:12: error: state_dir: '");
	CHECK_CONTAINS(diag_text(&d), "f.crt' is not a folder");
	gw_config_free(c); /* NULL unless a CHECK failed */
	c = NULL;
	diag_clear(&d);
	free(p);
	p = conf("s7.yaml", "state_dir: nowhere\n");
	CHECK(gw_config_load(p, &c, &d) < 0);
	CHECK_CONTAINS(diag_text(&d), "nowhere': No such file or directory (create it");
	gw_config_free(c); /* NULL unless a CHECK failed */
	c = NULL;
	diag_clear(&d);
	free(p);
	/* no policies: nothing to sign, nothing required */
	p = conf("s8.yaml", "");
	CHECK(gw_config_load(p, &c, &d) == 0 && c && c->policies.require_signed == 0);
	gw_config_free(c);
	c = NULL;
	diag_clear(&d);
	free(p);
}

int main(void)
{
	char *f;

	if (!mkdtemp(dir))
		return 1;
	free(check_write(dir, "f.crt", "x"));
	free(check_write(dir, "f.key", "x"));
	f = check_write(dir, "members.yaml", members_ok);
	free(f);
	{
		char sd[64];

		snprintf(sd, sizeof(sd), "%s/state", dir);
		if (mkdir(sd, 0700) != 0)
			return 1;
	}
	RUN(defaults_and_paths);
	RUN(every_error_reported_with_position);
	RUN(listen_and_files);
	RUN(empty_log_destination);
	RUN(dataset_in_memory);
	RUN(audit_refusals_per_minute);
	RUN(members_load_and_lookup);
	RUN(members_errors);
	RUN(signed_policies_by_default);
	{
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", dir);
	}
	return check_total_failed ? 1 : 0;
}
