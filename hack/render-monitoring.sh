#!/usr/bin/env bash
# Renders the generated parts of deploy/monitoring/ (alert rules, dashboards) from
# dev/wasmlet_dev/monitoring. A unit test fails when a committed file has drifted from this.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
exec "${PYTHON:-$root/.venv/bin/python}" -m wasmlet_dev.monitoring.render "$@"
