#!/usr/bin/env bash
# The headers loam's c10d shim (trainer/csrc/c10d_shim.cpp) is compiled against, once per
# machine, without root:
#   - Gloo's: compiled into the torch wheel's libtorch_cpu.so, but its headers do not ship.
#     Debian's libgloo-dev (pinned below) is fetched with `apt-get download` and unpacked
#     under $LOAM_HOME/deps/, where build.rs finds it. The shim only passes Gloo objects by
#     shared_ptr (a device, the process group's own members), so the 2022 headers serve the
#     Gloo inside torch 2.13: ProcessGroupGloo.hpp compiles against them with its
#     GLOO_STORE_HAS_STORE_V2 extras switched off, and those live inside libtorch.
#   - CUDA's, for ProcessGroupNCCL: nccl.h and the runtime headers come with the torch wheel's
#     NVIDIA dependencies; their crt/ and nv/ parts are nvidia-cuda-crt and nvidia-cuda-cccl,
#     pinned in scripts/requirements.txt (installed by setup.sh). Nothing to do here.
# Without Gloo's headers loam still builds, single-process only (`loam --version` says so).
# Called by setup.sh; safe to run again (a second run does nothing).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/steps.sh"
source "$ROOT/scripts/env.sh"

GLOO_DEB_VERSION="0.0~git20220518.5b14351-3"
dest="$LOAM_HOME/deps/libgloo-dev-$GLOO_DEB_VERSION"
if [ -f "$dest/usr/include/gloo/rendezvous/store.h" ]; then
  printf '\033[1m[setup_dist]\033[0m Gloo headers present (%s)\n' "$dest" >&2
  exit 0
fi
step "fetching Gloo's headers (Debian libgloo-dev $GLOO_DEB_VERSION) into $dest" \
  "this needs Debian's package lists (apt-get update) and the archive; without it loam builds single-process only"
command -v apt-get >/dev/null || die "apt-get is missing: install libgloo-dev's headers by hand and set LOAM_GLOO_INCLUDE to their include dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && apt-get download "libgloo-dev=$GLOO_DEB_VERSION" >/dev/null 2>&1); then
  # The lists may be stale or missing (a fresh container): refresh them when we may.
  if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; fi
  (cd "$tmp" && apt-get download "libgloo-dev=$GLOO_DEB_VERSION") \
    || die "apt-get download libgloo-dev=$GLOO_DEB_VERSION failed; run apt-get update (as root) and try again"
fi
mkdir -p "$dest.tmp"
dpkg-deb -x "$tmp"/libgloo-dev_*.deb "$dest.tmp"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
printf '\033[1m[setup_dist]\033[0m Gloo headers in %s\n' "$dest/usr/include" >&2
