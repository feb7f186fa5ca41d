"""Is the learner's head what trails SGD? `learn.head_refit_l2` applied after the fact to a
finished run: the head of its search-based learner (or, as the control, of its SGD baseline) is
refit on the final eval-mode last-block features of all training images to the searched logits
(`repsearch.head_refit.refit_head`, the same function `train_from_cache` calls), for each L2
penalty, and validation and test accuracy are compared with the trained head's.

    python experiments/head_refit.py --run runs/scale3/cpu-fashion-30000 --preset cpu-fashion \
        [--set data.subset=10000] [--l2 1e-3,1e-2] [--model sgd] [--weights checkpoint]

Prints one JSON line per head; `--run` is a `repsearch run` directory (seedN/cache and the
seedN/learn-all-noaug or seedN/sgd-noaug model, N = the config's seed: `--set seed=N`), `--preset`/`--set` as that run was made.
A run whose preset refits the head saved the refit model; `--weights checkpoint` starts from the
learner's kept epoch in its training checkpoint instead (the head before the refit). The
body is never touched, so a refit learner's body still had no label gradient.
"""
import argparse
import json

import torch

from repsearch.config import resolve
from repsearch.data import prepare
from repsearch.learn.head_refit import last_stage_outputs, refit_head
from repsearch.learn.regression import build_learner
from repsearch.models import build_model
from repsearch.search.pool import fingerprint_for
from repsearch.store.cache import TargetCache


def load_model(a, cfg, prep):
    """The run's trained learner or SGD baseline, from its seed's directory."""
    if a.model == "sgd":
        model, _ = build_model(cfg, "baseline", prep.dataset.shape, prep.dataset.num_classes, depth=1,
                               init=cfg.baseline.init)
        model.load_state_dict(torch.load(f"{a.run}/seed{cfg.seed}/sgd-noaug/model-depth1.pt"))
    else:
        model = build_learner(prep, cfg)
        d = f"{a.run}/seed{cfg.seed}/learn-all-noaug"
        state = (torch.load(f"{d}/checkpoint-learn-all-noaug.pt", weights_only=False)["state"]["best_state"]
                 if a.weights == "checkpoint" else torch.load(f"{d}/model-learn-all-noaug.pt"))
        model.load_state_dict(state)
    return model.eval()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--preset", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--data-root", default="data")
    p.add_argument("--l2", default="1e-3,1e-2")
    p.add_argument("--model", choices=["learner", "sgd"], default="learner",
                   help="whose head: the search-based learner's, or the SGD baseline's (the control)")
    p.add_argument("--weights", choices=["model", "checkpoint"], default="model",
                   help="the learner's saved model (after any refit in the run) or its training checkpoint's "
                        "kept epoch (before it)")
    a = p.parse_args()
    cfg = resolve(a.preset, a.overrides, **{"data.root": a.data_root})
    prep = prepare(cfg)
    cache = TargetCache.open(f"{a.run}/seed{cfg.seed}/cache", fingerprint_for(cfg, prep))
    model = load_model(a, cfg, prep)
    images = {s: prep.images(s) for s in ("train", "val", "test")}
    feats = {s: last_stage_outputs(model, x) for s, (x, _) in images.items()}
    searched = cache.load(cache.rows_for(prep.split.train.numpy()), "cpu", torch.float32)["logits"]
    trained = {k: v.clone() for k, v in model.head.state_dict().items()}

    @torch.no_grad()
    def report(name, extra=None):
        acc = {s: (model.head(feats[s]).argmax(1) == y).float().mean().item() for s, (_, y) in images.items()}
        print(json.dumps({"model": a.model, "head": name, **acc, **(extra or {})}), flush=True)

    report("trained")
    for l2 in map(float, a.l2.split(",")):
        model.head.load_state_dict(trained)
        report(f"refit, l2={l2:g}", refit_head(model, feats["train"], searched, l2))


if __name__ == "__main__":
    main()
