"""What the generation service serves: chapter 13's GPT, loaded once, and the validation of its requests (chapter 14).

``POST /models/<name>/generate`` (:func:`~bigmodel_utils.serving.app.create_app`) continues a prompt with the
small GPT. A request is validated here (:func:`validate_generation`) before anything is generated, so a bad one
is a JSON 4xx that says what to send, streamed or not; then a :class:`GenerationRun` draws the tokens one at a
time with the GPT's NumPy forward pass (and its KV cache), through the public functions of
:mod:`bigmodel_utils.models.gpt`. With the same seed and settings the service returns exactly the text of the
offline :func:`~bigmodel_utils.models.gpt.generate` (``rng = np.random.default_rng(seed)``).

Limits per request: ``max_tokens`` tokens at most (the client asks for fewer), ``max_seconds`` of generation
(then it stops with ``finish_reason: "time"``), ``max_prompt_chars`` characters of prompt (413 above).
Usage counts tokens: ``prompt_tokens`` are the ids the model reads (the ``[SEP]`` that opens a text included),
``generated_tokens`` every token drawn, the end-of-text ``[SEP]`` included (it cost a forward pass, and it is
what ended the text), though it adds nothing to the text.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from bigmodel_utils.serving.validation import BadRequest, check_unicode

FIELDS = ("prompt", "max_tokens", "temperature", "top_k", "top_p", "seed", "stream")
DEFAULT_MAX_TOKENS = 50
DEFAULT_TEMPERATURE = 1.0
MIN_TEMPERATURE = 0.01  # below it, logits / temperature can overflow a float: 0 (greedy) is the way to ask for that
MAX_TEMPERATURE = 10.0
MAX_SEED = 2**32 - 1
EXAMPLE = '{"prompt": "这家店", "max_tokens": 40}'
#: One token step at a time in this process, whichever request it serves. NumPy's matrix products already use the
#: machine's cores, and many requests computing at once on a few cores compete for them (chapter 14's load test
#: measures 8 clients against one). With the lock, concurrent streams take turns token by token: each one's first
#: token comes after at most one step of every other stream.
COMPUTE = threading.Lock()


@dataclass(frozen=True)
class GenerationRequest:
    """A validated generation request; ``seed`` is always set (drawn at random when the client sent none)."""

    prompt: str
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = DEFAULT_TEMPERATURE
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    stream: bool = False


def _shown(value: Any) -> str:
    """A number as an error message may quote it: never hundreds of digits."""
    if isinstance(value, int) and abs(value) >= 10**15:
        return "a huge integer"
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _integer(payload: dict, name: str, low: int, high: int | None, default: Any, nullable: bool = False) -> Any:
    value = payload.get(name, default)
    if value is None and (nullable or name not in payload):
        return default
    bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
    what = f'"{name}" must be an integer {bounds}' + (" or null" if nullable else "")
    # bool is a subclass of int in Python: JSON true/false are not numbers
    if isinstance(value, bool) or not isinstance(value, int):
        shown = f" {_shown(value)}" if isinstance(value, float) else ""
        raise BadRequest(f"{what}, got {type(value).__name__}{shown}")
    if value < low or (high is not None and value > high):  # compared as written: a JSON integer may be huge
        raise BadRequest(f"{what}, got {_shown(value)}")
    return value


def _number(payload: dict, name: str, default: Any, check: Callable[[float], bool], rule: str,
            nullable: bool = False) -> Any:
    value = payload.get(name, default)
    if value is None and (nullable or name not in payload):
        return default
    what = f'"{name}" must be {rule}' + (" or null" if nullable else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{what}, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"{what}; NaN and infinity are not accepted")
    if isinstance(value, int) and abs(value) > 10**300:  # exact comparisons below need a float
        raise BadRequest(f"{what}, got an integer too large for a floating-point number")
    if not check(float(value)):
        raise BadRequest(f"{what}, got {_shown(value)}")
    return float(value)


def validate_generation(payload: Any, max_tokens: int = 200, max_prompt_chars: int = 1000,
                        default_max_tokens: int = DEFAULT_MAX_TOKENS) -> GenerationRequest:
    """A JSON payload → :class:`GenerationRequest`, or :class:`BadRequest` (a 4xx) that says what to send.

    ``prompt`` (string, required, may be empty; at most ``max_prompt_chars`` characters, else 413),
    ``max_tokens`` (integer 1 to ``max_tokens``), ``temperature`` (0 for greedy decoding, or a number from 0.01
    to 10), ``top_k`` (integer of at least 1, or null), ``top_p`` (number in (0, 1], or null), ``seed``
    (integer from 0 to 2**32 - 1, or null for a random one that the answer reports), ``stream`` (true or false).
    Unknown fields are refused rather than ignored: a misspelt ``max_token`` would otherwise be silently default.
    """
    if not isinstance(payload, dict):
        raise BadRequest(f"send a JSON object such as {EXAMPLE}")
    unknown = sorted(set(payload) - set(FIELDS))
    if unknown:
        shown = [u if len(u) <= 40 else u[:39] + "…" for u in unknown[:5]]
        raise BadRequest(f"unknown field(s) {shown}: the fields are {', '.join(FIELDS)}")
    if "prompt" not in payload:
        raise BadRequest(f'missing field "prompt": send {EXAMPLE} (an empty prompt starts a new text)')
    prompt = payload["prompt"]
    if not isinstance(prompt, str):
        raise BadRequest(f'"prompt" must be a string, got {type(prompt).__name__}')
    if len(prompt) > max_prompt_chars:
        raise BadRequest(f'"prompt" has {len(prompt)} characters; at most {max_prompt_chars} are accepted', status=413)
    check_unicode(prompt, '"prompt"')
    tokens = _integer(payload, "max_tokens", 1, max_tokens, min(default_max_tokens, max_tokens))
    temperature = _number(payload, "temperature", DEFAULT_TEMPERATURE,
                          lambda t: t == 0 or MIN_TEMPERATURE <= t <= MAX_TEMPERATURE,
                          f"0 (greedy) or a number from {MIN_TEMPERATURE} to {MAX_TEMPERATURE:g}")
    top_k = _integer(payload, "top_k", 1, None, None, nullable=True)
    top_p = _number(payload, "top_p", None, lambda p: 0 < p <= 1, "a number in (0, 1]", nullable=True)
    seed = _integer(payload, "seed", 0, MAX_SEED, None, nullable=True)
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(f'"stream" must be true or false, got {type(stream).__name__}')
    return GenerationRequest(prompt, tokens, temperature, top_k, top_p,
                             secrets.randbelow(MAX_SEED + 1) if seed is None else seed, stream)


# --- the served generator and one request's run ----------------------------------------------------------


@dataclass
class ServedGenerator:
    """Chapter 13's GPT as the service sees it: NumPy weights, tokenizer, limits, and what to say about it.

    ``use_cache=False`` re-reads the whole text at every token (the same tokens, more work: chapter 14 serves
    the model both ways to measure what the KV cache buys). ``clock`` measures ``max_seconds``.
    """

    name: str
    version: str
    weights: dict
    tokenizer: Any  # bigmodel_utils.models.bert.CharTokenizer
    use_cache: bool = True
    max_tokens: int = 200
    max_seconds: float = 10.0
    max_prompt_chars: int = 1000
    source: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    kind: str = field(default="generator", init=False)

    def __post_init__(self):
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if not self.max_seconds > 0 or not self.max_prompt_chars >= 0:
            raise ValueError(f"max_seconds must be positive and max_prompt_chars non-negative, got "
                             f"{self.max_seconds!r}, {self.max_prompt_chars!r}")
        self._known = set(self.tokenizer.vocabulary)

    @property
    def context(self) -> int:
        return int(self.weights["positions"].shape[0])

    def input_schema(self) -> dict[str, str]:
        default = min(DEFAULT_MAX_TOKENS, self.max_tokens)
        return {
            "prompt": f"string of at most {self.max_prompt_chars} characters (required; empty: a new text); the model "
                      f"reads the last {self.context // 2} tokens of a longer one",
            "max_tokens": f"integer from 1 to {self.max_tokens} (default {default})",
            "temperature": f"0 (greedy) or a number from {MIN_TEMPERATURE} to {MAX_TEMPERATURE:g} (default "
                           f"{DEFAULT_TEMPERATURE:g})",
            "top_k": "integer of at least 1, or null (default: every token)",
            "top_p": "number in (0, 1], or null (default: no nucleus cut)",
            "seed": f"integer from 0 to {MAX_SEED}, or null (default: a random seed, reported in the answer)",
            "stream": "true: server-sent events, one per token, then 'done'; false (default): one JSON answer",
        }

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "version": self.version, "input": self.input_schema(),
                "context": self.context, "vocabulary_size": len(self.tokenizer), "use_cache": self.use_cache,
                "limits": {"max_tokens": self.max_tokens, "max_seconds": self.max_seconds,
                           "max_prompt_chars": self.max_prompt_chars},
                "metrics": self.metrics, "source": self.source}

    def validate(self, payload: Any) -> GenerationRequest:
        return validate_generation(payload, self.max_tokens, self.max_prompt_chars)

    def start(self, request: GenerationRequest) -> GenerationRun:
        """A :class:`GenerationRun` for a validated request: iterate over it for the tokens' text."""
        return GenerationRun(self, request)

    def respond(self, payload: Any) -> dict[str, Any]:
        """The non-streaming answer to a JSON payload (raises :class:`BadRequest`)."""
        run = self.start(self.validate(payload))
        try:
            text = "".join(run)
        finally:
            run.close()
        return run.answer(text)


class GenerationRun:
    """One request's generation: iterating yields the text of each token as the model draws it; afterwards
    ``finish_reason`` (``"stop"``: the model ended the text; ``"length"``: ``max_tokens`` drawn; ``"time"``:
    ``max_seconds`` passed; ``"cancelled"``: closed before the end, e.g. the client went away) and the usage.

    :meth:`close` ends it (also when it was never started) and calls each ``on_end(run)`` exactly once: the
    place for metrics and billing, which must happen however the request ends.
    """

    def __init__(self, served: ServedGenerator, request: GenerationRequest):
        from bigmodel_utils.models.gpt import prompt_ids

        self.served, self.request = served, request
        self.unknown_characters = sorted({c for c in request.prompt if c not in served._known})
        with warnings.catch_warnings():  # the unknown characters are reported in the answer instead
            warnings.simplefilter("ignore", UserWarning)
            self.prompt_ids = prompt_ids(served.tokenizer, request.prompt)
        self.generated_tokens = 0
        self.finish_reason: str | None = None
        self.started = served.clock()
        self.first_token_seconds: float | None = None
        self.seconds: float | None = None
        self.on_end: list[Callable[[GenerationRun], None]] = []
        self._tokens: Iterator[int] | None = None
        self._ended = False

    @property
    def usage(self) -> dict[str, int]:
        prompt = len(self.prompt_ids)
        return {"prompt_tokens": prompt, "generated_tokens": self.generated_tokens,
                "total_tokens": prompt + self.generated_tokens}

    def _pick(self):
        from bigmodel_utils.models.gpt import greedy, sampler

        r = self.request
        if r.temperature == 0:
            return greedy
        top_k = None if r.top_k is None else min(r.top_k, len(self.served.tokenizer))  # more keeps them all
        return sampler(r.temperature, top_k, r.top_p)

    def __iter__(self) -> Iterator[str]:
        import numpy as np

        from bigmodel_utils.models.gpt import generate_ids, token_text

        if self._tokens is not None or self._ended:
            raise RuntimeError("a generation run is iterated once")
        served, request = self.served, self.request
        sep, deadline = served.tokenizer.sep_id, self.started + served.max_seconds
        self._tokens = generate_ids(served.weights, served.tokenizer, self.prompt_ids, request.max_tokens,
                                    self._pick(), np.random.default_rng(request.seed), served.use_cache,
                                    stop_at_end=True)
        try:
            while True:
                with COMPUTE:  # the forward pass of this token (see COMPUTE)
                    token = next(self._tokens, None)
                if token is None:
                    break
                self.generated_tokens += 1
                if self.first_token_seconds is None:
                    self.first_token_seconds = served.clock() - self.started
                if token == sep:
                    self.finish_reason = "stop"
                    return
                yield token_text(served.tokenizer, token)
                if self.generated_tokens < request.max_tokens and served.clock() >= deadline:
                    self.finish_reason = "time"
                    return
            self.finish_reason = "length"
        finally:
            self.close()

    def close(self) -> None:
        """End the run (idempotent): stop the model, fix the finish reason, call ``on_end`` once."""
        if self._ended:
            return
        self._ended = True
        if self._tokens is not None:
            self._tokens.close()
        if self.finish_reason is None:
            self.finish_reason = "cancelled"
        self.seconds = self.served.clock() - self.started
        for callback in self.on_end:
            callback(self)

    def summary(self) -> dict[str, Any]:
        """What the end of an answer says: the JSON answer's fields but the text (the stream's ``done`` event)."""
        return {"model": self.served.name, "version": self.served.version, "finish_reason": self.finish_reason,
                "usage": self.usage, "seed": self.request.seed, "unknown_characters": "".join(self.unknown_characters)}

    def answer(self, text: str) -> dict[str, Any]:
        summary = self.summary()
        return {"model": summary.pop("model"), "version": summary.pop("version"), "text": text, **summary}


def default_gpt_stem(smoke: bool = False) -> Path:
    """Where chapter 13 saved its GPT: ``gpt_zh`` (``.weights.h5`` and ``.json``), ``gpt_zh_smoke`` in SMOKE mode."""
    from bigmodel_utils.paths import model_path

    return model_path("gpt_zh_smoke" if smoke else "gpt_zh")


def gpt_files(stem: str | Path) -> tuple[Path, Path]:
    """``stem.weights.h5`` and ``stem.json``; ``stem`` may also name either file."""
    stem = Path(stem)
    for suffix in (".weights.h5", ".json"):
        if stem.name.endswith(suffix) and len(stem.name) > len(suffix):
            stem = stem.with_name(stem.name[: -len(suffix)])
    return stem.with_name(stem.name + ".weights.h5"), stem.with_name(stem.name + ".json")


def load_served_generator(stem: str | Path, name: str = "gpt", use_cache: bool = True, max_tokens: int = 200,
                          max_seconds: float = 10.0, max_prompt_chars: int = 1000) -> ServedGenerator:
    """Load the GPT chapter 13 saved (``stem.weights.h5`` + ``stem.json``, sha256 checked) for serving, once.

    The version is the first 12 hex digits of the weights' sha256, so new weights are a new version. Only the
    NumPy weights are kept: generation runs :func:`~bigmodel_utils.models.gpt.generate_ids`, not Keras.
    """
    weights_file, info_file = gpt_files(stem)
    missing = [f.name for f in (weights_file, info_file) if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{' and '.join(missing)} not found in {weights_file.parent}: run chapter 13 to "
                                "train and save the GPT, or pass the stem of saved files (--gpt STEM)")
    from bigmodel_utils.notebook import quiet_tensorflow

    quiet_tensorflow()
    from bigmodel_utils.models.gpt import load_gpt, numpy_weights

    model, tokenizer, info = load_gpt(weights_file.with_name(weights_file.name[: -len(".weights.h5")]))
    log = info.get("log") if isinstance(info.get("log"), dict) else {}
    metrics = {k: v for k, v in log.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return ServedGenerator(name, info["weights_sha256"][:12], numpy_weights(model), tokenizer, use_cache=use_cache,
                           max_tokens=max_tokens, max_seconds=max_seconds, max_prompt_chars=max_prompt_chars,
                           source=weights_file.name, metrics=metrics)


def without_cache(served: ServedGenerator, name: str | None = None) -> ServedGenerator:
    """The same GPT (same weights, same version) generating without its KV cache, as ``name`` (``<name>_nocache``)."""
    return replace(served, name=name or f"{served.name}_nocache", use_cache=False)
