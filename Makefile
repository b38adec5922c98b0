# Concord: every task a developer or operator runs starts here.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint demo migrate doctor commands sync bench bench-quick bench-micro sysdeps testdeps clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Concord needs Python 3.11 or newer; set PYTHON=/path/to/python3.11."; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# System packages, installed with apt-get when we are root on Debian/Ubuntu; otherwise we name
# what is missing and go on. FFmpeg and libopus play /tts in voice channels; the PostgreSQL server
# is only for the tests of the multi-process path; espeak-ng makes the voice tests' speech MP3s.
define ensure_packages
	@missing=""; \
	for check in $(1); do \
	  package=$${check%%:*}; probe=$${check#*:}; \
	  sh -c "$$probe" >/dev/null 2>&1 || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "Missing system packages:$$missing (install them: sudo apt-get install$$missing)."; \
	  fi; \
	fi
endef

VOICE_PACKAGES := 'ffmpeg:command -v ffmpeg' 'libopus0:ldconfig -p | grep -q libopus.so.0'
TEST_PACKAGES := 'postgresql:ls /usr/lib/postgresql/*/bin/initdb || command -v initdb' 'espeak-ng:command -v espeak-ng'

sysdeps:
	$(call ensure_packages,$(VOICE_PACKAGES))

testdeps: sysdeps
	$(call ensure_packages,$(TEST_PACKAGES))

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

test: $(STAMP) testdeps lint
	$(PY) -m pytest -q -p no:cacheprovider

demo: $(STAMP) sysdeps
	$(PY) -m tests.demo

# The real bot (a child process) against the loopback emulators; prints the table, writes bench/results.json.
bench: $(STAMP)
	$(PY) -m bench

bench-quick: $(STAMP)
	$(PY) -m bench --quick

# Focused figures of single components (splitting, write budget, provider client, /ping round trips).
bench-micro: $(STAMP)
	@for m in chat providers providers_stream interactions song_jobs; do echo "== bench.micro.$$m"; $(PY) -m bench.micro.$$m || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
