"""Files that appear whole or not at all, and disk space claimed before it is needed.

A full disk must stop a run at a clean point with one line, never as a SIGBUS inside a memory map
(a sparse file's pages get their blocks only when first written) or as a truncated checkpoint.
So: arrays are reserved with `posix_fallocate` when they are created (and again when a search
resumes), every other file is written under a temporary name and renamed, appends are undone
when they fail, and ENOSPC anywhere becomes a `UserError` that says how to resume.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch

from repsearch.errors import UserError

FULL = (errno.ENOSPC, errno.EDQUOT)
MARGIN = 1 << 20  # bytes kept free beyond an estimate: records, manifests, temporary names


def disk_full(path: Path, need: int | None = None) -> UserError:
    free = free_bytes(Path(path))
    amounts = f" (needs {need / 2**20:,.1f} MiB, {free / 2**20:,.1f} MiB free)" if need is not None else ""
    return UserError(f"not enough disk space to write {path}{amounts}; free some space (or choose another "
                     "--out/--cache) and re-run the same command: it resumes from the last complete step")


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds `path` (or its nearest existing parent)."""
    for p in (path, *path.parents):
        if p.exists():
            return shutil.disk_usage(p).free
    return 0


def require_free(path: Path, nbytes: int) -> None:
    """Refuse before writing `nbytes` (+ a margin) under `path` when the filesystem lacks them."""
    if free_bytes(Path(path)) < nbytes + MARGIN:
        raise disk_full(path, nbytes + MARGIN)


@contextmanager
def writing(path: Path, tmp: Path | None = None):
    """Around a write of `path`: a full disk becomes `disk_full`, and a temporary file is removed
    on any failure so that nothing half-written is left behind."""
    try:
        yield
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in FULL:
            raise disk_full(path) from None
        raise


def reserve(path: Path) -> None:
    """Give every byte of an existing (possibly sparse) file its disk blocks now, so that writes
    through a memory map can never fail later. Filesystems without fallocate are left as they are."""
    path = Path(path)
    size = path.stat().st_size
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in FULL:
            raise disk_full(path, size) from None
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with writing(path, tmp):
        tmp.write_text(text)
        os.replace(tmp, path)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=jsonable) + "\n")


def atomic_torch_save(obj, path: Path) -> None:
    """A checkpoint appears whole or not at all; the previous one survives a full disk. Its size is
    checked first, since torch's writer reports a full disk as an unspecific RuntimeError."""
    path = Path(path)
    need = tensor_bytes(obj)
    require_free(path.parent, need)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with writing(path, tmp):
            torch.save(obj, tmp)
            os.replace(tmp, path)
    except RuntimeError:
        if free_bytes(path.parent) < need + MARGIN:
            raise disk_full(path, need + MARGIN) from None
        raise


def append_line(path: Path, line: str) -> None:
    """Append one line; on failure the file is cut back to where it was (no half line)."""
    path = Path(path)
    size = path.stat().st_size if path.exists() else 0
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError as e:
        with open(path, "r+") as f:
            f.truncate(size)
        if e.errno in FULL:
            raise disk_full(path) from None
        raise


def tensor_bytes(obj) -> int:
    """Bytes of the tensors inside nested dicts/lists/tuples (a checkpoint's size, near enough)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def jsonable(x):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serializable: {type(x)}")
