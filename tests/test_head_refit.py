"""`learn.head_refit_l2`: the head alone is refit on the final features to the searched logits;
the body is untouched, the objective never rises, and the summary says what changed."""
import pytest
import torch

from repsearch.config import resolve
from repsearch.learn.head_refit import last_stage_outputs, refit_head
from repsearch.learn.objectives import head_kl
from repsearch.learn.regression import build_learner, train_from_cache

from .test_search import TINY


class _Staged(torch.nn.Module):
    def __init__(self, d=6, k=3):
        super().__init__()
        self.stem = torch.nn.Identity()
        self.stages = torch.nn.ModuleList([torch.nn.Linear(d, d)])
        self.head = torch.nn.Linear(d, k)


def test_refit_solves_the_heads_kl_to_the_searched_logits_and_leaves_the_body_alone():
    torch.manual_seed(0)
    model = _Staged()
    body = {k: v.clone() for k, v in model.stages.state_dict().items()}
    feats = torch.randn(200, 6)
    searched = feats @ torch.randn(6, 3) * 3
    start = head_kl(model.head(feats), searched).item() / 200
    stats = refit_head(model, feats, searched, l2=0.0)
    assert stats["objective_before"] == pytest.approx(start, rel=1e-5)
    assert stats["objective_after"] < 0.05 * stats["objective_before"]
    assert all(torch.equal(v, model.stages.state_dict()[k]) for k, v in body.items())
    # a larger L2 penalty gives a smaller head
    a, b = _Staged(), _Staged()
    b.load_state_dict(a.state_dict())
    refit_head(a, feats, searched, l2=1e-4)
    refit_head(b, feats, searched, l2=1e-1)
    assert b.head.weight.norm() < a.head.weight.norm()


def test_a_refit_that_cannot_improve_keeps_the_trained_head():
    model = _Staged()
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    feats = torch.randn(50, 6)
    feats[3, 2] = float("nan")
    refit_head(model, feats, torch.randn(50, 3), l2=1e-2)
    assert all(torch.equal(v, model.head.state_dict()[k]) for k, v in head.items())


def test_last_stage_outputs_are_the_eval_mode_forwards_last_stage(tiny_cache):
    cfg, prep, _ = tiny_cache
    model = build_learner(prep, cfg)
    x = prep.images("val")[0][:30]
    model.eval()
    from repsearch.models.staged import stage_outputs
    with torch.no_grad():
        ref = stage_outputs(model, x)[-1]
    model.train()
    out = last_stage_outputs(model, x, batch_size=7)
    assert model.training and torch.allclose(out, ref, atol=1e-5)


def test_training_with_a_refit_changes_only_the_head_and_reports_it(tiny_cache):
    cfg, prep, cache = tiny_cache
    plain, s0 = train_from_cache(prep, cfg, cache)
    cfg_r = resolve("quickstart", [*TINY, "data.subset=200", "learn.epochs=2", "learn.batch_size=50",
                                   "learn.probe_images=150", "learn.head_refit_l2=0.01"])
    refit, s1 = train_from_cache(prep, cfg_r, cache)
    head = {f"head.{k}" for k in plain.head.state_dict()}
    a, b = plain.state_dict(), refit.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if k not in head)  # the body: bit for bit
    assert any(not torch.equal(a[k], b[k]) for k in head)
    r = s1["head_refit"]
    assert r["objective_after"] < r["objective_before"] and r["l2"] == 0.01
    assert r["val_accuracy_before"] == pytest.approx(s0["val_accuracy"], abs=1e-6)
    assert s1["val_accuracy"] == r["val_accuracy_after"] and "head_refit" not in s0
    with pytest.raises(Exception, match="head_refit_l2 must be >= 0"):
        resolve("quickstart", ["learn.head_refit_l2=-1"])


def _perfect_head_and_misleading_targets():
    """A head that classifies validation perfectly, and searched logits that point elsewhere."""
    torch.manual_seed(0)
    model = _Staged()
    with torch.no_grad():
        model.stages[0].weight.copy_(torch.eye(6))
        model.stages[0].bias.zero_()
        model.head.weight.copy_(torch.cat([torch.eye(3), torch.zeros(3, 3)], 1) * 5)
        model.head.bias.zero_()
    train_x, val_x = torch.randn(300, 6), torch.randn(200, 6)
    val_y = val_x[:, :3].argmax(1)
    return model, train_x, train_x[:, [1, 2, 0]] * 5, (val_x, val_y)


@pytest.mark.parametrize("select_on_val", [True, False])
def test_validation_undoes_a_refit_that_lowers_its_accuracy_only_when_it_selects(select_on_val):
    from repsearch.learn.head_refit import refit_learned_head, refit_val_accuracy
    model, train_x, searched, val = _perfect_head_and_misleading_targets()
    trained = {k: v.clone() for k, v in model.head.state_dict().items()}
    r = refit_learned_head(model, train_x, searched, val, l2=1e-3, select_on_val=select_on_val)
    assert r["val_accuracy_before"] == 1.0 and r["val_accuracy_after"] < 0.5
    unchanged = all(torch.equal(v, model.head.state_dict()[k]) for k, v in trained.items())
    assert r["kept"] is (not select_on_val) and unchanged is select_on_val
    assert refit_val_accuracy(r) == (1.0 if select_on_val else r["val_accuracy_after"])
