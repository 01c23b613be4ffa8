# Two commands: `make demo` and `make test`. Both are self-sufficient on a fresh
# Debian machine with Python 3.11: they create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Debian packages the tests start for real (ZooKeeper, etcd) or compare against
# (nginx, wrk) or drive as a client (curl, openssl s_client / s_time, headless chromium for
# the admin UI), or feed (influxdb: the io.l5d.influxdb telemeter's output is written to a real one).
DEB_PACKAGES := zookeeper etcd-server nginx wrk curl openssl chromium chromium-driver influxdb
# Linkerd-parity namers: a real DNS server (io.l5d.dnssrv), Apache Curator (io.l5d.curator),
# and a local Debian base + podman for the container image test.
DEB_PACKAGES += dnsmasq libcurator-discovery-java debootstrap podman runc
# HTTP/2: nghttp (h2c upgrade client), h2load, nghttpd (an h2 backend) and nghttpx (the
# benchmark's reference proxy).
DEB_PACKAGES += nghttp2-client nghttp2-server nghttp2-proxy

.PHONY: demo test test-fast venv debs bench clean screenshots protos native clean-native

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The data plane's hot modules compiled with mypyc (namerouter/proxy/native.py); without
# mypyc or a C compiler it says so and the data plane runs as pure Python. A source edited
# after the build is never run compiled (the sources load instead), so rebuilding is only
# for speed.
NATIVE := namerouter/proxy/native.json
NATIVE_SRC := namerouter/proxy/native.py namerouter/proxy/message.py namerouter/proxy/batch.py \
	namerouter/proxy/timers.py namerouter/proxy/stats.py namerouter/proxy/phases.py namerouter/proxy/lifecycle.py \
	namerouter/proxy/h1/heads.py namerouter/proxy/h1/encode.py namerouter/proxy/h1/server.py \
	namerouter/proxy/h1/client.py namerouter/proxy/h2/heads.py

$(NATIVE): $(STAMP) $(NATIVE_SRC)
	$(PY) namerouter/proxy/native.py build

native: $(NATIVE)

clean-native:
	$(PY) namerouter/proxy/native.py clean

# Install the Debian packages the tests need, only when one is missing.
debs:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: $(STAMP) $(NATIVE)
	$(PY) -m namerouter.demo

# The container-image test is deselected by default (pyproject addopts): it runs second.
test: $(STAMP) $(NATIVE) debs
	$(PY) -m pytest -q $(PYTEST_ARGS)
	$(PY) -m pytest -q -m container $(PYTEST_ARGS)

# The unit tests only (no real servers, nothing slow): a quick lane while editing.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m 'not slow and not integration and not container' $(PYTEST_ARGS)

# Every benchmark, one after another (each prints its figures; all on 127.0.0.1, each
# stops by itself). The first one that fails stops the run; for options, run a script
# by hand (see its docstring).
BENCHES := bench/dtab_bench.py bench/proxy_bench.py bench/namerd_bench.py bench/policy_bench.py \
           bench/tls_handshake_bench.py bench/tls_bench.py bench/dashboard_bench.py bench/h2_bench.py

bench: $(STAMP) $(NATIVE) debs
	@set -e; for b in $(BENCHES); do \
	  echo "==> $(PY) $$b"; \
	  $(PY) $$b; \
	done

# The README's pictures of the admin UI, taken by the browser tests themselves (about 1.5 min).
screenshots: $(STAMP) debs
	NAMEROUTER_SCREENSHOTS=docs/img $(PY) -m pytest -q tests/test_ui_router_browser.py tests/test_ui_namerd_browser.py

# Regenerate the committed protobuf modules of namerouter/mesh from their .proto files
# (tests/test_mesh_protos.py fails when they are out of date).
PROTOS := $(wildcard namerouter/mesh/*.proto namerouter/mesh/linkerd2/*.proto)
protos: $(STAMP)
	$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. $(PROTOS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
	find namerouter -name '*.so' -delete; rm -f $(NATIVE)
