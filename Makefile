# blalm: the two set-up commands are `make demo` and `make test`; both install what they need.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch (on this project's machines it lies on disk); override for a CUDA build.
TORCH_SPEC ?= torch==2.13.0
DATA ?= ../shared/data
OUT ?= out/demo
BIN = $(VENV)/bin

.PHONY: install demo test test-all clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

## The main job on the embedded default data (DATA=path for other data): corpus -> tokenizer ->
## a tiny BLaLM trained on CPU -> the fast zero-shot suite on its last two checkpoints (the middle
## of training and its end; the best selected), one line per task -> the report beside the
## paper's numbers, with plots.
demo: install
	$(BIN)/blalm corpus configs/corpus/demo.toml --data-dir $(DATA) --out $(OUT)/corpus --quiet
	$(BIN)/blalm tokenizer $(OUT)/corpus --vocab-size 15000 --out $(OUT)/tokenizer --quiet
	$(BIN)/blalm train configs/train/demo.toml --out $(OUT)/run --set corpus_dir=$(OUT)/corpus --set tokenizer_dir=$(OUT)/tokenizer
	$(BIN)/blalm eval $(OUT)/run --last 2 --suite fast --eval-data $(DATA)/eval --device cpu --quiet
	$(BIN)/blalm report $(OUT)/run --out $(OUT)/report --eval-data $(DATA)/eval --quiet
	@echo "demo done: the report is $(OUT)/report/report.md (PNG plots beside it)"

## The test suite without the tests marked slow (uses ../shared/data, or $BLALM_DATA_DIR).
test: install
	$(BIN)/python -m pytest -q -n 2 --durations=15

## Every test, the slow ones too (torch.compile on the CPU, whole data parts: a few minutes more).
test-all: install
	$(BIN)/python -m pytest -q -n 2 --durations=15 -m "slow or not slow"

clean:
	rm -rf $(OUT) .pytest_cache
