# sdfuse: `make book` builds the book on the smoke profile; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INSTALL_LOG := $(VENV)/install.log
BOOK_LOG := _build/book.log

.PHONY: setup book test bench rehearse mutate clean

setup: $(STAMP)

# pip's output goes to a log, shown only when the installation fails.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing sdfuse and its dependencies into $(VENV) (a few minutes the first time; log: $(INSTALL_LOG))"
	@{ $(BIN)/python -m pip install --upgrade pip && $(BIN)/python -m pip install -e ".[dev]"; } > $(INSTALL_LOG) 2>&1 \
	  || { tail -n 40 $(INSTALL_LOG); echo "error: the installation failed; the whole log is $(INSTALL_LOG)"; exit 1; }
	@touch $(STAMP)

# One line per notebook, then where the book is. A failing notebook does not stop the others or the
# book: its page shows the error, and `make book` exits non-zero after building.
book: setup
	@mkdir -p _build
	@$(BIN)/sdfuse reproduce --profile smoke; status=$$?; \
	$(BIN)/jupyter-book build . -W -n --keep-going > $(BOOK_LOG) 2>&1 \
	  || { tail -n 40 $(BOOK_LOG); echo "error: the book did not build; the whole log is $(BOOK_LOG)"; exit 1; }; \
	echo "The book is at file://$(CURDIR)/_build/html/index.html"; \
	exit $$status

# One pytest-xdist worker per core (TEST_JOBS=0 for a single process); each test file stays on one worker
# (tests/conftest.py's scheduler).
TEST_JOBS ?= auto
test: setup
	$(BIN)/python -m pytest -n $(TEST_JOBS)

# Benchmark (not part of the tests): backbone passes, per-image and per-pair costs, memory, cache size,
# bf16 parity; writes results/benchmark/benchmark.{json,md}. BENCH_ARGS=--quick or --full (see benchmarks/README.md).
bench: setup
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# The whole rehearsal profile (every table at the paper's settings, real-size random models; about an hour on
# 2 CPU cores): wall time, peak RSS and time per stage into the benchmark's `rehearsal` section, then the book.
rehearse: setup
	$(BIN)/python -m benchmarks.rehearsal

# Mutation testing of the protocol modules ([tool.mutmut] in pyproject.toml; about 4,600 mutants, 31 minutes on 2 cores
# from an empty mutants/, measured; a later run retests only changed functions; an interrupted run resumes):
# mutmut 3 in mutants/ (a copy of the code, reused by the next run), one single-threaded test process per
# core, the smoke models built once; then the hand-written mutants of tests/protocol_mutants.toml; the score,
# the survivors and those judged equivalent (tests/mutation_equivalents.toml) go to results/quality/mutation.json.
# MUTANTS='sdfuse.protocol.geometry*' limits the run to some functions.
MUTANT_ASSETS := mutants-assets
mutate: setup
	@$(BIN)/python -c "from sdfuse.profiles.assets import ensure_assets; ensure_assets('smoke', '$(MUTANT_ASSETS)')"
	@export SDFUSE_TEST_SMOKE_ASSETS=$(CURDIR)/$(MUTANT_ASSETS) OMP_NUM_THREADS=1 MKL_NUM_THREADS=1; \
	start=$$(date +%s); \
	$(BIN)/python -m mutmut run --max-children $${MUTATE_JOBS:-2} $(MUTANTS); \
	$(BIN)/python -m sdfuse.book.quality $$(( $$(date +%s) - start ))

clean:
	rm -rf _build book/tables results mutants mutants-assets
