# The README's two commands: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | md5sum | cut -c1-8)
PORT ?= 8501

.PHONY: run test test-unit setup pretrain-deps pretrain pretrain-drug bench

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch by pip (which finds a machine's local CPU wheel where pip is set up to), the rest by uv: the same pins
	# in 84 s instead of 105 s on a clean checkout, compiled to bytecode as pip does (this machine sets
	# PYTHONDONTWRITEBYTECODE: without it every process compiles torch and transformers afresh)
	$(PY) -m pip install -q uv==0.13.9 $$(grep '^torch==' requirements.txt)
	$(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) -r requirements.txt
	# the engine itself, editable: `chemlm` on the PATH, importable by Ray workers without PYTHONPATH
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)

run: setup
	$(PY) -m streamlit run app.py --server.headless true --server.port $(PORT) --browser.gatherUsageStats false

test: setup
	$(PY) -m mypy
	$(PY) -m pytest -q -n 2 --dist loadgroup

# The unit layer only (no training, no Lipophilicity load): under a minute. `-m "not browser"` etc. pick others.
test-unit: setup
	$(PY) -m pytest -q tests/unit

# Only pretraining needs the MOSES corpus; its declared dependencies do not install on current Python.
pretrain-deps: setup
	$(PY) -m pip install -q --no-deps molsets==0.3.1

# The shipped ChemLM-mini: 2 min 20 s on one H200 GPU, about 9 h on 2 CPU cores (resumes from checkpoints).
pretrain: pretrain-deps
	$(PY) -m chemlm_engine pretrain --output pretrain_work/chemlm-mini --max-steps 7000 \
		--batch-size 512 --learning-rate 1e-3 --warmup-steps 1000 --checkpoint-every 1000

# ChemLM-mini continued on a drug-like corpus (issue #24): the corpus ~15 min in 2 processes, then ~1 h of
# pretraining on 2 CPU cores with native bf16 (resumes from its checkpoints; run it again after an interruption).
pretrain-drug: pretrain-deps
	test -f pretrain_work/drug_corpus.csv || $(PY) -m chemlm_engine corpus --size 80000 --workers 2 \
		--output pretrain_work/drug_corpus.csv
	$(PY) -m chemlm_engine pretrain --init-from assets/chemlm-mini --corpus pretrain_work/drug_corpus.csv \
		--output pretrain_work/chemlm-mini-drug --descriptor-targets rdkit --target-dropout 0.2 --randomize-smiles \
		--micro-batch-size 16 --max-steps 1200 --batch-size 128 --learning-rate 3e-4 --warmup-steps 100 \
		--checkpoint-every 100 --workers 2
