# The front door. `make demo` and `make test` work on a fresh Debian bookworm machine as
# root (missing packages are installed by scripts/deps.sh).
PYTHON ?= /usr/bin/python3
JOBS ?= 2
CMAKE ?= cmake
BUILD ?= build
PREFIX ?= /usr/local

CONFIGURE = $(CMAKE) -S . -Wno-dev

.PHONY: all deps build demo test test-dev test-asan test-tsan bench bench-report install clean

all: build

deps:
	@sh scripts/deps.sh

build: deps
	@$(CONFIGURE) -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=gcc -DPYTHON=$(PYTHON) >/dev/null
	@$(CMAKE) --build $(BUILD) -j $(JOBS)

demo: build
	./$(BUILD)/cli/shmstore demo

# Every test: gcc build; clang build under AddressSanitizer+UBSan (with the fuzz target);
# the concurrency tests under ThreadSanitizer. Each test has a timeout (tests/CMakeLists).
test: test-dev test-asan test-tsan
	@echo "make test: all suites passed"

test-dev: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: deps
	@$(CONFIGURE) -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	    -DSHMSTORE_SANITIZE=address -DSHMSTORE_FUZZ=ON -DSHMSTORE_PYTHON=OFF >/dev/null
	@$(CMAKE) --build $(BUILD)-asan -j $(JOBS)
	cd $(BUILD)-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS) -LE nosan

test-tsan: deps
	@$(CONFIGURE) -B $(BUILD)-tsan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=gcc \
	    -DSHMSTORE_SANITIZE=thread -DSHMSTORE_PYTHON=OFF >/dev/null
	@$(CMAKE) --build $(BUILD)-tsan -j $(JOBS)
	cd $(BUILD)-tsan && TSAN_OPTIONS="halt_on_error=1 history_size=7 suppressions=$(CURDIR)/tests/tsan.supp" \
	    ctest --output-on-failure -j $(JOBS) -L tsan

bench: build
	@$(CONFIGURE) -B $(BUILD)-release -DCMAKE_BUILD_TYPE=Release -DSHMSTORE_TESTS=OFF -DSHMSTORE_PYTHON=OFF >/dev/null
	@$(CMAKE) --build $(BUILD)-release -j $(JOBS)
	./$(BUILD)-release/cli/shmstore bench
	SHMSTORE_BIN=$(CURDIR)/$(BUILD)-release/cli/shmstore $(PYTHON) python/bench/bench_python.py
	SHMSTORE_BIN=$(CURDIR)/$(BUILD)-release/cli/shmstore $(PYTHON) python/bench/bench_queue.py
	SHMSTORE_BIN=$(CURDIR)/$(BUILD)-release/cli/shmstore $(PYTHON) python/bench/bench_ring.py
	SHMSTORE_BIN=$(CURDIR)/$(BUILD)-release/cli/shmstore $(PYTHON) python/bench/bench_bridge.py --out bench-report/bridge.json

# The benchmarks again, written to bench-report/ as JSON, PNG charts and report.md (the
# charts in the README are this target's output on the project's machine).
bench-report: build
	@$(CONFIGURE) -B $(BUILD)-release -DCMAKE_BUILD_TYPE=Release -DSHMSTORE_TESTS=OFF -DSHMSTORE_PYTHON=OFF >/dev/null
	@$(CMAKE) --build $(BUILD)-release -j $(JOBS)
	SHMSTORE_BIN=$(CURDIR)/$(BUILD)-release/cli/shmstore $(PYTHON) python/bench/report.py --out bench-report

install: build
	$(CMAKE) --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-tsan $(BUILD)-release
