#!/usr/bin/env bash
# Refreshes the web console's vendored front-end files from npm (ui/package.json, locked by
# ui/package-lock.json). The copies under telemetry/ui/static/vendor are committed, so a clean
# clone, the wheel and CI need no npm: run this only to upgrade uPlot, then commit the result.
set -euo pipefail
cd "$(dirname "$0")/../ui"
npm ci --no-audit --no-fund
dest=../telemetry/ui/static/vendor
mkdir -p "$dest"
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css "$dest/"
cp node_modules/uplot/LICENSE "$dest/uPlot.LICENSE"
echo "uPlot $(node -p 'require("./node_modules/uplot/package.json").version') copied to telemetry/ui/static/vendor" >&2
