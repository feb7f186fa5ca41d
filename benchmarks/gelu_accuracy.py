"""How far the fused kernel's GELU (`fused_kernel._gelu`) is from the exact one, on a GPU's units.

    python benchmarks/gelu_accuracy.py [--points 4000001] [--low -12] [--high 12]

The kernel takes 1 / d as rsqrt(d)^2 and exp as exp2, which a GPU evaluates on its special-function
units to within a relative 2^-22 (PTX's rsqrt.approx / ex2.approx bounds). A CPU has no such units,
so this emulates the kernel's formula in fp32 with numpy, perturbing those two results by -2^-22,
0 and +2^-22 (the worst of the nine combinations counts), after checking the unperturbed emulation
against the kernel itself under Triton's interpreter (so the emulation is the kernel's formula).
The reference is the exact GELU in float64 (0.5 x erfc(-x / sqrt 2): no cancellation in the tail);
torch's fp32 GELU, what the eager path computes, is measured against it the same way.
Prints JSON: maximum absolute errors, and relative errors where x < 0 and |GELU| > 1e-3.
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # before Triton reads the kernel

import numpy as np  # noqa: E402
import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import emit, parser  # noqa: E402

from repsearch.search import fused_kernel  # noqa: E402

UNIT_ERROR = 2.0 ** -22
P = 0.3275911
A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)  # Abramowitz & Stegun 7.1.26


@triton.jit
def _apply(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + i, fused_kernel._gelu(tl.load(x_ptr + i, mask=i < n)), mask=i < n)


def kernel_gelu(x: torch.Tensor) -> np.ndarray:
    y = torch.empty_like(x)
    _apply[(-(-len(x) // 4096),)](x, y, len(x), BLOCK=4096)
    return y.numpy()


def emulated_gelu(x: np.ndarray, rsqrt_error: float, exp2_error: float) -> np.ndarray:
    """`fused_kernel._gelu` step by step in fp32, its two unit results scaled by (1 + error)."""
    f = np.float32
    z = np.abs(x) * f(0.7071067811865476)
    r = (1 / np.sqrt((f(1) + f(P) * z).astype(np.float64)) * (1 + rsqrt_error)).astype(np.float32)
    t = r * r
    poly = f(A[4])
    for a in reversed(A[:4]):
        poly = f(a) + t * poly
    poly = t * poly
    q = poly * (np.exp2((z * z * f(-1.4426950408889634)).astype(np.float64)) * (1 + exp2_error)).astype(np.float32)
    return f(0.5) * x * np.where(x >= 0, f(2) - q, q)


def errors(y: np.ndarray, exact: np.ndarray, tail: np.ndarray) -> dict:
    diff = np.abs(y.astype(np.float64) - exact)
    return {"max_abs": float(diff.max()), "max_relative_in_negative_tail": float((diff[tail] / np.abs(exact[tail])).max())}


def main(argv=None) -> dict:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=4_000_001)
    p.add_argument("--low", type=float, default=-12.0)
    p.add_argument("--high", type=float, default=12.0)
    a = p.parse_args(argv)
    x = torch.linspace(a.low, a.high, a.points)
    exact = (0.5 * x.double() * torch.special.erfc(-x.double() / 2 ** 0.5)).numpy()
    tail = (x.numpy() < 0) & (np.abs(exact) > 1e-3)
    xs = x.numpy()
    emulation_vs_kernel = float(np.abs(emulated_gelu(xs, 0.0, 0.0) - kernel_gelu(x)).max())
    worst = max((errors(emulated_gelu(xs, e1, e2), exact, tail) for e1 in (-UNIT_ERROR, 0, UNIT_ERROR)
                 for e2 in (-UNIT_ERROR, 0, UNIT_ERROR)), key=lambda d: d["max_abs"])
    result = {"inputs": {"low": a.low, "high": a.high, "points": a.points, "unit_relative_error": UNIT_ERROR},
              "emulation_vs_kernel_max_abs": emulation_vs_kernel,
              "kernel_gelu_worst_units": worst,
              "torch_fp32_gelu": errors(torch.nn.functional.gelu(x).numpy(), exact, tail)}
    emit("gelu_accuracy", result)
    return result


if __name__ == "__main__":
    main()
