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

run: install
	scripts/run-dev.sh

test: install
	scripts/test.sh $(ARGS)

clean:
	rm -rf var build *.egg-info
