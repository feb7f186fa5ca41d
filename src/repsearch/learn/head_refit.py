"""Refit the learner's head on its final features (`learn.head_refit_l2`; not in the paper).

During learning the head chases a moving body: it sees train-mode features of a body that is still
changing, and training stops (or is selected by validation) before it has caught up. With the body
fixed, the head's own objective (KL to the searched logits, the same targets it learned from) is a
small convex problem on the last stage's eval-mode outputs; solving it with an L2 penalty gave the
search-based learner 0.35-0.88 test points on Fashion-MNIST at 1,000-30,000 images and nothing to
the SGD baseline's head (docs/learnability.md, "Closing the Fashion-MNIST gap"). The body is never
touched, so no label gradient reaches it; any staged model's head works (its parameters are what
L-BFGS moves, whatever the head's layers)."""
from __future__ import annotations

import torch

from . import measures as analysis
from .objectives import head_kl


def last_stage_outputs(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The last stage's eval-mode output for every input (the other stages are dropped batch by
    batch: at 55,200 MNIST images block 0 alone would be 2.8 GB)."""
    return analysis.block_outputs(model, x, batch_size, stages=[-1])[0].float()


def refit_head(model, features: torch.Tensor, searched_logits: torch.Tensor, l2: float, steps: int = 300) -> dict:
    """Set the head's parameters to argmin mean KL(softmax(searched) || softmax(head(features)))
    + l2 * sum of squared parameters (full-batch L-BFGS from the trained head). Returns the
    objective before and after; the head is left unchanged if L-BFGS fails or diverges."""
    head = model.head
    was = head.training
    head.eval()  # a head with BatchNorm keeps its running statistics fixed
    params = [p for p in head.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    n = len(features)
    opt = torch.optim.LBFGS(params, lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def objective():
        return head_kl(head(features), searched_logits) / n + l2 * sum(p.pow(2).sum() for p in params)

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with torch.enable_grad():
        before = objective().item()
        try:
            opt.step(closure)
            after = objective().item()
        except RuntimeError:  # line-search overflow on degenerate features
            after = float("nan")
    if not (after <= before):  # NaN or worse: keep the trained head
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
        after = before
    for p in params:
        p.grad = None
    head.train(was)
    return {"objective_before": before, "objective_after": after}


def refit_learned_head(model, train_x: torch.Tensor, searched_logits: torch.Tensor, val, l2: float,
                       select_on_val: bool = False) -> dict:
    """`refit_head` on every training image's final features; returns the objective and the
    validation accuracy before and after. Under torchrun the ranks first take rank 0's weights
    (their BatchNorm statistics differ by each rank's last batch), share the feature forwards
    (each rank computes every world()-th slice), then all solve the same small problem.

    `select_on_val`: validation chooses between the trained and the refit head, as it chooses
    the epoch (the same rule: enough validation images to resolve them), and a refit that lowers
    validation accuracy is undone. At 60,000 MNIST images the refit fitted the near one-hot
    searched logits closer and cost 11 of 4,800 validation images (docs/learnability.md)."""
    from repsearch.store import distributed
    model.load_state_dict(distributed.broadcast(model.state_dict()))
    (val_x, val_y), parts = val, distributed.world()
    slices = [(t, s) for t in (train_x, val_x) for s in _slices(len(t), parts)]
    outs = distributed.shared([lambda t=t, s=s: last_stage_outputs(model, t[s]) for t, s in slices])
    train_f, val_f = torch.cat(outs[:parts]), torch.cat(outs[parts:])

    @torch.no_grad()
    def val_accuracy():
        model.head.eval()
        return (model.head(val_f).argmax(1) == val_y).float().mean().item() if len(val_y) else float("nan")

    before, trained = val_accuracy(), {k: v.clone() for k, v in model.head.state_dict().items()}
    stats = refit_head(model, train_f, searched_logits, l2)
    after = val_accuracy()
    kept = not (select_on_val and after < before)
    if not kept:
        model.head.load_state_dict(trained)
    return {**stats, "val_accuracy_before": before, "val_accuracy_after": after, "kept": kept, "l2": l2}


def refit_val_accuracy(refit: dict) -> float:
    """The validation accuracy of the head the model ends with."""
    return refit["val_accuracy_after" if refit["kept"] else "val_accuracy_before"]


def _slices(n: int, parts: int) -> list[slice]:
    step = -(-n // parts)
    return [slice(i, min(n, i + step)) for i in range(0, parts * step, step)]
