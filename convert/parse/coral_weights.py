"""ImageNet weights for a Keras MobileNet v1, dequantized from Coral's int8 TF-slim ``.tflite``.

The Apache-2.0 ``mobilenet_v1_1.0_224_quant_embedding_extractor.tflite``
(google-coral/test_data) holds a full ImageNet MobileNet v1 1.0 with BatchNorm
folded into uint8 weights: the default mask classifier's backbone starts from it
(``train classifier --backbone-weights X.tflite``, see ``convert.train.mobilenet.build_backbone``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ModelError

_CORAL_LAYER = r"Conv2d_(\d+)(?:_(depthwise|pointwise))?/"


def _coral_arrays(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Keras MobileNet v1 layer name -> (float kernel in Keras layout, float bias), dequantized.

    The Coral/TF-slim quantized MobileNet v1 stores each conv with BatchNorm
    folded in: uint8 weights (real = scale * (q - zero_point)), OHWI layout,
    and an int32 bias (real = scale * q).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Without the default XNNPACK delegate: delegated constant tensors read back as null.
    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    kernels: dict[str, np.ndarray] = {}
    biases: dict[str, np.ndarray] = {}
    for t in interp.get_tensor_details():
        name = t["name"]
        qp = t["quantization_parameters"]
        m_w = re.search(_CORAL_LAYER + r"weights_quant", name)
        m_b = re.search(_CORAL_LAYER + r"BatchNorm_Fold/bias$", name)
        # Activation tensors carry fused names too: keep 4-D 8-bit weights and 1-D int32 biases.
        if m_w and not (t["dtype"] in (np.uint8, np.int8) and len(t["shape"]) == 4):
            m_w = None
        if m_b and not (t["dtype"] == np.int32 and len(t["shape"]) == 1):
            m_b = None
        m = m_w or m_b
        if not m or not len(qp["scales"]):
            continue
        i, kind = int(m.group(1)), m.group(2)
        keras_name = "conv1" if i == 0 else ("conv_dw_%d" if kind == "depthwise" else "conv_pw_%d") % i
        q = interp.get_tensor(t["index"]).astype(np.float32)
        scales = qp["scales"].astype(np.float32)
        zps = qp["zero_points"].astype(np.float32)
        if m_w:
            axis = int(qp.get("quantized_dimension", 0))
            shape = [1] * q.ndim
            shape[axis] = -1
            if len(scales) == 1:
                real = scales[0] * (q - zps[0])
            else:
                real = scales.reshape(shape) * (q - zps.reshape(shape))
            kernels[keras_name] = np.transpose(real, (1, 2, 3, 0))  # OHWI / 1HWC -> HWIO / HWC1
        else:
            biases[keras_name] = (scales * q) if len(scales) > 1 else scales[0] * q
    out = {k: (kernels[k], biases[k]) for k in kernels if k in biases}
    return out


def load_tflite_backbone_weights(base: Any, path: Path, name: str) -> None:
    """Put a quantized TF-slim MobileNet v1 (Coral .tflite) into a Keras MobileNet v1, dequantized.

    BatchNorm is already folded into the TFLite convolutions, so each Keras
    BatchNormalization becomes the identity plus the folded bias
    (gamma 1, beta = bias, mean 0, variance 1 - epsilon).

    Args:
        base: ``keras.applications.MobileNet`` without top.
        path: the .tflite file.
        name: the backbone's name, for the messages.

    Raises:
        ModelError: the file is not such a model or does not fit ``name``.
    """
    try:
        arrays = _coral_arrays(path)
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"backbone weights {path} do not fit {name}: {e}") from e
    layers = {layer.name: layer for layer in base.layers}
    wanted = [n for n in layers if n == "conv1" or n.startswith(("conv_dw_", "conv_pw_"))
              and not n.endswith(("_bn", "_relu"))]
    # A MobileNet v2 has no conv1/conv_dw_N/conv_pw_N layers: nothing it has is wanted.
    if not arrays or sorted(arrays) != sorted(wanted):
        raise ModelError(f"backbone weights {path} do not fit {name}: found {len(arrays)} MobileNet v1 "
                         f"convolutions, the backbone has {len(wanted)}")
    for lname, (kernel, bias) in arrays.items():
        conv, bn = layers[lname], layers[lname + "_bn"]
        want = tuple(conv.get_weights()[0].shape)
        if kernel.shape != want:
            raise ModelError(f"backbone weights {path} do not fit {name}: {lname} kernel "
                             f"{list(kernel.shape)} vs {list(want)}")
        conv.set_weights([kernel])
        c = bias.shape[0]
        bn.set_weights([np.ones(c, np.float32), bias.astype(np.float32), np.zeros(c, np.float32),
                        np.full(c, 1.0 - bn.epsilon, np.float32)])
