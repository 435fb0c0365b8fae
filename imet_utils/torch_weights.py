"""Reading a PyTorch state dict saved in torch's legacy (non-zip) format, with numpy and pickle alone (no torch).

The legacy format (``torch.save(..., _use_new_zipfile_serialization=False)``, the default before torch 1.6) is a
run of pickles and raw bytes in one file:

1. the magic number ``0x1950a86a20f9469cfc6c`` (a pickled int), the protocol version (1001) and a ``sys_info``
   dict (byte order, type sizes);
2. the state dict itself: a ``collections.OrderedDict`` of tensors, each rebuilt by
   ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks)``, where each
   storage is a persistent id ``("storage", storage_type, key, location, numel, view_metadata)``;
3. the list of storage keys, in the order their data follows;
4. per key: its element count (8 bytes, little-endian) and then its elements' raw little-endian bytes.

The unpickler is restricted: it resolves only the globals above (``_STORAGE_DTYPES`` and ``_ALLOWED_GLOBALS``) and
refuses any other, so a file can't run code. Whatever the reader can't read fails with ``TorchWeightsError``, which
names the file and what it expected.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_SIGNATURE = b"PK\x03\x04"
# torch's storage types and the little-endian numpy dtype of their elements
_STORAGE_DTYPES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class TorchWeightsError(ValueError):
    """A weights file that this reader can't read, or that doesn't fit the model; the message names the file."""


class _StorageType(str):
    """A storage type name (``"FloatStorage"``), as the pickle's global resolves it."""


class _TensorRef(collections.namedtuple("_TensorRef", "storage offset size stride")):
    """A tensor whose storage's bytes come after the pickle: materialised once they are read."""


def _rebuild_tensor(storage, storage_offset, size, stride, *_):
    """Stands in for ``torch._utils._rebuild_tensor_v2`` (the extra arguments: requires_grad, hooks, metadata)."""
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_):
    """Stands in for ``torch._utils._rebuild_parameter``: a Parameter is its tensor."""
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _LegacyUnpickler(pickle.Unpickler):
    """Resolves only the allowed globals; records each storage its persistent ids name."""

    def __init__(self, file, path: Path):
        super().__init__(file)
        self.path = path
        self.storages: dict[str, tuple[str, int, tuple | None]] = {}  # key -> (dtype, numel, view)

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[module, name]
        if module == "torch" and name.endswith("Storage"):
            raise TorchWeightsError(
                f"{self.path}: unknown storage type torch.{name}; this reader knows {', '.join(_STORAGE_DTYPES)}"
            )
        raise TorchWeightsError(
            f"{self.path}: the pickle asks for {module}.{name}, which a torch state dict doesn't need; refused "
            f"(allowed: torch.*Storage, {', '.join('.'.join(k) for k in _ALLOWED_GLOBALS)})"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise TorchWeightsError(f"{self.path}: unexpected persistent id {pid!r}; expected ('storage', ...)")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, _StorageType):
            raise TorchWeightsError(f"{self.path}: storage {key!r} has no known storage type ({storage_type!r})")
        dtype = _STORAGE_DTYPES[storage_type]
        known = self.storages.setdefault(str(key), (dtype, int(numel), None))
        if known[:2] != (dtype, int(numel)):
            raise TorchWeightsError(f"{self.path}: storage {key!r} is described twice, differently")
        if view is None:
            return str(key), 0, int(numel)
        view_key, view_offset, view_numel = view  # a view into another storage (a slice of it)
        return str(key), int(view_offset), int(view_numel)


def _load_pickle(unpickler: _LegacyUnpickler, what: str):
    try:
        return unpickler.load()
    except TorchWeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError) as e:
        raise TorchWeightsError(
            f"{unpickler.path}: could not read {what} of torch's legacy format ({type(e).__name__}: {e})"
        ) from e


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a state dict that ``torch.save`` wrote in the legacy (non-zip) format.

    Args:
        path: the ``.pth`` file.

    Returns:
        Tensor name -> a numpy array (a copy, in the tensor's shape and dtype), in the file's order.

    Raises:
        TorchWeightsError: the file is in the zip format, isn't a legacy torch file, is truncated, holds an
            unknown storage type or a global this reader refuses, or isn't a dict of tensors. The message names
            the file.
        OSError: the file can't be opened.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4)
        if head == _ZIP_SIGNATURE:
            raise TorchWeightsError(
                f"{path}: this is torch's zip format (torch.save since torch 1.6); this reader reads the legacy "
                f"format only: re-save it with torch.save(state_dict, path, _use_new_zipfile_serialization=False)"
            )
        f.seek(0)
        unpickler = _LegacyUnpickler(f, path)
        magic = _load_pickle(unpickler, "the magic number")
        if magic != _LEGACY_MAGIC:
            raise TorchWeightsError(
                f"{path}: not a legacy torch file: it starts with {magic!r}, expected the magic number "
                f"{_LEGACY_MAGIC:#x}"
            )
        protocol = _load_pickle(unpickler, "the protocol version")
        if protocol != _LEGACY_PROTOCOL:
            raise TorchWeightsError(f"{path}: protocol version {protocol!r}, expected {_LEGACY_PROTOCOL}")
        sys_info = _load_pickle(unpickler, "sys_info")
        if not (isinstance(sys_info, dict) and sys_info.get("little_endian", True)):
            raise TorchWeightsError(f"{path}: sys_info {sys_info!r}: only little-endian files are read")
        state = _load_pickle(unpickler, "the state dict")
        keys = _load_pickle(unpickler, "the list of storage keys")
        data = _read_storages(f, path, [str(k) for k in keys], unpickler.storages)
    return _materialise(state, data, path)


def _read_storages(f, path: Path, keys: list[str], storages: dict) -> dict[str, np.ndarray]:
    """Each storage's elements, read in the order of the keys list."""
    if set(keys) != set(storages):
        raise TorchWeightsError(
            f"{path}: the storage keys list ({len(keys)}) doesn't match the storages the tensors use "
            f"({len(storages)}); the file is damaged"
        )
    data = {}
    for key in keys:
        dtype, numel, _ = storages[key]
        count = f.read(8)
        if len(count) < 8:
            raise TorchWeightsError(f"{path}: truncated: the data of storage {key!r} is missing")
        stored = int.from_bytes(count, "little")
        if stored != numel:
            raise TorchWeightsError(f"{path}: storage {key!r} holds {stored} elements, the pickle says {numel}")
        nbytes = numel * np.dtype(dtype).itemsize
        raw = f.read(nbytes)
        if len(raw) < nbytes:
            raise TorchWeightsError(
                f"{path}: truncated: storage {key!r} needs {nbytes} bytes of data, the file has {len(raw)} left"
            )
        data[key] = np.frombuffer(raw, dtype=dtype)
    return data


def _materialise(state, data: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    if not isinstance(state, dict):
        raise TorchWeightsError(f"{path}: holds a {type(state).__name__}, expected a state dict (name -> tensor)")
    out = {}
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            raise TorchWeightsError(f"{path}: {name!r} is a {type(ref).__name__}, expected a tensor")
        (key, view_offset, view_numel), offset, size, stride = ref
        flat = data[key][view_offset : view_offset + view_numel]
        itemsize = flat.dtype.itemsize
        last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
        if offset < 0 or last >= len(flat):
            raise TorchWeightsError(f"{path}: tensor {name!r} ({size}) reaches past its storage ({len(flat)})")
        if not size:  # a 0-d tensor (BatchNorm's num_batches_tracked)
            out[str(name)] = np.array(flat[offset])
            continue
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=[s * itemsize for s in stride], writeable=False
        )
        out[str(name)] = np.array(view)  # a copy: contiguous, and owns its memory
    return out
