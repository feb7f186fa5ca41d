"""Hooks, in EvoTorch's habit: the search loop and the training loop tell the outside world what
happens (progress, curves, metrics, checkpoints, loggers) by calling objects, never through
arguments threaded through them. A hook defines any of a loop's events as methods; `Hooks` calls
each hook that has the event. Progress bars are one process-wide switch (`show_progress`), so no
function needs a `progress` argument to pass down.
"""
from __future__ import annotations

_SHOW_PROGRESS = [True]


class Hooks:
    """Calls each hook that defines the event."""

    def __init__(self, *hooks):
        self.hooks = [h for h in hooks if h is not None]

    def __call__(self, event: str, *args) -> None:
        for h in self.hooks:
            fn = getattr(h, event, None)
            if fn is not None:
                fn(*args)

    def collect(self, event: str, *args) -> dict:
        """Each hook's dict for the event, merged in order (measurements added to a record)."""
        out: dict = {}
        for h in self.hooks:
            fn = getattr(h, event, None)
            if fn is not None:
                out.update(fn(*args))
        return out

    def wants(self, event: str) -> bool:
        return any(getattr(h, event, None) is not None for h in self.hooks)


def show_progress(on: bool) -> None:
    """Progress bars on or off for this process (`--no-progress`, tests)."""
    _SHOW_PROGRESS[0] = bool(on)


def progress_bar(enabled: bool = True, **kw):
    """A tqdm bar that is shown only when progress is on and `enabled` (e.g. on rank 0)."""
    from tqdm import tqdm
    return tqdm(disable=not (enabled and _SHOW_PROGRESS[0]), dynamic_ncols=True, **kw)
