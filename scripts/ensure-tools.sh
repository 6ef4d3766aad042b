#!/usr/bin/env bash
# Makes sure what `make test` needs is on this machine: redis-server (the cluster tests
# start their own on free ports). Installs it through apt when it is missing and we may;
# otherwise stops with the one command to run. It never lets the cluster tests be skipped.
set -euo pipefail

if ! command -v redis-server >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "redis-server missing: installing it with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is required by the test suite. Install it with:" >&2
    echo "    sudo apt-get install -y redis-server" >&2
    exit 1
  fi
fi
redis-server --version >&2
