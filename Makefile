# Tasked — one non-recursive Makefile.
#   make            build bin/tasked-controller and bin/tasked-runner
#   make test       install what is missing, then unit (ASan+UBSan), fuzz replay, integration
#   make demo       local cluster in a box running examples/
#   make up / down  start / stop that cluster (state in .tasked/)

CC       ?= cc
PKGS     := libcurl jansson yaml-0.1 libwebsockets libseccomp openssl zlib
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN     := -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wpointer-arith -Wcast-qual \
            -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wnull-dereference \
            -Wimplicit-fallthrough -Wundef -Wno-unused-parameter -Wno-missing-field-initializers
HARDEN   := -D_FORTIFY_SOURCE=3 -fstack-protector-strong -fstack-clash-protection -fPIE \
            -fcf-protection
CFLAGS   ?= -O2 -g
BASEFLAGS := -std=gnu17 -D_GNU_SOURCE -Icommon $(WARN) $(PKG_CFLAGS)
LDHARDEN := -pie -Wl,-z,relro,-z,now,-z,noexecstack -Wl,-z,pack-relative-relocs
SANFLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
BASEFLAGS += -DTASKED_VERSION='"$(VERSION)"'

COMMON_SRC     := $(wildcard common/*.c)
CONTROLLER_SRC := $(wildcard controller/*.c)
RUNNER_SRC     := $(wildcard runner/*.c)
UNIT_SRC       := $(wildcard tests/unit/test_*.c)
FUZZ_SRC       := $(wildcard tests/fuzz/fuzz_*.c)

obj = $(patsubst %.c,build/rel/%.o,$(1))
san = $(patsubst %.c,build/san/%.o,$(1))

.SECONDARY:
.PHONY: all deps test unit fuzz-replay fuzz integration up down demo clean kube format-check bench bench-node \
        bench-tekton \
        lint format tsan
all: bin/tasked-controller bin/tasked-runner

build/rel/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(HARDEN) $(CFLAGS) -MMD -MP -c $< -o $@

build/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(SANFLAGS) -Itests/unit -Icontroller -Irunner -MMD -MP -c $< -o $@

# ThreadSanitizer build of both binaries (make tsan): the lifecycle, restart and API suites run
# against it with TASKED_BIN_DIR=build/tsan/bin; any report fails the run (tests/tsan.sh).
# gcc's truncation analysis differs at -O1 under TSan and flags checked snprintf calls.
TSANFLAGS := -O1 -g -fsanitize=thread -fno-omit-frame-pointer -Wno-format-truncation \
             -include tests/tsan/jansson-rc.h
tsan = $(patsubst %.c,build/tsan/%.o,$(1))
build/tsan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(TSANFLAGS) -MMD -MP -c $< -o $@
# The code between the runner's clone and execve (runner/child.c) must call nothing outside the
# allowed list (tests/build/child-syms.t); instrumented, it would call into the TSan runtime in
# the child. It is built without -fsanitize=thread, as the release build has it.
build/tsan/runner/child.o: TSANFLAGS := -O1 -g -fno-omit-frame-pointer -Wno-format-truncation
build/tsan/bin/tasked-controller: $(call tsan,$(COMMON_SRC) $(CONTROLLER_SRC))
	@mkdir -p $(dir $@)
	$(CC) -fsanitize=thread -o $@ $^ $(PKG_LIBS) -lpthread
build/tsan/bin/tasked-runner: $(call tsan,$(COMMON_SRC) $(RUNNER_SRC))
	@mkdir -p $(dir $@)
	$(CC) -fsanitize=thread -o $@ $^ $(PKG_LIBS) -lpthread

bin/tasked-controller: $(call obj,$(COMMON_SRC) $(CONTROLLER_SRC))
	@mkdir -p bin
	$(CC) $(LDHARDEN) -o $@ $^ $(PKG_LIBS) -lpthread

# The code between fork and execve (runner/child.c) may only call async-signal-safe functions:
# the runner does not link unless child.o's undefined symbols are all in runner/child.allow.
# tests/build/child-syms.t shows the check failing on a malloc, a printf and a mutex.
bin/tasked-runner: $(call obj,$(COMMON_SRC) $(RUNNER_SRC)) runner/child.allow tests/tools/check-syms.sh
	tests/tools/check-syms.sh build/rel/runner/child.o runner/child.allow
	@mkdir -p bin
	$(CC) $(LDHARDEN) -o $@ $(filter %.o,$^) $(PKG_LIBS) -lpthread

# Unit tests link the module under test (everything but main.c) with the sanitizers on.
LIB_SAN := $(call san,$(COMMON_SRC) $(filter-out %/main.c,$(CONTROLLER_SRC) $(RUNNER_SRC)))
UNIT_BIN := $(patsubst tests/unit/%.c,build/san/tests/unit/%,$(UNIT_SRC))
build/san/tests/unit/%: build/san/tests/unit/%.o $(LIB_SAN)
	$(CC) -fsanitize=address,undefined $(UNIT_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread
# The allocation-failure test routes every allocation of our code through tests/unit/allocfail.c.
build/san/tests/unit/test_allocfail: build/san/tests/unit/allocfail.o
build/san/tests/unit/test_allocfail: UNIT_LDFLAGS = \
	-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup

# Fuzz targets: libFuzzer binaries for `make fuzz`; a replay driver (sanitized gcc build)
# runs every corpus file through each target in `make test`.
FUZZ_REPLAY := $(patsubst tests/fuzz/%.c,build/san/tests/fuzz/%-replay,$(FUZZ_SRC))
build/san/tests/fuzz/%-replay: build/san/tests/fuzz/%.o build/san/tests/fuzz/replay_main.o $(LIB_SAN)
	$(CC) -fsanitize=address,undefined -o $@ $^ $(PKG_LIBS) -lpthread
build/san/tests/fuzz/replay_main.o: tests/fuzz/replay_main.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(SANFLAGS) -c $< -o $@

deps:
	@tests/deps.sh

unit: $(UNIT_BIN)
	prove -v --exec '' $(UNIT_BIN)
	prove -v tests/build/*.t

fuzz-replay: $(FUZZ_REPLAY)
	@set -e; for f in $(FUZZ_REPLAY); do \
	  t=$$(basename $$f -replay); t=$${t#fuzz_}; \
	  echo "replay $$t"; $$f tests/fuzz/corpus/$$t; done

fuzz:
	@tests/fuzz/run.sh

# make lint: clang-format on tests/lint/format-files, banned calls, cppcheck (tests/lint/).
lint:
	@tests/lint/lint.sh
format-check:
	@tests/lint/format.sh --check
# Rewrites the files in tests/lint/format-files with clang-format.
format:
	@tests/lint/format.sh --fix

# make tsan: the lifecycle, restart and API suites against the TSan build; any report fails.
tsan: all kube $(TOOLS) build/tsan/bin/tasked-controller build/tsan/bin/tasked-runner
	tests/tsan/run.sh

# TASKED_NODE=0: the host-process cluster only (no kubelet, no images, no Helm install).
TASKED_NODE ?= 1
export TASKED_NODE
kube: deps
	@tests/cluster/build-kube.sh $(if $(filter 0,$(TASKED_NODE)),,node) >/dev/null

# Test tools (raw protocol clients and probes) are plain programs, never shipped.
TOOLS := build/tools/wsprobe build/tools/ssehold build/tools/probe build/tools/httpcount
build/tools/%: tests/tools/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu17 -D_GNU_SOURCE $(WARN) -O1 -g -o $@ $<
# The escape probe is static: the same binary runs as a task here and inside any image.
build/tools/probe: tests/tools/probe.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu17 -D_GNU_SOURCE $(WARN) -O1 -g -static -o $@ $<
# Unit tests that run these tools (order-only: not linked in).
build/san/tests/unit/test_runner_sandbox: | build/tools/probe
build/san/tests/unit/test_runner_isolate: | build/tools/probe
build/san/tests/unit/test_runner_http: | build/tools/httpcount

integration: all kube $(TOOLS)
	tests/integration/run.sh

test: deps
	$(MAKE) all
	$(MAKE) lint
	$(MAKE) unit
	$(MAKE) fuzz-replay
	$(MAKE) vm-test
	$(MAKE) integration
	$(MAKE) tsan

# apparmor/tasked-runner enforced by Debian's kernel in a qemu VM (tests/vm/apparmor.t): this
# machine's kernel has no AppArmor. The kernel is downloaded once into the cache.
.PHONY: vm-test
vm-test: deps all build/tools/probe build/bench/tasked-bench-runner
	prove -v tests/vm/apparmor.t

up: deps all kube
	@tests/cluster/up.sh
ifneq ($(TASKED_NODE),0)
up: images helm
integration: images
endif

down:
	@tests/cluster/down.sh

demo: up
	@tests/cluster/demo.sh

clean:
	rm -rf build bin

# --- kubectl plugin and install (issue 7) -------------------------------------------------------
# bin/kubectl-tasked: `kubectl tasked logs|wait|cancel|get|events` (kubectl-tasked/, a program
# of its own on top of common/).
PLUGIN_SRC := $(wildcard kubectl-tasked/*.c)
all: bin/kubectl-tasked
bin/kubectl-tasked: $(call obj,$(PLUGIN_SRC) $(COMMON_SRC))
	@mkdir -p bin
	$(CC) $(LDHARDEN) -o $@ $^ $(PKG_LIBS) -lpthread

# make install [PREFIX=/usr/local] [DESTDIR=...]: the binaries, the plugin on PATH.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
.PHONY: install
install: bin/tasked-controller bin/tasked-runner bin/kubectl-tasked
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 $^ $(DESTDIR)$(BINDIR)/

# promtool (for tests/integration/75-metrics.t) is built once into the cache before the suite
# starts its cluster: about 5 minutes cold on 2 CPUs, nothing afterwards.
.PHONY: promtool
promtool:
	@tests/tools/promtool.sh >/dev/null
integration: promtool
# --- end kubectl plugin and install -------------------------------------------------------------

# (-type f: the node's state under build/it-node has a directory certs.d.)
-include $(shell find build -path build/it-node -prune -o -name '*.d' -type f -print 2>/dev/null)

# ---------------------------------------------------------------------------------------------
# Packaging: images, Helm chart, deploy/ manifests, AppArmor profile (docs/install.md).
#   make images            tasked-controller and tasked-runner images FROM scratch (Docker)
#   make helm              Helm v3.18 built from the Go module proxy into the cache
#   make chart-lint        helm lint --strict charts/tasked
#   make chart-sync        copy deploy/crds/ and apparmor/tasked-runner into the chart
#   make deploy-manifests  render deploy/base and deploy/apparmor-loader from the chart
# Their tests are tests/integration/6*.t (65-images.t builds the images itself).
.PHONY: images helm chart-lint chart-sync deploy-manifests
# The images link a static, HTTP(S)-only libcurl built from Debian's curl source (same version
# and patches), so they carry none of Debian libcurl's GnuTLS/Kerberos/LDAP chain, and static
# libssl and libcrypto built from Debian's openssl source (images/build-openssl.sh); both have a
# section per function. Every other library is linked statically too (Debian's -dev packages
# ship the .a files): only glibc stays shared. Only the code used is mapped, which saves 1-2 MiB
# of resident memory.
# --wrap=SSL_read: common/wsguard.c judges what libwebsockets reads over TLS; statically linked,
# libssl's SSL_read is the real one and the references go through __wrap_SSL_read.
IMAGE_LIBS = -Wl,--wrap=SSL_read -Wl,--gc-sections -Wl,-Bstatic $(filter-out -lcurl,$(PKG_LIBS)) -Wl,-Bdynamic
# images/controller-hot.ld (bench/hot-text.sh) puts the controller's code used from start to idle
# first and together: the kernel maps the file pages around each one touched, so spread over the
# whole text it made nearly all 3.6 MiB resident (bench/memory.md).
CONTROLLER_HOT = -Wl,-T,images/controller-hot.ld
build/image-bin/tasked-%: FORCE_CURL
	@mkdir -p build/image-bin
	$(MAKE) --no-print-directory bin/tasked-$*
	$(CC) $(LDHARDEN) -o $@ $(call obj,$(COMMON_SRC)) \
	  $(call obj,$(if $(filter runner,$*),$(RUNNER_SRC),$(CONTROLLER_SRC))) \
	  "$$(images/build-curl.sh)/lib/libcurl.a" -L"$$(images/build-openssl.sh)/lib" $(IMAGE_LIBS) -lpthread \
	  $(if $(filter controller,$*),$(CONTROLLER_HOT))
.PHONY: FORCE_CURL
images: all build/image-bin/tasked-runner build/image-bin/tasked-controller
	@TASKED_IMAGE_BIN=build/image-bin images/build.sh

helm:
	@tests/helm/build-helm.sh >/dev/null

chart-lint: helm
	@"$$(tests/helm/build-helm.sh)" lint --strict charts/tasked

chart-sync:
	cp deploy/crds/tasked.dev_*.yaml charts/tasked/crds/
	cp apparmor/tasked-runner charts/tasked/files/tasked-runner

deploy-manifests: helm chart-sync
	@tests/helm/render-deploy.sh

# The chart tests need Helm; build it before the suite starts its cluster.
integration: helm

# --- benchmarks (issue 8) ----------------------------------------------------------------------
# make bench: bench/run.sh builds nothing itself; these are its programs. It starts its own
# cluster in build/bench/state, runs every measurement, always tears the cluster down, and writes
# docs/benchmarks.md, docs/benchmarks.json and docs/bench-*.png. Never part of `make test`.
#   build/bench/tasked-bench-load   load generator on the controller's REST client (controller/kube.c)
#   build/bench/tasked-bench-runner a stand-in broker that drives one tasked-runner directly
#   build/bench/stamp               the trivial task: prints when it started (static)
BENCH_LIBSRC := controller/kube.c controller/kubeconfig.c controller/yamljson.c $(COMMON_SRC) bench/stats.c
BENCH_BIN := build/bench/tasked-bench-load build/bench/tasked-bench-runner build/bench/stamp
build/rel/bench/%.o: BASEFLAGS += -Icontroller -Ibench

build/bench/tasked-bench-load: $(call obj,bench/loadgen.c $(BENCH_LIBSRC))
	@mkdir -p $(dir $@)
	$(CC) $(LDHARDEN) -o $@ $^ $(PKG_LIBS) -lpthread -lm

build/bench/tasked-bench-runner: $(call obj,bench/runnerbench.c $(COMMON_SRC) bench/stats.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDHARDEN) -o $@ $^ $(PKG_LIBS) -lpthread -lm

# Static and, on x86-64/arm64, without a C library: nothing runs between execve and its clock
# read (bench/stamp.c says why that matters in a VM).
STAMP_FLAGS := $(if $(filter x86_64 aarch64,$(shell uname -m)),-nostdlib -fno-stack-protector -fno-pie -no-pie -fcf-protection=none)
build/bench/stamp: bench/stamp.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu17 -D_GNU_SOURCE $(WARN) -O2 -static $(STAMP_FLAGS) -o $@ $<

bench: deps
	$(MAKE) all kube $(BENCH_BIN)
	@bench/run.sh
ifneq ($(TASKED_NODE),0)
	$(MAKE) bench-node
endif
# make bench-node: bench/node.sh, the same trivial program as a Task (sidecar runners, RunnerPool
# warm and cold, container executor), a Job, a bare Pod and a Tekton TaskRun (Tekton built from
# the Go module proxy by tests/cluster/build-tekton.sh, cached) on the real node (tests/cluster/
# up-node.sh), side by side in one run; writes the side-by-side section of docs/benchmarks.md
# and docs/bench-node-*.png. Needs root; the node is always torn down. TASKED_BENCH_TEKTON=0
# leaves the Tekton row out.
bench-node: deps images helm
	$(MAKE) all kube $(BENCH_BIN)
	@if [ "$${TASKED_BENCH_TEKTON:-1}" = 1 ]; then tests/cluster/build-tekton.sh images >/dev/null; fi
	@TASKED_BENCH_TEKTON=$${TASKED_BENCH_TEKTON:-1} bench/node.sh
# make bench-tekton: bench/tekton.sh, a Tekton Pipelines TaskRun row (built from the Go module
# proxy by tests/cluster/build-tekton.sh) beside the sidecar row, in one node run.
bench-tekton: deps images helm
	$(MAKE) all kube $(BENCH_BIN)
	@bench/tekton.sh
# --- end benchmarks ----------------------------------------------------------------------------
