"""Tiny safetensors reader/writer on numpy for the benchmark scripts (bench/less_scipy.py,
bench/ied_torch.py), written from the format spec: 8-byte little-endian header length, JSON
header {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the row-major data.
Independent of ddn's C reader, so the two check each other whenever a benchmark runs.
"""
import json
import struct

import numpy as np

_NP = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1",
       "BOOL": "?"}
_ST = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("int64"): "I64",
       np.dtype("int32"): "I32", np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL"}


def load(path):
    """Returns (dict name -> numpy array, metadata dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        a = np.frombuffer(raw, dtype=_NP[t["dtype"]], count=(e - b) // np.dtype(_NP[t["dtype"]]).itemsize,
                          offset=base + b)
        out[name] = a.reshape(t["shape"]).copy()
    return out, meta


def save(path, tensors, metadata=None):
    """tensors: dict name -> numpy array (insertion order is the data order)."""
    header, chunks, off = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _ST[a.dtype.newbyteorder("=")], "shape": list(a.shape),
                        "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))
    import os
    os.replace(path + ".tmp", path)
