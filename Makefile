# blalm: the two set-up commands are `make demo` and `make test`; both install what they need.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch (on this project's machines it lies on disk); override for a CUDA build.
TORCH_SPEC ?= torch==2.13.0
DATA ?= ../shared/data
OUT ?= out/demo
BIN = $(VENV)/bin

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

## The main job on the embedded default data (DATA=path for other data): corpus -> tokenizer ->
## a tiny BLaLM trained on CPU -> the fast zero-shot suite on its last four checkpoints (the best
## selected) -> the report beside the paper's numbers, with plots. About 8 minutes on 2 cores.
demo: install
	$(BIN)/blalm corpus configs/corpus/demo.toml --data-dir $(DATA) --out $(OUT)/corpus --quiet
	$(BIN)/blalm tokenizer $(OUT)/corpus --vocab-size 15000 --out $(OUT)/tokenizer --no-progress
	$(BIN)/blalm train configs/train/demo.toml --out $(OUT)/run --set corpus_dir=$(OUT)/corpus --set tokenizer_dir=$(OUT)/tokenizer
	$(BIN)/blalm eval $(OUT)/run --last 4 --suite fast --data-dir $(DATA)/eval --device cpu --quiet
	$(BIN)/blalm report $(OUT)/run --out $(OUT)/report --data-dir $(DATA)/eval --quiet
	@echo "demo done: the report is $(OUT)/report/report.md (PNG plots beside it)"

## The whole test suite (uses ../shared/data, or $BLALM_DATA_DIR).
test: install
	$(BIN)/python -m pytest -q -n 2 --durations=15

clean:
	rm -rf $(OUT) .pytest_cache
