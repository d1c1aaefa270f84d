# The two commands a newcomer needs: `make run` and `make test` (see README.md).
VENV := .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# Ctrl-C is how a newcomer stops it: the script takes the terminal so that make exits 0 too.
run: install
	@$(VENV)/bin/python scripts/foreground.py scripts/run-dev.sh

test: install
	scripts/test.sh $(ARGS)

clean:
	rm -rf var build *.egg-info
