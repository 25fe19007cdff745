#!/usr/bin/env bash
# Installs the npm packages of the Node.js end-to-end suite (tests/node: the official Azure IoT SDKs) with
# `npm ci`, exactly as pinned in tests/node/package-lock.json. Idempotent: does nothing when node_modules is
# already in step with the lockfile. Installs Node.js with apt-get only when node or npm is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
suite="$root/tests/node"
say() { echo "node.sh: $*"; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "node or npm missing, installing Debian's nodejs and npm with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nodejs npm >/dev/null
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
    say "warning: node $(node --version) is older than the 20 the suite is written for"
fi

# npm ci writes node_modules/.package-lock.json; newer than the lockfile means the install is current.
stamp="$suite/node_modules/.package-lock.json"
if [ -f "$stamp" ] && [ "$stamp" -nt "$suite/package-lock.json" ]; then
    say "tests/node/node_modules already matches package-lock.json ($(node --version))"
    exit 0
fi
(cd "$suite" && npm ci --no-audit --no-fund --loglevel=error)
say "installed $(cd "$suite" && npm ls --depth=0 --parseable 2>/dev/null | tail -n +2 | wc -l) packages into tests/node/node_modules with $(node --version)"
