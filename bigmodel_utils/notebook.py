"""The set-up every chapter runs first (introduced in chapter 00).

A chapter's first code cells look like this::

    # parameters  (the cell tagged "parameters": papermill replaces these values)
    SMOKE = None   # None: read BIGMODEL_SMOKE from the environment
    SEED = 0

    # the next cell: everything derived from the parameters
    from bigmodel_utils.notebook import setup_notebook
    nb = setup_notebook(seed=SEED, smoke=SMOKE)
    SMOKE = nb.smoke

``setup_notebook`` seeds Python and NumPy, sets plot defaults, and arranges for TensorFlow's start-up log to be
silenced, its seeds set and deterministic ops turned on when the notebook imports it (a notebook that never
does, never waits for TensorFlow).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import platform
import random
import sys
import time
from dataclasses import dataclass, field

SMOKE_ENV = "BIGMODEL_SMOKE"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def smoke_from_env(default: bool = False) -> bool:
    """Read the SMOKE flag from ``$BIGMODEL_SMOKE`` ("1"/"true"/"yes" or "0"/"false"/"no").

    SMOKE mode runs every chapter on a small slice of data with few epochs, so that CI executes
    the whole book in minutes. It changes how much the code does, never what it does.
    """
    raw = os.environ.get(SMOKE_ENV)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"{SMOKE_ENV}={raw!r} is not a yes/no value; use {SMOKE_ENV}=1 for SMOKE mode "
        f"or {SMOKE_ENV}=0 (or leave it unset) for the full chapter"
    )


@contextlib.contextmanager
def silenced_stderr():
    """Point the process's C-level stderr (file descriptor 2) at /dev/null inside the block.

    For native libraries that print unconditionally (TensorFlow at start-up, the LiteRT converter and
    interpreter in chapter 10). Python exceptions are unaffected: they are raised, not printed.
    """
    import sys

    saved = None
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except (OSError, AttributeError, ValueError):  # no real fd 2 (some embedded consoles): skip
        saved = None
    try:
        yield
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's start-up noise, once, for the whole notebook.

    Sets the environment before TensorFlow is imported, then imports it and initialises its devices
    with the process's C-level stderr pointed at /dev/null for that moment only: TensorFlow 2.21
    prints "All log messages before absl::InitializeLog()…", oneDNN and CUDA-probe lines there
    unconditionally. Python exceptions are unaffected, and later C++ errors are still shown.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ INFO, WARNING and ERROR lines; Python exceptions still surface
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # identical results run to run on CPU
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import sys

    if "tensorflow" in sys.modules:
        return
    import logging

    with silenced_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()  # device probing logs once, here
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover - absl comes with TensorFlow
        pass


def plot_defaults() -> None:
    """Readable, consistent matplotlib defaults for the book's figures."""
    import matplotlib as mpl

    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 100,
            "savefig.dpi": 120,
            "savefig.bbox": "tight",
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.size": 10,
        }
    )


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; optionally make TensorFlow ops deterministic.

    ``keras.utils.set_random_seed`` seeds Python's ``random``, NumPy and the backend in one call.
    ``tf.config.experimental.enable_op_determinism`` makes the same program give the same numbers
    run after run (at some cost in speed on GPUs).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    import numpy as np

    np.random.seed(seed)
    quiet_tensorflow()
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


class _WhenImported(importlib.abc.MetaPathFinder):
    """Runs ``setup_notebook``'s TensorFlow set-up when TensorFlow and Keras are first imported, not before.

    A chapter (or a solutions notebook) that never imports them never pays for TensorFlow's start-up, several
    seconds. When ``tensorflow`` is imported, its start-up log is silenced as :func:`quiet_tensorflow` does, and its
    seed and op determinism are set; when ``keras`` has been imported, Keras's own seed generator is seeded
    (``keras.utils.set_random_seed``) without restarting the Python and NumPy streams the notebook may already have
    drawn from. ``find_spec`` only wraps the loader: a mere look-up (``importlib.util.find_spec``, which TensorFlow
    itself does for ``keras``) changes nothing; the set-up runs when the module is executed, once.
    """

    def __init__(self, seed: int, deterministic: bool):
        self.seed, self.deterministic = seed, deterministic
        self.done: set[str] = set()

    def find_spec(self, name, path=None, target=None):
        if name not in ("tensorflow", "keras") or name in self.done:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        run, finder = spec.loader.exec_module, self

        def exec_module(module):
            if name in finder.done:  # a second spec of the same module (not expected): plain import
                return run(module)
            finder.done.add(name)
            if name == "tensorflow":
                with silenced_stderr():  # TensorFlow prints its start-up lines on fd 2, unconditionally
                    run(module)
                    module.config.list_physical_devices()
                finder._after_tensorflow(module)
            else:
                run(module)
                finder._after_keras(module)
            if finder.done == {"tensorflow", "keras"} and finder in sys.meta_path:
                sys.meta_path.remove(finder)

        spec.loader.exec_module = exec_module
        return spec

    def _after_tensorflow(self, tf) -> None:
        import logging

        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        with contextlib.suppress(ImportError):
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
        tf.random.set_seed(self.seed)
        if self.deterministic:
            tf.config.experimental.enable_op_determinism()

    def _after_keras(self, keras) -> None:
        import numpy as np

        python_state, numpy_state = random.getstate(), np.random.get_state()
        keras.utils.set_random_seed(self.seed)  # also seeds Keras's own generator (layer initialisers, dropout)
        random.setstate(python_state)  # setup_notebook seeded these; a later import must not restart them
        np.random.set_state(numpy_state)


def _forget_lazy_setup() -> None:
    for finder in [f for f in sys.meta_path if isinstance(f, _WhenImported)]:
        sys.meta_path.remove(finder)  # a second setup_notebook() call replaces the first one's set-up


def _seed_when_imported(seed: int, deterministic: bool) -> None:
    """Seed Python and NumPy now; TensorFlow and Keras now if loaded, else when imported (:class:`_WhenImported`)."""
    if "tensorflow" in sys.modules or "keras" in sys.modules:
        seed_everything(seed, deterministic=deterministic)
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    random.seed(seed)
    import numpy as np

    np.random.seed(seed)
    sys.meta_path.insert(0, _WhenImported(seed, deterministic))


@dataclass
class NotebookSettings:
    """What ``setup_notebook`` decided; ``nb.smoke`` is the flag chapters branch on."""

    seed: int
    smoke: bool
    deterministic: bool
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        """Seconds since ``setup_notebook`` ran (a chapter reports its own wall time)."""
        return time.perf_counter() - self.started

    def __str__(self) -> str:
        mode = "SMOKE (small data, few epochs)" if self.smoke else "FULL (the real lesson)"
        return (
            f"mode: {mode} | seed: {self.seed} | deterministic ops: {self.deterministic} | "
            f"Python {platform.python_version()}"
        )


def setup_notebook(
    seed: int = 0,
    smoke: bool | None = None,
    *,
    deterministic: bool = True,
    tensorflow: bool = True,
    verbose: bool = True,
) -> NotebookSettings:
    """Prepare a chapter: quiet logs, seeds, determinism, plot style and the SMOKE flag.

    Args:
        seed: the seed for Python, NumPy and TensorFlow.
        smoke: ``True``/``False`` to force a mode; ``None`` reads ``$BIGMODEL_SMOKE``, so that
            ``BIGMODEL_SMOKE=1 pytest --nbval-lax`` and ``papermill -p SMOKE True`` take the same
            short path.
        deterministic: turn on TensorFlow's op determinism.
        tensorflow: ``True``: when TensorFlow and Keras are imported (by the chapter, right after this call, or
            never), their start-up log is silenced, their seeds set and op determinism turned on; importing
            them is left to the chapter, so a notebook that never uses them never waits for them. ``False``:
            Python and NumPy only.
        verbose: print one line saying what was set.
    """
    if smoke is None:
        smoke = smoke_from_env()
    elif not isinstance(smoke, bool):
        raise ValueError(f"smoke must be True, False or None, got {smoke!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _forget_lazy_setup()
    if tensorflow:
        _seed_when_imported(seed, deterministic)  # TensorFlow is set up quietly when (and if) it is imported
    else:
        import numpy as np

        random.seed(seed)
        np.random.seed(seed)
        deterministic = False
    plot_defaults()
    from bigmodel_utils.book import track_modules

    track_modules()  # under the book's runner only: which helpers this chapter used, for the results ledger
    settings = NotebookSettings(seed=seed, smoke=smoke, deterministic=deterministic)
    if verbose:
        print(settings)
    return settings


def show_source(*objects) -> None:
    """Display the source code of functions or classes from ``bigmodel_utils`` in the notebook.

    The book's rule: code a later chapter reuses lives in the package, and the chapter that teaches it
    shows it with this function, so the text and the code can never drift apart.
    """
    import inspect

    from IPython.display import Code, display

    for obj in objects:
        try:
            source = inspect.getsource(obj)
        except (TypeError, OSError) as exc:
            raise TypeError(f"show_source needs a function or class defined in a file, got {obj!r}") from exc
        display(Code(source, language="python"))
