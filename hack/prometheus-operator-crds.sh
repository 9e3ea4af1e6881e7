#!/usr/bin/env bash
# Fetches the Prometheus Operator's CRD manifests (PodMonitor, ServiceMonitor, PrometheusRule)
# from its Go module through the Go module proxy and caches them by version; prints the
# directory. The tests apply them so deploy/monitoring/ is validated by the API server.
set -euo pipefail
version="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
cache_root="${WASMLET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmlet}"
out="$cache_root/prometheus-operator-crds-$version"
kinds=(podmonitors servicemonitors prometheusrules)
if [ ! -f "$out/.complete" ]; then
  command -v go >/dev/null || { echo "prometheus-operator-crds: Go is missing" >&2; exit 1; }
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  dir="$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "github.com/prometheus-operator/prometheus-operator@$version" \
    | awk -F'"' '$2=="Dir" {print $4}')"
  [ -d "$dir/example/prometheus-operator-crd" ] \
    || { echo "prometheus-operator-crds: $version has no example/prometheus-operator-crd/" >&2; exit 1; }
  mkdir -p "$out"
  for kind in "${kinds[@]}"; do
    cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$out/"
  done
  touch "$out/.complete"
fi
echo "$out"
