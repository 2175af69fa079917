#!/usr/bin/env bash
# Installs what is missing, builds the default target's kernel and guest, and runs the default
# coverage-guided campaign (10 minutes, one core) with its output in ./out of the directory this
# script is run from. Extra arguments go to `cmafuzz fuzz` (e.g. --duration 8h --cores 2).
# Running it again on the same out/ resumes the campaign.
set -euo pipefail
OUT_PARENT="$PWD"
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

"$CMAFUZZ" kernel build
rc=0
"$CMAFUZZ" fuzz --duration 10m --corpus "$ROOT/corpora/seed" --out "$OUT_PARENT/out" "$@" || rc=$?
echo "findings: $OUT_PARENT/out/findings (one directory per signature: reproducer.prog, verdict.json, meta.json)"
echo "corpus:   $OUT_PARENT/out/corpus; status history: $OUT_PARENT/out/stats.json, clients' log: $OUT_PARENT/out/clients.log"
exit "$rc"
