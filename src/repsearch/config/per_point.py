"""Per-point settings for a model with any number of stages.

The search's per-point settings (`search.generations`, `alpha`, `boost`, `blur`, `target_ce`,
`extra_generations`) are lists with one value per search point: the stages' outputs in order,
then the logits. A preset writes them for its own network (three stages + logits); a model with
another number of stages gets them by role:

  - the first stage's point takes the preset's first value (it starts from noisy inputs);
  - the logits take the preset's last value;
  - every other stage's point takes the value of the preset's other stage point nearest to it
    in relative depth (the first of them for the second stage, the last for the last stage).

A list of one value applies to every point, and a list the user gave explicitly (`--set`, or a
key of the Python API's dict) is used as given: if its length does not fit the model, that is an
error, not a guess. `fit` returns the lists the run uses; they are printed when a run starts and
saved in its config.json.
"""
from __future__ import annotations

from repsearch.errors import UserError

PER_POINT = ("generations", "alpha", "boost", "blur", "target_ce", "extra_generations")


def by_role(values: list, n_points: int) -> list:
    """`values` (one per point of the preset's network, logits last) fitted to n_points."""
    if len(values) in (1, n_points):
        return list(values) * (n_points if len(values) == 1 else 1)
    stages, logits = list(values[:-1]), values[-1]
    n_stages = n_points - 1
    fitted = [stages[0]]
    for j in range(1, n_stages):
        fitted.append(stages[_nearest(j, n_stages, len(stages))])
    return fitted + [logits]


def _nearest(j: int, n_stages: int, preset_stages: int) -> int:
    """The preset's stage (1..preset_stages-1) nearest in relative depth to the model's stage j
    (1..n_stages-1); the first stage alone when the preset has no other."""
    if preset_stages < 2:
        return 0
    position = (j - 1) / (n_stages - 2) if n_stages > 2 else 1.0
    return 1 + int(position * (preset_stages - 2) + 0.5)


def fit(search, n_points: int, explicit=frozenset()) -> dict[str, list]:
    """Every per-point list of `search` (a SearchConfig) fitted to a model with n_points points:
    {key: values the run uses}. `explicit`: the dotted keys the user gave (`Config.explicit`);
    those lists of another length are refused in one line."""
    wrong = [f"search.{k}" for k in PER_POINT
             if f"search.{k}" in explicit and len(getattr(search, k)) not in (1, n_points)]
    if wrong:
        raise UserError(f"the model has {n_points} search points ({n_points - 1} stages + logits) but "
                        f"{', '.join(wrong)} {'has' if len(wrong) == 1 else 'have'} another number of values; give "
                        f"{n_points} values (stages in order, logits last) or 1 for all, or leave "
                        f"{'it' if len(wrong) == 1 else 'them'} to the preset (fitted to the model by role)")
    return {k: by_role(getattr(search, k), n_points) for k in PER_POINT}


def lists(search) -> dict[str, list]:
    """The per-point lists of a SearchConfig, copied (to say later what fitting changed)."""
    return {k: list(getattr(search, k)) for k in PER_POINT}


def describe(before: dict[str, list], search) -> str:
    """One line naming every list that was fitted to the model, for the start of a run ("" if none)."""
    changed = [f"search.{k} {v} -> {getattr(search, k)}" for k, v in before.items() if getattr(search, k) != v]
    if not changed:
        return ""
    n = len(getattr(search, changed[0].split()[0].split(".")[1]))
    return (f"per-point settings fitted by role to this model's {n} search points ({n - 1} stages + logits; "
            "docs/method.md, 'Per-point settings'): " + "; ".join(changed))
