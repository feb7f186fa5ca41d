"""Instructions a GPU program issues per thread, counted from its SASS (nvdisasm's listing, with
`-g` for source lines), for judging a kernel's arithmetic without a GPU (benchmarks/fused_compile.py)."""
from __future__ import annotations

import re
from collections import Counter


def _listing(sass: str) -> tuple[list[tuple[str, tuple[str, int] | None]], dict[str, int]]:
    """The instructions in order, each with the source (file, line) nvdisasm names before it, and
    each label's position."""
    labels, code, source = {}, [], None
    for line in sass.splitlines():
        if m := re.match(r"^(\.L_x_\d+):", line):
            labels[m.group(1)] = len(code)
        elif m := re.search(r'File "([^"]+)", line (\d+)', line):
            source = (m.group(1), int(m.group(2)))
        elif m := re.match(r"^\s*/\*[0-9a-f]{4,}\*/\s*(.*)", line):
            code.append((m.group(1), source))
    return code, labels


def weights(sass: str, trips: list[int], inner_trips: int) -> tuple[list, list[int]] | None:
    """How many times each instruction issues: once, or once per trip of each loop (a backward
    branch's span) around it; a loop inside a channel loop (the head's loop over classes, where the
    compiler keeps it) runs `inner_trips` times per outer trip. None when the channel loops found
    are not the ones expected (`trips`, in source order)."""
    code, labels = _listing(sass)
    spans = [(labels[m.group(1)], i) for i, (text, _) in enumerate(code)
             if (m := re.search(r"BRA `?\(?(\.L_x_\d+)", text)) and labels.get(m.group(1), i) < i]
    outer = [s for s in spans if not any(o != s and o[0] <= s[0] and s[1] <= o[1] for o in spans)]
    if len(outer) != len(trips):
        return None
    weight = [1] * len(code)
    for (start, end), n in zip(outer, trips):
        for i in range(start, end + 1):
            weight[i] = n
    for start, end in set(spans) - set(outer):
        for i in range(start, end + 1):
            weight[i] *= inner_trips
    return code, weight


def issued_per_thread(sass: str, trips: list[int], inner_trips: int) -> int | None:
    """Instructions one thread issues (None: the loops are not the ones expected)."""
    counted = weights(sass, trips, inner_trips)
    return None if counted is None else sum(counted[1])


def issued_by_source(sass: str, trips: list[int], inner_trips: int) -> Counter | None:
    """The instructions one thread issues, by the source (file, line) they were compiled from."""
    counted = weights(sass, trips, inner_trips)
    if counted is None:
        return None
    by_source = Counter()
    for (_, source), n in zip(*counted):
        by_source[source] += n
    return by_source
