# pipeops-agent: one Makefile for build, tests, demo, sanitizers and install.
#
#   make            build agent/pipeops-agent (objects in build/<variant>/)
#   make test       every unit and integration test; ends with "N passed, N failed"
#   make demo       the dual-connection flow against the bundled simulators
#   make tsan|asan  sanitizer builds running the unit tests
#   make deps       install missing Debian packages (no-op when all present)

VERSION   := 0.1.0
VARIANT   ?= release
BUILD     := build/$(VARIANT)
PREFIX    ?= /usr/local
DESTDIR   ?=
PYTHON    := /usr/bin/python3

CC        ?= cc
PKGS      := jansson libcurl inih libmicrohttpd
WARN      := -Wall -Wextra -Wshadow -Wformat=2 -Wconversion -Wno-sign-conversion \
             -Wstrict-prototypes -Wmissing-prototypes -Wvla \
             -Wno-format-zero-length -Wno-format-truncation
# -Wno-sign-conversion: size_t/int mixing with libc and jansson APIs would
# need a cast on nearly every length; -Wconversion still catches narrowing.
# -Wno-format-zero-length: LOG_*(msg, "") is how a line without fields is
# written. -Wno-format-truncation: snprintf into fixed error and log
# buffers truncates on purpose.
ifdef CI
WARN      += -Werror
endif
ifdef WERROR
WARN      += -Werror
endif
CPPFLAGS  += -I. -D_GNU_SOURCE -DPIPEOPS_VERSION='"$(VERSION)"' -MMD -MP
CFLAGS    ?= -O2 -g
CFLAGS    += -std=c11 -pthread $(WARN) $(shell pkg-config --cflags $(PKGS))
LDLIBS    += -lwslay -lmbedtls -lmbedx509 -lmbedcrypto \
             $(shell pkg-config --libs $(PKGS)) -pthread

ifeq ($(VARIANT),asan)
CFLAGS    += -fsanitize=address,undefined -fno-omit-frame-pointer -O1
LDFLAGS   += -fsanitize=address,undefined
endif
ifeq ($(VARIANT),tsan)
CFLAGS    += -fsanitize=thread -O1
LDFLAGS   += -fsanitize=thread
endif

COMMON_SRC := $(wildcard common/*.c)
K8S_SRC    := $(wildcard k8s/*.c)
AGENT_SRC  := $(filter-out agent/main.c,$(wildcard agent/*.c))
LIB_SRC    := $(COMMON_SRC) $(K8S_SRC) $(AGENT_SRC)
LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB        := $(BUILD)/libpipeops.a
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

AGENT_BIN  := agent/pipeops-agent

.PHONY: all test unit integration demo lint tsan asan valgrind bench deps \
        install clean fuzz
all: $(AGENT_BIN)

# Quiet by default; `make V=1` prints every command.
ifeq ($(V),1)
Q :=
else
Q := @
endif

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/pipeops-agent: $(BUILD)/agent/main.o $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The installed/run binary lives in agent/ (ignored by git); it is a copy of
# the release build so `make` leaves one obvious thing to run. Copy then
# rename, so a running agent ("Text file busy") never blocks a build.
$(AGENT_BIN): $(BUILD)/pipeops-agent
	$(Q)cp $< $@.tmp && mv -f $@.tmp $@

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC+LD   $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

unit: $(UNIT_BIN)
	@tests/run-unit.sh $(UNIT_BIN)

# Integration tests need the release agent binary.
test: deps
	@$(MAKE) --no-print-directory $(AGENT_BIN) $(UNIT_BIN)
	@tests/run-all.sh "$(BUILD)" $(UNIT_BIN)

demo: deps
	@$(MAKE) --no-print-directory $(AGENT_BIN)
	@$(PYTHON) tests/demo.py

# ThreadSanitizer: every unit test (ring stress included), then the
# end-to-end pipeline (reader -> workers -> writer, both endpoints) with a
# TSan agent that stops at the first report.
TSAN_RUN := TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1"
tsan:
	$(MAKE) VARIANT=tsan unit build/tsan/pipeops-agent
	$(TSAN_RUN) PIPEOPS_AGENT_BIN=build/tsan/pipeops-agent \
		$(PYTHON) tests/integration/test_e2e.py

asan:
	$(MAKE) VARIANT=asan unit

lint:
	@tests/lint.sh

deps:
	@tests/deps.sh

# libFuzzer harnesses (tests/fuzz/fuzz_NAME.c, clang): built in build/fuzz/
# and run one after the other for FUZZ_SECONDS each, on a working corpus in
# build/fuzz/corpus/NAME seeded from tests/fuzz/corpus/NAME (dictionary
# tests/fuzz/NAME.dict when present). A crash stops the run and leaves its
# input in build/fuzz/crashes/NAME/.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_NAMES   := upgrade frames msg
FUZZ_SRC     := common/ws.c common/url.c common/tls.c common/rand.c common/proxy.c \
                common/util.c common/log.c agent/msg.c
FUZZ_FLAGS   := -g -O1 -fno-omit-frame-pointer -std=c11 -pthread \
                -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined
FUZZ_BIN     := $(FUZZ_NAMES:%=build/fuzz/fuzz_%)

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_SRC) $(wildcard common/*.h) \
		agent/msg.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -I. -D_GNU_SOURCE -DPIPEOPS_VERSION='"$(VERSION)"' \
		$(FUZZ_FLAGS) $(shell pkg-config --cflags jansson) -o $@ $< \
		$(FUZZ_SRC) -lwslay -lmbedtls -lmbedx509 -lmbedcrypto \
		$(shell pkg-config --libs jansson)

fuzz: $(FUZZ_BIN)
	@for n in $(FUZZ_NAMES); do \
		mkdir -p build/fuzz/corpus/$$n build/fuzz/crashes/$$n; \
		echo "fuzz: $$n for $(FUZZ_SECONDS) s"; \
		dict=; [ -f tests/fuzz/$$n.dict ] && dict=-dict=tests/fuzz/$$n.dict; \
		build/fuzz/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) \
			-print_final_stats=1 $$dict \
			-artifact_prefix=build/fuzz/crashes/$$n/ \
			build/fuzz/corpus/$$n tests/fuzz/corpus/$$n || exit 1; \
	done

# /etc stays /etc whatever PREFIX is; the init script and defaults file get
# DAEMON=$(PREFIX)/sbin/pipeops-agent. An existing /etc/default file or
# agent.ini is never overwritten (the sample is always in share/doc).
install: $(AGENT_BIN)
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man8 \
		$(DESTDIR)$(PREFIX)/share/doc/pipeops-agent \
		$(DESTDIR)/etc/init.d $(DESTDIR)/etc/default
	install -d -m 0750 $(DESTDIR)/etc/pipeops $(DESTDIR)/var/lib/pipeops-agent
	install -m 0755 $(AGENT_BIN) $(DESTDIR)$(PREFIX)/sbin/pipeops-agent
	sed 's|^DAEMON=/usr/sbin/pipeops-agent$$|DAEMON=$(PREFIX)/sbin/pipeops-agent|' \
		etc/init.d/pipeops-agent >$(DESTDIR)/etc/init.d/pipeops-agent
	chmod 0755 $(DESTDIR)/etc/init.d/pipeops-agent
	if [ -e $(DESTDIR)/etc/default/pipeops-agent ]; then \
		echo "keeping existing $(DESTDIR)/etc/default/pipeops-agent"; \
	else \
		sed 's|^#DAEMON=/usr/sbin/pipeops-agent$$|#DAEMON=$(PREFIX)/sbin/pipeops-agent|' \
			etc/default/pipeops-agent >$(DESTDIR)/etc/default/pipeops-agent && \
		chmod 0644 $(DESTDIR)/etc/default/pipeops-agent; \
	fi
	install -m 0644 docs/pipeops-agent.8 $(DESTDIR)$(PREFIX)/share/man/man8/pipeops-agent.8
	install -m 0644 etc/pipeops-agent.ini \
		$(DESTDIR)$(PREFIX)/share/doc/pipeops-agent/agent.ini.sample
	if [ -e $(DESTDIR)/etc/pipeops/agent.ini ]; then \
		echo "keeping existing $(DESTDIR)/etc/pipeops/agent.ini"; \
	else \
		install -m 0640 etc/pipeops-agent.ini $(DESTDIR)/etc/pipeops/agent.ini; \
	fi

clean:
	rm -rf build $(AGENT_BIN)

-include $(LIB_OBJ:.o=.d) $(BUILD)/agent/main.d
