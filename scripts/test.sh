#!/usr/bin/env bash
# THE test command: every test of the repository, from a fresh machine (Debian 12, root, Rust stable, Node 20).
#   1. setup scripts in scripts/setup/ (node, moto, wasm first, then any others), each idempotent;
#   2. cargo test --workspace --all-targets (debug, one target dir);
#   3. the Node.js end-to-end suite (official Azure IoT SDKs against the dps binary on 127.0.0.1:443);
#   4. any other end-to-end suite: tests/*/run.sh.
# Test steps all run even when one fails; a summary comes last, and the exit status is non-zero on any failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
started=$(date +%s)
summary=()
failed=0

say() { printf '\n==> %s\n' "$*"; }

# Run one step (an external command, so that its own `set -e` holds); record PASS/FAIL and its duration.
step() {
    local name="$1"
    shift
    local t0 rc=0
    t0=$(date +%s)
    say "$name"
    "$@" || rc=$?
    local took=$(($(date +%s) - t0))
    if [ "$rc" -eq 0 ]; then
        summary+=("PASS  $name (${took}s)")
    else
        summary+=("FAIL  $name (exit $rc, ${took}s)")
        failed=1
    fi
    return 0
}

print_summary() {
    printf '\n==> summary (%ss in all)\n' "$(($(date +%s) - started))"
    printf '  %s\n' "${summary[@]}"
}

# Non-login shells may not have rustup's cargo on PATH yet.
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "test.sh: cargo not found (install Rust stable with rustup)" >&2; exit 1; }

# A C compiler (ring builds C and assembly) is the one build prerequisite Rust does not bring along.
if ! command -v cc >/dev/null 2>&1; then
    say "no C compiler: installing build-essential with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq build-essential >/dev/null
fi

# Setup: the known scripts in a fixed order, then whatever else is there (alphabetically). A failed setup stops
# everything: the tests after it would fail for the wrong reason.
setups=()
for name in node moto wasm; do
    [ -f "scripts/setup/$name.sh" ] && setups+=("scripts/setup/$name.sh")
done
for script in scripts/setup/*.sh; do
    case "$(basename "$script")" in node.sh | moto.sh | wasm.sh) ;; *) setups+=("$script") ;; esac
done
for script in "${setups[@]}"; do
    step "setup: $(basename "$script")" bash "$script"
    if [ "$failed" -ne 0 ]; then
        print_summary
        exit 1
    fi
done

step "cargo test --workspace --all-targets" cargo test --workspace --all-targets

target_dir="${CARGO_TARGET_DIR:-$root/target}"
if [ -x "$target_dir/debug/dps" ]; then
    export DPS_BIN="$target_dir/debug/dps"
fi
step "node e2e: Azure IoT SDKs (tests/node)" node --test --test-concurrency=1 tests/node/

for suite in tests/*/run.sh; do
    [ -f "$suite" ] || continue
    step "e2e: $suite" bash "$suite"
done

print_summary
exit "$failed"
