"""Import layers (issue 23): the Pi's runtime (edge/) never needs the workstation toolchain.

- no module of edge/ imports convert or benchmarks, at any depth of the file (lazy imports
  inside functions included: a Pi-only install has neither);
- no module of convert/ imports benchmarks: the benchmarks sit on top, and nothing imports them;
- convert/'s stages follow a model's flow, data -> tflite -> parse -> verify -> report -> pipeline
  -> train (-> build_models): a stage imports no later stage, at any depth;
- `doorguard run` on the demo, as the Pi runs it, loads no convert, tensorflow, keras or
  benchmarks module (checked with ``python -X importtime``, which lists every module loaded);
- the config sections (edge/settings/) and edge/config.py import no runtime module: of edge, only
  edge.settings, edge.errors and edge.types (edge/settings/ at any depth; edge/config.py at module
  level, since ``check-config`` loads the models and the zone overlay it checks), and
  ``import edge.config`` loads nothing else of edge;
- edge/'s stages follow the frame's flow, capture -> infer -> track -> decide -> act: a stage
  imports no later stage, at any depth, and of the rest of edge only the shared leaves (errors,
  types, manifest, settings, atomic, ...); only act may also import edge.config (the zone editor
  checks a config's text as ``check-config`` does; ``set-password`` reads the password file's
  place) and edge.pipeline (``--annotate`` draws a ``FrameResult``). No stage imports the
  wiring that sits on top of them all (service, cli, doctor, enroll, fakes).
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


def imports_of(package: str, forbidden: tuple[str, ...]) -> list[str]:
    """'file:line imports X' for every import of a ``forbidden`` package in ``package``'s files."""
    return [f"{p.relative_to(ROOT)}:{line} imports {mod}"
            for p in sorted((ROOT / package).rglob("*.py"))
            for line, mod in imported_modules(p) if mod in forbidden]


def test_edge_never_imports_the_toolchain():
    bad = imports_of("edge", TOOLCHAIN)
    assert bad == [], "\n".join(bad)


def test_convert_never_imports_the_benchmarks():
    bad = imports_of("convert", ("benchmarks",))
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


# ---- config sections: no runtime imports --------------------------------------------------------

SETTINGS_MAY_IMPORT = ("edge.settings", "edge.errors", "edge.types")


def edge_imports(path: Path, module: str, top_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every import of an edge module in a file, relative ones resolved.

    Args:
        path: the file; module: its dotted name (``edge.settings.zones``), for relative imports.
        top_level_only: only imports run when the module is imported (not those inside functions).
    """
    tree = ast.parse(path.read_text(), str(path))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if top_level_only:
        nodes = []
        todo = list(tree.body)
        while todo:
            node = todo.pop()
            nodes.append(node)
            if isinstance(node, (ast.If, ast.Try)):  # run at import time too
                todo += [*node.body, *node.orelse, *getattr(node, "finalbody", []),
                         *(s for h in getattr(node, "handlers", []) for s in h.body)]
    else:
        nodes = list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            name = ".".join(p for p in (base, node.module) if p)
            if node.module is None:  # from . import x: each x is a module
                out += [(node.lineno, f"{name}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, name))
    return sorted((line, m) for line, m in out if m == "edge" or m.startswith("edge."))


def runtime_imports(path: Path, module: str, top_level_only: bool = False) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line} imports {m}"
            for line, m in edge_imports(path, module, top_level_only)
            if not any(m == ok or m.startswith(ok + ".") for ok in SETTINGS_MAY_IMPORT)]


def test_config_sections_import_no_runtime_module():
    files = sorted((ROOT / "edge" / "settings").rglob("*.py"))
    assert len(files) > 5  # the package is there
    bad = []
    for p in files:
        parts = p.relative_to(ROOT).with_suffix("").parts
        bad += runtime_imports(p, ".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    bad += runtime_imports(ROOT / "edge" / "config.py", "edge.config", top_level_only=True)
    assert bad == [], "\n".join(bad)


def test_the_section_check_resolves_relative_imports(tmp_path):
    f = tmp_path / "zones.py"
    f.write_text("from .base import _Section\nfrom ..errors import ConfigError\nfrom .. import pipeline\n"
                 "from ..act.web import WebConfig\nimport edge.decide.zones\nimport numpy\n"
                 "def f():\n    from ..act.mqtt import MqttConfig\n")
    assert [m for _, m in edge_imports(f, "edge.settings.zones")] == [
        "edge.settings.base", "edge.errors", "edge.pipeline", "edge.act.web", "edge.decide.zones", "edge.act.mqtt"]
    assert [m for _, m in edge_imports(f, "edge.settings.zones", top_level_only=True)] == [
        "edge.settings.base", "edge.errors", "edge.pipeline", "edge.act.web", "edge.decide.zones"]


def test_importing_the_config_loads_no_runtime_module():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", "import sys, edge.config\n"
                        "print(' '.join(sorted(m for m in sys.modules if m.startswith('edge'))))"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    loaded = set(r.stdout.split())
    assert "edge.settings.zones" in loaded  # it did load the sections
    runtime = {f"edge.{m}" for m in ("capture", "infer", "track", "decide", "act", "act.actuators", "act.web",
                                     "act.mqtt", "decide.arming", "act.door", "decide.facetouch", "decide.zones",
                                     "pipeline", "infer.models", "capture.sources", "service")}
    assert loaded & runtime == set()
    others = sorted(m for m in loaded - {"edge", "edge.config", "edge.errors", "edge.types"}
                    if not m.startswith("edge.settings"))
    assert others == [], others


# ---- the frame's flow: capture -> infer -> track -> decide -> act -------------------------------

STAGES = ("capture", "infer", "track", "decide", "act")
#: Of the rest of edge, what every stage may import: leaves that import no stage themselves.
SHARED = ("edge.errors", "edge.types", "edge.manifest", "edge.settings", "edge.atomic", "edge.installed",
          "edge.jsonable", "edge.imagehash", "edge.pi_health")
#: What act may import besides: the config (the zone editor checks a config's text as check-config
#: does; set-password finds the password file) and the pipeline (--annotate draws its FrameResult).
ACT_ALSO = ("edge.config", "edge.pipeline")


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "edge" and parts[1] in STAGES else None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def flow_problems(path: Path, module: str) -> list[str]:
    """'module:line imports X' for every import of ``module`` (a stage's) against the flow."""
    stage = stage_of(module)
    allowed = SHARED + (ACT_ALSO if stage == "act" else ())
    bad = []
    for line, m in edge_imports(path, module):
        target = stage_of(m)
        if target is not None:
            if STAGES.index(target) > STAGES.index(stage):
                bad.append(f"{module}:{line} imports {m}, a later stage")
        elif not any(m == ok or m.startswith(ok + ".") for ok in allowed):
            bad.append(f"{module}:{line} imports {m}")
    return bad


def test_the_stages_follow_the_frames_flow():
    files = [p for stage in STAGES for p in sorted((ROOT / "edge" / stage).rglob("*.py"))]
    assert len(files) > 20  # the stages are there
    bad = [problem for p in files for problem in flow_problems(p, module_name(p))]
    assert bad == [], "\n".join(bad)


def test_the_shared_leaves_import_no_stage():
    # Otherwise a stage could reach a later one through them.
    files = [p for p in sorted((ROOT / "edge").rglob("*.py"))
             if any(module_name(p) == ok or module_name(p).startswith(ok + ".") for ok in SHARED)]
    assert len(files) > 10
    bad = [f"{module_name(p)}:{line} imports {m}" for p in files for line, m in edge_imports(p, module_name(p))
           if not any(m == ok or m.startswith(ok + ".") for ok in SHARED)]
    assert bad == [], "\n".join(bad)


@pytest.mark.parametrize("module, text, expected", [
    ("edge.capture.sources",
     "from ..errors import SourceError\nfrom .demo import DemoSource\ndef f():\n"
     "    from ..act.events import EventStore\n    from .. import pipeline\n    from ..infer import models\n",
     ["edge.capture.sources:4 imports edge.act.events, a later stage", "edge.capture.sources:5 imports edge.pipeline",
      "edge.capture.sources:6 imports edge.infer, a later stage"]),
    ("edge.act.annotate", "from ..pipeline import FrameResult\nfrom ..decide.zones import Privacy\nfrom .. import service\n",
     ["edge.act.annotate:3 imports edge.service"]),
])
def test_the_flow_check_sees_backward_and_wiring_imports(tmp_path, module, text, expected):
    (tmp_path / "m.py").write_text(text)
    assert flow_problems(tmp_path / "m.py", module) == expected


# ---- the model's flow: data -> tflite -> parse -> verify -> report -> pipeline -> train ---------

CONVERT_STAGES = ("data", "tflite", "parse", "verify", "report", "pipeline", "train")


def convert_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a convert module in a file, at any depth; no relative ones."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                out.append((node.lineno, "."))
            elif node.module == "convert":  # from convert import train: each name is a module
                out += [(node.lineno, f"convert.{a.name}") for a in node.names]
            elif node.module:
                out.append((node.lineno, node.module))
    return [(line, m) for line, m in out if m == "." or m.split(".")[0] == "convert"]


def convert_flow_problems(path: Path, module: str) -> list[str]:
    parts = module.split(".")
    stage = parts[1] if len(parts) > 1 and parts[1] in CONVERT_STAGES else None
    bad = []
    for line, m in convert_imports(path):
        if m == ".":
            bad.append(f"{module}:{line} imports relatively (name the stage)")
            continue
        target = m.split(".")[1] if m.count(".") else None
        if target is None or target not in CONVERT_STAGES:
            if stage is not None:  # convert's top (build_models) sits above every stage
                bad.append(f"{module}:{line} imports {m}, not a stage")
        elif stage is not None and CONVERT_STAGES.index(target) > CONVERT_STAGES.index(stage):
            bad.append(f"{module}:{line} imports {m}, a later stage")
    return bad


def test_the_toolchain_stages_follow_the_models_flow():
    files = sorted((ROOT / "convert").rglob("*.py"))
    assert {p.parent.name for p in files} >= set(CONVERT_STAGES)  # the stages are there
    bad = [problem for p in files for problem in convert_flow_problems(p, module_name(p))]
    assert bad == [], "\n".join(bad)


@pytest.mark.parametrize("module, text, expected", [
    ("convert.verify.evaluate",
     "from convert.data import dataset\nfrom convert import pipeline\ndef f():\n"
     "    from convert.train.teacher import Teacher\n    from .metrics import roc\n"
     "    import convert.build_models\n",
     ["convert.verify.evaluate:2 imports convert.pipeline, a later stage",
      "convert.verify.evaluate:4 imports convert.train.teacher, a later stage",
      "convert.verify.evaluate:5 imports relatively (name the stage)",
      "convert.verify.evaluate:6 imports convert.build_models, not a stage"]),
    ("convert.build_models", "from convert.train import train_detector\nimport convert.pipeline.hands\n", []),
])
def test_the_toolchain_flow_check_sees_later_stages(tmp_path, module, text, expected):
    (tmp_path / "m.py").write_text(text)
    assert convert_flow_problems(tmp_path / "m.py", module) == expected


def test_every_package_is_in_the_install():
    # pyproject lists packages by hand: a subpackage left out imports in a checkout and an
    # editable install, and is missing from the Pi's `pip install` (systemd/install.sh).
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for top in ("edge", "convert", "benchmarks")
             for p in (ROOT / top).rglob("__init__.py")}
    assert found - listed == set()


def test_the_fakes_import_without_the_test_suite(tmp_path):
    # edge/fakes.py ships in the package (as gpiozero ships MockFactory): a benchmark, or the
    # tests of a project using doorguard, import it from an install that has no tests/.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", "import sys, edge.fakes\n"
                        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
                        "('tests', 'conftest', 'faults', 'virtual_time'))))"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == []
