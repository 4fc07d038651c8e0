"""Atomic file writes (write a temporary file in the target's directory, then `os.replace` it) and removal."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Calls `write(tmp_path)` for a temporary path beside `path`, then renames it onto `path`.

    A reader never sees a half-written file; on error the temporary file is removed and `path` is
    left untouched. The file gets the permissions of a plain write (0666 less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # umask applies (mkstemp: 0600)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def remove_atomic(path: Path) -> None:
    """Removes a file or a directory tree. A directory is first renamed aside, so an interrupted removal
    never leaves a half-deleted run directory (whose checkpoints a rerun would resume from)."""
    path = Path(path)
    if path.is_dir():
        aside = path.with_name(f".{path.name}.deleting")
        shutil.rmtree(aside, ignore_errors=True)
        path.rename(aside)
        shutil.rmtree(aside)
    else:
        path.unlink(missing_ok=True)
