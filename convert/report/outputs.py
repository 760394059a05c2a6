"""A model's files appear all together or not at all.

A converter writes ``NAME.tflite``, ``NAME.float32.tflite``, ``NAME.json`` and a
report into a hidden temporary folder beside the output, and moves them into
place when it is done. A failure half-way (a converter error, too few
calibration images, Ctrl-C) leaves nothing behind and never touches a model
already there. A failed accuracy gate still moves everything in: the report is
what the user needs, and the manifest records the failure, so ``doorguard
run`` and ``doctor`` refuse the model unless told otherwise.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from edge.errors import AccuracyGateError, UsageError


def output_name(out: Path | str) -> tuple[Path, str]:
    """(folder, NAME) of an ``--out models/NAME`` (a .tflite/.json suffix is dropped).

    Raises:
        UsageError: no name.
    """
    out = Path(out)
    name = out.name
    for suffix in (".tflite", ".json"):
        name = name.removesuffix(suffix)
    if not name or name in (".", ".."):
        raise UsageError(f"--out {out} has no model name (expected e.g. models/NAME)")
    return out.parent, name


class Staging:
    """A temporary folder beside the output; :meth:`commit` moves its entries into place.

    Creating it is the check that the output folder is writable, so make it before the
    long work (training, calibration). As a context manager it commits on success or on
    an AccuracyGateError and removes everything on any other exception.

    Raises:
        UsageError: the output folder cannot be created or written.
    """

    def __init__(self, out_dir: Path | str, name: str):
        self.out_dir = Path(out_dir)
        self.name = name
        # Folders made here are removed again if nothing is moved into them.
        self._made = [d for d in (self.out_dir, *self.out_dir.parents) if not d.exists()]
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=self.out_dir))
        except OSError as e:
            for d in self._made:
                if d.is_dir():
                    shutil.rmtree(d, ignore_errors=True)
            raise UsageError(f"cannot write the output folder {self.out_dir}: "
                             f"{e.strerror or e} (check --out)") from e
        self.closed = False

    def path(self, filename: str) -> Path:
        """Where to write ``filename`` now (inside the temporary folder)."""
        return self.dir / filename

    def final(self, filename: str) -> Path:
        """Where ``filename`` will be after :meth:`commit`."""
        return self.out_dir / filename

    def commit(self, last: str | None = None) -> list[Path]:
        """Move every entry into the output folder, ``last`` (the manifest) after the others.

        Returns:
            The final paths.
        """
        entries = sorted(self.dir.iterdir(), key=lambda p: (p.name == last, p.name))
        moved = []
        for src in entries:
            dst = self.out_dir / src.name
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            os.replace(src, dst)
            moved.append(dst)
        self._made = []
        self.discard()
        return moved

    def discard(self) -> None:
        """Remove the temporary folder and what is in it, and output folders it made that
        stayed empty (idempotent)."""
        if not self.closed:
            shutil.rmtree(self.dir, ignore_errors=True)
            for d in self._made:  # deepest first
                try:
                    d.rmdir()
                except OSError:
                    break
            self.closed = True

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.closed:
            return
        if exc_type is None or issubclass(exc_type, AccuracyGateError):
            self.commit(last=f"{self.name}.json")
        else:
            self.discard()
