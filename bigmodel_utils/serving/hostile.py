"""Hostile request bodies for a service's robustness check (chapter 11, reused in chapter 12).

``hostile_bodies(n, image)`` returns ``n`` bodies ``(family, bytes)`` drawn from families that each once made
the book's service answer HTTP 500 (a pixel of hundreds of digits, JSON nested thousands of levels deep, a lone
surrogate in a review), plus random mutations of a valid request, text that is not UTF-8 and random bytes.
A service passes when every one gets a 4xx or a 2xx and it still answers afterwards. This is a sample, not a
proof: ``tests/test_serving_fuzz.py`` generates thousands more, without bounds, with ``hypothesis``.
``hostile_generation_bodies(n)`` does the same for the generation endpoint (chapter 14).
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


def hostile_generation_bodies(n: int, prompt: str = "这家店", max_tokens: int = 8,
                              seed: int = 0) -> list[tuple[str, bytes]]:
    """``n`` hostile bodies for ``POST /models/<name>/generate`` (chapter 14), as (family, bytes): the families of
    :func:`hostile_bodies` around a valid ``{"prompt": prompt, "max_tokens": max_tokens, ...}``, streamed or not."""
    rng = random.Random(seed)
    valid = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8, "top_k": 5, "top_p": 0.9, "seed": 1,
             "stream": False}
    numbers = ["max_tokens", "temperature", "top_k", "top_p", "seed"]

    def request() -> dict:
        return {**valid, "stream": rng.random() < 0.5}

    def mutation() -> bytes:  # one random change: a value replaced, a field renamed, dropped or added, junk for a body
        changed = request()
        choice = rng.randrange(5)
        if choice == 0:
            changed[rng.choice(list(changed))] = rng.choice(JUNK)
        elif choice == 1:
            field = rng.choice(list(changed))
            changed[rng.choice([field.upper(), field + "s", field.replace("_", "-")])] = changed.pop(field)
        elif choice == 2:
            del changed[rng.choice(list(changed))]
        elif choice == 3:
            changed[rng.choice(["instances", "n", "stop", "model"])] = rng.choice(JUNK)
        else:
            return json.dumps(rng.choice(JUNK)).encode()
        return json.dumps(changed).encode()

    def deep() -> bytes:
        depth = rng.randrange(2_000, 30_000)
        return rng.choice([b"[" * depth, b'{"prompt": ' + b"[" * depth + b"]" * depth + b"}"])

    def huge() -> bytes:  # too big for a float: 10**309 and more, either sign
        changed = request()
        changed[rng.choice(numbers)] = rng.choice([1, -1]) * 10 ** rng.randrange(309, 4000)
        return json.dumps(changed).encode()

    def not_utf8() -> bytes:
        body = json.dumps(request(), ensure_ascii=False)
        return rng.choice([body.encode("utf-16"), body.encode()[:12] + b"\xff\xfe" + body.encode()[12:]])

    families = {
        "random mutation of a valid request": mutation,
        "a number of hundreds of digits": huge,
        "nested thousands of levels deep": deep,
        "a lone surrogate in a prompt":
            lambda: json.dumps({**request(), "prompt": rng.choice(["\ud800", "好\udfff书"])}).encode(),
        "not UTF-8": not_utf8,
        "random bytes": lambda: rng.randbytes(rng.randrange(1, 300)),
    }
    names = list(families)
    return [(family, families[family]()) for family in (rng.choice(names) for _ in range(n))]
