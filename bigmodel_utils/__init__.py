"""Helpers for the *bigmodel* book.

Importing this package is cheap: it does not import TensorFlow, Keras or pandas.
Each submodule imports what it needs when a function that needs it is called.

Modules, in the order the book meets them:

- :mod:`bigmodel_utils.notebook`  -- ``setup_notebook()``: seeds, quiet logs, plot style, SMOKE (chapter 00)
- :mod:`bigmodel_utils.env`       -- the environment report against the lock file (chapter 00)
- :mod:`bigmodel_utils.data`      -- the data manifest, checksummed downloads and loaders (chapter 00)
- :mod:`bigmodel_utils.exercises` -- ``check()`` and ``hint()`` for the exercises; one checker module per chapter
- :mod:`bigmodel_utils.book`      -- executing chapters with papermill, the summary table, HTML
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
