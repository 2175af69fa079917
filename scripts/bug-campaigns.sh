#!/usr/bin/env bash
# The campaign benchmark over the injected-bug suite: for every patch in benchmarks/bugs, a
# coverage-guided campaign from corpora/seed on its target (`Target:` header), on N cores
# (default 2), stopped at its first finding or after the budget (default 10m); then the finding's
# reproducer is replayed on the same patched kernel and must give the same signature. The
# finding's kind is printed beside the patch's `Verdict:` header (what the patch's own program
# gives; a campaign may meet the bug first through another symptom). Prints one line per bug.
# Exit 0 when every bug is found and its reproducer replays; 1 otherwise; 2 on bad input.
# --corpus DIR seeds from DIR instead (e.g. one trivial program: found by mutation alone).
# --full runs every campaign for its whole budget instead (findings minimized as the campaign
# goes, and at its exit) and checks the findings people read: one bug leaves one finding, at
# most two, each with a minimized reproducer of at most 6 ops that replays to its signature;
# prints per bug the findings, their counts and their reproducers' sizes before and after.
#
#   scripts/bug-campaigns.sh [--cores N] [--budget 10m] [--corpus DIR] [--out DIR] [--full] [PATCH...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

CORES=2 BUDGET=10m WORK="" SEEDS="$ROOT/corpora/seed" FULL=0
patches=()
while [ $# -gt 0 ]; do
    case "$1" in
        --cores) CORES="$2"; shift 2 ;;
        --budget) BUDGET="$2"; shift 2 ;;
        --out) WORK="$2"; shift 2 ;;
        --corpus) SEEDS="$(cd "$2" && pwd)"; shift 2 ;;
        --full) FULL=1; shift ;;
        -*) echo "bug-campaigns: unknown flag $1 (flags: --cores N, --budget 10m, --corpus DIR, --out DIR, --full)" >&2; exit 2 ;;
        *) patches+=("$1"); shift ;;
    esac
done
[ "${#patches[@]}" -gt 0 ] || patches=("$ROOT"/benchmarks/bugs/*.patch)
WORK="${WORK:-$(mktemp -d /tmp/cmafuzz-bugs.XXXXXX)}"
mkdir -p "$WORK"

header() { sed -n "s/^$1: *//p" "$2" | head -n1; }
field() { sed -n "s/.*\"$1\": *\"\{0,1\}\([^\",]*\).*/\1/p" "$2" | head -n1; }

# --full: the findings a whole campaign left in $4, judged; prints one line per finding.
full_report() {
    local name="$1" target="$2" p="$3" out="$4" rc="$5" n=0 ok=0 lines=""
    local d sig count orig min repro replay_rc want minsig
    for d in "$out"/findings/*/; do
        [ -f "$d/meta.json" ] || continue
        n=$((n + 1))
        sig="$(field signature "$d/meta.json")" count="$(field count "$d/meta.json")"
        orig="$(field original_ops "$d/meta.json")" min="$(field min_ops "$d/meta.json")"
        repro="$d/reproducer.min.prog"
        case "$min" in '' | *[!0-9]*) min="" ;; esac
        # The minimized reproducer keeps the first verdict observed after every op (where the
        # state first went wrong), which may be another signature than the one found.
        want="$sig" minsig="$(field min_signature "$d/meta.json")"
        [ -f "$repro" ] && [ -n "$min" ] || { repro="$d/reproducer.prog"; min="$orig (not minimized)"; minsig=""; }
        [ -z "$minsig" ] || [ "$minsig" = "$sig" ] || { want="$minsig"; sig="$sig -> $minsig"; }
        replay_rc=0
        "$CMAFUZZ" replay "$repro" --target "$target" --kernel-patch "$p" >"$d/replay.log" 2>&1 || replay_rc=$?
        if [ "$replay_rc" -eq 1 ] && grep -qF "[$want]" "$d/replay.log"; then
            replays="replays"
            case "$min" in *minimized*) ;; *) [ "$min" -le 6 ] && ok=$((ok + 1)) ;; esac
        else
            replays="DOES NOT REPLAY (exit $replay_rc)"
        fi
        lines="$lines
    $sig x$count: $orig -> $min ops, $replays"
    done
    local verdict="FAIL"
    [ "$n" -ge 1 ] && [ "$n" -le 2 ] && [ "$ok" -eq "$n" ] && verdict="ok"
    echo "$name ($target, $CORES cores, $BUDGET, exit $rc): $n findings, $ok of them minimized to <= 6 ops and replaying: $verdict$lines"
    [ "$verdict" = ok ]
}

failed=0 port=14500
for p in "${patches[@]}"; do
    name="$(basename "$p" .patch)"
    target="$(header Target "$p")" want="$(header Verdict "$p")"
    if [ -z "$target" ] || [ -z "$want" ]; then
        echo "bug-campaigns: $p has no Target:/Verdict: header; add them" >&2
        exit 2
    fi
    out="$WORK/$name"
    rm -rf "$out"
    "$CMAFUZZ" kernel build --target "$target" --kernel-patch "$p" >/dev/null 2>&1 ||
        { echo "bug-campaigns: $name: the kernel does not build with this patch (cmafuzz kernel build --target $target --kernel-patch $p)" >&2; exit 2; }
    start=$(date +%s)
    rc=0
    stop=(--stop-on-finding)
    [ "$FULL" = 1 ] && stop=()
    "$CMAFUZZ" fuzz --target "$target" --kernel-patch "$p" --cores "$CORES" --duration "$BUDGET" \
        --corpus "$SEEDS" --out "$out" "${stop[@]}" --listen "127.0.0.1:$port" \
        >"$out.log" 2>&1 || rc=$?
    port=$((port + 1))
    if [ "$FULL" = 1 ]; then
        full_report "$name" "$target" "$p" "$out" "$rc" || failed=1
        continue
    fi
    meta="$(ls -d "$out"/findings/*/meta.json 2>/dev/null | head -n1 || true)"
    if [ "$rc" -ne 1 ] || [ -z "$meta" ]; then
        echo "$name ($target): NOT FOUND within $BUDGET on $CORES cores (exit $rc; log $out.log)"
        failed=1
        continue
    fi
    sig="$(field signature "$meta")" kind="$(field kind "$meta")" first="$(field first_seen "$meta")"
    repro="$(dirname "$meta")/reproducer.prog"
    replay_rc=0
    replay="$("$CMAFUZZ" replay "$repro" --target "$target" --kernel-patch "$p" 2>&1)" || replay_rc=$?
    verdict="found in $((first - start)) s as $sig"
    if [ "$replay_rc" -eq 1 ] && grep -qF "[$sig]" <<<"$replay"; then
        verdict="$verdict; reproducer replays to it"
    else
        verdict="$verdict; REPRODUCER DOES NOT REPLAY (exit $replay_rc)"
        failed=1
    fi
    if [ "$kind" = "$want" ]; then
        verdict="$verdict; kind $kind as declared"
    else
        verdict="$verdict; kind $kind (the patch's own program gives $want)"
    fi
    echo "$name ($target, $CORES cores): $verdict"
done
echo "bug-campaigns: campaigns in $WORK"
exit "$failed"
