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
echo "== unit tests under AddressSanitizer and LeakSanitizer"
LSAN_OPTIONS="suppressions=$PWD/.ci/lsan.supp" swift test --sanitize=address --scratch-path .build-asan
echo "== unit tests under ThreadSanitizer"
TSAN_OPTIONS="halt_on_error=1" swift test --sanitize=thread --scratch-path .build-tsan
echo "== fuzzing, ${SCEP_FUZZ_SECONDS:-15} s per target (scripts/fuzz.sh; docs/fuzzing.md for long runs)"
scripts/fuzz.sh "${SCEP_FUZZ_SECONDS:-15}"

echo "== release build for the integration suite"
swift build -c release --static-swift-stdlib --product scep-fcgi
swift build -c release --static-swift-stdlib --product scep-client
echo "== Debian package (installed with dpkg -i by Tests/Integration/test_package.py)"
deb=$(scripts/package.sh "$PWD/dist" | tail -1)
echo "== integration tests (nginx, apache mod_proxy_fcgi, apache mod_fcgid; scepclient, certmonger, PyScep)"
SCEP_FCGI_DEB="$deb" SCEP_FCGI_BIN_DIR="$PWD/.build/release" python3 -m pytest -q -p no:cacheprovider Tests/Integration

echo "== integration pass with an AddressSanitizer build of the server behind nginx"
swift build --sanitize=address --scratch-path .build-asan --product scep-fcgi
asan_bin=$(mktemp -d)
ln -s "$PWD/.build-asan/debug/scep-fcgi" "$asan_bin/scep-fcgi"
ln -s "$PWD/.build/release/scep-client" "$asan_bin/scep-client"
# Memory errors stop the server and are found in its log (harness.scan_logs); leaks are the unit
# runs' business (OpenSSL keeps process-lifetime tables).
ASAN_OPTIONS="detect_leaks=0" SCEP_FCGI_BIN_DIR="$asan_bin" python3 -m pytest -q -p no:cacheprovider -k "nginx or not apache" \
  Tests/Integration/test_protocol.py Tests/Integration/test_clients.py Tests/Integration/test_crash.py \
  Tests/Integration/test_corpus.py Tests/Integration/test_corpus_layers.py Tests/Integration/test_zz_secrets.py
