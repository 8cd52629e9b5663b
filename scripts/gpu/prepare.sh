#!/usr/bin/env bash
# Prepares what a GPU machine needs (docs/gpu-runs.md): builds the addon and the
# TypeScript here, then packs a portable node and a pruned node_modules into
# .device/. The device call carries: .device build/Release/wideep.node dist
set -euo pipefail
cd "$(dirname "$0")/../.."

npm run build >/dev/null
mkdir -p .device

# A stripped, compressed node (about 22 MB), rebuilt when the version changes.
version="$(node -p process.version)"
if [ "$(cat .device/node.version 2>/dev/null)" != "$version" ]; then
  strip -o /tmp/wideep-node "$(command -v node)"
  xz -T2 -9 -c /tmp/wideep-node > .device/node.xz
  echo "$version" > .device/node.version
fi

# node_modules without what only building needs (the GPU machine runs, never builds).
tar -C . -cf - \
  --exclude='node_modules/typescript' --exclude='node_modules/node-gyp' --exclude='node_modules/prebuildify' \
  --exclude='node_modules/@types' --exclude='node_modules/tar' --exclude='node_modules/tar-fs' \
  --exclude='node_modules/lightningcss*' --exclude='node_modules/.cache' \
  node_modules | xz -T2 -6 > .device/node_modules.tar.xz

total=$(du -cb .device/node.xz .device/node_modules.tar.xz build/Release/wideep.node | tail -1 | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
dist=$(du -sb dist | cut -f1)
echo "carry: .device build/Release/wideep.node dist ($(( (total + tree + dist) / 1048576 )) MiB with the tracked tree; the limit is 64)"
