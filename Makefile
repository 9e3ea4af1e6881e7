# wasmlet: `make up` brings up a local cluster with wasmlet on it; `make test` runs every test.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: deps bench-deps up up-node test-node image render test unit lint fmt bench clean

deps:
	@bash hack/install-deps.sh

up: deps
	$(VENV)/bin/wasmlet dev up

# The control plane plus a real node (containerd, kubelet, kube-scheduler in a netns with a
# veth address of its own) with the wasmlet image loaded; then `kubectl apply -k deploy/`.
# Needs root (netns, mounts); Ctrl-C stops everything.
up-node: deps
	$(VENV)/bin/wasmlet dev node

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The wasmlet image FROM a locally built base (hack/build-base-image.sh); prints its tarball.
image: deps
	$(VENV)/bin/wasmlet dev image

# deploy/wasmlet.yaml from deploy/kustomization.yaml (a unit test checks it is current).
render: deps
	bash hack/render-deploy.sh

# The whole suite: fast unit tests of the pure core first, then the real control plane,
# registry and Prometheus (started by the fixtures), then the real-node tier (tests/node, root:
# the image built FROM a locally built base, with a Docker engine of its own; then
# `kubectl apply -k deploy/` on the node `make up-node` starts, about 90 s warm).
test: lint
	$(PY) -m pytest -m "not e2e"
	$(PY) -m pytest -m "e2e and not node"
	$(PY) -m pytest -m node

# The real-node tier alone (root): the image, then the install on a real node (tests/node).
test-node: deps
	$(PY) -m pytest -m node

unit: deps
	$(PY) -m pytest -m "not e2e" -q

fmt: deps
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Benchmarks (minutes; results in bench/RESULTS.md): the agent, then the control plane.
bench-deps: deps
	@bash hack/bench-deps.sh

# A benchmark that fails keeps the committed results of its section (bench/results/*.json).
bench: bench-deps
	$(PY) -m bench
	$(PY) -m bench.controlplane

clean:
	rm -rf .cache/dev .pytest_cache .mypy_cache .ruff_cache
