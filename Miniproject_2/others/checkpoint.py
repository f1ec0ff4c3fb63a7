"""Checkpoints that cannot run code: tensors stored as plain (dtype, shape, raw bytes) records, pickled, and read
back with an unpickler that refuses every global.

Why not pickle the tensors themselves: pickling a torch tensor references ``torch._utils._rebuild_tensor_v2`` and
``torch.storage._load_from_bytes``, and the latter calls ``torch.load(..., weights_only=False)`` on bytes taken from
the file, i.e. a full, unrestricted unpickler. Allowing it would let a tampered ``bestmodel.pth`` run anything. With
tensors reduced to bytes, the pickle holds only dicts, lists, strings, numbers and bytes, which the pickle machine
builds without looking up any class or function, so ``find_class`` can refuse everything.
"""

import io
import math
import os
import pickle
import sys
import tempfile

from torch import empty

FORMAT = "n2n-tui/miniproject2"
_TAG = "__tensor__"
# dtype name -> (Tensor method converting to it, item size in bytes)
_DTYPES = {"float32": ("float", 4), "float64": ("double", 8), "float16": ("half", 2), "bfloat16": ("bfloat16", 2),
           "int64": ("long", 8), "int32": ("int", 4), "int16": ("short", 2), "uint8": ("byte", 1),
           "int8": ("char", 1), "bool": ("bool", 1)}
_BYTE = empty(0).byte()
MAX_DIMS = 8          # a tensor record's shape: at most this many dimensions ...
MAX_DIM = 1 << 31     # ... each below this
MAX_DEPTH = 32        # dicts and lists nested deeper than this are not something Model.save writes


class CheckpointError(ValueError):
    """A checkpoint that is not ours, is damaged, or tries to run code."""


class _RefuseGlobals(pickle.Unpickler):
    def find_class(self, module, name):
        raise CheckpointError(
            f"refusing to load '{module}.{name}': a Miniproject_2 checkpoint holds only numbers, strings, bytes, "
            "lists and dicts, so this file was not written by Model.save and may try to run code")

    def persistent_load(self, pid):
        raise CheckpointError("refusing a pickle with persistent ids: not a Miniproject_2 checkpoint")


def _tensor_record(t):
    t = t.detach().to("cpu").contiguous()
    name = str(t.dtype).replace("torch.", "")
    if name not in _DTYPES:
        raise TypeError(f"cannot store a tensor of dtype {t.dtype}")
    raw = t.view(-1).view(_BYTE.dtype) if t.numel() else _BYTE
    return {_TAG: 1, "dtype": name, "shape": list(t.shape), "byteorder": sys.byteorder, "data": bytes(raw.tolist())}


def _tensor_from_record(r):
    name, shape, data = r.get("dtype"), r.get("shape"), r.get("data")
    if name not in _DTYPES or not isinstance(shape, list) or not isinstance(data, bytes) or len(shape) > MAX_DIMS \
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < MAX_DIM for s in shape):
        raise CheckpointError("damaged tensor record in checkpoint" + (
            f" (shape {str(shape)[:80]})" if isinstance(shape, list) else ""))
    method, size = _DTYPES[name]
    if len(data) != math.prod(shape) * size:
        raise CheckpointError(f"damaged tensor record: {len(data)} bytes for shape {shape} of {name}")
    raw = _BYTE.new_tensor(list(data))
    if r.get("byteorder", sys.byteorder) != sys.byteorder and size > 1:
        raw = raw.view(-1, size).flip(1).reshape(-1)
    if name != "uint8":
        raw = raw.view(getattr(empty(0), method)().dtype)
    return raw.view(shape)


def encode(obj):
    """Replace every tensor in a tree of dicts/lists/tuples by a plain record."""
    if hasattr(obj, "detach") and hasattr(obj, "dtype"):
        return _tensor_record(obj)
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def decode(obj, depth=0):
    """Inverse of ``encode``: records back to (CPU) tensors."""
    if depth > MAX_DEPTH:
        raise CheckpointError(f"damaged checkpoint: lists or dicts nested more than {MAX_DEPTH} deep")
    if isinstance(obj, dict):
        if obj.get(_TAG) == 1:
            return _tensor_from_record(obj)
        return {k: decode(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v, depth + 1) for v in obj]
    return obj


def dumps(tree):
    return pickle.dumps({"format": FORMAT, "version": 1, "payload": encode(tree)}, protocol=4)


def loads(blob):
    """Bytes -> the tree given to ``dumps``; raises CheckpointError on anything else."""
    if not blob:
        raise CheckpointError("an empty file, not a checkpoint")
    if blob[:4] == b"PK\x03\x04":  # torch.save's zip format, which Model.save never writes
        raise CheckpointError("a PyTorch (torch.save) file, not a Miniproject_2 checkpoint"
                              + (" (it holds Miniproject_1 weights)" if b"miniproject1" in blob[:1 << 16] else ""))
    try:
        obj = _RefuseGlobals(io.BytesIO(blob)).load()
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"not a readable checkpoint ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or "payload" not in obj:
        raise CheckpointError(f"not a Miniproject_2 checkpoint (missing format '{FORMAT}')")
    if obj.get("version") != 1:
        raise CheckpointError(f"unsupported checkpoint version {obj.get('version')!r}")
    return decode(obj["payload"])


def save(tree, path):
    """Write atomically: a temporary file in the same folder, flushed to disk, then renamed over ``path``."""
    blob = dumps(tree)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary readable file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path):
    with open(path, "rb") as f:
        return loads(f.read())
