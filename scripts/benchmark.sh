#!/usr/bin/env bash
# Sets up everything and runs the side-by-side benchmark (scep-fcgi vs micromdm scepserver behind
# the same nginx); writes BENCHMARKS.md. Extra arguments go to bench/benchmark.py.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --static-swift-stdlib --product scep-fcgi
swift build -c release --static-swift-stdlib --product scep-client
exec python3 bench/benchmark.py "$@"
