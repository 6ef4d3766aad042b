#!/usr/bin/env bash
# Makes sure what `make test` needs is on this machine: redis-server (the cluster tests
# start their own on free ports), node and npm (the TypeScript SDK's tests) and chromium
# (the browser test of the chat demo; playwright-core drives it and cannot download a
# browser of its own). Installs redis-server and chromium through apt when they are
# missing and we may; otherwise stops with the one command to run. It never lets a test
# be skipped.
set -euo pipefail

# apt_ensure <command> <package>: installs <package> with apt when <command> is missing.
apt_ensure() {
  local cmd=$1 pkg=$2
  if command -v "$cmd" >/dev/null 2>&1 || [ -x "$cmd" ]; then
    return
  fi
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "$cmd missing: installing $pkg with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "${APT_UPDATED:-}" ]; then
      apt-get update -qq >/dev/null
      APT_UPDATED=1
    fi
    apt-get install -y -qq "$pkg" >/dev/null
  else
    echo "$pkg is required by the test suite. Install it with:" >&2
    echo "    sudo apt-get install -y $pkg" >&2
    exit 1
  fi
}

apt_ensure redis-server redis-server
redis-server --version >&2

# The SDK tests need Node 20 or newer with npm; no apt package is recent enough
# everywhere, so this one is not installed for you.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node and npm (Node 20 or newer) are required by the TypeScript SDK tests (clients/typescript)." >&2
  echo "Install them from https://nodejs.org or with your package manager (e.g. nvm install 20)." >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "Node $(node --version) is too old: the TypeScript SDK tests need Node 20 or newer." >&2
  exit 1
fi
echo "node $(node --version), npm $(npm --version)" >&2

apt_ensure /usr/bin/chromium chromium
/usr/bin/chromium --version >&2 2>/dev/null || true
