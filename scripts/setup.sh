#!/usr/bin/env bash
# Shared set-up for scripts/test.sh and scripts/fuzz.sh: installs the host
# packages cmafuzz needs (when root; otherwise prints the command and stops)
# and builds the cmafuzz binary. Source it; it defines $CMAFUZZ.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Every package of the one tool table (doctor reads the same file).
mapfile -t PACKAGES < <(grep -v '^#' "$ROOT/scripts/host-packages.tsv" | awk -F'\t' 'NF >= 2 { print $2 }' | sort -u)
if [ "${CMAFUZZ_SETUP_LIST_PACKAGES:-}" = 1 ]; then
    printf '%s\n' "${PACKAGES[@]}"
    exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "setup: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "setup: missing packages; install them with:" >&2
        echo "  sudo apt-get install -y ${missing[*]}" >&2
        exit 2
    fi
fi
if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found: install Rust (https://rustup.rs) and re-run" >&2
    exit 2
fi

cd "$ROOT"
echo "setup: building cmafuzz"
cargo build --release --locked -q -p cmafuzz
CMAFUZZ="$ROOT/target/release/cmafuzz"
export CMAFUZZ
# The 7.x sources are not in the machine's apt sources: cmafuzz fetches the one a target needs
# (apt-get download with a private sources list, cached) on that target's first kernel build.
# CMAFUZZ_SETUP_TARGETS="arm32-7.2 arm64-7.3" builds those kernels now.
for t in ${CMAFUZZ_SETUP_TARGETS:-}; do
    "$CMAFUZZ" kernel build --target "$t"
done
