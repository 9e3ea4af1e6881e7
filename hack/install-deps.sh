#!/usr/bin/env bash
# Installs what wasmlet's development, tests and local cluster need, idempotently:
# Debian packages (registry, Prometheus, the C-to-Wasm toolchain), a Python venv with the
# project installed, and the control-plane and node binaries built from Go (cached by version).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

debs=(docker-registry prometheus wasi-libc clang lld libclang-rt-14-dev-wasm32 wabt apache2-utils
  # The real node (tests/node, make up-node, make image): an image builder, a CRI runtime,
  # CNI plugins, the base image's bootstrapper and veth/netns tooling.
  docker.io containerd runc containernetworking-plugins debootstrap iproute2 iptables)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v go >/dev/null || { echo "install-deps: Go >= 1.26 is required (https://go.dev/doc/install)" >&2; exit 1; }

venv="$root/.venv"
stamp="$venv/.installed-$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  echo "install-deps: creating $venv and installing wasmlet with its dev and test extras" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e "$root[dev,test]"
  touch "$stamp"
fi

# The preview1-to-component adapter (a crates.io crate) for the component test guests.
cargo_bin="$(command -v cargo || echo "$HOME/.cargo/bin/cargo")"
if [ -x "$cargo_bin" ]; then
  "$cargo_bin" fetch --locked -q --manifest-path "$root/dev/wasmlet_dev/guests/adapter/Cargo.toml"
else
  echo "install-deps: cargo not found; component guests will not build (install Rust via rustup)" >&2
fi
# wit-bindgen for the `wasmtime serve` baseline's guest (tests/bench/test_wasi_http.py): built
# once here, outside any test's timeout; a no-op once it is in ~/.cache/wasmlet/cargo.
(cd "$root" && "$venv/bin/python" -c "from bench.wasi_http import ensure_wit_bindgen; ensure_wit_bindgen()")

"$here/build-kube.sh" node >/dev/null
# The Prometheus Operator's CRDs (from its Go module), which the tests apply to validate
# deploy/monitoring/ server-side.
"$here/prometheus-operator-crds.sh" >/dev/null
