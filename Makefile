# Noordpoort — plain Makefile. `make help` lists the targets.
#
# Builds: build/noordpoort (release, -O2) and build/asan/noordpoort
# (AddressSanitizer + UndefinedBehaviorSanitizer, used by `make test`).

CC       ?= cc
PREFIX   ?= /usr/local
VERSION  := 0.1.0
WARN     := -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wcast-qual -Wsign-compare -Wformat=2 -Wno-format-nonliteral
ifeq ($(CI),true)
WARN     += -Werror
endif
CPPFLAGS := -D_GNU_SOURCE -DNOORDPOORT_VERSION='"$(VERSION)"'
CFLAGS   ?= -O2 -g
LIBS     := -lnghttp2 -lssl -lcrypto -lsodium -lcjson -lyaml -lsqlite3 -lpthread
SANFLAGS := -O1 -g -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=undefined,float-cast-overflow
# The release binary gets the hardening every distribution builds with
# (Debian's hardening=+all, Fedora's defaults): fortified libc calls, stack
# canaries, stack-clash probes, CET, PIE, read-only relocations resolved at
# start (full RELRO + BIND_NOW). tests/integration/test_hardening.sh checks
# the binary. Not for the sanitizer or fuzz builds: FORTIFY and ASan check
# the same calls and get in each other's way.
HARDEN_CPPFLAGS := -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=3
HARDEN_CFLAGS   := -fstack-protector-strong -fstack-clash-protection -fcf-protection -fPIE
HARDEN_LDFLAGS  := -pie -Wl,-z,relro,-z,now

SRC      := $(wildcard common/*.c crypto/*.c synth/*.c adapters/*.c policies/*.c aggregate/*.c \
                      gateway/*.c audit/*.c node/*.c hub/*.c cli/*.c)
LIBSRC   := $(filter-out cli/main.c,$(SRC))
OBJ      := $(SRC:%.c=build/obj/%.o)
ASANOBJ  := $(SRC:%.c=build/asan/obj/%.o)
UNIT     := $(patsubst tests/unit/%.c,build/asan/tests/%,$(wildcard tests/unit/test_*.c))
STAMP    := build/.deps-ok

.PHONY: all deps test unit demo federation bench fuzz certs clean install uninstall help tls-scan
all: build/noordpoort

help:
	@echo "make            build build/noordpoort"
	@echo "make deps       install every Debian package any target needs (apt-get; root)"
	@echo "make certs      create the development PKI in certs/dev/"
	@echo "make demo       the whole federation on loopback: a gateway, a node, the hub and nine nodes"
	@echo "make federation start the hub and a node per partner; ask with noordpoort query"
	@echo "make test       build with ASan+UBSan and run unit + integration tests"
	@echo "make bench      run the benchmarks (bench/)"
	@echo "make tls-scan   testssl + sslscan against a loopback gateway (apt-get install testssl.sh sslscan)"
	@echo "make install PREFIX=/usr/local"
	@echo "make clean"

# Install missing Debian packages once per checkout, each target its own
# group (scripts/deps.sh: base for building and the demo, test, bench, fuzz,
# tls-scan); the script says exactly what to run when it cannot install
# them itself.
$(STAMP): scripts/deps.sh Makefile
	@sh scripts/deps.sh base
	@mkdir -p build && touch $@
build/.deps-%-ok: scripts/deps.sh Makefile
	@sh scripts/deps.sh $*
	@mkdir -p build && touch $@
# Stamps, not intermediates: without this make deletes build/.deps-clang-ok
# after a run (it is only an order-only prerequisite) and checks the
# packages again next time.
.PRECIOUS: build/.deps-%-ok
deps:
	@sh scripts/deps.sh all

build/obj/%.o: %.c $(STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(HARDEN_CPPFLAGS) $(WARN) $(CFLAGS) $(HARDEN_CFLAGS) -MMD -MP -c $< -o $@
build/asan/obj/%.o: %.c $(STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(WARN) $(SANFLAGS) -MMD -MP -c $< -o $@

build/noordpoort: $(OBJ)
	$(CC) $(CFLAGS) $(HARDEN_CFLAGS) $(HARDEN_LDFLAGS) -o $@ $(OBJ) $(LIBS)
build/asan/noordpoort: $(ASANOBJ)
	$(CC) $(SANFLAGS) -o $@ $(ASANOBJ) $(LIBS)

# Unit tests #include the .c files they exercise (to reach static functions);
# whatever else they call comes from an archive of the other objects (the
# linker takes from it only what the test did not define itself).
build/asan/libnoordpoort.a: $(filter-out build/asan/obj/cli/main.o,$(ASANOBJ))
	@rm -f $@
	ar rcs $@ $^
build/asan/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) build/asan/libnoordpoort.a $(STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(WARN) -Wno-missing-prototypes $(SANFLAGS) -o $@ $< \
		build/asan/libnoordpoort.a $(LIBS)

certs:
	@sh certs/mkcerts.sh certs/dev

# libFuzzer targets (clang), with ASan+UBSan. The committed seed corpora in
# tests/fuzz/corpus/ stay small; what the fuzzer grows lives in build/fuzz/.
# A fuzz build shrinks the CSV reader's buffers (FUZZ_DEFS) so small inputs
# reach refills, records longer than the buffer and fields past the cap.
FUZZ_SECONDS ?= 60
FUZZERS  := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZFLAGS := -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
FUZZ_DEFS := -DADAPTER_FIELD_MAX=64 -DCSV_READ_BUF=256
FUZZOBJ  := $(LIBSRC:%.c=build/fuzz/obj/%.o)
# nghttp2 and libyaml from Debian's source packages, instrumented
# (scripts/fuzz-third-party.sh, run by `make fuzz` only): `make fuzz` links
# build/fuzz/deep/fuzz_* against them; `make test` keeps build/fuzz/fuzz_*
# on the distribution's libraries and never builds them.
FUZZ_TP  := build/fuzz/third_party
FUZZ_DEEP := $(patsubst build/fuzz/%,build/fuzz/deep/%,$(FUZZERS))
FUZZ_LIBS_OTHER := $(filter-out -lnghttp2 -lyaml,$(LIBS))
# The library is compiled once with clang's coverage instrumentation; each
# target links it.
build/fuzz/obj/%.o: %.c $(STAMP) | build/.deps-clang-ok
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) $(FUZZ_DEFS) $(FUZZFLAGS) -Wno-unused-function -MMD -MP -c $< -o $@
build/fuzz/libfuzz.a: $(FUZZOBJ)
	@rm -f $@
	ar rcs $@ $^
build/fuzz/deep/%: tests/fuzz/%.c $(wildcard tests/fuzz/*.h) build/fuzz/libfuzz.a $(FUZZ_TP)/lib/libnghttp2.a $(FUZZ_TP)/lib/libyaml.a
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) $(FUZZ_DEFS) -I$(FUZZ_TP)/include $(FUZZFLAGS) -fsanitize=fuzzer -Wno-unused-function \
		-o $@ $< build/fuzz/libfuzz.a $(FUZZ_TP)/lib/libnghttp2.a $(FUZZ_TP)/lib/libyaml.a $(FUZZ_LIBS_OTHER)
build/fuzz/%: tests/fuzz/%.c $(wildcard tests/fuzz/*.h) build/fuzz/libfuzz.a
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) $(FUZZ_DEFS) $(FUZZFLAGS) -fsanitize=fuzzer -Wno-unused-function -o $@ $< build/fuzz/libfuzz.a $(LIBS)
# FUZZ_SECONDS per target (the last third with -max_len=140000
# -len_control=0); per target and phase: executions, exec/s, cov, ft
# (tests/fuzz/run.sh, build/fuzz/report.md). FUZZ_THIRD_PARTY=0 skips the
# instrumented libraries.
FUZZ_THIRD_PARTY ?= 1
fuzz: build/.deps-fuzz-ok
	@if [ "$(FUZZ_THIRD_PARTY)" = 1 ] && sh scripts/fuzz-third-party.sh $(FUZZ_TP); then \
		$(MAKE) --no-print-directory $(FUZZ_DEEP) && sh tests/fuzz/run.sh build/fuzz/deep $(FUZZ_DEEP); \
	else \
		echo "fuzz: using the distribution's nghttp2 and libyaml (uninstrumented)"; \
		$(MAKE) --no-print-directory $(FUZZERS) && sh tests/fuzz/run.sh build/fuzz $(FUZZERS); \
	fi

test: $(STAMP) build/.deps-test-ok build/asan/noordpoort build/noordpoort $(UNIT) $(FUZZERS) certs
	@sh tests/run.sh

unit: $(UNIT)
	@for t in $(UNIT); do $$t || exit 1; done

demo: $(STAMP) build/noordpoort certs
	@sh scripts/demo.sh

federation: $(STAMP) build/noordpoort certs
	@sh scripts/federation.sh run

bench: $(STAMP) build/.deps-bench-ok build/noordpoort certs
	@sh bench/h2/run.sh build/noordpoort certs/dev
	@sh bench/pseudo/run.sh
	@sh bench/parse/run.sh
	@sh bench/aggregate/run.sh build/noordpoort certs/dev
	@sh bench/wire/run.sh

tls-scan: $(STAMP) build/.deps-tls-scan-ok build/noordpoort certs
	@sh tests/tls/scan.sh build/noordpoort certs/dev

# make install [DESTDIR=] [PREFIX=/usr/local]: the binary, the man pages,
# examples for /etc/noordpoort (examples/system, the members file, the
# policies and the federation's questions) and the systemd units with their
# sysusers.d entry. SYSTEMD_UNITDIR and SYSUSERSDIR move the last two (a
# distribution with PREFIX=/usr keeps the defaults).
BINDIR          ?= $(PREFIX)/bin
MANDIR          ?= $(PREFIX)/share/man
EXAMPLEDIR      ?= $(PREFIX)/share/noordpoort/examples
SYSTEMD_UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR     ?= $(PREFIX)/lib/sysusers.d
UNITS           := noordpoort-node@.service noordpoort-hub.service
POLICY_EXAMPLES := $(wildcard policies/examples/*.yaml)
install: build/noordpoort
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(EXAMPLEDIR)/policies $(DESTDIR)$(EXAMPLEDIR)/federation \
		$(DESTDIR)$(SYSTEMD_UNITDIR) $(DESTDIR)$(SYSUSERSDIR)
	install -m 0755 build/noordpoort $(DESTDIR)$(BINDIR)/noordpoort
	install -m 0644 man/noordpoort.1 $(DESTDIR)$(MANDIR)/man1/noordpoort.1
	install -m 0644 man/noordpoort.conf.5 man/noordpoort-policy.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 examples/system/node.yaml examples/system/hub.yaml $(DESTDIR)$(EXAMPLEDIR)/
	install -m 0644 examples/single/members.yaml $(DESTDIR)$(EXAMPLEDIR)/members.yaml
	install -m 0644 $(POLICY_EXAMPLES) $(DESTDIR)$(EXAMPLEDIR)/policies/
	install -m 0644 examples/federation/*.json examples/federation/README.md $(DESTDIR)$(EXAMPLEDIR)/federation/
	for u in $(UNITS); do \
		sed 's|@BINDIR@|$(BINDIR)|g' dist/systemd/$$u >$(DESTDIR)$(SYSTEMD_UNITDIR)/$$u.tmp && \
		chmod 0644 $(DESTDIR)$(SYSTEMD_UNITDIR)/$$u.tmp && \
		mv $(DESTDIR)$(SYSTEMD_UNITDIR)/$$u.tmp $(DESTDIR)$(SYSTEMD_UNITDIR)/$$u || exit 1; \
	done
	install -m 0644 dist/systemd/noordpoort.sysusers $(DESTDIR)$(SYSUSERSDIR)/noordpoort.conf

# Removes what install put there (never /etc/noordpoort or /var/lib/noordpoort).
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/noordpoort $(DESTDIR)$(MANDIR)/man1/noordpoort.1 \
		$(DESTDIR)$(MANDIR)/man5/noordpoort.conf.5 $(DESTDIR)$(MANDIR)/man5/noordpoort-policy.5 \
		$(DESTDIR)$(SYSUSERSDIR)/noordpoort.conf $(addprefix $(DESTDIR)$(SYSTEMD_UNITDIR)/,$(UNITS))
	rm -rf $(DESTDIR)$(EXAMPLEDIR)
	-rmdir $(DESTDIR)$(PREFIX)/share/noordpoort 2>/dev/null

clean:
	rm -rf build

-include $(OBJ:.o=.d) $(ASANOBJ:.o=.d) $(FUZZOBJ:.o=.d)
