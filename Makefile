# One task runner for contributors and CI. Every target creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install browser screenshots dev test lint format typecheck schemas golden histories bench drills clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## The console's browser tests drive Debian's chromium (Playwright cannot download browsers
## here) with fonts that render Chinese; installed once, when missing.
BROWSER_PACKAGES := chromium fonts-noto-cjk
browser:
	@dpkg -s $(BROWSER_PACKAGES) >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
			$(BROWSER_PACKAGES); }

## The main job on the embedded default: Temporal dev server (SQLite), worker, API.
dev: install
	$(BIN)/sopflow dev

## Refresh docs/screenshots/ from the console's browser tests (review, then commit them).
screenshots: install browser
	SOPFLOW_UPDATE_SCREENSHOTS=1 $(BIN)/pytest tests/test_console_browser.py -q

## The whole suite: lint, types, schema drift, tests against the real Temporal binaries.
test: install browser lint typecheck
	$(BIN)/sopflow schemas --check
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install
	$(BIN)/mypy sopflow workflows worker api cli

schemas: install
	$(BIN)/sopflow schemas

clean:
	rm -rf $(VENV) .sopflow .pytest_cache .mypy_cache .ruff_cache

## Regenerate the golden timelines of playbooks/scenarios/ (review the diff before committing).
golden: install
	@for events in playbooks/scenarios/*.events.yaml; do \
		name=$$(basename $$events .events.yaml); \
		playbook=$$(sed -n 's/^# playbook: //p' $$events); \
		$(BIN)/sopflow simulate playbooks/$$playbook --events $$events \
			--start 2026-11-23T09:00:00+08:00 --days 90 > playbooks/scenarios/$$name.timeline.txt; \
		echo "wrote playbooks/scenarios/$$name.timeline.txt"; \
	done

## Re-record the workflow histories that the replay test replays (after a deliberate break).
histories: install
	$(BIN)/python -m tests.record_histories

## Benchmarks: each prints its table and the command to repeat it, and writes its section of
## bench/RESULTS.md. About an hour in all, most of it the memory run (100,000 customers).
bench: install
	$(BIN)/python -m bench.history
	$(BIN)/python -m bench.simulation
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.throughput --sqlite
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.console
	$(BIN)/python -m bench.memory --customers 100000
	$(BIN)/python -m bench.deployment_read
	$(BIN)/python -m bench.sizing
	$(BIN)/python -m bench.callbacks

## Fault drills at full size (a reduced size runs in `make test`): the hostile-input drill
## and the WeCom drills (each writes its section of bench/RESULTS.md), then the
## multi-process drill (two workers, two APIs, PostgreSQL) with 10,000 customers.
drills: install
	SOPFLOW_DRILL_CUSTOMERS=1000 SOPFLOW_DRILL_EVENTS=10000 SOPFLOW_DRILL_OUTAGE=120 \
		$(BIN)/pytest tests/test_drills.py -q
	SOPFLOW_DRILL_HOSTILE_EVENTS=10000 SOPFLOW_DRILL_HOSTILE_PLAYBOOKS=200 SOPFLOW_DRILL_RECORD=1 \
		$(BIN)/pytest tests/test_hostile_drill.py -q
	SOPFLOW_DRILL_WECOM_CUSTOMERS=300 SOPFLOW_DRILL_RECORD=1 $(BIN)/pytest tests/test_wecom_drills.py -q
	SOPFLOW_MULTI_CUSTOMERS=10000 $(BIN)/pytest tests/test_multi_process.py -q
