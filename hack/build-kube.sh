#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from their Go modules
# (versions pinned in hack/kube/go.mod and hack/etcd/go.mod) into a cache directory keyed by
# those versions, so later runs reuse them. Prints the directory holding the binaries.
# `build-kube.sh node` also builds what the real node needs (make up-node, tests/node):
# kubelet and kube-scheduler from the same k8s.io/kubernetes module, and a static pause.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v go >/dev/null || { echo "build-kube: Go is missing; install Go >= 1.26 (https://go.dev/doc/install) and retry" >&2; exit 1; }
kube_version="$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$here/kube/go.mod")"
etcd_version="$(awk '$1=="require" && $2=="go.etcd.io/etcd/server/v3" {print $3}' "$here/etcd/go.mod")"
cache_root="${WASMLET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmlet}"
# "-v2": binaries carry version stamps (kubectl version needs them); bump to force a rebuild.
out="$cache_root/kube-$kube_version-etcd-$etcd_version-$(go env GOOS)-$(go env GOARCH)-v2"
minor="$(echo "$kube_version" | cut -d. -f2)"
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp="$stamp -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
etcd_stamp="-X go.etcd.io/etcd/api/v3/version.GitSHA=$etcd_version"
mkdir -p "$out"
build() {  # build <module dir> <package> <binary name> <ldflags>
  if [ -x "$out/$3" ]; then return; fi
  echo "build-kube: building $3 ($2) into $out (first run only; a few minutes)" >&2
  (cd "$here/$1" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w $4" -o "$out/$3.tmp" "$2") \
    || { echo "build-kube: building $3 failed; see the Go errors above (a network error means the Go module proxy is unreachable)" >&2; exit 1; }
  mv "$out/$3.tmp" "$out/$3"
}
build etcd go.etcd.io/etcd/server/v3 etcd "$etcd_stamp"
build kube k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$stamp"
build kube k8s.io/kubernetes/cmd/kubectl kubectl "$stamp"
build kube k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager "$stamp"
if [ "${1:-}" = node ]; then
  build kube k8s.io/kubernetes/cmd/kube-scheduler kube-scheduler "$stamp"
  build kube k8s.io/kubernetes/cmd/kubelet kubelet "$stamp"
  build pause wasmlet.dev/hack/pause pause ""
fi
echo "$out"
