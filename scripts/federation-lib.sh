# Shared set-up of a demo federation on loopback: the hub and one node per
# demo organisation, all on 127.0.0.1 with ports the kernel picks.
# Sourced by scripts/demo.sh and scripts/federation.sh (POSIX sh); run from
# the repository root, after `make` and `make certs`.
#
#   fed_init DIR      everything lives in DIR (configs, data, keys, logs, ledger)
#   fed_setup         synthetic data (scale 1), the shared master key, the hub's box key
#   fed_start         the nodes, then the members file with their endpoints, then the hub
#   fed_stop          SIGTERM to every process, hub first; checks each exits 0
#
# After fed_start, FED_HUB_URL is the hub's URL.
#
# Phase 1 of docs/federation.md: every node holds the same pseudonymisation
# master key (so per-query tokens link across nodes) and the hub's box public
# key (to seal linked answers to the hub). The hub holds no microdata.

FED_BIN=$PWD/build/noordpoort
FED_CERTS=$PWD/certs/dev
FED_POLICY_DIR=$PWD/policies/examples
FED_MEMBERS_EXAMPLE=$PWD/examples/single/members.yaml
# The organisations with a node, and which hold which datasets: every
# DIR/data/ORG/*.csv that synth writes is served by ORG's node.
FED_NODES="provincie-groningen provincie-fryslan provincie-drenthe
gemeente-groningen gemeente-leeuwarden gemeente-emmen
uwv opleidingsfonds-techniek opleidingsfonds-zorg"
FED_PROCS=         # "name:pid" of every process started, in start order
FED_HUB_URL=

fed_init() {
	FED_DIR=$1
	mkdir -p "$FED_DIR/data"
}

# The policy files in force at the hub and at every node: all the examples
# (the catalog and the policy tests are not policies).
fed_policies_yaml() {
	for f in "$FED_POLICY_DIR"/*.yaml; do
		case $f in */catalog.yaml | *.test.yaml) continue ;; esac
		echo "  - $f"
	done
}

fed_setup() {
	"$FED_BIN" synth --out "$FED_DIR/data" --seed 1 --scale 1 2>/dev/null >/dev/null
	"$FED_BIN" keygen --out "$FED_DIR/master.key" >/dev/null
	"$FED_BIN" keygen --box --out "$FED_DIR/hubbox" >/dev/null
	# Nodes read the members file at start to know the hub (its OIN and role);
	# they do not need the endpoints, which only exist once they listen.
	cp "$FED_MEMBERS_EXAMPLE" "$FED_DIR/members.yaml"
	for org in $FED_NODES; do
		fed_node_config "$org" >"$FED_DIR/$org.yaml"
	done
	fed_hub_config >"$FED_DIR/hub.yaml"
	# serve never creates a ledger (a deleted one must not reset the budget):
	# the operator makes it once (docs/ledger.md)
	"$FED_BIN" ledger init "$FED_DIR/ledger.sqlite" >/dev/null
}

fed_tls_yaml() {
	cat <<EOF
tls:
  certificate: $FED_CERTS/server.crt
  key: $FED_CERTS/server.key
  client_ca: $FED_CERTS/ca.crt
  crl: $FED_CERTS/crl.pem
members: members.yaml
catalog: $FED_POLICY_DIR/catalog.yaml
policies:
$(fed_policies_yaml)
require_signed_policies: false   # a demo; production leaves it out (true), with policy_signing_key and state_dir
workers: 1
EOF
}

fed_node_config() { # ORG
	cat <<EOF
# Node of $1 (made by scripts/federation-lib.sh; keys in docs/config.md)
roles: [node]
listen: [127.0.0.1:0]
$(fed_tls_yaml)
node:
  organisation: $1
  master_key: master.key          # the SAME file at every node (phase 1)
  hub_public_key: hubbox.pub      # linked answers are sealed to the hub
  datasets:
EOF
	for f in "$FED_DIR/data/$1"/*.csv; do
		name=${f##*/}
		name=${name%.csv}
		echo "    - id: $1/$name"
		echo "      source: {type: csv, path: data/$1/$name.csv}"
	done
	cat <<EOF
audit: {path: $1-audit.log}
log: {destination: $1.log}
EOF
}

fed_hub_config() {
	cat <<EOF
# The hub (made by scripts/federation-lib.sh; keys in docs/config.md)
roles: [hub]
listen: [127.0.0.1:0]
$(fed_tls_yaml)
hub:
  box_key: hubbox.sec
  client_certificate: $FED_CERTS/hub.crt
  client_key: $FED_CERTS/hub.key
  ledger: ledger.sqlite           # made by fed_setup: a fresh privacy budget for every run
  node_timeout: 10s
  jobs: 4
audit: {path: hub-audit.log}
log: {destination: hub.log}
EOF
}

# fed_serve NAME: starts build/noordpoort serve -c DIR/NAME.yaml in the
# background and waits for its "listening" log line; sets fed_port.
fed_serve() {
	"$FED_BIN" serve -c "$FED_DIR/$1.yaml" 2>"$FED_DIR/$1.err" &
	FED_PROCS="$FED_PROCS $1:$!"
	fed_port=
	for _ in $(seq 100); do
		fed_port=$(sed -n 's/.*"event":"listening","address":"127.0.0.1:\([0-9]*\)".*/\1/p' \
			"$FED_DIR/$1.log" 2>/dev/null | head -1)
		[ -n "$fed_port" ] && return 0
		kill -0 "$!" 2>/dev/null || break
		sleep 0.1
	done
	echo "federation: $1 did not start:" >&2
	cat "$FED_DIR/$1.err" "$FED_DIR/$1.log" >&2 2>/dev/null
	return 1
}

# The members file with each node's endpoint added under its entry.
fed_write_members() { # ORG=PORT ...
	awk -v ports="$*" '
		BEGIN { n = split(ports, a, " "); for (i = 1; i <= n; i++) { split(a[i], kv, "="); port[kv[1]] = kv[2] } }
		{ print }
		/^  - id: / { id = $3 }
		/^    roles: / && (id in port) { print "    endpoint: https://127.0.0.1:" port[id] }
	' "$FED_MEMBERS_EXAMPLE" >"$FED_DIR/members.yaml.new"
	mv "$FED_DIR/members.yaml.new" "$FED_DIR/members.yaml"
}

fed_start() {
	ports=
	for org in $FED_NODES; do
		fed_serve "$org" || return 1
		ports="$ports $org=$fed_port"
	done
	# The hub reads the endpoints at start (and on SIGHUP).
	# shellcheck disable=SC2086 # one argument per ORG=PORT
	fed_write_members $ports
	fed_serve hub || return 1
	# shellcheck disable=SC2034 # used by the scripts that source this file
	FED_HUB_URL="https://localhost:$fed_port"
}

# Which node listens where, one line each.
fed_list() {
	for org in $FED_NODES; do
		printf '  %-26s %s  (%s)\n' "$org" \
			"$(sed -n "/^  - id: $org\$/,/^  - id:/s/^    endpoint: //p" "$FED_DIR/members.yaml")" \
			"$(for f in "$FED_DIR/data/$org"/*.csv; do f=${f##*/}; printf '%s ' "${f%.csv}"; done | sed 's/ $//')"
	done
}

# SIGTERM to every process, the hub first (it stops asking), then the nodes;
# each drains and must exit 0. Returns 1 if one did not.
fed_stop() {
	rc=0
	procs=
	for p in $FED_PROCS; do procs="$p $procs"; done
	FED_PROCS=
	for p in $procs; do kill -TERM "${p#*:}" 2>/dev/null || true; done
	for p in $procs; do
		st=0
		wait "${p#*:}" || st=$?
		if [ "$st" -ne 0 ]; then
			echo "federation: ${p%%:*} exited with status $st" >&2
			cat "$FED_DIR/${p%%:*}.err" >&2 2>/dev/null
			rc=1
		fi
	done
	return $rc
}
