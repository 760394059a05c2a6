"""Keep TensorFlow's own chatter out of the workstation commands' output.

TensorFlow writes to file descriptor 2 from C++ before Python logging exists
(oneDNN, CUDA, CPU-feature and absl notices on import; SavedModel reader and
MLIR lines on every conversion; "Created TensorFlow Lite XNNPACK delegate" per
interpreter), and its Python side prints converter signatures to stdout and
deprecation warnings. ``TF_CPP_MIN_LOG_LEVEL`` does not silence the lines
printed before absl is initialised, so :func:`quiet` filters descriptor 2
itself: lines in TensorFlow's formats are dropped, everything else (tqdm bars,
doorguard's own messages) passes through unchanged. ``--log-level DEBUG``
leaves everything as it is.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import threading
import warnings
from typing import Iterator

# absl/glog: "I0000 00:00:1796165539.939407    6273 port.cc:153] ...".
_NATIVE = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s:]+:\d+\]"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|To enable the following instructions: .* rebuild TensorFlow"
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate"
    rb"|fully_quantize: \d+, inference_type: )"
)


def is_tensorflow_line(line: bytes) -> bool:
    """True for a line TensorFlow's C++ side prints (absl/glog format and a few known notices)."""
    return bool(_NATIVE.match(line.lstrip(b"\r")))


class _Filter:
    """Descriptor 2 goes through a pipe; a thread forwards every line that is not TensorFlow's."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self._saved = os.dup(2)
        r, w = os.pipe()
        os.dup2(w, 2)
        os.close(w)
        self._r = r
        self.dropped = 0
        self._thread = threading.Thread(target=self._pump, name="tf-stderr-filter", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        pending = b""
        for chunk in iter(functools.partial(os.read, self._r, 65536), b""):  # until EOF
            pending += chunk
            # \r ends a tqdm update: pass it on at once, not at the next newline.
            parts = re.split(rb"(?<=[\n\r])", pending)
            pending = parts.pop()
            self._forward(parts)
        self._forward([pending] if pending else [])
        os.close(self._r)

    def _forward(self, lines: list[bytes]) -> None:
        out = []
        for line in lines:
            if is_tensorflow_line(line):
                self.dropped += 1
            else:
                out.append(line)
        if out:
            os.write(self._saved, b"".join(out))

    def close(self) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)  # closes the pipe's last write end: the thread sees EOF
        self._thread.join(timeout=5.0)
        os.close(self._saved)


def _quiet_python() -> None:
    # TensorFlow's Python loggers ("Assets written to", "SavedModel saved prior to TF 2.5")
    # and its deprecation warnings (tf.lite.Interpreter, quantization statistics).
    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(tensorflow|tf_keras|keras|absl)(\.|$)")


@contextlib.contextmanager
def quiet(verbose: bool = False) -> Iterator[None]:
    """Silence TensorFlow's C++ and Python logging for the block (a whole command).

    Args:
        verbose: leave everything as it is (``--log-level DEBUG``).
    """
    if verbose:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _quiet_python()
    try:
        filt = _Filter()
    except OSError:  # no descriptor 2 to filter (a daemon, a closed stderr): nothing to hide
        yield
        return
    try:
        yield
    finally:
        filt.close()


@contextlib.contextmanager
def no_stdout() -> Iterator[None]:
    """Swallow Python-level prints of a TensorFlow call (the converter prints its SavedModel
    signature, hundreds of lines for a MobileNet), unless DEBUG logging is on."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        yield
        return
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        yield
