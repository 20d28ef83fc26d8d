"""Loading DCP checkpoints that peers wrote, without running code a peer put in them.

A DCP checkpoint has two pickled parts: `.metadata` (torch reads it with plain `pickle.load`) and the non-tensor
entries (optimizer hyper-parameters: the default planner reads them with `torch.load(weights_only=False)`).
Tensors themselves are read with `weights_only=True` by torch already.

- `check_metadata(directory)` unpickles `.metadata` first with an unpickler that builds only DCP's metadata
  classes, torch dtypes/sizes/layouts and plain containers; anything else (a `__reduce__` calling os.system)
  raises UnsafeCheckpoint before torch reads the file.
- `SafeLoadPlanner` reads the non-tensor entries with `weights_only=True`.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import DefaultLoadPlanner
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.planner import ReadItem

METADATA_FILE = ".metadata"
_ALLOWED = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata", "MetadataIndex", "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata",
        "TensorProperties", "StorageMeta", "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.distributed.checkpoint._extension": {"StreamTransformExtension"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"PosixPath", "PurePosixPath"},
    "collections": {"OrderedDict"},
    "builtins": {"set", "frozenset", "tuple", "list", "dict", "int", "float", "str", "bytes", "bool", "slice"},
}


class UnsafeCheckpoint(RuntimeError):
    """A checkpoint file that would make the unpickler build something other than checkpoint metadata."""


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name in _ALLOWED.get(module, ()):
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.memory_format)):
            return getattr(torch, name)
        raise UnsafeCheckpoint(f"{module}.{name}")


def check_metadata(directory: Path) -> None:
    """Raise UnsafeCheckpoint unless `directory/.metadata` holds only checkpoint metadata."""
    path = Path(directory) / METADATA_FILE
    try:
        _MetadataUnpickler(io.BytesIO(path.read_bytes())).load()
    except UnsafeCheckpoint as exc:
        raise UnsafeCheckpoint(f"checkpoint {directory}: {METADATA_FILE} refers to {exc}, which no checkpoint "
                               "holds; not loading it (it could run code)") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError) as exc:
        raise UnsafeCheckpoint(f"checkpoint {directory}: {METADATA_FILE} is not readable checkpoint metadata "
                               f"({type(exc).__name__}: {exc})") from None


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's default planner, reading non-tensor entries with `torch.load(weights_only=True)`."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        loaded = torch.load(value, weights_only=True)
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], loaded)
        else:
            self.state_dict[read_item.dest_index.fqn] = loaded
