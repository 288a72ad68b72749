"""The validation of every request before it reaches a model (chapters 11, 12 and 14).

A bad payload raises :class:`BadRequest` with a message that says what to send, and the web layer turns it
into a JSON 4xx. The JSON checks live here (an object with ``"instances"``, lists of the right lengths, numbers
that are not ``true``/``false``, valid Unicode); the rule for pixel values is chapter 05's
(:func:`~bigmodel_utils.models.vision.first_bad_pixel`, which ``prepare_images`` applies too).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bigmodel_utils.models.vision import first_bad_pixel


class BadRequest(ValueError):
    """The request cannot be served as sent; the message says what to send instead (a 4xx)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _instances(payload: Any, max_batch: int) -> list:
    if not isinstance(payload, dict):
        raise BadRequest('send a JSON object: {"instances": [...]}')
    if "instances" not in payload:
        raise BadRequest('missing field "instances": send {"instances": [...]} with one entry per input')
    unknown = sorted(set(payload) - {"instances"})
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}: only \"instances\" is accepted")
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequest('"instances" must be a non-empty list')
    if len(instances) > max_batch:
        raise BadRequest(f"at most {max_batch} instances per request, got {len(instances)}: split the batch", status=413)
    return instances


def validate_images(payload: Any, max_batch: int = 64, shape: tuple[int, int] = (8, 8)) -> np.ndarray:
    """``{"instances": [image, ...]}`` with each image ``shape`` rows of numbers in [0, 1] → float32 ``(n, h, w, 1)``."""
    instances = _instances(payload, max_batch)
    h, w = shape
    images = np.empty((len(instances), h, w), dtype=np.float64)
    for i, image in enumerate(instances):
        where = f"instance {i}"
        if not isinstance(image, list) or len(image) != h:
            raise BadRequest(f"{where}: an image is a list of {h} rows of {w} numbers")
        for r, row in enumerate(image):
            if not isinstance(row, list) or len(row) != w:
                raise BadRequest(f"{where}, row {r}: each row is a list of {w} numbers")
            for c, v in enumerate(row):
                # bool is a subclass of int in Python: JSON true/false are not pixel values
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise BadRequest(f"{where}, pixel ({r}, {c}): expected a number, got {type(v).__name__}")
                try:
                    images[i, r, c] = v
                except OverflowError:  # a JSON integer may have hundreds of digits, too many for a float
                    images[i, r, c] = math.inf  # outside [0, 1] all the same; the message quotes v itself
    bad = first_bad_pixel(images, (0.0, 1.0))  # chapter 05's rule: finite and in [0, 1]
    if bad is not None:
        i, r, c = bad
        v, where = instances[i][r][c], f"instance {i}, pixel ({r}, {c})"
        if isinstance(v, float) and not math.isfinite(v):
            raise BadRequest(f"{where}: NaN and infinity are not pixel values")
        shown = f"{v:g}" if isinstance(v, float) else (str(v) if abs(v) < 10**15 else "a huge integer")
        raise BadRequest(f"{where} = {shown}: pixel values lie in [0, 1] (divide 0-16 or 0-255 values by their maximum)")
    return images.astype(np.float32)[..., None]


def check_unicode(text: str, where: str) -> None:
    """Refuse a string that holds a lone surrogate: JSON's ``\\ud800`` escape is valid JSON but no character."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise BadRequest(f"{where}: character {error.start} is a lone surrogate (\\u{ord(text[error.start]):04x}), "
                         "not valid Unicode: send text as UTF-8") from None


def validate_texts(payload: Any, max_batch: int = 64, max_length: int = 2000) -> np.ndarray:
    """``{"instances": ["review", ...]}``: non-empty strings of at most ``max_length`` characters → ``(n, 1)`` strings."""
    instances = _instances(payload, max_batch)
    for i, text in enumerate(instances):
        if not isinstance(text, str):
            raise BadRequest(f"instance {i}: expected a string, got {type(text).__name__}")
        if not text.strip():
            raise BadRequest(f"instance {i}: the text is empty")
        if len(text) > max_length:
            raise BadRequest(f"instance {i}: {len(text)} characters; at most {max_length} are accepted", status=413)
        check_unicode(text, f"instance {i}")
    return np.array(instances, dtype=object)[:, None]
