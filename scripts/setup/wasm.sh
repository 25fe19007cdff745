#!/usr/bin/env bash
# Install a wasm32 Rust toolchain (if needed) and build the policies/ workspace: the guest SDK and the example
# policies, into policies/target/wasm32-unknown-unknown/release/*.wasm. Idempotent; prints what it does.
#
# Two ways to build, picked in this order:
#   1. rustup has the wasm32-unknown-unknown target installed: plain `cargo build --target ... --release`.
#   2. Debian's rustc-web / cargo-web / rust-web-src (installed here with apt-get when missing): nightly-gated
#      build-std through RUSTC_BOOTSTRAP, with rustup's rust-lld (or Debian's lld) as the wasm linker.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
policies="$root/policies"
target=wasm32-unknown-unknown
out="$policies/target/$target/release"

say() { echo "wasm.sh: $*"; }

if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    say "rustup has $target; building with cargo"
    (cd "$policies" && cargo build --release --target "$target")
else
    if [ ! -x /usr/bin/rustc ] || [ ! -x /usr/bin/cargo ] || [ ! -d /usr/lib/rustlib/src/rust/library ]; then
        say "installing Debian rustc-web cargo-web rust-web-src"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq rustc-web cargo-web rust-web-src >/dev/null
    else
        say "Debian rustc-web toolchain already installed"
    fi
    linker=""
    if command -v rustc >/dev/null 2>&1; then
        candidate="$(rustc --print sysroot 2>/dev/null)/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld"
        [ -x "$candidate" ] && linker="$candidate"
    fi
    if [ -z "$linker" ]; then
        if ! command -v ld.lld >/dev/null 2>&1 && ! command -v wasm-ld >/dev/null 2>&1; then
            say "installing Debian lld"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            apt-get install -y -qq lld >/dev/null
        fi
        linker="$(command -v wasm-ld || command -v ld.lld)"
        # ld.lld only links wasm when invoked as wasm-ld; rust-lld picks its flavour from -flavor.
        if [ "$(basename "$linker")" != "wasm-ld" ] && [ -x "$(dirname "$linker")/wasm-ld" ]; then
            linker="$(dirname "$linker")/wasm-ld"
        fi
    fi
    say "linker: $linker"
    say "building with $(/usr/bin/rustc --version) (Debian, build-std)"
    (cd "$policies" && \
        RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$linker" \
        /usr/bin/cargo build --release --target "$target" -Zbuild-std=std,panic_abort)
fi

say "built:"
ls -l "$out"/*.wasm
