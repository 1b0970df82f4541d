# Top-level entry points. CMake does the real work; see README.md.
BUILD      ?= build
BUILD_TEST ?= build-test
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX     ?= /usr/local
CMAKE      ?= cmake
CTEST_ARGS ?= --output-on-failure

.PHONY: all deps test asan fuzz fuzz-regress demo bench soak install clean check-valgrind

all:
	$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DAIWM_TESTS=OFF >/dev/null
	$(CMAKE) --build $(BUILD) -j $(JOBS) --target aiwm-worker
	@echo "built $(BUILD)/aiwm-worker"

# Installs the Debian and npm packages that the build and the tests need.
deps:
	scripts/install-deps.sh

# The whole suite: unit tests and integration tests against real peers,
# built with -Werror. Installs what is missing first.
test: deps
	$(CMAKE) -S . -B $(BUILD_TEST) -DCMAKE_BUILD_TYPE=Debug -DAIWM_WERROR=ON >/dev/null
	$(CMAKE) --build $(BUILD_TEST) -j $(JOBS)
	mkdir -p $(BUILD) && cp $(BUILD_TEST)/aiwm-worker $(BUILD)/aiwm-worker.test
	cd $(BUILD_TEST) && ctest $(CTEST_ARGS) -j $(JOBS)

# The same suite under AddressSanitizer and UBSan.
asan: deps
	CC=clang $(CMAKE) -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DAIWM_WERROR=ON -DAIWM_SANITIZE=ON >/dev/null
	$(CMAKE) --build $(BUILD_ASAN) -j $(JOBS)
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest $(CTEST_ARGS) -j $(JOBS)

# Every libFuzzer target for FUZZ_SECONDS each (default 60).
FUZZ_SECONDS ?= 60
fuzz: deps
	CC=clang $(CMAKE) -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=Debug -DAIWM_FUZZ=ON -DAIWM_TESTS=OFF >/dev/null
	$(CMAKE) --build $(BUILD_FUZZ) -j $(JOBS)
	scripts/run-fuzz.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

# Every fuzz target over its corpus and the saved findings only (no new inputs).
fuzz-regress: deps
	CC=clang $(CMAKE) -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=Debug -DAIWM_FUZZ=ON -DAIWM_TESTS=OFF >/dev/null
	$(CMAKE) --build $(BUILD_FUZZ) -j $(JOBS)
	scripts/run-fuzz.sh $(BUILD_FUZZ) 0 --regress

# Valgrind memcheck over a worker session against the dev controller
# (Debug build for readable stacks): no invalid access, no definite leak.
check-valgrind: deps
	$(CMAKE) -S . -B $(BUILD_TEST) -DCMAKE_BUILD_TYPE=Debug -DAIWM_WERROR=ON >/dev/null
	$(CMAKE) --build $(BUILD_TEST) -j $(JOBS) --target aiwm-worker
	scripts/check-valgrind.sh $(BUILD_TEST)/aiwm-worker

# The soak run: SOAK_MINUTES (default 10) of 10 ms heartbeats, a command
# every 50 ms and a dropped connection every 30 s; fails on growth.
SOAK_MINUTES ?= 10
soak: all
	bench/soak.sh $(SOAK_MINUTES) $(BUILD)/aiwm-worker

# Builds, starts the dev controller and a worker, and shows them talking.
demo: all
	scripts/demo.sh $(BUILD)/aiwm-worker

# Every benchmark against its baseline, one table (and BUILD/bench-results.json).
bench: deps
	JOBS=$(JOBS) scripts/bench.sh $(BUILD)

install: all
	DESTDIR=$(DESTDIR) $(CMAKE) --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(BUILD_TEST) $(BUILD_ASAN) $(BUILD_FUZZ)
