#!/usr/bin/env python3
"""Encode a cmafuzz RUN payload (struct cf_run + ops) from a text op list.

A development tool for the guest side: the output is what the agent's local
mode (cmafuzz.local=PATH) and CF_IOC_RUN expect.  The layout mirrors
qemu/include/cmafuzz_wire.h.

One op per line, '#' starts a comment:

    cma_alloc        area=0 handle=0 count=3 align=0
    cma_release      handle=0
    cma_release_raw  area=0 off=67 count=2
    dma_alloc        handle=1 size=12288 [wc] [nokmap] [atomic]
    dma_free         handle=1
    pin              area=0 off=65
    unpin            area=0 off=65
    kmap             area=0 off=65
    dma_map          handle=1 dir=1   # 0 bidirectional, 1 to device, 2 from device
    observe
    reset

Generic keys are also accepted: area=, handle=, flags=, a=, b=.

Usage: mkrun.py OPS.txt RUN.bin   (either may be '-')
"""

import struct
import sys

OPS = {
    "cma_alloc": 1,
    "cma_release": 2,
    "cma_release_raw": 3,
    "dma_alloc": 4,
    "dma_free": 5,
    "observe": 6,
    "reset": 7,
    "pin": 8,
    "unpin": 9,
    "kmap": 10,
    "dma_map": 11,
}
FLAG_WORDS = {"wc": 1 << 0, "nokmap": 1 << 1, "atomic": 1 << 8}
# named aliases for cf_op.a and cf_op.b, per op kind
ALIASES = {
    "count": {"cma_alloc": "a", "cma_release_raw": "b"},
    "align": {"cma_alloc": "b"},
    "off": {"cma_release_raw": "a", "pin": "a", "unpin": "a", "kmap": "a"},
    "size": {"dma_alloc": "a"},
    "dir": {"dma_map": "a"},
}
OP_FMT = "<IIIIQQ"  # struct cf_op
RUN_FMT = "<II"  # struct cf_run
MAX_OPS = 4096


def parse_line(line, lineno):
    words = line.split()
    kind = words[0]
    if kind not in OPS:
        raise ValueError(f"line {lineno}: unknown op '{kind}'")
    f = {"area": 0, "handle": 0, "flags": 0, "a": 0, "b": 0}
    for w in words[1:]:
        if w in FLAG_WORDS:
            f["flags"] |= FLAG_WORDS[w]
            continue
        key, sep, val = w.partition("=")
        if not sep:
            raise ValueError(f"line {lineno}: expected key=value, got '{w}'")
        v = int(val, 0)
        if key in ALIASES:
            if kind not in ALIASES[key]:
                raise ValueError(f"line {lineno}: '{key}' means nothing for {kind}")
            key = ALIASES[key][kind]
        if key not in f:
            raise ValueError(f"line {lineno}: unknown key '{key}'")
        f[key] = v
    a = f["a"] & 0xFFFFFFFFFFFFFFFF  # offsets may be negative (s64)
    return struct.pack(OP_FMT, OPS[kind], f["area"], f["handle"], f["flags"], a, f["b"])


def encode(text):
    ops = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            ops.append(parse_line(line, lineno))
    if len(ops) > MAX_OPS:
        raise ValueError(f"{len(ops)} ops, at most {MAX_OPS} fit in one RUN")
    return struct.pack(RUN_FMT, len(ops), 0) + b"".join(ops)


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    src = sys.stdin if argv[1] == "-" else open(argv[1], encoding="utf-8")
    try:
        payload = encode(src.read())
    except ValueError as e:
        sys.stderr.write(f"mkrun: {e}\n")
        return 1
    if argv[2] == "-":
        sys.stdout.buffer.write(payload)
    else:
        with open(argv[2], "wb") as out:
            out.write(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
