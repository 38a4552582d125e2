#!/usr/bin/env bash
# Builds the local stack's binaries from their Go modules at the versions pinned in
# dev/versions.env and caches them outside the repo, one folder per tool and version:
#   $MODELDEPLOY_CACHE/bin/<tool>-<version>/...
# A folder with a .complete stamp is reused, so only the first run is slow (tens of minutes
# for Kubernetes on two cores); later runs return in well under a second.
#
# Usage: dev/build-tools.sh [--print-dir]   (--print-dir: only print where the binaries live)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${MODELDEPLOY_CACHE:-$HOME/.cache/modeldeploy}
export GOFLAGS=-mod=mod CGO_ENABLED=0

log() { printf '[build-tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

k8s_dir=$cache/bin/kubernetes-$KUBERNETES_VERSION
kwok_dir=$cache/bin/kwok-$KWOK_VERSION
helm_dir=$cache/bin/helm-$HELM_VERSION
etcd_dir=$cache/bin/etcd-$ETCD_VERSION

if [[ ${1:-} == --print-dir ]]; then
  printf 'KUBE_BIN=%s\nKWOK_BIN=%s\nHELM_BIN=%s\nETCD_BIN=%s\n' "$k8s_dir" "$kwok_dir" "$helm_dir" "$etcd_dir"
  exit 0
fi

# build_kubernetes: k8s.io/kubernetes replaces its staging modules (k8s.io/api, ...) with local
# paths, so it cannot be `go install`ed. A throwaway module that requires it and replaces each
# staging module with its published v0.Y.Z release builds it. The version is stamped into
# k8s.io/component-base/version so the binaries report it (launchers pick flags by it).
build_kubernetes() {
  [[ -f $k8s_dir/.complete ]] && { log "kubernetes $KUBERNETES_VERSION: cached in $k8s_dir"; return; }
  log "kubernetes $KUBERNETES_VERSION: building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (first time: 10-25 min)"
  local work staging v0 minor gomod
  work=$(mktemp -d)
  minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  v0=v0.${KUBERNETES_VERSION#v1.}
  gomod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  staging=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$gomod")
  {
    echo "module modeldeploy.local/k8s-build"
    echo
    echo "go $(sed -n 's/^go \([0-9.]*\).*/\1/p' "$gomod")"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    for m in $staging; do echo "replace $m => $m $v0"; done
  } >"$work/go.mod"
  log "kubernetes: $(wc -w <<<"$staging") staging modules replaced with $v0"
  local ldflags="-s -w"
  for k in gitVersion=$KUBERNETES_VERSION gitMajor=1 gitMinor=$minor gitTreeState=clean \
           buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ); do
    ldflags+=" -X k8s.io/component-base/version.$k -X k8s.io/client-go/pkg/version.$k"
  done
  mkdir -p "$k8s_dir.tmp"
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    log "kubernetes: go build $cmd"
    (cd "$work" && go build -trimpath -ldflags "$ldflags" -o "$k8s_dir.tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd")
  done
  rm -rf "$work" "$k8s_dir"; mv "$k8s_dir.tmp" "$k8s_dir"; touch "$k8s_dir/.complete"
  log "kubernetes: done, $("$k8s_dir/kubectl" version --client 2>/dev/null | head -1)"
}

# build_etcd: Debian's etcd-server is 3.4.23, older than what Kubernetes >= 1.31 expects, and
# etcd's own main module carries replace lines; a two-line main over etcdmain builds it.
build_etcd() {
  [[ -f $etcd_dir/.complete ]] && { log "etcd $ETCD_VERSION: cached in $etcd_dir"; return; }
  log "etcd $ETCD_VERSION: building"
  local work; work=$(mktemp -d)
  printf 'module modeldeploy.local/etcd-build\n\ngo 1.23\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$work/go.mod"
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >"$work/main.go"
  mkdir -p "$etcd_dir.tmp"
  (cd "$work" && go build -trimpath -ldflags "-s -w" -o "$etcd_dir.tmp/etcd" .)
  rm -rf "$work" "$etcd_dir"; mv "$etcd_dir.tmp" "$etcd_dir"; touch "$etcd_dir/.complete"
  log "etcd: done"
}

# go_install_into DIR VERSION PKG...: plain `go install` works for modules without replace lines.
go_install_into() {
  local dir=$1 version=$2; shift 2
  [[ -f $dir/.complete ]] && { log "$(basename "$dir"): cached in $dir"; return; }
  mkdir -p "$dir.tmp"
  for pkg in "$@"; do
    log "go install $pkg@$version"
    GOBIN="$dir.tmp" go install -trimpath -ldflags "-s -w" "$pkg@$version"
  done
  rm -rf "$dir"; mv "$dir.tmp" "$dir"; touch "$dir/.complete"
}

build_etcd
go_install_into "$kwok_dir" "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwokctl sigs.k8s.io/kwok/cmd/kwok
go_install_into "$helm_dir" "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
build_kubernetes
log "all binaries ready under $cache/bin"
