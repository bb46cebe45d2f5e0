#!/usr/bin/env bash
# Regenerates bridge-events.ts from Acme's descriptor set and compiles the
# page to JavaScript with the pinned TypeScript compiler (.ci/run installs it
# into .ci/node). Run from the repository root; the tests check both are fresh.
set -euo pipefail
cd "$(dirname "$0")/../../.."
go run ./cmd/bridge types --format ts --descriptor-set examples/acme/acme.binpb 'acme.billing.v1.*' > examples/acme/web/bridge-events.ts
TSC=.ci/node/node_modules/.bin/tsc
if [ ! -x "$TSC" ]; then
  npm install --prefix .ci/node --no-save --no-audit --no-fund typescript@5.9.3 >/dev/null
fi
"$TSC" -p examples/acme/web
