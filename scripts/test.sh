#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this):
# set-up, formatting, lints, the layout rule, unit and end-to-end tests
# against a real PostgreSQL 15.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings

echo "== layout: src/pg, src/catalog and src/plan stay pure"
if grep -rnE '\b(tokio|aws_[a-z_]*|aws-sdk)\b|std::process' src/pg src/catalog src/plan \
    | grep -vE '^[^:]+:[0-9]+:\s*//'; then
    echo "layout: pg/, catalog/ and plan/ must not use tokio, aws or std::process (see docs/architecture.md)" >&2
    exit 1
fi

echo "== layout: dependencies point one way (docs/architecture.md)"
# What each module must not import, outside its tests: a file's inline
# test module (`#[cfg(test)]` then `mod … {`) comes last, and files named
# *tests.rs are test modules. Imports are written one module per path
# (`use crate::a::…`, never `use crate::{a, b}`) so that this can see them.
layer_breaks=0
if grep -rnE 'crate::\{' src; then
    echo "layout: write one \`use crate::<module>::…\` per module (the check below reads paths)" >&2
    layer_breaks=1
fi
while read -r module forbidden; do
    while IFS= read -r -d '' file; do
        if awk -v f="$file" '
                prev ~ /^[[:space:]]*#\[cfg\(test\)\]/ && $0 ~ /^[[:space:]]*(pub(\([a-z]+\))? )?mod [a-z_]+ *\{/ { exit }
                { print f ":" FNR ": " $0; prev = $0 }' "$file" \
            | grep -E "crate::($forbidden)\b" | grep -vE '^[^:]+:[0-9]+:\s*//'; then
            layer_breaks=1
        fi
    done < <(find "src/$module" -name '*.rs' ! -name '*tests.rs' -print0)
done <<'EOF_LAYERS'
pg      catalog|repo|plan|server|capture|recover|ops|cli
catalog repo|plan|server|capture|recover|ops|cli
plan    repo|server|capture|recover|ops|cli
repo    plan|server|capture|recover|ops|cli
server  catalog|repo|plan|capture|recover|ops|cli
capture plan|recover|ops|cli
recover ops|cli
ops     cli
EOF_LAYERS
if [ "$layer_breaks" != 0 ]; then
    echo "layout: an import against the direction in docs/architecture.md (above)" >&2
    exit 1
fi

echo "== cargo test"
# Golden files (src/plan/snapshots) are compared, never rewritten: a
# difference fails the test (INSTA_UPDATE=always cargo test rewrites them
# on purpose; review the diff).
# Tests that need root are #[ignore]d with the reason, so a plain `cargo
# test` as another user says so; this script runs as root and runs them.
INSTA_UPDATE=no cargo test --lib --bins --tests -- --include-ignored
