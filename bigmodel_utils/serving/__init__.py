"""The book's model service (chapter 11): validated JSON predictions over HTTP, metrics, a page.

- :func:`create_app` -- the Flask application factory
- :func:`load_served_model` -- load a saved ``.keras`` model once, with its validation and metadata
- ``python -m bigmodel_utils.serving`` -- run it under waitress, a production WSGI server (``make serve``)
"""

from bigmodel_utils.serving.app import create_app
from bigmodel_utils.serving.models import (BadRequest, ServedModel, default_model_path, load_served_model, validate_images,
                                          validate_texts)

__all__ = ["BadRequest", "ServedModel", "create_app", "default_model_path", "load_served_model", "validate_images",
           "validate_texts"]
