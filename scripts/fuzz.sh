#!/usr/bin/env bash
# Installs what is missing, builds the default target's kernel and guest, and
# runs the main job on it. For now that is a replay of the seed corpus on the
# model and the real kernel side by side (the campaign replaces it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"

"$CMAFUZZ" kernel build
"$CMAFUZZ" replay corpora/seed "$@"
