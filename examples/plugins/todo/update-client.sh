#!/usr/bin/env bash
# Refreshes ui/electric-client.mjs, the browser build of @electric-sql/client the todo
# page imports (served by the module itself: no CDN). Run from this folder; needs npm.
set -euo pipefail
version="${1:-1.5.28}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "@electric-sql/client@$version" >/dev/null && tar xzf electric-sql-client-*.tgz)
cp "$tmp/package/dist/index.browser.mjs" ui/electric-client.mjs
cp "$tmp/package/LICENSE" ui/electric-client.LICENSE
echo "ui/electric-client.mjs is @electric-sql/client $version"
