"""convert torch / convert onnx on real torchvision models (random weights): MobileNetV2 with 2 and 3
outputs, an ONNX file exported from it, state dicts that do not fit, a label count mismatch.

Needs the torch extra (torch and a torchvision built for it). Skipped where they cannot be
imported: `make test` does not install them (PyPI's x86_64 torch + torchvision is a 5.5 GB
CUDA build); `make test-torch` does. The ONNX import itself is covered without torch by
tests/test_convert_onnx.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch (doorguard[torch]) is not installed")
if "tensorflow" in sys.modules and "torchvision" not in sys.modules:
    # PyPI's CUDA torch 2.14.1 + torchvision 0.29.1 segfault when torchvision (torch._dynamo) is
    # imported after TensorFlow; `doorguard convert torch` imports them first. Probe, never crash the run.
    _probe = subprocess.run([sys.executable, "-c", "import tensorflow, torch, torchvision"], capture_output=True)
    if _probe.returncode != 0:
        pytest.skip(f"torchvision crashes when imported after TensorFlow in this build (exit {_probe.returncode}); "
                    f"run this file in its own process: make test-torch", allow_module_level=True)
try:
    import torchvision
except Exception as e:  # noqa: BLE001 - a torchvision built for another torch raises RuntimeError
    pytest.skip(f"torchvision (doorguard[torch]) cannot be imported: {e}", allow_module_level=True)
pytest.importorskip("tensorflow")
pytest.importorskip("onnx", reason="the onnx package (test extra) is not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime (test extra) is not installed")

from edge.cli import main as cli  # noqa: E402
from edge.errors import ModelError, UsageError  # noqa: E402

SIZE = 32


def _one_error_line(err: str) -> bool:
    return "Traceback" not in err and sum(line.startswith("doorguard: error:") for line in err.splitlines()) == 1


def jitter(model, seed: int = 0):
    """Random batch-norm statistics and a wider last layer, so outputs differ between images."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            elif isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, 0.5, generator=g)
    return model.eval()


def small_mobilenet_v2(num_classes: int = 2):
    """torchvision's MobileNetV2 at width 0.25 (an ``--arch MODULE:CALLABLE`` factory for the tests)."""
    return torchvision.models.mobilenet_v2(num_classes=num_classes, width_mult=0.25)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    import cv2

    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for lab in ("a", "b", "c"):
        (root / lab).mkdir()
        for i in range(8):
            img = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            cv2.circle(img, (20, 20), 8 + 3 * "abc".index(lab), (255, 255, 255), -1)
            cv2.imwrite(str(root / lab / f"{i}.png"), img)
    return root


def fastai_resnet18(num_classes: int = 3):
    """fast.ai's cnn_learner layout: a ResNet18 body, AdaptiveConcatPool2d (max + average), then
    Flatten, BatchNorm1d, Dropout, Linear, ReLU, BatchNorm1d, Dropout, Linear."""
    nn = torch.nn
    body = nn.Sequential(*list(torchvision.models.resnet18().children())[:-2])

    class ConcatPool(nn.Module):
        def forward(self, x):
            return torch.cat([nn.functional.adaptive_max_pool2d(x, 1), nn.functional.adaptive_avg_pool2d(x, 1)], 1)

    head = nn.Sequential(ConcatPool(), nn.Flatten(), nn.BatchNorm1d(1024), nn.Dropout(0.25), nn.Linear(1024, 512),
                         nn.ReLU(), nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, num_classes))
    return nn.Sequential(body, head)


@pytest.mark.parametrize("arch,classes,convs", [("mobilenet_v2", 2, 52), ("mobilenet_v2", 3, 52),
                                                ("resnet18", 3, 20), ("fastai_resnet18", 3, 20)])
def test_onnx_rebuild_matches_torch_and_onnxruntime(tmp_path, arch, classes, convs):
    import onnxruntime as ort

    from convert.parse.onnx_graph import build_keras, load_onnx
    from convert.pipeline.torch_import import export_onnx

    net = fastai_resnet18(classes) if arch == "fastai_resnet18" else torchvision.models.get_model(
        arch, num_classes=classes)
    model = jitter(net)
    p = tmp_path / "m.onnx"
    export_onnx(model, SIZE, SIZE, p)
    g = build_keras(load_onnx(p))
    assert g.classes == classes and g.inner_transposes == 0 and g.ops["Conv"] == convs
    sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(classes).normal(size=(3, 1, SIZE, SIZE, 3)).astype(np.float32)
    for xi in x:
        nchw = np.ascontiguousarray(xi.transpose(0, 3, 1, 2))
        with torch.no_grad():
            ref = model(torch.from_numpy(nchw)).numpy()
        got = np.asarray(g.model(xi))
        assert np.abs(sess.run(None, {"image": nchw})[0] - ref).max() < 1e-3
        assert np.abs(got - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())


def test_convert_torch_torchvision_mobilenet_v2(images, tmp_path, capsys):
    from convert.tflite import quantize

    sd = tmp_path / "mnv2.pth"
    torch.save(jitter(torchvision.models.mobilenet_v2(num_classes=3)).state_dict(), sd)
    out = tmp_path / "models" / "tv"
    rc = cli(["convert", "torch", "--arch", "torchvision:mobilenet_v2", "--state-dict", str(sd),
              "--labels", "a,b,c", "--calib", str(images), "--val", str(images), "--input", f"{SIZE}x{SIZE}",
              "--out", str(out), "--min-accuracy-drop", "100", "--min-agreement", "0"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    m = json.loads((tmp_path / "models" / "tv.json").read_text())
    assert m["source"]["kind"] == "torch" and m["metrics"]["conversion"]["arch"] == "torchvision:mobilenet_v2"
    fw = m["metrics"]["framework"]
    assert fw["framework"].startswith("torch ") and fw["images"] == 24 and fw["transposes"]["total"] == 0
    assert fw["float32_max_prob_diff"] < 1e-3 and "framework_accuracy" in fw
    assert m["input"]["width"] == SIZE and m["input"]["mean"] == [0.485, 0.456, 0.406]
    quantize.check_full_int8((tmp_path / "models" / "tv.tflite").read_bytes())


def test_convert_onnx_exported_from_mobilenet_v2(images, tmp_path, capsys):
    from convert.pipeline.torch_import import export_onnx

    p = tmp_path / "small.onnx"
    export_onnx(jitter(small_mobilenet_v2(2)), SIZE, SIZE, p)
    rc = cli(["convert", "onnx", "--model", str(p), "--labels", "a,b", "--calib", str(images),
              "--out", str(tmp_path / "models" / "o"), "--min-accuracy-drop", "100", "--min-agreement", "0"])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((tmp_path / "models" / "o.json").read_text())
    assert m["metrics"]["framework"]["framework"].startswith("onnxruntime")
    assert m["metrics"]["framework"]["int8_top1_agreement"] >= 0.5


def test_custom_arch_factory(images, tmp_path, capsys):
    sd = tmp_path / "small.pth"
    # A DataParallel-style checkpoint: {"state_dict": {"module.<key>": tensor}}.
    state = {f"module.{k}": v for k, v in jitter(small_mobilenet_v2(3)).state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, sd)
    rc = cli(["convert", "torch", "--arch", f"{__name__}:small_mobilenet_v2", "--state-dict", str(sd),
              "--labels", "a,b,c", "--calib", str(images), "--input", f"{SIZE}x{SIZE}",
              "--out", str(tmp_path / "models" / "s"), "--min-accuracy-drop", "100", "--min-agreement", "0"])
    assert rc == 0, capsys.readouterr().err


def _run_torch(sd: Path, images: Path, tmp_path: Path, labels: str, arch: str = "torchvision:mobilenet_v2"):
    return cli(["convert", "torch", "--arch", arch, "--state-dict", str(sd), "--labels", labels,
                "--calib", str(images), "--input", f"{SIZE}x{SIZE}", "--out", str(tmp_path / "models" / "x")])


def test_label_count_mismatch(images, tmp_path, capsys):
    sd = tmp_path / "two.pth"
    torch.save(torchvision.models.mobilenet_v2(num_classes=2).state_dict(), sd)
    rc = _run_torch(sd, images, tmp_path, "a,b,c")
    err = capsys.readouterr().err
    assert rc == UsageError.exit_code and _one_error_line(err)
    assert "3 labels given (a, b, c) but the state dict's last layer has 2 classes (classifier.1.weight" in err


def test_state_dict_that_does_not_fit(images, tmp_path, capsys):
    sd = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), sd)
    rc = _run_torch(sd, images, tmp_path, "a,b")
    err = capsys.readouterr().err
    assert rc == ModelError.exit_code and _one_error_line(err)
    assert "does not fit torchvision:mobilenet_v2 with 2 classes" in err and "missing" in err
    assert not list((tmp_path / "models").glob("x*"))


def test_pickled_model_and_unknown_arch(images, tmp_path, capsys):
    whole = tmp_path / "whole.pth"
    torch.save(small_mobilenet_v2(2), whole)
    assert _run_torch(whole, images, tmp_path, "a,b") == ModelError.exit_code
    err = capsys.readouterr().err
    assert _one_error_line(err) and "not a state dict" in err
    assert _run_torch(whole, images, tmp_path, "a,b", arch="torchvision:mobilenet_v9") == UsageError.exit_code
    err = capsys.readouterr().err
    assert _one_error_line(err) and "no classification model 'mobilenet_v9'" in err and "mobilenet_v2" in err
    assert _run_torch(whole, images, tmp_path, "a,b", arch="mobilenet_v2") == UsageError.exit_code
    assert "--arch must be torchvision:NAME" in capsys.readouterr().err
