import json
import subprocess
import sys

import pytest
import torch

from repsearch.config import resolve
from repsearch.learn import measures as analysis
from repsearch.learn.diagnostics import Diagnostics
from repsearch.learn.objectives import class_informative_weights, head_kl, regression_loss
from repsearch.learn.regression import build_learner, fit_to_targets, make_loss_fn, train_from_cache
from repsearch.models.staged import stage_outputs

from .test_search import TINY


def test_regression_loss_matches_hand_computation():
    outs = [torch.tensor([[[[1.0, 2.0]]], [[[0.0, 0.0]]]]), torch.tensor([[3.0], [1.0]])]
    tgts = [torch.tensor([[[[0.0, 0.0]]], [[[1.0, 1.0]]]]), torch.tensor([[1.0], [1.0]])]
    loss, parts = regression_loss(outs, tgts, [0, 1])
    # image 0: block0 (1+4)/2 = 2.5, block1 4 -> mean 3.25; image 1: block0 1, block1 0 -> 0.5
    assert loss.item() == pytest.approx(3.25 + 0.5)
    assert parts["mse_block0"] == pytest.approx((2.5 + 1) / 2) and parts["mse_block1"] == pytest.approx(2.0)
    loss0, _ = regression_loss(outs, tgts, [1])
    assert loss0.item() == pytest.approx(4.0)


def test_regression_loss_sum_is_the_papers_equation():
    """reduction="sum": per image, squared L2 norms over elements, divided by the number of stages
    (L-1) whichever are supervised: Skip block 0 divides by 2 stages here, not 1."""
    outs = [torch.tensor([[[[1.0, 2.0]]], [[[0.0, 0.0]]]]), torch.tensor([[3.0], [1.0]])]
    tgts = [torch.tensor([[[[0.0, 0.0]]], [[[1.0, 1.0]]]]), torch.tensor([[1.0], [1.0]])]
    loss, parts = regression_loss(outs, tgts, [0, 1], reduction="sum")
    # image 0: block0 1+4 = 5, block1 4 -> 9/2; image 1: block0 2, block1 0 -> 2/2
    assert loss.item() == pytest.approx(4.5 + 1.0)
    assert parts["mse_block0"] == pytest.approx((2.5 + 1) / 2)  # logged per element either way
    skip0, _ = regression_loss(outs, tgts, [1], reduction="sum")
    assert skip0.item() == pytest.approx(4.0 / 2)


def test_head_kl_matches_hand_computation():
    logits = torch.tensor([[0.0, 0.0]])
    searched = torch.tensor([[1.0, 0.0]])
    p = torch.softmax(searched, 1)[0]
    expected = (p * (p.log() - torch.tensor([0.5, 0.5]).log())).sum()
    assert head_kl(logits, searched).item() == pytest.approx(expected.item(), rel=1e-5)


def test_class_weights_favour_class_informative_elements():
    labels = torch.arange(200) % 2
    informative = labels.float()[:, None] * 2 + 0.1 * torch.randn(200, 1)
    noise = torch.randn(200, 1)
    w = class_informative_weights(torch.cat([informative, noise], 1), labels, 2)
    assert w[0] > 10 * w[1] and w.mean().item() == pytest.approx(1.0)


def _batch(cfg, prep, cache, n=16):
    x, y = prep.images("train")
    rows = cache.rows_for(prep.split.train.numpy())
    targets = cache.load(rows, "cpu", torch.float32)
    idx = torch.arange(n)
    return targets, idx, x[:n], y[:n]


def test_no_label_or_kl_gradient_reaches_the_body(tiny_cache):
    cfg, prep, cache = tiny_cache
    model = build_learner(prep, cfg)
    targets, idx, x, y = _batch(cfg, prep, cache)
    # KL alone: only the head gets gradients
    loss_fn = make_loss_fn(targets, [], cfg.learn)
    loss, _ = loss_fn(model, idx, x, y)
    loss.backward()
    body = [p for n, p in model.named_parameters() if not n.startswith("head") and p.requires_grad]
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in body)
    assert model.head.linear.weight.grad.abs().sum() > 0
    # full loss: the body's gradient equals that of the regression term alone
    model.zero_grad()
    full, _ = make_loss_fn(targets, [0, 1, 2], cfg.learn)(model, idx, x, y)
    full.backward()
    g_full = [p.grad.clone() for p in body]
    model.zero_grad()
    outs = stage_outputs(model, x)
    reg, _ = regression_loss(outs, [targets[f"block{l}"][idx] for l in range(3)], [0, 1, 2])
    reg.backward()
    for a, p in zip(g_full, body):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_channels_last_learner_meets_targets_in_its_layout_with_the_same_loss(tiny_cache):
    """learn.memory_format=channels_last converts the 4-d targets once (no per-step strided copy
    in the loss) and leaves the loss and the body's gradients as they were, within rounding."""
    from repsearch.learn.runtime import in_layout, prepare_model_for_device
    cfg, prep, cache = tiny_cache
    targets, idx, x, y = _batch(cfg, prep, cache)
    cl_targets = in_layout(targets, "cpu", "channels_last")
    assert in_layout(targets, "cpu", "auto") is targets
    four_d = [k for k in targets if targets[k].dim() == 4]
    assert four_d and all(cl_targets[k].is_contiguous(memory_format=torch.channels_last) for k in four_d)
    assert any(not cl_targets[k].is_contiguous() for k in four_d)  # where H*W > 1 the layouts differ
    assert torch.equal(cl_targets["logits"], targets["logits"])
    grads, losses = [], []
    for fmt, tg in (("contiguous", targets), ("channels_last", cl_targets)):
        model = prepare_model_for_device(build_learner(prep, cfg), "cpu", fmt)
        loss, _ = make_loss_fn(tg, [0, 1, 2], cfg.learn)(model, idx, x, y)
        loss.backward()
        losses.append(loss.item())
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads):  # the sums run in another order: equal to float rounding, relative to the norm
        assert (a - b).norm() <= 1e-4 * a.norm() + 1e-6


def test_skip_block0_leaves_block0_unsupervised_but_trained(tiny_cache):
    cfg, prep, cache = tiny_cache
    model = build_learner(prep, cfg)
    targets, idx, x, y = _batch(cfg, prep, cache)
    loss, parts = make_loss_fn(targets, [1, 2], cfg.learn)(model, idx, x, y)
    assert "mse_block0" not in parts and "mse_block1" in parts
    loss.backward()
    block0 = model.stages[0][0][0].conv1.weight
    assert block0.grad is not None and block0.grad.abs().sum() > 0


def test_class_mean_learner_gets_the_class_mean_cosine(tiny_cache):
    cfg, prep, cache = tiny_cache
    diag = Diagnostics(prep, cache, probe_images=150)

    class Lookup(torch.nn.Module):
        """A stage that outputs the class-mean training target of each image's (true) class."""

        def __init__(self, table):
            super().__init__()
            self.table = table

        def forward(self, h):
            return self.table[labels_for[h.shape[0]]]

    class ClassMeanLearner(torch.nn.Module):  # a staged model
        def __init__(self):
            super().__init__()
            self.stem, self.head = torch.nn.Identity(), torch.nn.Identity()
            self.stages = torch.nn.ModuleList(
                Lookup(analysis.class_mean_targets(diag_t[f"block{l}"], diag.probe_y, 10)) for l in range(3))

    diag_t = cache.load(cache.rows_for(prep.split.train[:150].numpy()), "cpu", torch.float32)
    labels_for = {len(diag.val_y): diag.val_y}
    cos = diag.cosines(ClassMeanLearner())
    for l in range(3):
        assert cos[f"cos_block{l}"] == pytest.approx(diag.baselines[l]["class_mean"], abs=1e-5)


def test_epoch_diagnostics_reuse_the_validation_pass_and_measure_the_same(tiny_cache):
    """The training loop's validation pass hands its stage outputs to the diagnostics hook: one
    forward over the validation images per epoch instead of two, with the same measurements.
    Outputs of other images are never taken for the validation images'."""
    from repsearch.learn.runtime import evaluate
    cfg, prep, cache = tiny_cache
    diag = Diagnostics(prep, cache, probe_images=150)
    model = build_learner(prep, cfg)
    val_x, val_y = prep.images("val")
    ev = evaluate(model, val_x, val_y, keep_outputs=True)
    assert ev["accuracy"] == evaluate(model, val_x, val_y)["accuracy"]
    fresh = diag.hook(model, 1)
    reused = diag.hook(model, 1, val_outputs=(val_x.clone(), ev["outputs"]))
    assert fresh.keys() == reused.keys()
    for k in fresh:
        assert reused[k] == pytest.approx(fresh[k], rel=1e-5, abs=1e-6), k
    other = [torch.zeros_like(o) for o in ev["outputs"]]
    assert diag.hook(model, 1, val_outputs=(val_x + 1, other)) == pytest.approx(fresh, rel=1e-5)

    forwarded = []
    model.stem.register_forward_hook(lambda m, inp, out: forwarded.append(len(out)) if not m.training else None)
    c = resolve("quickstart", [*TINY, "data.subset=200", "learn.epochs=2", "learn.batch_size=50",
                               "learn.probe_images=150", "learn.patience=0"])
    targets = cache.load(cache.rows_for(prep.split.train.numpy()), "cpu", torch.float32)
    fit_to_targets(model, *prep.images("train"), targets, c.learn, val=(val_x, val_y), hooks=(diag,))
    assert sum(forwarded) == 2 * len(val_y)  # eval-mode forwards: the validation images once per epoch


def test_final_measurements_forward_the_validation_images_once_and_the_control_once_per_init(tiny_cache):
    """The trained model's cosines and probes share one validation forward, and the untrained
    control is computed once per distinct initial weights (every variant of a seed shares them)."""
    cfg, prep, cache = tiny_cache
    diag = Diagnostics(prep, cache, probe_images=150)
    model = build_learner(prep, cfg)
    val_y = prep.images("val")[1]
    forwarded = []
    model.stem.register_forward_hook(lambda m, inp, out: forwarded.append(len(out)))
    final = diag.final(model)
    assert final == pytest.approx({**diag.cosines(model), **diag.probes(model)}, rel=1e-5)
    assert forwarded[0] == len(val_y) and sum(forwarded) == 3 * len(val_y) + 2 * 150

    calls = []
    probes = diag.probes
    diag.probes = lambda m, *a: calls.append(1) or probes(m, *a)
    control = diag.control(build_learner(prep, cfg))
    assert control == {f"untrained_{k}": v for k, v in probes(build_learner(prep, cfg)).items()}
    assert diag.control(build_learner(prep, cfg)) == control and len(calls) == 1
    other = build_learner(prep, cfg)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    diag.control(other)
    assert len(calls) == 2


def test_resumed_training_gives_the_same_weights(tiny_cache, tmp_path):
    from repsearch.store.rundir import RunDir
    cfg, prep, cache = tiny_cache
    cfg1 = resolve("quickstart", [*TINY, "data.subset=200", "learn.epochs=3", "learn.batch_size=50",
                                  "learn.probe_images=150"])
    ref, _ = train_from_cache(prep, cfg1, cache, RunDir(tmp_path / "ref", {}, "cpu"))
    # an interrupted run: the first epoch's checkpoint, then the same command again
    run = RunDir(tmp_path / "resumed", {}, "cpu")

    class Stop(Exception):
        pass

    diag = Diagnostics(prep, cache, probe_images=150)
    orig_hook = diag.hook
    # save happens after the hook, so stop at epoch 2's hook: epoch 1 is checkpointed
    diag.hook = lambda model, e, **kw: (_ for _ in ()).throw(Stop()) if e == 2 else orig_hook(model, e, **kw)
    with pytest.raises(Stop):
        train_from_cache(prep, cfg1, cache, run, diagnostics=diag)
    assert (tmp_path / "resumed" / "checkpoint-learn.pt").exists()
    resumed, _ = train_from_cache(prep, cfg1, cache, run)
    for (n, a), b in zip(ref.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), n


@pytest.mark.subprocess
def test_end_to_end_run_on_digits_beats_chance_by_far(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "repsearch", "run", "--preset", "quickstart", "--no-progress",
                        "--set", "search.generations=[15,8,8,3]", "--set", "learn.epochs=10",
                        "--set", "baseline.epochs=10", "--set", "data.subset=600", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["search_test_accuracy"] > 0.6 and s["sgd_test_accuracy"] > 0.9, s
    assert (out / "results.md").exists() and "Search-based (All layers)" in (out / "results.md").read_text()
    metrics = [json.loads(x) for x in (out / "seed0" / "sgd-noaug" / "metrics.jsonl").read_text().splitlines()]
    assert "cos_block0" in metrics[0]  # SGD runs record cosine to the searched targets too
    for stage in ("sgd-noaug", "learn-all-noaug"):  # Figures 5-7: from epoch 0 (untrained), every block
        records = [json.loads(x) for x in (out / "seed0" / stage / "metrics.jsonl").read_text().splitlines()]
        first = records[0]
        assert first["epoch"] == 0 and "train_loss" not in first
        assert {f"{k}_block{b}" for k in ("cos", "hcoll_within", "hcoll_between") for b in range(3)} <= first.keys()
        assert [r["epoch"] for r in records if "epoch" in r and "cos_block0" in r][:3] == [0, 1, 2]
    # a second call reuses every stage
    r2 = subprocess.run([sys.executable, "-m", "repsearch", "run", "--preset", "quickstart", "--no-progress",
                         "--set", "search.generations=[15,8,8,3]", "--set", "learn.epochs=10",
                         "--set", "baseline.epochs=10", "--set", "data.subset=600", "--out", str(out)], capture_output=True, text=True)
    assert r2.returncode == 0
    assert json.loads((out / "summary.json").read_text())["search_test_accuracy"] == s["search_test_accuracy"]


def test_augmented_stages_record_augmentation_in_their_config(tmp_path):
    """Each stage's config.json says how it was trained: the augmented learner records
    learn.augment = true (it recorded the preset's false while training with augmentation)."""
    from repsearch.studies.pipeline import run_pipeline
    cfg = resolve("quickstart", [*TINY, "data.subset=60", "learn.epochs=1", "baseline.epochs=1",
                                 "learn.probe_images=40", "learn.batch_size=20", "baseline.batch_size=20",
                                 "run.augment_variants=[true]", "data.allow_digit_flips=true"])
    run_pipeline(cfg, tmp_path)
    for stage in ("learn-all-aug", "sgd-aug"):
        recorded = json.loads((tmp_path / "seed0" / stage / "config.json").read_text())
        assert recorded["learn"]["augment"] is True and recorded["baseline"]["augment"] is True, stage
