"""Run directories: resolved config, environment, JSON-lines metrics, checkpoints, summary.

Files appear atomically (`storage`: a temporary name, then a rename) so an interrupted run or a
full disk never leaves a half-written config, checkpoint or summary behind.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from .atomic import append_line, atomic_write_json, jsonable


def _git(*args, cwd=None, stdin: str | None = None, env: dict | None = None, strip: bool = True) -> str | None:
    try:
        here = cwd or Path(__file__).resolve().parent
        out = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10, input=stdin,
                             env={**os.environ, **env} if env else None)
        return (out.stdout.strip() if strip else out.stdout) if out.returncode == 0 else None
    except Exception:
        return None


def git_tree(root: str | None = None) -> str | None:
    """The git tree id of the checkout's files as they are on disk (tracked and untracked, ignored
    ones left out). It equals `git rev-parse COMMIT^{tree}` exactly when the files are COMMIT's, so
    a run on a machine whose copy of .git is stale (the lent GPU's) still names the code it ran.
    Nothing is written to the repository: a temporary index and object store, blobs hashed only."""
    import tempfile
    root = root or _git("rev-parse", "--show-toplevel")
    listed = root and _git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=root, strip=False)
    if not listed:
        return None
    paths = sorted({p for p in listed.split("\0") if p and os.path.isfile(os.path.join(root, p))})
    blobs = _git("hash-object", "--no-filters", "--stdin-paths", cwd=root, stdin="\n".join(paths) + "\n")
    if blobs is None or len(blobs.split()) != len(paths):
        return None
    modes = ["100755" if os.access(os.path.join(root, p), os.X_OK) else "100644" for p in paths]
    info = "".join(f"{m} {b}\t{p}\n" for m, b, p in zip(modes, blobs.split(), paths))
    with tempfile.TemporaryDirectory() as tmp:
        os.mkdir(os.path.join(tmp, "objects"))  # write-tree stores its trees here, not in the repository
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index"), "GIT_OBJECT_DIRECTORY": os.path.join(tmp, "objects")}
        if _git("update-index", "--add", "--index-info", cwd=root, stdin=info, env=env) is None:
            return None
        return _git("write-tree", "--missing-ok", cwd=root, env=env)


def git_commit() -> str | None:
    return _git("rev-parse", "HEAD") or None


def git_dirty() -> bool | None:
    """Whether the package's source tree has uncommitted changes (None outside a checkout)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def cpu_identity() -> dict:
    """The CPU's name, family/model and the vector ISA PyTorch's kernels use: on CPU these pick the
    kernels, so one seed's run can differ across CPUs (SGD on 30,000 Fashion-MNIST images, seed 1:
    90.01% on an earlier 2-core AMD EPYC, 90.71% on one of family 26 with AVX-512; docs/learnability.md)."""
    info = {"cpu_capability": torch.backends.cpu.get_cpu_capability()}
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:  # not Linux: the platform string is what there is
        return info
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lines[:30] if ":" in line)}
    info.update({"cpu_model_name": fields.get("model name"), "cpu_family": fields.get("cpu family"),
                 "cpu_model": fields.get("model")})
    return info


def environment(device: str) -> dict:
    import numpy
    import torchvision
    env = {
        "python": sys.version.split()[0], "torch": torch.__version__, "torchvision": torchvision.__version__,
        "numpy": numpy.__version__, "platform": platform.platform(), "processor": platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device,
        "commit": git_commit(), "dirty": git_dirty(), "tree": git_tree(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "world_size": _world_size(),
        **cpu_identity(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name()
    return env


def _world_size() -> int:
    """Processes the command ran on (torchrun's ranks; 1 without it)."""
    from . import distributed
    return distributed.world()


# Settings that may differ when a run directory is reused: where the data lives, the preset's
# name (the resolved config is what counts), the engine (speed only) and the loggers.
REUSABLE_DIFFERENCES = ("preset", "overlays", "engine", "log", "data.root")


def check_run_path(path: Path, config: dict) -> None:
    """`--out` must be a directory this run may own: not a file, creatable, and not another run
    (a config.json there must match this config but for REUSABLE_DIFFERENCES: then it resumes)."""
    from repsearch.errors import UserError
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path} is a file, not a directory; choose another --out")
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
                raise UserError(f"--out {path}: cannot create it under {parent} (not a writable directory)")
            break
    old = path / "config.json"
    if old.exists():
        try:
            previous = json.loads(old.read_text())
        except (OSError, json.JSONDecodeError):
            raise UserError(f"--out {path} has an unreadable config.json; choose another --out") from None
        diff = config_difference(previous, config)
        if diff:
            raise UserError(f"--out {path} holds another run ({diff} differs from this command's); choose another "
                            "--out, or repeat that run's config to resume it")


def config_difference(a: dict, b: dict, sections: tuple[str, ...] | None = None) -> str | None:
    """The first setting (dotted key) in which two run configs differ, ignoring what does not change
    results (REUSABLE_DIFFERENCES); `sections` limits the comparison to those top-level keys."""
    a, b = _comparable(a), _comparable(b)
    if sections is not None:
        a, b = ({k: c.get(k) for k in sections} for c in (a, b))
    return _first_difference(a, b)


def _comparable(config: dict) -> dict:
    """A run config as today's schema reads it: renamed keys under their new names, and sections'
    fields added since the run at their defaults (a run made before a field existed behaved so)."""
    from repsearch.config import Config
    from repsearch.config.overrides import RENAMED
    config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
    for old, new in RENAMED.items():
        (section, o), (_, n) = old.split("."), new.split(".")
        if o in config.get(section, {}):
            config[section][n] = config[section].pop(o)
    for section, fields in Config().to_dict().items():
        if isinstance(fields, dict) and isinstance(config.get(section), dict):
            config[section] = {**fields, **config[section]}
    out = {k: v for k, v in config.items() if k not in REUSABLE_DIFFERENCES}
    if isinstance(out.get("data"), dict):
        out["data"] = {k: v for k, v in out["data"].items() if k != "root"}
    return out


def _first_difference(a, b, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
            if d:
                return d
        return None
    return prefix.rstrip(".") if a != b else None


class RunDir:
    """One run's directory. `log` appends one JSON object per line to metrics.jsonl. Under torchrun
    every rank holds one (the same path) and only rank 0's writes (`write`)."""

    def __init__(self, path: Path, config: dict, device: str, write: bool | None = None):
        from . import distributed
        self.path, self.config, self.device = Path(path), config, device
        self.write = distributed.is_main() if write is None else write
        if self.write:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path / "config.json", config)
            atomic_write_json(self.path / "environment.json", environment(device))
        self.start = time.time()

    def log(self, record: dict, name: str = "metrics.jsonl") -> None:
        if self.write:
            append_line(self.path / name, json.dumps(record, default=jsonable))

    def save(self, obj, name: str) -> None:
        """A checkpoint or model file in this directory (rank 0's)."""
        if self.write:
            from .atomic import atomic_torch_save
            atomic_torch_save(obj, self.path / name)

    def summary(self, figures: dict) -> dict:
        figures = {"wall_time_s": round(time.time() - self.start, 2), **figures}
        if self.write:
            atomic_write_json(self.path / "summary.json", figures)
        return figures

    def sub(self, name: str, config: dict, device: str) -> "RunDir":
        return RunDir(self.path / name, config, device, self.write)


def default_run_path(command: str, preset: str | None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{command}-{preset or 'default'}"
