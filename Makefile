# Concord: every task a developer or operator runs starts here.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_PACKAGES := ffmpeg libopus0 postgresql

.PHONY: run test lint demo migrate doctor commands sync bench sysdeps clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Concord needs Python 3.11 or newer; set PYTHON=/path/to/python3.11."; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# FFmpeg and libopus are needed for voice (/tts); the PostgreSQL server for the tests of the
# multi-process path. Installed with apt-get when we are root on Debian/Ubuntu; otherwise we
# name what is missing and go on.
sysdeps:
	@missing=""; \
	command -v ffmpeg >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	ldconfig -p 2>/dev/null | grep -q 'libopus\.so\.0' || missing="$$missing libopus0"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else \
	    echo "Missing system packages:$$missing (install them: sudo apt-get install$$missing)."; \
	  fi; \
	fi

run: $(STAMP) sysdeps
	$(PY) -m bot run

migrate: $(STAMP)
	$(PY) -m bot migrate

doctor: $(STAMP)
	$(PY) -m bot doctor

commands: $(STAMP)
	$(PY) -m bot commands --json

sync: $(STAMP)
	$(PY) -m bot sync

lint: $(STAMP)
	$(PY) -m ruff check bot cogs tests migrations bench
	$(PY) -m ruff format --check bot cogs tests migrations bench
	$(PY) -m mypy

test: $(STAMP) sysdeps lint
	$(PY) -m pytest -q -p no:cacheprovider

demo: $(STAMP) sysdeps
	$(PY) -m tests.demo

bench: $(STAMP)
	@for f in bench/bench_*.py; do echo "== $$f"; PYTHONPATH=. $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
