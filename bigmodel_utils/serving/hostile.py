"""Hostile request bodies for a service's robustness check (chapter 11, reused in chapter 12).

``hostile_bodies(n, image)`` returns ``n`` bodies ``(family, bytes)`` drawn from families that each once made
the book's service answer HTTP 500 (a pixel of hundreds of digits, JSON nested thousands of levels deep, a lone
surrogate in a review), plus random mutations of a valid request, text that is not UTF-8 and random bytes.
A service passes when every one gets a 4xx or a 2xx and it still answers afterwards. This is a sample, not a
proof: ``tests/test_serving_fuzz.py`` generates thousands more, without bounds, with ``hypothesis``.
"""

from __future__ import annotations

import json
import random

JUNK = [None, True, "x", -1, 1e308, float("nan"), [], {}, [[1]], "好" * 10, 10**30, 10**400]


def hostile_bodies(n: int, image: list[list[float]], seed: int = 0) -> list[tuple[str, bytes]]:
    """``n`` hostile bodies for a service whose valid request is ``{"instances": [image]}``, as (family, bytes)."""
    rng = random.Random(seed)
    valid = json.dumps({"instances": [image]})

    def mutation() -> bytes:  # one random change in a valid request: a value replaced, a list cut or grown, a key renamed
        changed = [list(row) for row in image]
        choice = rng.randrange(6)
        if choice == 0:
            changed[rng.randrange(len(changed))][rng.randrange(len(changed[0]))] = rng.choice(JUNK)
        elif choice == 1:
            changed = changed[: rng.randrange(len(changed))]
        elif choice == 2:
            changed[rng.randrange(len(changed))].append(rng.random())
        elif choice == 3:
            return json.dumps({rng.choice(["instance", "Instances", "data"]): [changed]}).encode()
        elif choice == 4:
            return json.dumps({"instances": rng.choice(JUNK)}).encode()
        else:
            return json.dumps(rng.choice(JUNK)).encode()
        return json.dumps({"instances": [changed]}).encode()

    def deep() -> bytes:
        depth = rng.randrange(2_000, 30_000)
        return rng.choice([b"[" * depth, b'{"instances": ' + b"[" * depth + b"]" * depth + b"}"])

    def huge() -> bytes:  # too big for a float: 10**309 and more
        changed = [list(row) for row in image]
        changed[rng.randrange(len(changed))][rng.randrange(len(changed[0]))] = 10 ** rng.randrange(309, 4000)
        return json.dumps({"instances": [changed]}).encode()

    families = {
        "random mutation of a valid request": mutation,
        "a number of hundreds of digits": huge,
        "nested thousands of levels deep": deep,
        "a lone surrogate in a text": lambda: json.dumps({"instances": [rng.choice(["\ud800", "好\udfff书"])]}).encode(),
        "not UTF-8": lambda: rng.choice([valid.encode("utf-16"), valid.encode()[:20] + b"\xff\xfe" + valid.encode()[20:]]),
        "random bytes": lambda: rng.randbytes(rng.randrange(1, 300)),
    }
    names = list(families)
    return [(family, families[family]()) for family in (rng.choice(names) for _ in range(n))]
