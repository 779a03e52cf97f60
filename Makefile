# The two commands a newcomer needs: `make demo` and `make test`.
# Both set everything up on a fresh Debian machine: the Debian packages the
# tests use (installed with apt-get when missing), a .venv with the package
# and its extras.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the tests and benchmarks use: socat (baseline), picocom (a
# technician's terminal), age and oathtool (crypto cross-checks: recordings,
# TOTP, the quorum oracle's Tocs and codes), asciinema (playback), rsyslog +
# TLS (the SIEM receiver), systemd (systemd-analyze, systemd-id128), e2fsprogs
# (disk full on a loop file), openssl (signature vector); gcc, libc6-dev and
# python3-dev build the relay's C step (src/shimmfa/shim/link/_wire.c) at
# install; postgresql (the central service's and the quorum oracle's tests
# and benchmarks start their own server); chromium (the central web UI's
# browser tests, driven by the playwright pip package through
# executable_path: no browser is downloaded).
DEBIAN_PACKAGES := socat picocom age oathtool asciinema rsyslog rsyslog-gnutls systemd e2fsprogs openssl \
	gcc libc6-dev python3-dev postgresql chromium

.PHONY: demo test bench lint readme system venv clean

demo: system venv
	$(BIN)/shimmfa demo

test: system venv
	$(BIN)/python tools/run_tests.py

bench: system venv
	$(BIN)/python benchmarks/relay_bench.py
	$(BIN)/python benchmarks/gate_fuzz.py
	$(BIN)/python benchmarks/tamper_bench.py
	PYTHONPATH=tests $(BIN)/python benchmarks/central_ingest.py
	PYTHONPATH=tests $(BIN)/python benchmarks/central_ui.py

lint: venv
	gcc -fsyntax-only -std=gnu11 -Wall -Wextra -Werror \
		-I"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
		src/shimmfa/shim/link/_wire.c
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools
	$(BIN)/mypy
	$(BIN)/lint-imports

readme: venv
	$(BIN)/python tools/update_readme_reference.py

venv: $(STAMP)

# After `system`: the install compiles the C step (and falls back to Python
# without a compiler). Rebuilt when the C source changes.
$(STAMP): pyproject.toml src/shimmfa/shim/link/_wire.c | system
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "shimmfa needs Python 3.11 or newer ($(PYTHON) is older)"; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null || \
		$(MAKE) --no-print-directory APT_PACKAGES=python3-venv apt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

system:
	@missing=""; for pkg in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || \
			missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then $(MAKE) --no-print-directory APT_PACKAGES="$$missing" apt; fi

apt:
	@echo "installing Debian packages:$(APT_PACKAGES)"
	@if [ "$$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES)

clean:
	rm -rf $(VENV) build src/*.egg-info src/shimmfa/shim/link/*.so .pytest_cache .mypy_cache .ruff_cache .hypothesis
