#!/usr/bin/env bash
# Installs what `make bench` needs beyond hack/install-deps.sh, idempotently: the load
# generator (wrk) and the process timer (hyperfine) for the side-by-side baselines,
# py-spy for profiles of the control plane, and wit-bindgen for the `wasmtime serve` guest.
set -euo pipefail
debs=(wrk hyperfine)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bench-deps: installing Debian packages: ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for tool in wrk hyperfine; do
  command -v "$tool" >/dev/null || { echo "bench-deps: $tool is still missing" >&2; exit 1; }
done
# The sampling profiler behind `python -m bench.controlplane --profile DIR`.
root="$(cd "$(dirname "$0")/.." && pwd)"
[ -x "$root/.venv/bin/py-spy" ] || "$root/.venv/bin/pip" install -q py-spy
# wit-bindgen, for the wasi:http C guest that `wasmtime serve` runs as the HTTP baseline:
# built once with the machine's cargo (bench/wasi_http.py pins the version).
(cd "$root" && .venv/bin/python -c "from bench.wasi_http import ensure_wit_bindgen; ensure_wit_bindgen()")
