#!/usr/bin/env python3
"""Streams a 2-D .npy file (uint8, float16, float32) as COPY text rows
`<id>\t[x1,x2,...]` on stdout, for `COPY items (id, embedding) FROM STDIN`.

Standard library only (no numpy), so the demo needs nothing from PyPI.
usage: npy2copy.py FILE.npy [--limit N] [--start-id K]
"""
import ast
import struct
import sys


def main():
    path = sys.argv[1]
    limit = int(sys.argv[sys.argv.index("--limit") + 1]) if "--limit" in sys.argv else None
    start = int(sys.argv[sys.argv.index("--start-id") + 1]) if "--start-id" in sys.argv else 1
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            sys.exit(f"{path}: not a .npy file")
        major = f.read(2)[0]
        hlen = struct.unpack("<H" if major == 1 else "<I", f.read(2 if major == 1 else 4))[0]
        header = ast.literal_eval(f.read(hlen).decode("latin1"))
        if header["fortran_order"]:
            sys.exit("fortran-order arrays are not supported")
        rows, dim = header["shape"]
        fmt = {"|u1": "B", "<f2": "e", "<f4": "f"}.get(header["descr"])
        if fmt is None:
            sys.exit(f"unsupported dtype {header['descr']}")
        size = struct.calcsize(fmt)
        row = struct.Struct("<" + fmt * dim)
        out = sys.stdout
        n = rows if limit is None else min(rows, limit)
        for i in range(n):
            vals = row.unpack(f.read(size * dim))
            if fmt == "B":
                body = ",".join(map(str, vals))
            else:
                body = ",".join(repr(float(v)) for v in vals)
            out.write(f"{start + i}\t[{body}]\n")


if __name__ == "__main__":
    main()
