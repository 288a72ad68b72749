"""Controls to play with in JupyterLab: :func:`play` shows a plain function's result under a few widgets.

Every widget in the book is two things: a **plain function** that computes what to show from the control values
(tested like any helper, usable without a browser), and :func:`play`, which shows that function's result for the
initial values as an ordinary cell output and re-runs the function whenever a control moves::

    from bigmodel_utils.playground import play
    import ipywidgets as widgets

    def view(lr):                      # a plain function: values in, something to show out
        return f"learning rate {lr}"

    play(view, lr=widgets.FloatSlider(value=0.1, min=0.01, max=1.0, description="lr"))

The first result is a normal output (text, a DataFrame, a matplotlib figure), so a chapter reads top to bottom,
in a static page, in SMOKE runs and in CI, without anyone touching a control; in JupyterLab the controls update that
same output in place (a display id). If the function raises ``ValueError`` or ``TypeError`` (bad input, such as an
empty review), the output shows the message instead of a traceback, and the next good value brings the result back.
"""

from __future__ import annotations

import html
from typing import Any, Callable

__all__ = ["Playground", "play"]


class _Text:
    """A string shown as it is (not as its repr, with quotes)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


class Playground:
    """Controls and the output they drive. ``latest`` is the last result (or ``None`` after an error, see ``error``)."""

    def __init__(self, view: Callable[..., Any], controls: dict[str, Any], *, continuous: bool = False):
        import ipywidgets as widgets

        if not callable(view):
            raise TypeError(f"play() needs a function to call with the control values, got {type(view).__name__}")
        if not controls:
            raise ValueError("play() needs at least one control, e.g. play(view, lr=widgets.FloatSlider(...))")
        for name, control in controls.items():
            if not isinstance(control, widgets.ValueWidget):
                raise TypeError(f"control {name!r} must be an ipywidgets control with a value (a slider, a text box, a "
                                f"dropdown...), got {type(control).__name__}")
            if hasattr(control, "continuous_update") and not continuous:
                control.continuous_update = False  # re-run when the slider is released, not on every pixel
        self.view = view
        self.controls = dict(controls)
        self.latest: Any = None
        self.error: str | None = None
        self.calls = 0
        self._handle = None
        self._compute()
        for control in self.controls.values():
            control.observe(self._changed, names="value")

    def values(self) -> dict[str, Any]:
        return {name: control.value for name, control in self.controls.items()}

    def _compute(self) -> None:
        import matplotlib.pyplot as plt
        from matplotlib.figure import Figure

        self.calls += 1
        before = set(plt.get_fignums())
        try:
            self.latest, self.error = self.view(**self.values()), None
        except (ValueError, TypeError) as exc:  # bad input from a control: say so, keep the controls alive
            self.latest, self.error = None, f"{type(exc).__name__}: {exc}"
        finally:
            for number in set(plt.get_fignums()) - before:  # shown once, by the display below (not again by the
                plt.close(number)                            # inline backend), and none left open after an error
        if isinstance(self.latest, Figure):
            plt.close(self.latest)

    def _shown(self) -> Any:
        if isinstance(self.latest, str):
            return _Text(self.latest)
        if self.error is not None:
            from IPython.display import HTML

            return HTML(f"<pre style='color:#b00'>{html.escape(self.error)}</pre>")
        return self.latest

    def _changed(self, _change: dict) -> None:
        self._compute()
        if self._handle is not None:
            self._handle.update(self._shown())

    def note(self) -> str:
        """What a page without a live kernel shows in place of the controls."""
        settings = ", ".join(f"{getattr(c, 'description', '') or name} = {c.value!r}" for name, c in self.controls.items())
        return f"Controls (live in JupyterLab; shown here with {settings})"

    def _ipython_display_(self) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        box = widgets.VBox(list(self.controls.values()))
        bundle = dict(box._repr_mimebundle_())
        bundle["text/plain"] = self.note()
        bundle["text/html"] = f"<p><em>{html.escape(self.note())}</em></p>"
        display(bundle, raw=True)
        self._handle = display(self._shown(), display_id=True)


def play(view: Callable[..., Any], /, *, continuous: bool = False, **controls: Any) -> Playground:
    """Show ``view(**initial values)`` under the controls and re-run it whenever one moves (see the module doc).

    ``controls`` maps each keyword argument of ``view`` to an ipywidgets control with a ``value``; sliders re-run the
    function when released (``continuous=True``: while dragging). Returns the :class:`Playground`; as the last line
    of a cell it displays itself.
    """
    return Playground(view, controls, continuous=continuous)
