#!/usr/bin/env bash
# quickstart.sh: the README's first command. Sets up, builds, and runs the main job
# end to end on the default data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "== this machine"
build/monolith bench machine
echo
echo "quickstart: the engine is being built up; training and generation are not in this build yet."
echo "quickstart: what exists: 'build/monolith help'."
