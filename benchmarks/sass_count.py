"""Instructions a GPU program issues per thread, counted from its SASS (nvdisasm's listing), for
judging a kernel's arithmetic without a GPU (benchmarks/fused_compile.py)."""
from __future__ import annotations

import re


def issued_per_thread(sass: str, trips: list[int], inner_trips: int) -> int | None:
    """Instructions one thread issues: every instruction once, each loop body (a backward branch's
    span) once more per further trip. Loops inside a channel loop (the head's loop over classes,
    where the compiler keeps it) run `inner_trips` times per outer trip. None when the channel
    loops found are not the ones expected."""
    labels, code = {}, []
    for line in sass.splitlines():
        if m := re.match(r"^(\.L_x_\d+):", line):
            labels[m.group(1)] = len(code)
        elif m := re.match(r"^\s*/\*[0-9a-f]{4,}\*/\s*(.*)", line):
            code.append(m.group(1))
    spans = [(labels[m.group(1)], i) for i, text in enumerate(code)
             if (m := re.search(r"BRA `?\(?(\.L_x_\d+)", text)) and labels.get(m.group(1), i) < i]
    outer = [s for s in spans if not any(o != s and o[0] <= s[0] and s[1] <= o[1] for o in spans)]
    if len(outer) != len(trips):
        return None
    issued = len(code) + sum((end - start + 1) * (n - 1) for (start, end), n in zip(outer, trips))
    for start, end in set(spans) - set(outer):
        n = next(n for (a, b), n in zip(outer, trips) if a <= start and end <= b)
        issued += (end - start + 1) * (inner_trips - 1) * n
    return issued
