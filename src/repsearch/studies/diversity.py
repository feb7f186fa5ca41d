"""Paper Figure 3, diversity: do independent searches on the same image find the same
representation or different ones? N_eff of the solutions found by k runs says how many distinct
ones there are."""
from __future__ import annotations

from pathlib import Path

import torch

from repsearch.errors import UserError
from repsearch.learn.measures import n_eff_batched
from repsearch.search.pool import open_search

from .scaling import sample_images, search_rows


@torch.no_grad()
def solution_logits(problem, point: int, solutions: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """The logits a search point's solutions give through the rest of the search network."""
    dev = next(problem.model.parameters()).device
    return torch.cat([problem.logits_from(point, solutions[i:i + batch].to(dev)).float().cpu()
                      for i in range(0, len(solutions), batch)])


def p_correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax probability of the true class: (B, K), (B,) -> (B,)."""
    return logits.float().softmax(1).gather(1, labels[:, None]).squeeze(1)


FILTERS = ("final", "block")


def diversity(prep, cfg, n_images: int = 32, runs: int = 8, out_dir=None, *, seed_stride: int = 1000,
              keep: str = "final") -> dict:
    """Figure 3: N_eff of the solutions that `runs` independent full searches find per image.

    Run r uses seed cfg.seed + seed_stride * r (0 makes every run identical: N_eff = 1). Which runs'
    solutions count, per image: `keep="final"` (the paper's: "the top candidate from each run,
    provided its predicted probability for the correct class exceeds 0.5": the run's searched
    logits give p(correct) > 0.5, and then its solution at every block counts) or `"block"` (a
    block's solution counts when it alone, forwarded through the rest of the search network,
    gives p(correct) > 0.5). N_eff over the first k runs' kept solutions is averaged over the
    images with at least one kept, for k = 1..runs."""
    if runs < 1:
        raise UserError(f"diversity needs runs >= 1; got {runs}")
    if keep not in FILTERS:
        raise UserError(f"diversity's filter is one of {', '.join(FILTERS)}; got '{keep}'")
    searcher = open_search(cfg, prep)
    problem = searcher.problem
    rows = sample_images(prep, n_images, cfg.seed)
    labels = prep.dataset.train_y[rows]
    per_run, ok, ce = [], [], []
    for r in range(runs):  # runs outermost: each seed's noise bank is drawn once
        found = search_rows(searcher, prep, rows, seed=cfg.seed + seed_stride * r)
        reps, c = found.reps, found.ce
        per_run.append(reps[:-1])
        by_block = torch.stack([p_correct(solution_logits(problem, point, sol), labels) > 0.5
                                for point, sol in enumerate(reps)], 1)  # (N, points): each point's own
        ok.append(by_block if keep == "block" else by_block[:, -1:].expand_as(by_block))
        ce.append(c)
    ok = torch.stack(ok, 1)  # (N, R, points)
    first_k = torch.arange(runs)[None, :]
    result = {"images": int(len(rows)), "runs": runs, "keep": keep,
              "seeds": [cfg.seed + seed_stride * r for r in range(runs)],
              "p_correct_fraction": [ok[:, r, -1].float().mean().item() for r in range(runs)],
              "p_correct_fraction_per_block": {b: [ok[:, r, b].float().mean().item() for r in range(runs)]
                                               for b in range(problem.num_points - 1)},
              "mean_best_ce": [c.mean().item() for c in ce], "blocks": {}}
    for block in range(problem.num_points - 1):
        sols = torch.stack([reps[block] for reps in per_run], 1)  # (N, R, *S)
        curve = []
        for k in range(1, runs + 1):
            vals = n_eff_batched(sols, ok[:, :, block] & (first_k < k))
            has = ~vals.isnan()
            curve.append({"runs": k, "n_eff": vals[has].mean().item() if bool(has.any()) else None,
                          "images": int(has.sum())})
        result["blocks"][block] = curve

    if out_dir is not None:
        from repsearch.report.plots import plot_xy
        from repsearch.store.atomic import atomic_write_json
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "diversity.json", result)
        series = {}
        for b, curve in result["blocks"].items():
            pts = [(c["runs"], c["n_eff"]) for c in curve if c["n_eff"] is not None]
            series[f"block {b}"] = ([p[0] for p in pts], [p[1] for p in pts])
        series["n_eff = runs"] = (list(range(1, runs + 1)), list(range(1, runs + 1)))
        plot_xy(series, "independent runs", "N_eff of correct solutions", out / "diversity.png",
                title=f"diversity ({result['images']} images)")
    return result
