#!/usr/bin/env python3
"""Streams a 2-D .npy file (uint8, int32, float16, float32) as COPY text rows
`<id>\t[x1,x2,...]` on stdout, for `COPY items (id, embedding) FROM STDIN`.

Standard library only (no numpy), so the demo needs nothing from PyPI.
scripts/make_sample.py reads and writes .npy files with the helpers here.
usage: npy2copy.py FILE.npy [--limit N] [--start-id K]
"""
import ast
import struct
import sys

# .npy dtype -> struct format; the only dtypes arrw's data sets use.
FORMATS = {"|u1": "B", "<i4": "i", "<f2": "e", "<f4": "f"}
DTYPES = {v: k for k, v in FORMATS.items()}


def open_npy(path):
    """Opens a C-order 2-D .npy file; returns (file positioned at the data, rows,
    dim, struct format of one value)."""
    f = open(path, "rb")
    if f.read(6) != b"\x93NUMPY":
        sys.exit(f"{path}: not a .npy file")
    major = f.read(2)[0]
    hlen = struct.unpack("<H" if major == 1 else "<I", f.read(2 if major == 1 else 4))[0]
    header = ast.literal_eval(f.read(hlen).decode("latin1"))
    if header["fortran_order"]:
        sys.exit(f"{path}: fortran-order arrays are not supported")
    if len(header["shape"]) != 2:
        sys.exit(f"{path}: not a 2-D array")
    fmt = FORMATS.get(header["descr"])
    if fmt is None:
        sys.exit(f"{path}: unsupported dtype {header['descr']}")
    rows, dim = header["shape"]
    return f, rows, dim, fmt


def read_rows(path, limit=None):
    """The first `limit` rows (all without one) of a 2-D .npy file, as tuples."""
    f, rows, dim, fmt = open_npy(path)
    with f:
        row = struct.Struct("<" + fmt * dim)
        n = rows if limit is None else min(rows, limit)
        return [row.unpack(f.read(row.size)) for _ in range(n)]


def write_npy(path, rows, fmt):
    """Writes equal-length rows as a version 1.0 .npy file of dtype `fmt`, laid out
    as numpy.save lays it out (the header padded to a multiple of 64 bytes)."""
    dim = len(rows[0])
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d), }" % (DTYPES[fmt], len(rows), dim)
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * (pad % 64) + "\n"
    row = struct.Struct("<" + fmt * dim)
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
        for r in rows:
            f.write(row.pack(*r))


def main():
    path = sys.argv[1]
    limit = int(sys.argv[sys.argv.index("--limit") + 1]) if "--limit" in sys.argv else None
    start = int(sys.argv[sys.argv.index("--start-id") + 1]) if "--start-id" in sys.argv else 1
    f, rows, dim, fmt = open_npy(path)
    with f:
        size = struct.calcsize(fmt)
        row = struct.Struct("<" + fmt * dim)
        out = sys.stdout
        n = rows if limit is None else min(rows, limit)
        for i in range(n):
            vals = row.unpack(f.read(size * dim))
            if fmt in "Bi":
                body = ",".join(map(str, vals))
            else:
                body = ",".join(repr(float(v)) for v in vals)
            out.write(f"{start + i}\t[{body}]\n")


if __name__ == "__main__":
    main()
