# sdfuse: `make book` builds the book on the smoke profile; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup book test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# A failing notebook does not stop the others or the book: its page shows the error, and
# `make book` exits non-zero after building.
book: setup
	@$(BIN)/sdfuse reproduce --profile smoke; status=$$?; \
	$(BIN)/jupyter-book build . -W -n --keep-going || exit 1; \
	echo "The book is at file://$(CURDIR)/_build/html/index.html"; \
	exit $$status

test: setup
	$(BIN)/python -m pytest

# Benchmark (not part of the tests): backbone passes, per-image and per-pair costs, memory, cache size,
# bf16 parity; writes results/benchmark/benchmark.{json,md}. BENCH_ARGS=--quick or --full (see benchmarks/README.md).
bench: setup
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf _build book/tables results
