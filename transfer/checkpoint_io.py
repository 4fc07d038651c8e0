"""Safe reading of checkpoints and atomic writing of Detectron2 weight pickles.

Nothing here runs a full unpickler on a user file: `.pth` files go through
`torch.load(weights_only=True)` and Detectron2 `.pkl` files through an unpickler that only rebuilds
numpy arrays and plain containers.
"""

import os
import pickle
import re
import secrets
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from transfer.errors import TransferError

# Globals a Detectron2 weight pickle may reference: numpy array reconstruction (numpy 1 and 2 module
# names; `_frombuffer` for pickle protocol 5), dtypes and the ordered dict some writers use.
_PICKLE_ALLOWED = {
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except numpy arrays, dtypes and OrderedDict."""

    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_ALLOWED or (
            module.startswith("numpy.dtypes") and name.endswith("DType")
        ):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weight pickle")


def _head(path: Path, size: int = 16) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def _has_torch_file_magic(path: Path) -> bool:
    """A zip archive (torch.save since 1.6) or a pickle stream from protocol 2 on (the legacy format)."""
    return zipfile.is_zipfile(path) or _head(path, 1) == b"\x80"


def _disallowed_object(exc: pickle.UnpicklingError) -> str:
    """The Python object torch's weights-only unpickler refused, as named in its message."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    return f"a Python object, {found.group(1)}" if found else "Python objects"


def load_torch_checkpoint(path: str | Path) -> Mapping:
    """`torch.load(map_location="cpu", weights_only=True)` with a clear message on every failure."""
    path = Path(path)
    if not path.is_file():
        raise TransferError(
            f"Checkpoint {path} does not exist. Expected a PyTorch checkpoint (.pth/.pth.tar/.ckpt) "
            "holding a ResNet state dict; check the path."
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _has_torch_file_magic(path):
            raise TransferError(
                f"Checkpoint {path} is not a PyTorch file: it starts with {_head(path)!r}, while torch.save "
                "writes a zip archive (or, before PyTorch 1.6, a pickle). A download that returned an error "
                "or login page instead of the weights looks like this; fetch the file again."
            ) from exc
        raise TransferError(
            f"Checkpoint {path} needs full unpickling (it stores {_disallowed_object(exc)}, beyond tensors "
            "and plain containers). Unpickling can run arbitrary code, so it is refused. If you trust the "
            "file, re-save only its tensors and convert OUT: for a dict, "
            "`torch.save(torch.load(IN, weights_only=False)['state_dict'], OUT)` (or the key holding the "
            "weights, e.g. 'model'); for a saved module, `torch.save(torch.load(IN, weights_only=False)"
            ".state_dict(), OUT)`."
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise TransferError(
            f"Checkpoint {path} is not a readable PyTorch file ({exc}). Expected a file written by "
            "torch.save; re-download or re-export it."
        ) from exc
    if not isinstance(loaded, Mapping):
        raise TransferError(
            f"Checkpoint {path} holds a {type(loaded).__name__}, expected a dict (a state dict, or a dict "
            "with 'state_dict'/'model'). Save `model.state_dict()` instead of the module."
        )
    return loaded


def load_weight_pickle(path: str | Path) -> dict:
    """Read a Detectron2 `.pkl` weight file, allowing only numpy arrays and containers inside."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = _ArrayOnlyUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise TransferError(
            f"Weight file {path} is not a plain Detectron2 weight pickle ({exc}). Expected "
            "{'model': {name: numpy array}, ...} as written by `python -m transfer.convert IN OUT.pkl`; "
            "convert the original checkpoint with that command."
        ) from exc
    if not isinstance(data, dict):
        raise TransferError(f"Weight file {path} holds a {type(data).__name__}, expected a dict.")
    return data


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(f)` on a temporary file beside `path`, then rename it onto `path` (removed on error).
    The file gets the permissions of a plain write (0666 less the umask), so a shared run is readable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, unlike mkstemp's 0600
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_weight_pickle(model: dict[str, np.ndarray], path: str | Path) -> None:
    """Write `{"model": ..., "__author__": "densebench", "matching_heuristics": True}` atomically."""
    payload = {"model": model, "__author__": "densebench", "matching_heuristics": True}
    write_atomic(path, lambda f: pickle.dump(payload, f, protocol=4))  # readable by numpy 1 and 2
