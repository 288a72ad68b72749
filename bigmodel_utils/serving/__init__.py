"""The book's model service (chapters 11 and 14): validated JSON predictions and streamed text over HTTP, metrics, a page.

- :func:`create_app` -- the Flask application factory
- :func:`load_served_model` -- load a saved ``.keras`` model once, with its validation and metadata
  (:mod:`~bigmodel_utils.serving.served`); the request checks it applies, :func:`validate_images` and
  :func:`validate_texts`, raise :class:`BadRequest` (:mod:`~bigmodel_utils.serving.validation`)
- :func:`load_served_generator` -- load chapter 13's GPT once, for ``POST /models/<name>/generate`` (chapter 14)
- ``python -m bigmodel_utils.serving`` -- run it under waitress, a production WSGI server (``make serve``)
"""

from bigmodel_utils.serving.app import create_app
from bigmodel_utils.serving.generation import (GenerationRequest, GenerationRun, ServedGenerator, load_served_generator,
                                               validate_generation, without_cache)
from bigmodel_utils.serving.served import ServedModel, default_model_path, load_served_model
from bigmodel_utils.serving.validation import BadRequest, validate_images, validate_texts

__all__ = ["BadRequest", "GenerationRequest", "GenerationRun", "ServedGenerator", "ServedModel", "create_app",
           "default_model_path", "load_served_generator", "load_served_model", "validate_generation", "validate_images",
           "validate_texts", "without_cache"]
