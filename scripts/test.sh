#!/usr/bin/env bash
# Installs what is missing, builds every target's kernel (cached), then runs
# the whole test suite, real-VM tests included, plus format and lint checks.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"

for t in $("$CMAFUZZ" targets | awk '{print $1}'); do
    "$CMAFUZZ" kernel build --target "$t"
done

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -q -- -D warnings
cargo test --workspace --release --locked
