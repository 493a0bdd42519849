# All set-up happens here: `make demo` and `make test` work on a fresh machine with Python >= 3.10.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
OUT    ?= out
TORCH  ?= 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install demo test bench-speed bench-memory clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# the CPU build of torch (its "+cpu" wheel: from pip's own sources where they hold it, else from
	# TORCH_INDEX); never let a dependency pull the multi-GB CUDA build, which PyPI's plain torch is
	# on Linux (elsewhere, macOS, PyPI's is the CPU build)
	$(BIN)/pip install -q "torch==$(TORCH)+cpu" || $(BIN)/pip install -q --index-url $(TORCH_INDEX) "torch==$(TORCH)+cpu" \
		|| { [ "$$(uname)" != Linux ] && $(BIN)/pip install -q "torch==$(TORCH)"; }
	$(BIN)/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

demo: $(STAMP)
	@mkdir -p $(OUT)
	$(BIN)/tokcodec encode tokcodec/data/sample.mp4 -o $(OUT)/sample.tok -y
	$(BIN)/tokcodec info $(OUT)/sample.tok
	$(BIN)/tokcodec decode $(OUT)/sample.tok -o $(OUT)/sample_decoded.mp4 -y --compare tokcodec/data/sample.mp4

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench-speed: $(STAMP)
	$(BIN)/python bench/speed.py

bench-memory: $(STAMP)
	$(BIN)/python bench/streaming_memory.py

clean:
	rm -rf $(OUT) .pytest_cache
