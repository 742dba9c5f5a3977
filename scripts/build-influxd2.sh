#!/usr/bin/env bash
# Build InfluxDB OSS 2.x `influxd` (the version docker-compose ships) from the Go module
# proxy and crates.io, no Docker. Idempotent: does nothing when the binary is already built.
#
#   scripts/build-influxd2.sh CACHE_DIR [VERSION]      e.g. scripts/build-influxd2.sh .local/influxdb2
#
# Result: CACHE_DIR/VERSION/bin/influxd (path printed on the last line of stdout).
# Caches (Go modules/build cache, cargo registry, the libflux Rust build) live under CACHE_DIR
# so nothing touches the global ~/go or ~/.cargo caches.
#
# influxd 2.x links flux's Rust library libflux through cgo. The flux module asks for it with
# `#cgo pkg-config: flux`; InfluxData's pkg-config wrapper (github.com/influxdata/pkg-config),
# put first on PATH, answers that query by running `cargo build --release` in the (writable,
# -modcacherw) flux module directory. Needs: go >= 1.23, cargo/rustc >= 1.72 (flux pins 1.72
# in rust-toolchain.toml; we override it with the installed toolchain via RUSTUP_TOOLCHAIN, so
# rustup downloads nothing), a C compiler and the real pkg-config (apt: clang pkg-config,
# installed if missing).
# From scratch on this 2-core machine: 10.6 min wall (7.1 min CPU) under load at nice 10, peak RSS
# 1.2 GiB, 2.9 GiB of caches under CACHE_DIR (INFLUXD2_CLEAN=1 deletes them after the build);
# the stripped binary is 89 MiB. Stop influxd with SIGINT for a clean shutdown (SIGTERM kills it).
set -euo pipefail

if [ $# -lt 1 ] || [ -z "$1" ]; then
  echo "usage: $0 CACHE_DIR [VERSION]   (VERSION defaults to 2.7.12)" >&2
  exit 2
fi
version="${2:-${INFLUXDB2_VERSION:-2.7.12}}"
version="${version#v}"
mkdir -p "$1"
cache="$(cd "$1" && pwd)"
home="$cache/$version"
binary="$home/bin/influxd"
log() { echo "==> $*" >&2; }

have_binary() { [ -x "$binary" ] && "$binary" version >/dev/null 2>&1; }
if have_binary; then
  echo "$binary"
  exit 0
fi

mkdir -p "$home/bin"
# One builder at a time (parallel test sessions); the loser waits and reuses the result.
exec 9>"$cache/$version.lock"
flock 9
if have_binary; then
  echo "$binary"
  exit 0
fi

# Be gentle with the shared machine unless told otherwise.
renice -n "${INFLUXD2_BUILD_NICE:-10}" -p $$ >/dev/null 2>&1 || true

# --- system packages --------------------------------------------------------------------
missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v clang >/dev/null 2>&1 || missing+=(clang)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing apt packages: ${missing[*]}"
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v go >/dev/null 2>&1 || { echo "go not found: install Go >= 1.23 (https://go.dev/dl)" >&2; exit 1; }
command -v cargo >/dev/null 2>&1 || {
  echo "cargo not found: install a Rust toolchain >= 1.72 (https://rustup.rs); Debian 12's rustc 1.63 is too old" >&2
  exit 1
}

# --- environment ------------------------------------------------------------------------
export GOPATH="$cache/go"
export GOMODCACHE="$cache/go/pkg/mod"
export GOCACHE="$cache/go/cache"          # the pkg-config wrapper also builds libflux in here
export GOFLAGS="-mod=mod -modcacherw"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export CGO_ENABLED=1
export CC="${CC:-clang}"
export CARGO_HOME="$cache/cargo"
export CARGO_NET_RETRY="${CARGO_NET_RETRY:-5}"
if command -v rustup >/dev/null 2>&1 && [ -z "${RUSTUP_TOOLCHAIN:-}" ]; then
  # flux's rust-toolchain.toml pins 1.72 (+ cross targets); use the toolchain active outside it.
  RUSTUP_TOOLCHAIN="$(cd / && rustup show active-toolchain 2>/dev/null | awk '{print $1; exit}')"
  export RUSTUP_TOOLCHAIN
fi
export RUSTUP_AUTO_SELF_UPDATE=disable
# flux-core builds with `#![deny(warnings)]` (its default feature "strict"); lints added after
# Rust 1.72 (mismatched_lifetime_syntaxes, dead_code) fail it. RUSTFLAGS=--cap-lints=warn is not
# enough: the wrapper passes --target, and then cargo does not apply RUSTFLAGS to the host build
# of flux-core (a build-dependency of flux's build.rs). A rustc wrapper caps lints everywhere.
tools="$cache/tools/bin"
mkdir -p "$tools"
cat > "$tools/rustc-cap-lints" <<'WRAP'
#!/bin/sh
# RUSTC_WRAPPER: cargo calls "$0 rustc ARGS"; cap lints at warn unless cargo already capped them.
case " $* " in
  *" --crate-name "*) case " $* " in *" --cap-lints"*) ;; *) exec "$@" --cap-lints=warn ;; esac ;;
esac
exec "$@"
WRAP
chmod +x "$tools/rustc-cap-lints"
export RUSTC_WRAPPER="$tools/rustc-cap-lints"
rustc_v="$(cd / && rustc --version | awk '{print $2}')"
log "toolchains: $(go version | awk '{print $3}'), rustc $rustc_v${RUSTUP_TOOLCHAIN:+ ($RUSTUP_TOOLCHAIN)}, CC=$CC"
if [ "$(printf '%s\n1.72.0\n' "$rustc_v" | sort -V | head -1)" != "1.72.0" ]; then
  echo "rustc $rustc_v is too old: libflux needs >= 1.72" >&2
  exit 1
fi

# --- InfluxData's pkg-config wrapper --------------------------------------------------------
if [ ! -x "$tools/pkg-config" ]; then
  log "installing github.com/influxdata/pkg-config (libflux build driver)"
  GOBIN="$tools" go install github.com/influxdata/pkg-config@v0.2.14
fi
export PATH="$tools:$PATH"
export PKG_CONFIG="$tools/pkg-config"

# --- source ------------------------------------------------------------------------------
# `go install module@version` refuses modules whose go.mod has replace directives (influxdb
# v2 has one), so build inside a writable copy of the module.
log "downloading github.com/influxdata/influxdb/v2@v$version"
moddir="$(go mod download -json "github.com/influxdata/influxdb/v2@v$version" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$moddir" ] || { echo "module download failed for v$version" >&2; exit 1; }
src="$cache/src/influxdb-$version"
if [ ! -f "$src/go.mod" ]; then
  rm -rf "$src"
  mkdir -p "$(dirname "$src")"
  cp -r "$moddir" "$src.tmp"
  chmod -R u+w "$src.tmp"
  mv "$src.tmp" "$src"
fi

# --- build -------------------------------------------------------------------------------
log "building influxd v$version (Go + Rust libflux; first run ~6-11 min on 2 cores)"
start=$SECONDS
(
  cd "$src"
  go build \
    -tags sqlite_foreign_keys,sqlite_json \
    -ldflags "-s -w -X main.version=v$version -X main.commit=module-proxy" \
    -o "$binary.tmp" ./cmd/influxd
)
mv "$binary.tmp" "$binary"
"$binary" version >&2
log "built $binary in $((SECONDS - start))s ($(du -h "$binary" | cut -f1))"
if [ "${INFLUXD2_CLEAN:-0}" = 1 ]; then
  # ~2.9 GiB of build caches (Go modules 1.8G incl. the libflux cargo target, Go build cache ~1G).
  log "INFLUXD2_CLEAN=1: removing build caches under $cache"
  rm -rf "$cache/go" "$cache/cargo" "$cache/src" "$cache/tools"
fi
echo "$binary"
