# Top-level entry points. CMake does the real work; see README.md.
BUILD      ?= build
BUILD_TEST ?= build-test
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX     ?= /usr/local
CMAKE      ?= cmake
CTEST_ARGS ?= --output-on-failure

.PHONY: all deps test test-asan asan fuzz fuzz-regress demo bench soak install clean check-valgrind

all:
	$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DAIWM_TESTS=OFF >/dev/null
	$(CMAKE) --build $(BUILD) -j $(JOBS) --target aiwm-worker
	@echo "built $(BUILD)/aiwm-worker"

# Installs the Debian and npm packages that the build and the tests need.
deps:
	scripts/install-deps.sh

# The whole suite: unit tests and integration tests against real peers,
# built with -Werror (gcc), then the same suite again under ASan+UBSan
# (clang, see `asan`). Installs what is missing first. Fails when either
# pass fails; the sanitizer pass runs only after the plain one passed.
# TEST_ASAN=0 leaves the sanitizer pass out (a quicker local run).
TEST_ASAN ?= 1
test: deps
	$(CMAKE) -S . -B $(BUILD_TEST) -DCMAKE_BUILD_TYPE=Debug -DAIWM_WERROR=ON >/dev/null
	$(CMAKE) --build $(BUILD_TEST) -j $(JOBS)
	mkdir -p $(BUILD) && cp $(BUILD_TEST)/aiwm-worker $(BUILD)/aiwm-worker.test
	cd $(BUILD_TEST) && ctest $(CTEST_ARGS) -j $(JOBS)
	@if [ "$(TEST_ASAN)" = 1 ]; then $(MAKE) --no-print-directory test-asan; else echo "sanitizer pass skipped (TEST_ASAN=$(TEST_ASAN))"; fi

# The same suite under AddressSanitizer and UBSan (clang, leak detection,
# any report fails the test). Left out: the soak test (it judges memory
# growth, which ASan's quarantine distorts) and the short fuzz run (the
# fuzzers are ASan+UBSan builds already); ASAN_EXCLUDE= runs them too.
ASAN_EXCLUDE ?= integration/test-soak-short|integration/test-fuzz-short
asan: deps test-asan

# Reports go to files (one per process) so that one from a worker that an
# integration test runs in the background, whose exit status the test may
# not look at, fails the run too; they are printed at the end.
test-asan:
	CC=clang $(CMAKE) -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DAIWM_WERROR=ON -DAIWM_SANITIZE=ON >/dev/null
	$(CMAKE) --build $(BUILD_ASAN) -j $(JOBS)
	@R=$(abspath $(BUILD_ASAN))/sanitizer-reports; rm -rf "$$R" && mkdir -p "$$R" && cd $(BUILD_ASAN) && \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:log_path=$$R/asan \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$$R/ubsan \
		ctest $(CTEST_ARGS) -j $(JOBS) $(if $(ASAN_EXCLUDE),-E '$(ASAN_EXCLUDE)'); rc=$$?; \
	for f in "$$R"/*; do [ -f "$$f" ] || continue; echo "== sanitizer report $$f"; cat "$$f"; rc=1; done; \
	[ $$rc = 0 ] && echo "sanitizer pass: no failure, no report" || echo "sanitizer pass FAILED"; exit $$rc

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
