# make run, make test, make build (and bench). Every target installs what it needs
# first (scripts/setup is idempotent and quick when nothing is missing).
BUILD_DIR ?= build
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all setup build run test bench bench-features bench-health bench-scale bench-sse bench-tokens bench-llm-async fuzz format clean install package

all: build

setup:
	@./scripts/setup

$(BUILD_DIR)/Makefile:
	cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS)

build: setup $(BUILD_DIR)/Makefile
	cmake --build $(BUILD_DIR) -j$(JOBS)

run: build
	./$(BUILD_DIR)/agent-factory serve

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS) --timeout 600

# The binary, docs, man page, bash completion and systemd unit under PREFIX
# (DESTDIR=... stages them elsewhere, as packagers do).
PREFIX ?= /usr/local
install: build
	cmake --install $(BUILD_DIR) --prefix $(PREFIX)

# A Debian package: $(BUILD_DIR)/agent-factory_<version>_<arch>.deb
package: build
	cd $(BUILD_DIR) && cpack -G DEB

bench: build
	cmake --build $(BUILD_DIR) -j$(JOBS) --target benches
	./bench/run.sh $(BUILD_DIR)

# Parts of `make bench` alone: the minimal feature at N = 1, 50, 500 at once on
# agent-factory and LangGraph.js (FEATURES=1,50 for a shorter run), and
# /health against nginx.
bench-features: build
	cmake --build $(BUILD_DIR) -j$(JOBS) --target af_feature_load
	./bench/feature_load.sh $(BUILD_DIR)

bench-health: build
	./bench/health_vs_nginx.sh $(BUILD_DIR)

# SQLite + the in-process bus beside PostgreSQL + Redis (servers of its own on
# free ports): event appends, bus jobs, and the minimal feature at N = 1, 50
# at once in serve and in two workers (FEATURES=1,50,500 for more); each twice.
# About 5 minutes on 2 cores (`make bench` runs it too, once: about 3).
bench-scale: build
	cmake --build $(BUILD_DIR) -j$(JOBS) --target af_scale_bench af_feature_load
	./bench/scale.sh $(BUILD_DIR)

# SSE delivery lag and the server's CPU per delivery: 1,000 clients, 200
# events/s for 10 s, appended by the server's own process, then by another.
bench-sse: build
	cmake --build $(BUILD_DIR) -j$(JOBS) --target af_sse_load
	$(BUILD_DIR)/bench/af_sse_load --clients 1000 --rate 200 --seconds 10 --client-threads 4 --in-process 1
	$(BUILD_DIR)/bench/af_sse_load --clients 1000 --rate 200 --seconds 10 --client-threads 4 --in-process 0

# Tokens per feature on the examples (replay provider) against resending
# every conversation whole each turn.
bench-tokens: build
	./bench/tokens.sh $(BUILD_DIR)

# 1,000 model calls in flight against a fake provider answering after 1 s:
# threads and RSS with CompleteAsync beside a thread per call.
bench-llm-async: build
	cmake --build $(BUILD_DIR) -j$(JOBS) --target af_llm_async_bench
	$(BUILD_DIR)/bench/af_llm_async_bench --calls 1000 --latency-ms 1000

# Real libFuzzer runs (clang, AddressSanitizer, UBSan) of the fuzz targets that
# `make test` runs with a deterministic driver: FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz:
	@./scripts/setup --fuzz
	cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DAF_LIBFUZZER=ON
	cmake --build build-fuzz -j$(JOBS) --target fuzzers
	./tests/fuzz/run-libfuzzer.sh build-fuzz $(FUZZ_SECONDS)

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD_DIR)
