"""Reference rates measured in the benchmark's own process, so that ratios survive a noisy machine,
and the options every benchmark shares."""
import argparse
import time

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
