#!/usr/bin/env bash
# Sets up everything and runs every test: Swift unit tests, then the integration suite that drives
# real nginx and Apache (mod_proxy_fcgi and mod_fcgid) with the committed configs and real SCEP
# clients (micromdm scepclient, certmonger, PyScep). Needs root (apt, web servers on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

echo "== swift build (warnings are errors)"
swift build --build-tests --explicit-target-dependency-import-check error
echo "== unit tests"
swift test --skip-build

echo "== release build for the integration suite"
swift build -c release --static-swift-stdlib --product scep-fcgi
swift build -c release --static-swift-stdlib --product scep-client
echo "== Debian package (installed with dpkg -i by Tests/Integration/test_package.py)"
deb=$(scripts/package.sh "$PWD/dist" | tail -1)
echo "== integration tests (nginx, apache mod_proxy_fcgi, apache mod_fcgid; scepclient, certmonger, PyScep)"
SCEP_FCGI_DEB="$deb" SCEP_FCGI_BIN_DIR="$PWD/.build/release" python3 -m pytest -q -p no:cacheprovider Tests/Integration
