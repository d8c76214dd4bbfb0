# squeeze: `make demo` and `make test` set everything up and go.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
FUZZ_BUILD ?= build-fuzz
FUZZ_RUNS ?= 1000000
FUZZ_TARGETS ?=
FUZZ_SECONDS ?=
ASAN_BUILD ?= build-asan

.PHONY: all deps build demo test test-all test-sanitize fuzz bench conformance clean format

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	$(BUILD)/squeeze run examples/quickstart.yaml --out runs/quickstart --force   # replaces an earlier demo run

# The fast suite (everything not labelled slow).
test: build
	cd $(BUILD) && ctest --output-on-failure -LE slow -j $(JOBS) --timeout 900

test-all: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 3600

# Coverage-guided fuzzing (clang, libFuzzer, ASan, UBSan): every reader for FUZZ_RUNS executions
# (FUZZ_TARGETS: a subset of onnx sqz config idx csv npy hdf5; FUZZ_SECONDS=N also caps each
# target's time). See scripts/fuzz.sh.
fuzz: build
	cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
	  -DSQUEEZE_FUZZ_COVERAGE=ON -DSQUEEZE_BUILD_TESTS=OFF -DSQUEEZE_BUILD_BENCH=OFF \
	  -DSQUEEZE_FUZZ_BASE_LIB=$(abspath $(BUILD))/libsqueeze_core.a
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers
	FUZZ_SECONDS=$(FUZZ_SECONDS) SQUEEZE=$(abspath $(BUILD))/squeeze scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_RUNS) $(FUZZ_TARGETS)

# The fast suite built with ASan + UBSan (clang) in its own folder; not part of `make test`.
# detect_leaks=1 with LSan suppressions; see tests/sanitize/ for every option and suppression.
# -O1 -gline-tables-only (what the ASan documentation advises): full -g on libtorch's templates
# makes the ~190 compiles much slower, and line tables are all the reports' stacks need.
test-sanitize: deps
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
	  -DSQUEEZE_SANITIZE=ON -DSQUEEZE_BUILD_BENCH=OFF
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	tests/sanitize/run.sh $(ASAN_BUILD) -LE slow -j $(JOBS)

bench: build
	bench/run_all.sh $(BUILD)

clean:
	rm -rf $(BUILD)

format:
	git ls-files '*.h' '*.cpp' | xargs clang-format -i
