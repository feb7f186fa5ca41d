"""Compile the fused kernel for a GPU without one (Triton's own LLVM and ptxas) and print what
ptxas says of each program: registers per thread, spills, shared memory; and the occupancy those
registers allow. A kernel change can be judged here before a device is lent (the H200 profile of
2026-12-04 found 228 registers -> 12.5% occupancy the first version's limit).

It also counts the SASS instructions one program issues (straight-line code once, each channel loop's
body once per trip; `sass_count.py`), by the kernel function they come from, and models the rate of
whole generations (100 explorers scored and written, 120 refiners scored, 21 kept refiners written)
if every H200 scheduler issued one instruction a cycle: an issue ceiling, modelled, which a kernel
not bound by memory approaches from below (version 2 ran at 0.23-0.29 of its own on the H200:
benchmarks/RESULTS.md). With PYTHONPATH at an older commit's src it reads that kernel instead.

    python benchmarks/fused_compile.py [--arch 90] [--width 256] [--num-warps 4] [--channel-tile 0]
"""
from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import triton
from sass_count import issued_by_source
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from repsearch.search import fused_kernel as fk

try:
    from repsearch.search.fused_launch import constexprs
except ImportError:  # an older kernel, before version 4 (calibration): the sizes lived beside the program
    constexprs = fk.constexprs

POINTERS = {"i1", "i2", "offsets", "labels", "out_slot"}  # int64 tensors
INT32 = {"slots", "left"}  # version 2's layout tables (calibration against its measured rates)
H200_WARP_ISSUE_PER_S = 132 * 4 * 1.98e9  # SMs x schedulers x boost clock: warp-instructions per second
# Programs per image and generation at the paper's split: refiners scored; explorers scored, written
# and their channel spread taken; kept refiners written
GENERATION = {"score": 120, "score + write": 100, "write": 21}
EVALUATED = GENERATION["score"] + GENERATION["score + write"]  # children scored per generation


def loop_trips(consts: dict) -> list[list[int]]:
    """The program's channel loops in source order and their trip counts (fused_kernel.build_score):
    pass 1, the stage passes, the write pass. A child only written skips pass 1 (its statistics come
    from its scoring launch; before version 4 it ran pass 1 again): both readings are offered and
    the SASS's loops pick one. An older kernel (PYTHONPATH at its commit, for calibrating against its
    measured rates) had one channel tile, CB, for every pass; before version 5, CB2 for both stages."""
    c, unroll = consts["C"], consts.get("UNROLL", 1)  # pass 1's and the write pass's loops unrolled (version 5)
    stage_tiles = [consts.get("CB2", consts["CB"]), consts.get("CB3", consts.get("CB2", consts["CB"]))]
    later = [-(-c // cb) for cb in stage_tiles[:consts["N_STAGES"]]] if consts["SCORE"] else []
    write = [-(-c // consts["CBW"]) // unroll] if consts["WRITE"] else []
    readings = [[-(-c // consts["CB"]) // unroll] + later + write]
    return readings if consts["SCORE"] else [write] + readings


def compile_point(arch: int, consts: dict, num_warps: int) -> dict:
    fn = fk.build_score
    signature = {}
    for name in fn.arg_names:
        if name in consts:
            signature[name] = "constexpr"
        elif name == "scale":
            signature[name] = "fp32"
        else:
            signature[name] = "*i64" if name in POINTERS else "*i32" if name in INT32 else "*fp32"
    src = ASTSource(fn=fn, signature=signature, constexprs=consts)
    kernel = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps})
    with tempfile.TemporaryDirectory() as tmp:
        ptx = Path(tmp) / "k.ptx"
        ptx.write_text(kernel.asm["ptx"])
        ptxas = Path(triton.__file__).parent / "backends/nvidia/bin/ptxas"
        log = subprocess.run([str(ptxas), f"-arch=sm_{arch}a" if arch >= 90 else f"-arch=sm_{arch}", "-v",
                              str(ptx), "-o", str(Path(tmp) / "k.cubin")], capture_output=True, text=True, check=True).stderr
        sass = subprocess.run([str(ptxas.parent / "nvdisasm"), "-c", "-g", str(Path(tmp) / "k.cubin")],
                              capture_output=True, text=True, check=True).stdout
    regs = int(re.search(r"Used (\d+) registers", log).group(1))
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    threads = 32 * num_warps
    blocks = min(32, 65536 // (max(regs, 1) * threads))  # sm_90: 64K registers, at most 32 blocks per SM
    return dict(registers=regs, spill_stores=int(spill.group(1)), spill_loads=int(spill.group(2)),
                shared_bytes=kernel.metadata.shared, threads=threads,
                occupancy_modelled=round(min(blocks * threads, 2048) / 2048, 3),
                **issue_counts(sass, consts))


def issue_counts(sass: str, consts: dict) -> dict:
    """Instructions one thread issues, in all and by the kernel's function they come from (helpers
    are inlined: a GELU's instructions are `_gelu`'s wherever it is called; Triton's own library,
    such as a reduction's combining function, by its file)."""
    by_source = next((c for trips in loop_trips(consts) if (c := issued_by_source(sass, trips, consts["K"]))), None)
    if by_source is None:
        return dict(issued_per_thread=None)
    functions = functions_by_line(Path(fk.__file__))
    by_function = {}
    for source, n in by_source.most_common():
        path, line = source or ("(no line)", 0)
        name = functions.get(line, "?") if Path(path).name == Path(fk.__file__).name else "/".join(Path(path).parts[-2:])
        by_function[name] = by_function.get(name, 0) + n
    return dict(issued_per_thread=sum(by_source.values()), issued_by_function=by_function)


def functions_by_line(path: Path) -> dict[int, str]:
    """Each source line of a module's functions -> the function's name."""
    return {line: node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)
            for line in range(node.lineno, node.end_lineno + 1)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--num-warps", type=int, default=4)
    ap.add_argument("--channel-tile", type=int, default=0, help="CB (0: launch's default)")
    a = ap.parse_args(argv)
    points = {"point0 (15x15, 2 stages)": (15, 15, 2), "point1 (7x7, 1 stage)": (7, 7, 1),
              "point2 (3x3, head)": (3, 3, 0)}
    out = {"triton": triton.__version__, "arch": f"sm_{a.arch}", "width": a.width, "num_warps": a.num_warps}
    for name, (h, w, n) in points.items():
        issued = 0
        for kind, programs in GENERATION.items():  # refiners are scored only; explorers also written
            options = dict(channel_tile=a.channel_tile, num_warps=a.num_warps, score="score" in kind,
                           write="write" in kind, channel_stats=kind == "score + write")
            if "channel_stats" not in inspect.signature(constexprs).parameters:  # before version 4
                del options["channel_stats"]
            consts = dict(M=220, POOL=240, STD=20, OUT=240, **constexprs(a.width, h, w, n, 10, **options))
            program = dict(CB=consts["CB"], **compile_point(a.arch, consts, a.num_warps))
            out[f"{name} {kind}"] = program
            issued = None if issued is None or program["issued_per_thread"] is None else \
                issued + programs * program["issued_per_thread"]
        if issued is not None:  # warp-instructions per generation of one image -> evaluations per second
            out[f"{name} issue ceiling (modelled evaluations/s)"] = round(
                H200_WARP_ISSUE_PER_S * EVALUATED / (a.num_warps * issued))
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
