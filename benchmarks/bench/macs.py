"""Multiply-accumulates counted from model graphs, and the Pi projection they scale.

The projection takes published Pi latencies of a reference model and scales them by
MACs: a projection, never a measurement (``doorguard bench`` section 6).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Published reference for the Pi projection: yolov4-tiny at 416x416, int8.
REF_MODEL = "yolov4-tiny 416"
#: 21 convolutions of yolov4-tiny.cfg at 416x416 (AlexeyAB darknet; CSP route groups
#: halve the channels), summed here as H*W*Cout*k*k*Cin = 3.454e9; darknet itself
#: prints 6.91 BFLOPs (= 2 x MACs) for this network.
REF_MACS = 3.454e9
REF_PI5_MS = 28.2  # yolov4-tiny int8 416 on a Raspberry Pi 5 (arXiv 2506.09300)
REF_PI4_MS = 243.0  # yolov4-tiny int8 416 on a Raspberry Pi 4, 4 threads (PINTO model zoo issue 44)
#: A small-model check of the same scaling: UltraFace RFB-320 (320x240) on a Raspberry Pi 4B,
#: MNN int8, 4 cores: 11 ms (UltraFace README, as recorded in ../shared/models/SOURCES.md).
SMALL_REF_PI4_MS = 11.0
SMALL_REF_NAME = "UltraFace RFB-320 (TFLite float)"


def tflite_macs(path: Path | str) -> int:
    """Multiply-accumulates of one invoke, from the TFLite graph's tensor shapes.

    CONV_2D: out elements x kh x kw x Cin; DEPTHWISE_CONV_2D: out elements x kh x kw;
    FULLY_CONNECTED: out elements x inputs; TRANSPOSE_CONV: input elements x kh x kw x Cout.
    Other ops (pooling, adds, activations) are not counted: they are a small
    share of the work and every reference figure counts the same way.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # No delegate: XNNPACK would fold ops into DELEGATE nodes.
    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    shapes = {t["index"]: [int(v) for v in t["shape"]] for t in interp.get_tensor_details()}
    total = 0
    for op in interp._get_ops_details():  # noqa: SLF001 - the only op-level view litert offers
        name = op["op_name"]
        ins, outs = list(op["inputs"]), list(op["outputs"])
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w = shapes.get(ins[1])
            out = shapes.get(outs[0])
            if not w or not out:
                continue
            n_out = int(np.prod(out))
            if name == "CONV_2D":
                total += n_out * w[1] * w[2] * w[3]
            elif name == "DEPTHWISE_CONV_2D":
                total += n_out * w[1] * w[2]
            else:
                total += n_out * w[-1]
        elif name == "TRANSPOSE_CONV":
            w, x = shapes.get(ins[1]), shapes.get(ins[2])
            if w and x:
                total += int(np.prod(x)) * w[0] * w[1] * w[2]
    return int(total)


def cv2_macs(net: Any, input_shape: tuple[int, ...]) -> int:
    """MACs of an OpenCV DNN net (darknet/ONNX) from its layers' weight blobs and output shapes.

    Counted like :func:`tflite_macs` (``net.getFLOPS`` over-counts some ONNX graphs).
    """
    ids, _ins, outs = net.getLayersShapes(list(input_shape))
    out_of = {int(i): o for i, o in zip(np.asarray(ids).ravel(), outs)}
    total = 0
    for i in range(1, len(net.getLayerNames()) + 1):
        layer = net.getLayer(i)
        if layer.type not in ("Convolution", "InnerProduct") or not layer.blobs or i not in out_of:
            continue
        w = layer.blobs[0]
        if layer.type == "InnerProduct":
            total += int(w.shape[0]) * int(w.shape[1])
        else:  # weights Cout x Cin/groups x kh x kw: depthwise has Cin/groups = 1
            total += int(np.prod(out_of[i][0])) * int(np.prod(w.shape[1:]))
    return int(total)


def project_ms(macs: float, small_ref_macs: float | None) -> dict[str, float | None]:
    """Projected Pi latencies of a model of ``macs``: scaled from the reference model's
    published Pi 5 and Pi 4 figures, and from the small reference (UltraFace RFB-320, whose
    MACs are ``small_ref_macs``; None when it was not counted). A projection, not a measurement.
    """
    return {"pi5_ms": REF_PI5_MS * macs / REF_MACS, "pi4_ms": REF_PI4_MS * macs / REF_MACS,
            "pi4_small_ms": SMALL_REF_PI4_MS * macs / small_ref_macs if small_ref_macs else None}
