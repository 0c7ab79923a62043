#!/usr/bin/env bash
# Installs the real client libraries the tests talk to, from their registries, into one
# directory outside the clone (idempotent: a stamp file records what is installed).
#
#   tests/clients/setup.sh [DIR]     default: $TALLY_TEST_ENV or ~/.cache/tally/test-env
#
# - Python venv DIR/py with segment-analytics-python, posthog and aiosmtpd (PyPI)
# - DIR/node/node_modules with @segment/analytics-node (npm)
# - Debian's chromium and chromedriver (apt), for the browser tests
set -euo pipefail
DIR=${1:-${TALLY_TEST_ENV:-$HOME/.cache/tally/test-env}}
PY_PACKAGES="segment-analytics-python==2.4.0 posthog==7.91.1 aiosmtpd==1.4.6"
NODE_PACKAGES="@segment/analytics-node@3.1.0"
STAMP="$DIR/stamp"
apt_install() {
  if command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
  else
    echo "please install: $*" >&2; exit 1
  fi
}
command -v chromium >/dev/null || apt_install chromium
command -v chromedriver >/dev/null || apt_install chromium-driver
WANT="py: $PY_PACKAGES; node: $NODE_PACKAGES"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
echo "setting up the client libraries in $DIR" >&2
python3 -c "import venv, ensurepip" 2>/dev/null || apt_install python3-venv
command -v npm >/dev/null || apt_install nodejs npm
mkdir -p "$DIR"
rm -rf "$DIR/py" "$DIR/node"
python3 -m venv "$DIR/py"
# shellcheck disable=SC2086
"$DIR/py/bin/pip" install --quiet --disable-pip-version-check $PY_PACKAGES
mkdir -p "$DIR/node"
(cd "$DIR/node" && echo '{"name": "tally-test-clients", "private": true}' > package.json &&
  npm install --silent --no-audit --no-fund $NODE_PACKAGES)
echo "$WANT" > "$STAMP"
