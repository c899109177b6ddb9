# The two set-up commands from README.md:
#   make run    install dnnkit and run the main job on the built-in default
#               (digits CNN spec -> trained -> every artifact of export/all.toml -> verified -> table)
#   make test   install dnnkit with its test extra and run the whole test suite (CI runs this)
PYTHON ?= python3
PIP_INSTALL = $(PYTHON) -m pip install --disable-pip-version-check -q

.PHONY: install install-test install-browser run test test-fast

install:
	$(PIP_INSTALL) -e .

install-test: install-browser
	$(PIP_INSTALL) -e ".[test]"

# The HTML report's browser test uses Debian's chromium (Playwright's own browser download is not
# reachable here); installed once, as root (CI) or with sudo.
install-browser:
	@command -v chromium >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

run: install
	dnnkit run

# Two workers: most of the suite waits on child processes (converters, verifiers), one core each would idle.
test: install-test
	$(PYTHON) -m pytest -q -m "slow or not slow" -n 2 --dist loadgroup

test-fast: install-test
	$(PYTHON) -m pytest -q -m "not slow" -n 2 --dist loadgroup
