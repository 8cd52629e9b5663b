#!/usr/bin/env bash
# Several builds in one device call, so that branches are compared in the same
# run (docs/performance.md: compare ratios taken in the same run).
#   here:       bash scripts/gpu/variants.sh prepare BRANCH...
#               (then carry: .device build/Release/wideep.node dist .variants)
#   on the GPU: bash scripts/gpu/variants.sh run OUTDIR STEP...
#               (VARIANTS="this name..." runs only those, to split the work
#               over calls; "this" is this checkout)
# `prepare` builds each branch in its own worktree under .variants/ (keeping
# only what runs: the addon, dist and the tracked files) after scripts/gpu/prepare.sh
# has built this checkout. `run` runs scripts/gpu/run.sh's STEPs for this checkout
# and for every variant, into OUTDIR/<name>/, and packs them into
# OUTDIR/results.tgz, since a device call brings back a few files only.
set -euo pipefail
cd "$(dirname "$0")/../.."
cmd="${1:?usage: variants.sh prepare BRANCH... | run OUTDIR STEP...}"
shift

case "$cmd" in
  prepare)
    bash scripts/gpu/prepare.sh
    mkdir -p .variants
    for branch in "$@"; do
      dir=".variants/${branch//\//-}"
      [ -d "$dir" ] && git worktree remove --force "$dir"
      git worktree add --detach "$dir" "$branch" >/dev/null
      ln -sfn ../../node_modules "$dir/node_modules"
      (cd "$dir" && npm run build >/dev/null)
      # Only what runs travels: a device call carries 64 MiB at most.
      find "$dir/build" -type f ! -name wideep.node -delete
      find "$dir/dist" \( -name '*.map' -o -name '*.d.ts' \) -delete
      rm -rf "$dir/prebuilds"
      echo "built $branch in $dir"
    done
    total=$(du -cb .device build/Release/wideep.node dist .variants | tail -1 | cut -f1)
    tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
    mib=$(( (total + tree) / 1048576 ))
    echo "carry: .device build/Release/wideep.node dist .variants (${mib} MiB with the tracked tree; the limit is 64)"
    [ "$mib" -lt 64 ] || echo "too much to carry in one call: prepare fewer branches" >&2
    ;;
  run)
    out="${1:?usage: variants.sh run OUTDIR STEP...}"
    shift
    work=/tmp/wideep-variants
    rm -rf "$work" && mkdir -p "$work"
    if ! command -v node >/dev/null; then
      xz -dc .device/node.xz > /tmp/node.$$ && chmod +x /tmp/node.$$ && mv -f /tmp/node.$$ /tmp/node
      export PATH=/tmp:$PATH
    fi
    [ -d node_modules ] || xz -dc .device/node_modules.tar.xz | tar -xf -
    [ -n "${VARIANTS:-}" ] && [[ " $VARIANTS " != *" this "* ]] || bash scripts/gpu/run.sh "$work/this" "$@" || true
    for dir in .variants/*/; do
      name="$(basename "$dir")"
      [ -z "${VARIANTS:-}" ] || [[ " $VARIANTS " == *" $name "* ]] || continue
      ln -sfn ../../node_modules "$dir/node_modules"
      (cd "$dir" && bash scripts/gpu/run.sh "$work/$name" "$@") || true
    done
    mkdir -p "$out"
    tar -C "$work" -czf "$out/results.tgz" .
    ;;
  *)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
