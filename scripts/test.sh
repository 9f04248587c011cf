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

echo "== cargo test"
# Golden files (src/plan/snapshots) are compared, never rewritten: a
# difference fails the test (INSTA_UPDATE=always cargo test rewrites them
# on purpose; review the diff).
# Tests that need root are #[ignore]d with the reason, so a plain `cargo
# test` as another user says so; this script runs as root and runs them.
INSTA_UPDATE=no cargo test --lib --bins --tests -- --include-ignored
