#!/usr/bin/env bash
# Installs Debian's chromium for the Playwright test (tests/test_serve_browser.py).
# Playwright drives it through executable_path=/usr/bin/chromium, so no Playwright browser download is needed.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
