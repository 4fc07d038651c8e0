"""Checkpoint files: atomic writes, full resumable state, the final weights file with its checksum."""

import hashlib
import os
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from .errors import PretrainError

LAST = "checkpoint_last.pth"
FINAL = "model_final.pth"
RESUME_KEYS = ("model", "optimizer", "scaler", "rng", "epoch", "iteration")  # what a resume reads


def save_atomic(obj, path: Path) -> None:
    """torch.save into a temporary file beside `path`, then rename over it (never a half-written file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


RESUME_FIX = "delete it to start over, or point OUTPUT_DIR at the run you want to resume"


def load(path: Path, fix: str = RESUME_FIX) -> dict:
    """A checkpoint dict, loaded with weights_only=True (tensors and plain Python types only); `fix` ends
    the error message of a file that cannot be loaded (the default suits a resume)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise PretrainError(
            f"cannot load checkpoint {path}: {e}. Expected a file written by pretrain.train_net; {fix}."
        ) from e


def rng_state(device: torch.device) -> dict:
    """python, numpy, torch (and, on a GPU, `device`'s CUDA) generator states, in weights_only-loadable types.

    Only the training device's CUDA generator is kept: a resumed run may see fewer GPUs than the one that
    saved, and every process draws on its own GPU only."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    random.setstate(_to_tuples(state["python"]))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _to_tuples(obj):
    """random.setstate needs tuples; serialisation may hand back lists."""
    return tuple(_to_tuples(x) for x in obj) if isinstance(obj, list | tuple) else obj


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """Checksum of a state dict's content: names, dtypes, shapes and raw bytes in sorted key order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_final(out_dir: Path, state_dict: dict[str, torch.Tensor], meta: dict) -> Path:
    """model_final.pth = {"state_dict", "meta"}; meta gets the state-dict sha256, and a sidecar
    `model_final.pth.sha256` records the file's own checksum (`sha256sum -c` format)."""
    state_dict = {k: v.detach().cpu() for k, v in state_dict.items()}
    path = Path(out_dir) / FINAL
    save_atomic({"state_dict": state_dict, "meta": {**meta, "sha256": state_dict_sha256(state_dict)}}, path)
    write_text_atomic(path.with_name(FINAL + ".sha256"), f"{file_sha256(path)}  {FINAL}\n")
    return path
