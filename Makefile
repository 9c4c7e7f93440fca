# Makefile - builds the gateway and the product service, runs tests.
#
#   make            build bin/gateway and bin/product-service
#   make run        the whole stack on loopback (deploy/run-local.sh)
#   make test       unit tests, then integration tests on real Redis/PostgreSQL,
#                   then the smoke benchmark (make bench-smoke)
#   make SANITIZE=1 test   the same under ASan and UBSan
#   make fuzz       every libFuzzer target for FUZZ_SECONDS (60) each
#   make fmt | lint | clean

CC       ?= cc
SANITIZE ?= 0
BUILD    ?= build$(if $(filter 1,$(SANITIZE)),-san,)
BIN      := $(BUILD)/bin

CFLAGS_BASE := -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wshadow \
	-Wno-missing-field-initializers -D_GNU_SOURCE -pthread
ifeq ($(SANITIZE),1)
CFLAGS_BASE += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined
LDFLAGS     += -fsanitize=address,undefined
endif
# Test builds compile in the hooks that tests use to hold a replica at a
# chosen point; release builds never contain them.
TEST_HOOKS ?= 1
ifeq ($(TEST_HOOKS),1)
CFLAGS_BASE += -DCM_TEST_HOOKS=1
endif

VERSION  := 0.1.0
GIT_REV  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
CFLAGS_BASE += -DCM_VERSION='"$(VERSION)"' -DCM_GIT_REV='"$(GIT_REV)"'
# The files that print the revision depend on a stamp that changes only
# when the revision does, so an incremental build never mixes two.
REV_STAMP := $(BUILD)/gen/git-rev
REV_USERS := gateway/gw_main.c gateway/gw_metrics.c \
	services/product/ps_main.c services/product/ps_metrics.c

INCLUDES := -Icommon -I$(BUILD)/gen -I$(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)
CFLAGS   += $(CFLAGS_BASE) $(INCLUDES) -MMD -MP
# common/cm_tls.c checks certificates with mbedTLS, the library NNG's TLS
# engine uses (Debian's libnng links the same libmbedtls); the gateway's
# API key digests use its libmbedcrypto too. common/cm_redis.c keeps the
# hiredis connection both binaries use, on libevent.
LDLIBS_COMMON := -lprotobuf-c -lnng -lmbedtls -lmbedx509 -lmbedcrypto \
	-lhiredis -levent -pthread
LDLIBS_GW := -levent -levent_pthreads -ljson-c -lm $(LDLIBS_COMMON)
LDLIBS_PS := -levent -levent_pthreads -lpq -lnng $(LDLIBS_COMMON)

PROTOS   := $(wildcard proto/*.proto)
PB_C     := $(patsubst proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTOS))
PB_H     := $(PB_C:.c=.h)
PB_O     := $(PB_C:.c=.o)

COMMON_SRC := $(wildcard common/*.c)
GW_SRC     := $(filter-out gateway/gw_main.c,$(wildcard gateway/*.c))
PS_SRC     := $(filter-out services/product/ps_main.c,$(wildcard services/product/*.c))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
COMMON_O := $(call obj,$(COMMON_SRC)) $(PB_O)
GW_O     := $(call obj,$(GW_SRC))
MIGRATIONS := $(sort $(wildcard services/product/migrations/*.sql))
PS_O     := $(call obj,$(PS_SRC)) $(BUILD)/gen/ps_migrations.o

UNIT_SRC := $(wildcard common/tests/test_*.c gateway/tests/test_*.c \
	services/product/tests/test_*.c)
UNIT_BIN := $(patsubst %.c,$(BUILD)/tests/%,$(notdir $(UNIT_SRC)))
ITEST_SRC := $(wildcard tests/integration/test_*.c)
ITEST_LIB := $(filter-out $(ITEST_SRC),$(wildcard tests/integration/*.c))
ITEST_BIN := $(patsubst %.c,$(BUILD)/tests/%,$(notdir $(ITEST_SRC)))

# Fuzz targets (the fuzz section below says more).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= 1
FUZZ_BUILD   ?= build-fuzz
# Optional: the container images build from an allow-list without fuzz/.
-include fuzz/targets.mk
FUZZ_TARGETS := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_BINS    := $(addprefix $(FUZZ_BUILD)/fuzz_,$(FUZZ_TARGETS))
FUZZ_REPLAY  := $(addprefix $(BUILD)/fuzz/replay_,$(FUZZ_TARGETS))
FUZZ_HDRS    := $(wildcard common/*.h gateway/*.h services/product/*.h \
	fuzz/*.h)
FUZZ_CFLAGS  := -std=gnu11 -g -O1 -fno-omit-frame-pointer -Wall -Wextra \
	-Werror -Wshadow -Wno-missing-field-initializers -D_GNU_SOURCE \
	-pthread -DCM_TEST_HOOKS=1 -DCM_VERSION='"$(VERSION)"' \
	-DCM_GIT_REV='"$(GIT_REV)"' -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -Icommon -Igateway -Iservices/product \
	-Ifuzz -I$(FUZZ_BUILD)/gen
FUZZ_INC     := -Igateway -Iservices/product -Ifuzz

.SECONDARY: $(PB_C) $(PB_H) $(BUILD)/gen/ps_migrations.c
.PHONY: all run test test-unit test-integration deps fmt lint clean bench
all: $(BIN)/gateway $(BIN)/product-service

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(dir $@)
	protoc-c --proto_path=proto --c_out=$(BUILD)/gen $<

$(BUILD)/gen/%.pb-c.o: $(BUILD)/gen/%.pb-c.c
	$(CC) $(CFLAGS) -Wno-unused-parameter -c -o $@ $<

$(BUILD)/gen/ps_migrations.c: $(MIGRATIONS) scripts/embed-sql.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-sql.sh $(MIGRATIONS) > $@

$(BUILD)/gen/ps_migrations.o: $(BUILD)/gen/ps_migrations.c
	$(CC) $(CFLAGS) -Iservices/product -c -o $@ $<

.PHONY: FORCE
$(REV_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(GIT_REV)' | cmp -s - $@ 2>/dev/null || echo '$(GIT_REV)' > $@
$(patsubst %.c,$(BUILD)/obj/%.o,$(REV_USERS)): $(REV_STAMP)
$(BUILD)/tests/test_gw_metrics $(BUILD)/tests/test_ps_metrics: $(REV_STAMP)

$(BUILD)/obj/%.o: %.c | $(PB_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BIN)/gateway: $(call obj,gateway/gw_main.c) $(GW_O) $(COMMON_O)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_GW)

$(BIN)/product-service: $(call obj,services/product/ps_main.c) $(PS_O) $(COMMON_O)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_PS)

# Unit tests link the component's objects (all but main) with cmocka.
$(BUILD)/tests/test_cm_%: common/tests/test_cm_%.c $(COMMON_O)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lcmocka -ljson-c $(LDLIBS_COMMON)
$(BUILD)/tests/test_gw_%: gateway/tests/test_gw_%.c $(GW_O) $(COMMON_O)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Igateway $(LDFLAGS) -o $@ $(filter %.c %.o,$^) -lcmocka $(LDLIBS_GW)
$(BUILD)/tests/test_ps_%: services/product/tests/test_ps_%.c $(PS_O) $(COMMON_O)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iservices/product $(LDFLAGS) -o $@ $(filter %.c %.o,$^) -lcmocka \
		$(LDLIBS_PS)
$(BUILD)/tests/test_%: tests/integration/test_%.c $(ITEST_LIB) $(wildcard tests/integration/*.h) $(COMMON_O)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/integration $(LDFLAGS) -o $@ $(filter %.c %.o,$^) -lcmocka -ljson-c -lpq -lmbedcrypto $(LDLIBS_COMMON)

deps:
	@bash deploy/install-deps.sh

run: deps all
	@BUILD=$(BUILD) bash deploy/run-local.sh

test: deps
	@$(MAKE) --no-print-directory test-unit k8s-check test-integration \
		test-bench

test-unit: $(UNIT_BIN) openapi-check $(FUZZ_REPLAY)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== $(BUILD)/fuzz/replay_$$t"; \
		$(BUILD)/fuzz/replay_$$t fuzz/corpus/$$t fuzz/regressions/$$t; \
	done

# OpenAPI check: lints gateway/openapi.yaml with the redocly pinned in
# tools/openapi/package-lock.json (offline) and compares its operations with
# the route table (`gateway --list-routes`). npm ci runs only when
# node_modules is missing or older than the lockfile.
OPENAPI_DIR  := tools/openapi
OPENAPI_DEPS := $(OPENAPI_DIR)/node_modules/.package-lock.json
NODE_CHECK    = command -v node >/dev/null 2>&1 && \
	command -v npm >/dev/null 2>&1 || { echo "openapi-check: node and \
	npm are missing (make deps installs Debian's nodejs and npm)" >&2; \
	exit 1; }
.PHONY: openapi-check
openapi-check: $(BIN)/gateway $(OPENAPI_DEPS)
	@$(NODE_CHECK)
	node $(OPENAPI_DIR)/check.js $(BIN)/gateway gateway/openapi.yaml

$(OPENAPI_DEPS): $(OPENAPI_DIR)/package.json $(OPENAPI_DIR)/package-lock.json
	@$(NODE_CHECK)
	cd $(OPENAPI_DIR) && npm ci --no-audit --no-fund
	@touch $@

test-integration: all $(ITEST_BIN)
	@BUILD=$(BUILD) bash tests/run-integration.sh $(ITEST_BIN)

# Benchmarks (bench/bench.sh): the whole stack, its ceilings and the Node.js
# peer on loopback. Knobs from the environment or the command line:
# REPLICAS GATEWAYS DURATION WARMUP REPEAT CONNECTIONS THREADS PRODUCTS.
#   make bench         REPEAT=3 runs of 15 s per scenario; bench/results/
#   make bench-smoke   the same pipeline in about a minute ($(BUILD)/bench/)
BENCH_BIN := $(BUILD)/bench/bare_http $(BUILD)/bench/bare_nng
.PHONY: bench-smoke bench-deps bench-bin

$(BUILD)/bench/bare_http: bench/bare_http.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -levent -pthread
$(BUILD)/bench/bare_nng: bench/bare_nng.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -lnng -pthread

bench-deps: deps

bench-bin: all $(BENCH_BIN)

bench: bench-deps
	@$(MAKE) --no-print-directory bench-bin
	@BUILD=$(BUILD) bash bench/bench.sh full

bench-smoke: bench-deps
	@$(MAKE) --no-print-directory bench-bin
	@BUILD=$(BUILD) bash bench/bench.sh smoke

# make profile: instructions per hot GET of the gateway and a replica, and
# of the bare HTTP and NNG programs, under valgrind's callgrind
# (bench/callgrind.sh; $(BUILD)/callgrind/<timestamp>/summary.txt).
.PHONY: profile
profile:
	@WITH_PROFILE=1 bash deploy/install-deps.sh
	@$(MAKE) --no-print-directory bench-bin
	@BUILD=$(BUILD) bash bench/callgrind.sh

# make test runs the smoke benchmark so that it cannot rot; under the
# sanitizers the figures would mean nothing and the stack runs several
# times slower, so it is left to the normal build.
.PHONY: test-bench
ifeq ($(SANITIZE),1)
test-bench:
	@echo "bench-smoke: skipped under SANITIZE=1 (ASan/UBSan builds are" \
		"too slow for load figures; make test runs it)"
else
test-bench: bench-bin
	@BUILD=$(BUILD) bash bench/bench.sh smoke
endif

# make top: request rate, 5xx share, p99 and cache hit ratio of the
# gateway that `make run` started, scraped from its admin /metrics every
# second (deploy/top.sh; TOP_ITERATIONS=N stops after N rows).
.PHONY: top
top:
	@bash deploy/top.sh

fmt:
	clang-format -i $(COMMON_SRC) common/*.h gateway/*.[ch] \
		services/product/*.[ch] $(UNIT_SRC) tests/integration/*.[ch] \
		$(wildcard fuzz/*.[ch])

lint:
	clang-format --dry-run --Werror $(COMMON_SRC) common/*.h gateway/*.[ch] \
		services/product/*.[ch] $(UNIT_SRC) tests/integration/*.[ch] \
		$(wildcard fuzz/*.[ch])

clean:
	rm -rf build build-san $(FUZZ_BUILD)

# --- containers and Kubernetes (deploy/docker, deploy/compose.yaml, k8s/) ---
#   make images          gateway and product-service images (podman; the
#                        Debian base is debootstrapped locally, cached in var/)
#   make container-test  images, then the compose stack end to end, torn down
#   make k8s-check       renders k8s/ overlays; schema, policy, self-test
.PHONY: images container-test k8s-check
images:
	@bash deploy/docker/images.sh

container-test:
	@bash deploy/docker/container-test.sh

k8s-check: $(BIN)/gateway $(BIN)/product-service
	@GATEWAY_BIN=$(BIN)/gateway PRODUCT_BIN=$(BIN)/product-service \
		bash tests/deploy/k8s-check.sh
# --- end of containers and Kubernetes ---

# --- fuzzing (fuzz/, README "Fuzzing") ---
# Each fuzz/fuzz_<name>.c is a libFuzzer target; fuzz/targets.mk lists the
# repo sources it links (FUZZ_<name>_SRC) and any libraries
# (FUZZ_<name>_LIBS). Its seeds are fuzz/corpus/<name>/, the inputs of
# crashes found and fixed fuzz/regressions/<name>/.
#   make fuzz [FUZZ_SECONDS=60] [FUZZ_JOBS=1]
#                                builds every target with clang (libFuzzer,
#                                ASan, UBSan) in build-fuzz/ and runs each on
#                                a scratch copy of its seeds and regressions;
#                                fails on a crash, leak or timeout
#   make fuzz-merge              adds the inputs of the last run that reach
#                                new code to fuzz/corpus/<name>/ (minimised)
# make test replays every corpus and regression through the same targets
# built with $(CC) (fuzz/replay.c), and under SANITIZE=1 sanitized.
.PHONY: fuzz fuzz-build fuzz-merge fuzz-seeds

# Fakes that fuzz/ keeps for a target are built like the repo's objects.
$(BUILD)/obj/fuzz/%.o: CFLAGS += $(FUZZ_INC)

$(FUZZ_BUILD)/gen/%.pb-c.c $(FUZZ_BUILD)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(dir $@)
	protoc-c --proto_path=proto --c_out=$(FUZZ_BUILD)/gen $<

# Generated, but not intermediate: keep them between builds (a fake in
# fuzz/ is an object no other rule names).
.SECONDARY: $(FUZZ_BUILD)/gen/catalog.pb-c.c $(FUZZ_BUILD)/gen/catalog.pb-c.h \
	$(foreach t,$(FUZZ_TARGETS),$(call obj,$(FUZZ_$(t)_SRC)))

fuzz-build: $(FUZZ_BINS)

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) \
		FUZZ_JOBS=$(FUZZ_JOBS) bash fuzz/run.sh $(FUZZ_TARGETS)

fuzz-merge: fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) bash fuzz/run.sh --merge $(FUZZ_TARGETS)

# The protobuf seeds, made from real messages by fuzz/gen_seeds.c.
$(BUILD)/fuzz/gen_seeds: fuzz/gen_seeds.c \
		$(call obj,services/product/ps_entry.c services/product/ps_msg.c \
		common/cm.c) $(PB_O)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(CFLAGS)) $(FUZZ_INC) $(LDFLAGS) -o $@ \
		$^ $(LDLIBS_COMMON)

fuzz-seeds: $(BUILD)/fuzz/gen_seeds
	@mkdir -p fuzz/corpus/entry fuzz/corpus/proto
	$(BUILD)/fuzz/gen_seeds fuzz/corpus/entry fuzz/corpus/proto

# A target's list of sources is known only per target, hence the second
# expansion of the prerequisites below.
.SECONDEXPANSION:
$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $$(FUZZ_$$*_SRC) \
		$(FUZZ_BUILD)/gen/catalog.pb-c.c $(FUZZ_HDRS) fuzz/targets.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^) \
		$(FUZZ_$*_LIBS) -lprotobuf-c

$(BUILD)/fuzz/replay_%: fuzz/replay.c fuzz/fuzz_%.c \
		$$(call obj,$$(FUZZ_$$*_SRC)) $(PB_O) fuzz/targets.mk
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(CFLAGS)) $(FUZZ_INC) $(LDFLAGS) -o $@ \
		$(filter %.c %.o,$^) \
		$(FUZZ_$*_LIBS) $(LDLIBS_COMMON)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
