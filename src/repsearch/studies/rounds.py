"""Iterative search and learning, "surfing" (docs/rounds.md): the paper searches once, on the
untrained network; here round r searches again with the network learned in round r-1.

    round 0: search with the untrained search network -> targets T0 -> learner L0 (from scratch)
    round r: search with L{r-1}'s weights (its own block-0 representations, perturbed, are the
             initial population) -> targets Tr -> learners from scratch and warm-started from L{r-1}

The network carried into the next round is `carry` ("warm": the warm-started learner; "scratch":
the one learned from scratch). `learners` picks which learners rounds r >= 1 train (both by default;
"warm" alone halves a later round's learning where compute binds). `later` overrides search, learn
and engine settings for rounds r >= 1 only: a search that starts from a learned network's own
representations is near a solution and may need fewer generations. `round0` adopts a finished
`search` cache and `train` run as round 0, once checked to be what round 0 would have made.
Layout of the run directory, every stage resumable:

    OUT/sgd/                         SGD baseline on the same images (the reference)
    OUT/round{r}/cache/              the round's targets (fingerprint includes the search weights)
    OUT/round{r}/learn-scratch/      learner from scratch   (model-learn-scratch.pt)
    OUT/round{r}/learn-warm/         learner warm-started   (model-learn-warm.pt), r >= 1
    OUT/rounds.json, OUT/rounds.png  per round: searched CE per point, evaluations, accuracies,
                                     probes, cosine to the previous round's targets
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import torch

from repsearch.config import with_overrides
from repsearch.errors import UserError
from repsearch.learn import measures as analysis
from repsearch.learn.baseline import run_baseline
from repsearch.learn.diagnostics import Diagnostics
from repsearch.learn.regression import build_learner, train_from_cache
from repsearch.store import distributed, records
from repsearch.store.atomic import atomic_write_json
from repsearch.store.rundir import config_difference

from .stages import search_or_open, stage

CARRY = ("warm", "scratch")
LEARNERS = ("scratch", "warm")
LATER_SECTIONS = ("search", "learn", "engine")  # not data or model: every round sees the same images and network shape
LEARNER_SECTIONS = ("data", "model", "learn", "seed")  # what a 'train' run must share to stand in for round 0's learner


def target_cosines(a, b, rows: int = 1000) -> list[float]:
    """Per search point, the mean over images of the cosine between two caches' targets for the
    same images (rows in the same order)."""
    n, sums = len(a.arrays()["indices"]), [0.0] * len(a.names)
    for i in range(0, n, rows):
        r = list(range(i, min(n, i + rows)))
        ta, tb = a.load(r, dtype=torch.float32), b.load(r, dtype=torch.float32)
        for p, name in enumerate(a.names):
            sums[p] += analysis.cosine(ta[name], tb[name]).sum().item()
    return [s / n for s in sums]


def _learner_shape(cfg) -> tuple:
    return cfg.learn.groups_per_block, cfg.search.target_space


def _learned(prep, cfg, stage_dir: Path, tag: str) -> torch.nn.Module:
    """The learner a finished stage saved (model-{tag}.pt), rebuilt on the CPU."""
    model = build_learner(prep, cfg).cpu()
    model.load_state_dict(torch.load(stage_dir / f"model-{tag}.pt", map_location="cpu", weights_only=True))
    return model


def _learn(prep, cfg, cache, rdir: Path, tag: str, start: torch.nn.Module | None = None) -> dict:
    diagnostics = Diagnostics.for_learner(prep, cache, cfg.learn)
    return stage(rdir / tag, cfg.to_dict(), cfg.device, lambda run: train_from_cache(
        prep, cfg, cache, run, tag=tag, diagnostics=diagnostics,
        learner=None if start is None else copy.deepcopy(start))[1])


def _round_record(r: int, search: dict, learned: dict, cosines: list[float] | None) -> dict:
    rec = {"round": r, "searched_ce_mean": search["searched_ce_mean"],
           "ce_per_point": [{"start": l["ce_start"], "end": l["ce_end"]} for l in search["points"]],
           "evaluations_per_image": search["evaluations_per_image_mean"], "search_flops": search["flops_total"],
           "target_cosine_to_previous": cosines}
    for kind, s in learned.items():
        rec[kind] = {k: v for k, v in s.items() if k == "test_accuracy" or k == "val_accuracy" or k == "train_flops"
                     or k.startswith(("probe_block", "cos_block"))}
    return rec


def later_config(cfg, n_rounds: int, carry: str, learners: tuple[str, ...], later) -> object:
    """Rounds >= 1's config, after checking the choice of learners; the CLI calls it before it
    creates the run directory, so a bad choice leaves nothing on disk."""
    if not learners or set(learners) - set(LEARNERS) or (n_rounds > 1 and carry not in learners):
        raise UserError(f"learners {list(learners)}: pick from {list(LEARNERS)}, including the carried '{carry}'")
    later_cfg = with_overrides(cfg, list(later), LATER_SECTIONS)
    if _learner_shape(later_cfg) != _learner_shape(cfg):
        raise UserError("later rounds keep learn.groups_per_block and search.target_space: their learners start "
                        "from (and search with) the previous round's network")
    return later_cfg


def check_round0(prep, cfg, cache_dir, learner_dir) -> None:
    """A finished `search` cache and `train` run may stand in for round 0 only if they are what round
    0 would have made: the cache is complete and this config's (fingerprint), and the learner was
    trained on that cache with this config's data, model, learn and seed settings."""
    from repsearch.search.pool import fingerprint_for
    from repsearch.store.cache import TargetCache
    cache_dir, learner_dir = Path(cache_dir), Path(learner_dir)
    if not TargetCache.open(cache_dir, fingerprint_for(cfg, prep)).manifest.get("complete"):
        raise UserError(f"--round0: the cache {cache_dir} is unfinished; resume its 'repsearch search' first")
    missing = [n for n in ("config.json", "summary.json", "model-learn.pt") if not (learner_dir / n).is_file()]
    if missing:
        raise UserError(f"--round0: {learner_dir} has no {missing[0]}; give the directory of a finished 'repsearch train'")
    trained, summary = records.config(learner_dir), records.summary(learner_dir)
    diff = config_difference(trained, cfg.to_dict(), LEARNER_SECTIONS)
    if diff:
        raise UserError(f"--round0: the learner in {learner_dir} was trained with another {diff} than this command's; "
                        "give the same --preset/--set/--seed it was trained with")
    used = summary.get("cache")
    if not (isinstance(used, str) and Path(used).is_dir() and Path(used).samefile(cache_dir)):
        raise UserError(f"--round0: the learner in {learner_dir} was trained on {used}, not on {cache_dir} (paths "
                        "are resolved from the directory 'repsearch train' ran in; run this command there)")


def adopt_round0(root: Path, cache_dir, learner_dir) -> None:
    """Round 0's stages from a checked cache and learner: the cache linked, not copied (it can be
    large); the learner's run directory copied whole, its model also under the stage's name, and
    moved into place at once, so an interrupted copy is never taken for a finished stage."""
    r0 = Path(root) / "round0"
    r0.mkdir(parents=True, exist_ok=True)
    link, stage = r0 / "cache", r0 / "learn-scratch"
    same = lambda name: records.read_json(stage / name) == records.read_json(Path(learner_dir) / name)
    linked = link.is_symlink() or link.exists()  # a dangling link is there too, and is another round 0
    if (linked and not (link.exists() and link.samefile(cache_dir))) or (stage.exists() and not same("summary.json")):
        raise UserError(f"--round0: {r0} already holds another round 0; choose another --out")
    if not linked:
        link.symlink_to(Path(cache_dir).resolve(), target_is_directory=True)
    if not stage.exists():
        tmp = r0 / ".learn-scratch.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(learner_dir, tmp)
        shutil.copyfile(tmp / "model-learn.pt", tmp / "model-learn-scratch.pt")
        tmp.rename(stage)


def rounds(prep, cfg, out_dir, n_rounds: int = 3, carry: str = "warm",
           learners: tuple[str, ...] = LEARNERS, later: list[str] = (), round0: tuple | None = None) -> dict:
    """Run (or resume) `n_rounds` rounds of search and learning; returns the per-round records.
    Round 0 trains from scratch, or is adopted from `round0` = (a `search` cache, a `train` run
    directory); later rounds train `learners` (the carried one among them)."""
    later_cfg = later_config(cfg, n_rounds, carry, learners, later)
    root = Path(out_dir)
    if round0 is not None:
        check_round0(prep, cfg, *round0)
        distributed.main_first(lambda: adopt_round0(root, *round0))
    sgd = stage(root / "sgd", cfg.to_dict(), cfg.device, lambda run: run_baseline(prep, cfg, run))
    records, network, previous = [], None, None
    for r in range(n_rounds):
        rdir, rcfg = root / f"round{r}", cfg if r == 0 else later_cfg
        cache, search = search_or_open(prep, rcfg, rdir / "cache", network=network)
        learned = {}
        if network is None or "scratch" in learners:
            learned["scratch"] = _learn(prep, rcfg, cache, rdir, "learn-scratch")
        if network is not None and "warm" in learners:
            learned["warm"] = _learn(prep, rcfg, cache, rdir, "learn-warm", start=network)
        cosines = None if previous is None else target_cosines(previous, cache)
        records.append(_round_record(r, search, learned, cosines))
        _add_cumulative(records, carry)
        kind = carry if carry in learned else "scratch"
        network, previous = _learned(prep, cfg, rdir / f"learn-{kind}", f"learn-{kind}"), cache
    result = {"carry": carry, "sgd_test_accuracy": sgd["test_accuracy"], "rounds": records,
              **_headline(records, sgd["test_accuracy"])}
    if distributed.is_main():  # under torchrun every rank has the records; one writes them
        atomic_write_json(root / "rounds.json", result)
        plot_rounds(result, root / "rounds.png")
    return result


def _add_cumulative(records: list[dict], carry: str) -> None:
    """Compute spent to reach the round's learners: every search so far, plus the learning along
    the carried chain (a warm learner has also had all the carried learners' training)."""
    rec, prev = records[-1], records[-2] if len(records) > 1 else None
    search = rec["search_flops"] + (prev["cumulative_search_flops"] if prev else 0)
    chain = 0 if prev is None else prev["carried_learn_flops"]
    rec["cumulative_search_flops"] = search
    for kind in ("scratch", "warm"):
        if kind in rec:
            rec[kind]["learn_flops_so_far"] = rec[kind]["train_flops"] + (chain if kind == "warm" else 0)
    rec["carried_learn_flops"] = rec[carry if carry in rec else "scratch"]["learn_flops_so_far"]


def _headline(records: list[dict], sgd: float) -> dict:
    best = lambda rec: max(rec[k]["test_accuracy"] for k in ("scratch", "warm") if k in rec)
    return {"round0_test_accuracy": best(records[0]), "last_round_test_accuracy": best(records[-1]),
            "gap_points_round0": 100 * (sgd - best(records[0])), "gap_points_last_round": 100 * (sgd - best(records[-1]))}


def accuracy_series(result: dict) -> dict[str, list[tuple[int, float]]]:
    """Test accuracy (%) per round for each kind of learner. With `carry = "warm"` the warm series
    starts at round 0's learner, the one round 1's warm learner started from: one line per chain."""
    recs = result["rounds"]
    series = {kind: [(r["round"], 100 * r[kind]["test_accuracy"]) for r in recs if kind in r] for kind in LEARNERS}
    if result["carry"] == "warm" and series["warm"]:
        series["warm"].insert(0, series["scratch"][0])
    return {kind: pts for kind, pts in series.items() if pts}


def plot_rounds(result: dict, path: Path) -> None:
    """Left: test accuracy per round (scratch, warm) against SGD. Right: searched CE per point."""
    from repsearch.report.plots import plt, save
    recs = result["rounds"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.6))
    for kind, pts in accuracy_series(result).items():
        borrowed = kind == "warm" and pts[0][0] == 0  # round 0's point is the scratch learner's: no square there
        ax.plot(*zip(*pts), marker={"scratch": "o", "warm": "s"}[kind], markevery=slice(int(borrowed), None),
                label=f"learned ({kind})")
    ax.axhline(100 * result["sgd_test_accuracy"], color="k", ls="--", label="SGD")
    ax.set(xlabel="round", ylabel="test accuracy (%)", title="accuracy per round")
    for p in range(len(recs[0]["ce_per_point"])):
        bx.plot([r["round"] for r in recs], [r["ce_per_point"][p]["end"] for r in recs], marker="o", label=f"point {p}")
    bx.set(xlabel="round", ylabel="searched CE (end)", yscale="log", title="searched CE per point")
    save(fig, path, integer_x=(ax, bx), legends=(ax, bx))
