#!/usr/bin/env bash
# Install the system Chromium that the dashboard's browser test drives (tests/test_dashboard_browser.py), from
# Debian's packages; Playwright's own browser downloads are not used (the test passes executable_path).
# Idempotent: does nothing but report the version when /usr/bin/chromium is already there.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    echo "chromium already installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium fonts-dejavu-core

"$CHROMIUM" --version
