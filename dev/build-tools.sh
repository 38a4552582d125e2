#!/usr/bin/env bash
# Builds the local stack's binaries from their Go modules at the versions pinned in
# dev/versions.env and caches them outside the repo, one folder per tool and version:
#   $MODELDEPLOY_CACHE/bin/<tool>-<version>/...
# A folder with a .complete stamp is reused, so only the first run is slow (tens of minutes
# for Kubernetes on two cores); later runs return in well under a second.
#
# --system-deps [PACKAGE...] installs the Debian packages the stack runs (SYSTEM_PACKAGES in
# versions.env, or the ones named) that are missing: apt-get as root, without starting or
# enabling the packages' own services; not root, it prints the command and fails. Instant when
# everything is there.
#
# Usage: dev/build-tools.sh [--print-dir | --system-deps [PACKAGE...] | --kstatus]
#   --print-dir: only print where the binaries live
#   --kstatus: build (or find cached) dev/kstatus, the kstatus verdict printer, and print its path
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
# dev/kstatus: keyed by the cli-utils version and the program's own source (it lives in the repo).
kstatus_src=$here/kstatus

# has_package PKG: what the stack needs from the package is there (on PATH; venv can bootstrap
# pip), whether it came from apt or elsewhere.
has_package() {
  case $1 in
    prometheus) command -v prometheus >/dev/null && command -v promtool >/dev/null ;;
    prometheus-alertmanager) command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null ;;
    prometheus-pushgateway) command -v prometheus-pushgateway >/dev/null || command -v pushgateway >/dev/null ;;
    python3-venv) python3 -c 'import venv, ensurepip' 2>/dev/null ;;
    lua5.4) command -v lua5.4 >/dev/null ;;
    *) dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' ;;
  esac
}

# system_deps [PKG...]: apt-get install the missing packages. The Debian packages start and
# enable their own Prometheus/Alertmanager services (listening on all interfaces) when allowed;
# a policy-rc.d answering 101 forbids the start during the install, and the units are disabled
# afterwards so a reboot does not start them either. The stack runs its own copies on loopback.
system_deps() {
  local wanted=("$@") missing=() pkg
  ((${#wanted[@]})) || read -r -a wanted <<<"$SYSTEM_PACKAGES"
  for pkg in "${wanted[@]}"; do has_package "$pkg" || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  local cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
  if ! command -v apt-get >/dev/null; then
    log "missing: ${missing[*]}. Not a Debian/Ubuntu machine: install their equivalents (Prometheus >= $PROMETHEUS_MIN_VERSION with promtool, Alertmanager >= $ALERTMANAGER_MIN_VERSION, Python's venv) so they are on PATH."
    return 1
  fi
  if ((EUID != 0)); then
    log "missing system packages: ${missing[*]}. Install them as root, then run make again:"
    printf '\n    sudo sh -c "%s"\n\n' "$cmd" >&2
    return 1
  fi
  local apt_log=$cache/system-deps.log t0=$SECONDS
  local policy=${MODELDEPLOY_POLICY_RC_D:-/usr/sbin/policy-rc.d} # overridden by tests only
  mkdir -p "$cache"
  if [[ ! -e $policy ]]; then
    own_policy=$policy # global: the EXIT trap removes it, even after Ctrl-C
    trap 'rm -f "$own_policy"' EXIT
    printf '#!/bin/sh\n# written by modeldeploy dev/build-tools.sh during apt-get install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
  fi
  log "system packages: apt-get update (log: $apt_log)"
  if ! apt-get update -q >"$apt_log" 2>&1; then
    tail -20 "$apt_log" >&2; log "apt-get update failed"; return 1
  fi
  log "system packages: apt-get install --no-install-recommends ${missing[*]} ($((SECONDS - t0))s so far)"
  local show status
  show="^(Need to get|Setting up ($(IFS='|'; echo "${missing[*]}")) )"
  set +e
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" 2>&1 |
    tee -a "$apt_log" | grep --line-buffered -E "$show" >&2
  status=${PIPESTATUS[0]}
  set -e
  [[ -z ${own_policy:-} ]] || rm -f "$own_policy"
  if ((status != 0)); then tail -20 "$apt_log" >&2; log "apt-get install failed ($status)"; return 1; fi
  disable_services "${missing[@]}"
  for pkg in "${missing[@]}"; do
    has_package "$pkg" || { log "$pkg: installed but still not usable (see $apt_log)"; return 1; }
  done
  log "system packages: installed ${missing[*]} in $((SECONDS - t0))s"
}

# disable_services PKG...: stop and disable the services these (just installed) packages ship.
disable_services() {
  local pkg name
  for pkg in "$@"; do
    for name in $(dpkg -L "$pkg" 2>/dev/null |
      sed -n -e 's#^\(/usr\)\{0,1\}/lib/systemd/system/\([^/]*\)\.service$#\2#p' -e 's#^/etc/init\.d/##p' | sort -u); do
      if [[ -d /run/systemd/system ]]; then
        systemctl disable --now "$name.service" >/dev/null 2>&1 || true
      elif [[ -x /etc/init.d/$name ]]; then
        { "/etc/init.d/$name" status && "/etc/init.d/$name" stop; } >/dev/null 2>&1 || true
        update-rc.d "$name" disable >/dev/null 2>&1 || true
      fi
      log "system packages: service $name stopped and disabled (the stack runs its own, on loopback)"
    done
  done
}

if [[ ${1:-} == --system-deps ]]; then
  shift
  system_deps "$@"
  exit
fi

# build_kstatus: dev/kstatus at the pinned cli-utils version, go.sum as committed (-mod=readonly).
build_kstatus() {
  local required digest dir
  required=$(sed -n 's#^\s*\(require \)\{0,1\}sigs.k8s.io/cli-utils \(v[^ ]*\).*#\2#p' "$kstatus_src/go.mod")
  if [[ $required != "$CLI_UTILS_VERSION" ]]; then
    log "dev/kstatus/go.mod requires sigs.k8s.io/cli-utils ${required:-?}, versions.env pins $CLI_UTILS_VERSION"
    return 1
  fi
  digest=$(cat "$kstatus_src/go.mod" "$kstatus_src/go.sum" "$kstatus_src"/*.go | sha256sum | cut -c1-12)
  dir=$cache/bin/kstatus-$CLI_UTILS_VERSION-$digest
  if [[ ! -f $dir/.complete ]]; then
    log "kstatus: go build (cli-utils $CLI_UTILS_VERSION)"
    mkdir -p "$dir.tmp"
    (cd "$kstatus_src" && GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o "$dir.tmp/kstatus" .)
    rm -rf "$dir"; mv "$dir.tmp" "$dir"; touch "$dir/.complete"
  fi
  printf '%s\n' "$dir/kstatus"
}

if [[ ${1:-} == --kstatus ]]; then
  build_kstatus
  exit
fi

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
build_kstatus >/dev/null
log "all binaries ready under $cache/bin"
