#!/usr/bin/env bash
# The dashboard's browser tests drive Debian's headless Chromium through chromedriver. Install
# both when they are missing and this user may (root, or passwordless sudo); otherwise say how.
# Never fails: without a browser the browser tests are skipped with a message.
set -u
CHROMIUM=${IMAGEGEN_TEST_CHROMIUM:-/usr/bin/chromium}
CHROMEDRIVER=${IMAGEGEN_TEST_CHROMEDRIVER:-/usr/bin/chromedriver}

have_browser() { [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]; }

if have_browser; then
  echo "Chromium and chromedriver are installed"
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "Chromium is not installed and this user cannot install packages; the browser tests" \
       "will be skipped. Install it with: sudo apt-get install -y chromium chromium-driver" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "Chromium is not installed and there is no apt-get here; the browser tests will be" \
       "skipped. Install chromium and its chromedriver, then set IMAGEGEN_TEST_CHROMIUM and" \
       "IMAGEGEN_TEST_CHROMEDRIVER if they are not in /usr/bin." >&2
  exit 0
fi
echo "installing chromium and chromium-driver..."
$SUDO apt-get update -qq >/dev/null 2>&1 || true
if DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver \
     >/dev/null 2>&1 && have_browser; then
  echo "Chromium and chromedriver are installed"
else
  echo "installing chromium and chromium-driver failed; the browser tests will be skipped" >&2
fi
exit 0
