"""Model builders reused across chapters (each chapter that introduces one shows its source).

- :func:`build_mlp` -- a dense network for tables and flattened images (chapter 04)
- :func:`build_digits_cnn` -- the convolutional network for digit images (chapter 05; served in chapter 11)
- :func:`prepare_images` -- validate and shape a batch of images before it reaches a model (chapters 05, 11)
"""

from bigmodel_utils.models.vision import build_digits_cnn, build_mlp, prepare_images

__all__ = ["build_digits_cnn", "build_mlp", "prepare_images"]
