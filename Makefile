# squeeze: `make demo` and `make test` set everything up and go.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build demo test test-all bench conformance clean format

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

bench: build
	bench/run_all.sh $(BUILD)

clean:
	rm -rf $(BUILD)

format:
	git ls-files '*.h' '*.cpp' | xargs clang-format -i
