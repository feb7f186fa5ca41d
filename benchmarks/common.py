"""Reference rates measured in the benchmark's own process, so that ratios survive a noisy machine,
and the options every benchmark shares."""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from repsearch.learn.runtime import matmul_peak_flops


def copy_bandwidth(device="cpu", n=1 << 24, repeats=5) -> float:
    """Bytes/s of a large tensor copy (read + write), the reference for elementwise work."""
    a = torch.randn(n, device=device)
    b = torch.empty_like(a)
    b.copy_(a)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    best = float("inf")
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        b.copy_(a)
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * 4 * n / best


def references(device="cpu") -> dict:
    return {"matmul_peak_flops": matmul_peak_flops(device), "copy_bandwidth_bytes_per_s": copy_bandwidth(device),
            "torch_threads": torch.get_num_threads()}


def parser(doc: str | None = None) -> argparse.ArgumentParser:
    """An argument parser with the shared options: `--set key=value` overrides and `--data-root`."""
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override, key=value")
    p.add_argument("--data-root", default="data")
    return p


_STARTED = time.time()


def _scalars(obj, prefix: str = "", out: dict | None = None, limit: int = 400) -> dict:
    """A benchmark's result as flat `a.b.0.c` -> scalar entries (lists of scalars kept whole), at
    most `limit` of them: a record's headline stays small."""
    out = {} if out is None else out
    if isinstance(obj, dict):
        for k, v in obj.items():
            _scalars(v, f"{prefix}{k}.", out, limit)
    elif isinstance(obj, list) and obj and all(isinstance(v, (int, float, str, bool)) or v is None for v in obj):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _scalars(v, f"{prefix}{i}.", out, limit)
    elif (isinstance(obj, (int, float, str, bool)) or obj is None) and len(out) < limit:
        out[prefix.rstrip(".")] = obj
    return out


def emit(name: str, result: dict, device: str = "cpu", config: dict | None = None) -> None:
    """Print the benchmark's JSON and write its record (`repsearch.store.record`):
    $BENCH_RECORD, else runs/benchmarks/NAME-TIME/record.json."""
    print(json.dumps(result, indent=2), flush=True)  # first: a machine without the record's packages keeps it
    from repsearch.store import record
    from repsearch.store.rundir import environment
    path = Path(os.environ.get("BENCH_RECORD") or f"runs/benchmarks/{name}-{time.strftime('%Y%m%d-%H%M%S')}/record.json")
    record.write(path, kind=f"benchmark/{name}", argv=["python", *sys.argv], config=config or {},
                 environment=environment(device), seeds=[], wall_seconds=time.time() - _STARTED,
                 headline=_scalars(result))
    print(f"record: {path}", file=sys.stderr)