# The two commands of the README, each doing its whole set-up on a fresh machine:
#   make serve   create .venv, install the service, start it with the committed weights
#   make test    create .venv, install everything, run the test suite
# Settings come from the environment (see README.md).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export MNIST_DATA_DIR ?= $(abspath ../shared/data/mnist)

.PHONY: serve test evaluate clean

# One stamp per extra, remade when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[$*]"
	touch $@

serve: $(VENV)/.installed-serve
	$(PY) -m app

test: $(VENV)/.installed-test
	$(PY) -m pytest $(PYTEST_ARGS)

# Recompute the committed checkpoints' test metrics (needs the train extra and MNIST).
evaluate: $(VENV)/.installed-test
	for name in digit sequence digit_sum fashion; do $(PY) -m training evaluate weights/$$name.pt || exit 1; done

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
