"""How much do two independent searches of the same images agree? (`learn.target_searches`)

Two target caches of the same images and network (`search.stream` 0 and 1, e.g. RUN/seedN/cache
and RUN/seedN/cache-stream1 of `repsearch run --set learn.target_searches=2`): per search point
the mean over images of the cosine between the two searches' targets, and the CE and accuracy of
each search's logits and of their mean distribution (what the learner's head is fitted to).

    python experiments/stream_agreement.py CACHE_A CACHE_B

Prints one JSON object.
"""
import argparse
import json
import math

import numpy as np
import torch
import torch.nn.functional as F

from repsearch.store.cache import TargetCache


def rows(cache: TargetCache, name: str) -> torch.Tensor:
    return torch.from_numpy(np.array(cache.arrays()[name], dtype=np.float32)).flatten(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("caches", nargs=2, help="two target caches of the same images")
    a, b = (TargetCache.open(c) for c in p.parse_args().caches)
    if not np.array_equal(a.arrays()["indices"], b.arrays()["indices"]):
        raise SystemExit("stream_agreement.py: the two caches hold different images")
    y = torch.from_numpy(np.array(a.arrays()["labels"]))
    out = {f"cosine_{n}": F.cosine_similarity(rows(a, n), rows(b, n)).mean().item() for n in a.names}
    la, lb = rows(a, "logits"), rows(b, "logits")
    mean = torch.logaddexp(la.log_softmax(1), lb.log_softmax(1)) - math.log(2)
    for tag, logits in (("a", la), ("b", lb), ("mean", mean)):
        out[f"ce_{tag}"] = F.cross_entropy(logits, y).item()
        out[f"accuracy_{tag}"] = (logits.argmax(1) == y).float().mean().item()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
