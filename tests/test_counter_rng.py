"""The counter-based per-image stream (search.rng = "counter"): an image's numbers depend on
(seed, image, position) only, draws have the right distributions, and a search with it gives the
same result whatever the chunking."""
import numpy as np
import pytest
import torch

from repsearch.search.counter_rng import CounterRNG, splitmix64
from repsearch.search.noise import PerImageRNG


def test_an_images_numbers_do_not_depend_on_its_company_or_padding():
    a = CounterRNG(3, [5, 9, 11]).randn((4, 2))
    b = CounterRNG(3, [11, 5], pad=2).randn((4, 2))
    assert torch.equal(a[0], b[1]) and torch.equal(a[2], b[0])
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[0], CounterRNG(4, [5]).randn((4, 2))[0])


def test_a_subset_advances_its_images_streams_and_padding_advances_none():
    """Drawing through subset(rows) moves exactly those images on, as the generator RNG does."""
    for cls in (CounterRNG, PerImageRNG):
        full = cls(0, [1, 2, 3])
        full.randn((3,))
        sub = full.subset(torch.tensor([0, 2]), pad=3)
        first = sub.randn((5,))
        assert first.shape == (5, 5)
        after = full.randn((5,))
        ref = cls(0, [1, 2, 3])
        ref.randn((3,))
        skipped = ref.randn((5,))
        assert torch.equal(after[1], skipped[1])  # image 2 did not draw in the subset
        assert torch.equal(first[0], skipped[0]) and torch.equal(first[1], skipped[2])
        assert torch.equal(after[0], ref.randn((5,))[0])  # image 1 moved on by one draw


def test_distributions():
    rng = CounterRNG(0, range(64))
    x = rng.randn((4096,))
    assert abs(x.mean().item()) < 0.01 and abs(x.std().item() - 1) < 0.01
    assert abs(((x.flatten() > 1.96).float().mean() - 0.025).item()) < 0.003  # the tail, not only two moments
    nxt = rng.randn((4096,))
    assert abs(torch.corrcoef(torch.stack([x.flatten(), nxt.flatten()]))[0, 1].item()) < 0.01
    k = rng.randint(7, (10000,))
    counts = torch.bincount(k.flatten(), minlength=7).float() / k.numel()
    assert k.min() == 0 and k.max() == 6 and (counts - 1 / 7).abs().max() < 0.005
    big = rng.randint(1 << 24, (1000,))
    assert big.max() < 1 << 24 and big.float().mean().item() == pytest.approx(2 ** 23, rel=0.01)


def test_splitmix64_matches_the_reference_values():
    """splitmix64 in int64 tensor arithmetic equals the reference (unsigned, modulo 2^64)."""
    def ref(z):
        m = 2 ** 64
        z = (z + 0x9E3779B97F4A7C15) % m
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % m
        return z ^ (z >> 31)
    xs = [0, 1, 12345, 2 ** 40 + 7, 2 ** 63 - 1]
    got = splitmix64(torch.tensor(xs, dtype=torch.int64))
    assert [int(v) % 2 ** 64 for v in got] == [ref(x) for x in xs]


def test_a_counter_search_is_the_same_whatever_the_chunking(tmp_path):
    from repsearch.data import prepare
    from repsearch.search.pool import run_search

    from .test_search import tiny
    caches = []
    for chunk in (4, 7):
        cfg = tiny("data.subset=20", "search.rng=counter", f"engine.chunk_images={chunk}",
                   "search.target_ce=[0,0,0,0.5]", "search.extra_generations=[0,0,0,2]")
        cache, _ = run_search(prepare(cfg), cfg, tmp_path / f"c{chunk}")
        caches.append(cache.arrays())
    for name in ("block0", "logits", "ce", "evals"):
        assert np.array_equal(caches[0][name], caches[1][name]), name
    generator = tiny("data.subset=20", "engine.chunk_images=4")
    other, _ = run_search(prepare(generator), generator, tmp_path / "g")
    assert not np.array_equal(other.arrays()["block0"], caches[0]["block0"])  # another stream, another search
