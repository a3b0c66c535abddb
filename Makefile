# pypi-upload2 developer tasks. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
PORT ?= 6543
CONFIG ?= development.ini
BIN := $(VENV)/bin

.DEFAULT_GOAL := help
.PHONY: help serve test worker migrate bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -e 's|$$(PORT)|$(PORT)|g' -e 's|$$(CONFIG)|$(CONFIG)|g' \
		| awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml client/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ./client -e '.[test]'
	@touch $@

migrate: $(VENV)/.installed ## apply the database migrations of $(CONFIG)
	$(BIN)/pypi-upload2 -c $(CONFIG) db upgrade

serve: migrate ## serve $(CONFIG) on http://127.0.0.1:$(PORT)/ (SQLite, files under var/)
	$(BIN)/pserve $(CONFIG) http_port=$(PORT)

test: $(VENV)/.installed ## run the test-suite (UPLOAD2_TEST_DATABASE_URL selects PostgreSQL)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

worker: migrate ## a Celery worker with beat for $(CONFIG) (needs celery.broker_url; docs/tasks.md)
	@mkdir -p var
	UPLOAD2_CONFIG=$(CONFIG) $(BIN)/celery -A pypi_upload2.tasks worker -B -s var/celerybeat-schedule --loglevel INFO

bench: $(VENV)/.installed ## run the upload benchmarks (figures in docs/benchmarks.md)
	$(BIN)/python benchmarks/upload.py $(BENCH_ARGS)

clean: ## remove the virtualenv, the database and stored files
	rm -rf $(VENV) var .pytest_cache
