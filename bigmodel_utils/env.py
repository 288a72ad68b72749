"""The environment report of chapter 00: this machine against the versions the book was tested with.

``environment_report()`` compares every package pinned in ``requirements.lock`` (and
``requirements-nodeps.lock``) with what is installed, and adds the Python version, the CPU count and
the accelerators TensorFlow can see. Run it from the command line with
``python -m bigmodel_utils.env``.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bigmodel_utils.paths import LOCK_PATH, NODEPS_LOCK_PATH

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")
_PY = re.compile(r"^#\s*python_version\s*==\s*([0-9.]+)")


def canonical(name: str) -> str:
    """Normalise a distribution name the way pip does (``Foo_bar.baz`` -> ``foo-bar-baz``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str | Path = LOCK_PATH) -> tuple[dict[str, str], str | None]:
    """Parse a lock file of ``name==version`` lines; return ``({name: version}, python_version)``.

    Comment lines are ignored except ``# python_version == X.Y``. A line that is neither a comment
    nor an exact pin raises ``ValueError`` (a lock pins everything exactly).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"lock file not found: {path} (it is part of the repository; is this a full checkout?)")
    pins: dict[str, str] = {}
    python = None
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            m = _PY.match(line)
            if m:
                python = m.group(1)
            continue
        m = _PIN.match(line)
        if not m:
            raise ValueError(f"{path.name}:{lineno}: {line!r} is not an exact 'name==version' pin")
        pins[canonical(m.group(1))] = m.group(2)
    return pins, python


@dataclass
class PackageStatus:
    name: str
    locked: str
    installed: str | None

    @property
    def ok(self) -> bool:
        return self.installed == self.locked


@dataclass
class EnvReport:
    """What :func:`environment_report` found; ``report.ok`` is True when nothing is off."""

    python: str
    python_locked: str | None
    platform: str
    cpu_count: int
    packages: list[PackageStatus] = field(default_factory=list)
    accelerators: list[str] | None = None  # None: TensorFlow was not asked

    @property
    def mismatches(self) -> list[PackageStatus]:
        return [p for p in self.packages if not p.ok]

    @property
    def python_ok(self) -> bool:
        return self.python_locked is None or self.python.startswith(self.python_locked + ".") or self.python == self.python_locked

    @property
    def ok(self) -> bool:
        return self.python_ok and not self.mismatches

    def version(self, name: str) -> str | None:
        for p in self.packages:
            if p.name == canonical(name):
                return p.installed
        return None

    def to_frame(self):
        """The package table as a pandas DataFrame (mismatches first)."""
        import pandas as pd

        rows = [{"package": p.name, "locked": p.locked, "installed": p.installed or "not installed", "ok": p.ok} for p in self.packages]
        return pd.DataFrame(rows).sort_values(["ok", "package"]).reset_index(drop=True)

    def summary(self) -> str:
        lines = [
            f"Python      {self.python} (lock: {self.python_locked or 'any'}){'' if self.python_ok else '  <-- differs'}",
            f"platform    {self.platform}",
            f"CPU cores   {self.cpu_count}",
        ]
        if self.accelerators is not None:
            lines.append(f"GPUs        {', '.join(self.accelerators) if self.accelerators else 'none (CPU only; every chapter runs on a CPU)'}")
        for key in ("tensorflow", "keras", "keras-hub"):
            v = self.version(key)
            if v:
                lines.append(f"{key:<11} {v}")
        n_ok = len(self.packages) - len(self.mismatches)
        lines.append(f"packages    {n_ok}/{len(self.packages)} match the lock")
        for p in self.mismatches:
            lines.append(f"  MISMATCH  {p.name}: locked {p.locked}, installed {p.installed or 'not installed'}")
        if self.mismatches:
            lines.append("  -> run 'make lab' or 'make test' from the repository: they rebuild .venv from the lock")
        return "\n".join(lines)

    __str__ = summary


def list_accelerators() -> list[str]:
    """The GPUs TensorFlow sees, as strings (empty on a CPU-only machine)."""
    from bigmodel_utils.notebook import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def environment_report(
    lock: str | Path = LOCK_PATH,
    nodeps_lock: str | Path | None = NODEPS_LOCK_PATH,
    *,
    accelerators: bool = True,
) -> EnvReport:
    """Compare the installed packages with the lock files; see :class:`EnvReport`.

    ``accelerators=False`` skips importing TensorFlow (fast, for scripts and tests).
    """
    pins, python_locked = read_lock(lock)
    if nodeps_lock is not None and Path(nodeps_lock).is_file():
        pins.update(read_lock(nodeps_lock)[0])
    packages = []
    for name, version in sorted(pins.items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        packages.append(PackageStatus(name, version, installed))
    return EnvReport(
        python=platform.python_version(),
        python_locked=python_locked,
        platform=f"{platform.system()} {platform.machine()}",
        cpu_count=os.cpu_count() or 1,
        packages=packages,
        accelerators=list_accelerators() if accelerators else None,
    )


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bigmodel_utils.env", description=__doc__.splitlines()[0])
    parser.add_argument("--no-tensorflow", action="store_true", help="do not import TensorFlow to list GPUs")
    args = parser.parse_args(argv)
    report = environment_report(accelerators=not args.no_tensorflow)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
