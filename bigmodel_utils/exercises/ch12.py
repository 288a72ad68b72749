"""Checkers of chapter 12's exercises."""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_utils.exercises import Wrong, exercise
from bigmodel_utils.exercises._checks import returned


@exercise("12.1", hint='Federated averaging weights each client by its number of examples; average layer by layer.', takes_function=True)
def _ex_12_1(answer: Any) -> None:
    from bigmodel_utils.federated import average_weights

    rng = np.random.default_rng()  # fresh inputs on every check
    sets = [[rng.normal(size=(3, 2)), rng.normal(size=2)] for _ in range(4)]
    for sizes in ([10, 10, 10, 10], [100, 1, 50, 7]):
        got = returned(answer(sets, sizes), "fedavg")
        expected = average_weights(sets, sizes)
        if len(got) != len(expected) or any(np.shape(g) != e.shape for g, e in zip(got, expected)):
            raise Wrong("return one array per layer weight, each with the shape of the inputs' arrays.")
        if not all(np.allclose(g, e) for g, e in zip(got, expected)):
            if all(np.allclose(g, sum(s[i] for s in sets) / 4) for i, g in enumerate(got)):
                raise Wrong("that is the plain mean: weight each client by its number of examples.")
            raise Wrong(f"with sizes {sizes} the average differs: multiply each by n / sum(sizes), then add.")


@exercise("12.2", hint='hashlib computes SHA-256 incrementally: feed the file in blocks so that a large file never sits in memory at once.', takes_function=True)
def _ex_12_2(answer: Any) -> None:
    import os
    import tempfile

    from bigmodel_utils.data import sha256_file

    with tempfile.TemporaryDirectory() as folder:
        for size in (0, 10, 3 * (1 << 20) + 5):
            path = os.path.join(folder, f"f{size}.bin")
            with open(path, "wb") as f:
                f.write(os.urandom(size))
            got = returned(answer(path), "sha256_of")
            if not isinstance(got, str) or got != sha256_file(path):
                raise Wrong(f"for a file of {size} bytes the digest differs: return h.hexdigest(), the hex string.")


@exercise("12.3", hint='A fixed window starts at the first request that falls outside the current one; count what the window has admitted.', takes_function=True)
def _ex_12_3(answer: Any) -> None:

    def reference(times, quota, window):  # the rule of ApiKeys.admit, with the first window at the first request
        start, used, out = None, 0, []
        for t in times:
            if start is None or t >= start + window:
                start, used = t, 0
            out.append(used < quota)
            used += out[-1]
        return out

    cases = [([0, 1, 2, 3], 2, 10), ([0, 1, 2, 10, 11, 12, 25], 2, 10), ([3, 9.99, 13, 13, 13], 1, 10), ([5], 1, 1),
             ([0, 0, 0, 0, 100], 3, 60)]
    for times, quota, window in cases:
        got = returned(answer(list(times), quota, window), "admitted")
        expected = reference(times, quota, window)
        if [bool(g) for g in got] != expected:
            raise Wrong(f"for requests at {times}, quota {quota} per {window} s, expected {expected}, got {list(got)}.")
