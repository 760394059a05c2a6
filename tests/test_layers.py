"""Import layers (issue 23): the Pi's runtime (edge/) never needs the workstation toolchain.

- no module of edge/ imports convert or benchmarks, at any depth of the file (lazy imports
  inside functions included: a Pi-only install has neither);
- `doorguard run` on the demo, as the Pi runs it, loads no convert, tensorflow, keras or
  benchmarks module (checked with ``python -X importtime``, which lists every module loaded).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLCHAIN = ("convert", "benchmarks")
HEAVY = ("convert", "benchmarks", "tensorflow", "keras", "torch", "onnx")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every import in a file; relative imports as '.'."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                out.append((node.lineno, "."))
            elif node.module:
                out.append((node.lineno, node.module.split(".")[0]))
    return out


def test_edge_never_imports_the_toolchain():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}"
           for p in sorted((ROOT / "edge").rglob("*.py"))
           for line, mod in imported_modules(p) if mod in TOOLCHAIN]
    assert bad == [], "\n".join(bad)


def test_the_layer_check_sees_lazy_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from convert import train\n    import benchmarks.arm\n")
    assert [m for _, m in imported_modules(f)] == ["convert", "benchmarks"]


def loaded_modules(stderr: str) -> set[str]:
    """Module names from ``-X importtime`` lines (``import time: self | cumulative | name``)."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


@pytest.mark.slow
def test_doorguard_run_loads_no_toolchain_module(tmp_path):
    cfg = tmp_path / "door.toml"
    cfg.write_text(f'[events]\nstate_dir = "{tmp_path / "state"}"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "edge.cli", "run", "--config", str(cfg),
                        "--source", "demo", "--max-frames", "1"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    names = loaded_modules(r.stderr)
    assert "edge.pipeline" in names  # it did run the pipeline
    heavy = sorted(n for n in names if n.split(".")[0] in HEAVY)
    assert heavy == [], heavy
