"""convert/pipeline/hands.py: fold float16 DEQUANTIZE constants + signature, int8 quantization, the manifest;
and the shipped palm model through the runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.infer.ssd import SsdDetector

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models" / "palm-detection-lite.json"


def _fp16_model(tmp_path: Path) -> Path:
    """A tiny conv model converted with float16 weights (DEQUANTIZE ops, no signature kept)."""
    tf = pytest.importorskip("tensorflow")
    inp = tf.keras.Input((16, 16, 3))
    x = tf.keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = tf.keras.layers.PReLU(shared_axes=[1, 2])(x)  # the palm model's activation
    out = tf.keras.layers.Conv2D(2, 1)(x)
    model = tf.keras.Model(inp, out)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    p = tmp_path / "fp16.tflite"
    p.write_bytes(conv.convert())
    return p


@pytest.mark.slow
def test_fold_keeps_the_function_and_adds_a_signature(tmp_path):
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils as fu

    from convert.pipeline import hands

    src = _fp16_model(tmp_path)
    before = fu.read_model_from_bytearray(bytearray(src.read_bytes()))
    codes = [fu.get_builtin_code_from_operator_code(before.operatorCodes[op.opcodeIndex])
             for op in before.subgraphs[0].operators]
    assert fb.BuiltinOperator.DEQUANTIZE in codes
    folded = hands.prepare_float(src)
    after = fu.read_model_from_bytearray(bytearray(folded))
    codes = [fu.get_builtin_code_from_operator_code(after.operatorCodes[op.opcodeIndex])
             for op in after.subgraphs[0].operators]
    assert fb.BuiltinOperator.DEQUANTIZE not in codes
    assert all(t.type != fb.TensorType.FLOAT16 for t in after.subgraphs[0].tensors)
    assert hands._interp(folded).get_signature_list().keys() == {"serving_default"}
    xs = [np.random.default_rng(i).random((1, 16, 16, 3), dtype=np.float32) - 0.5 for i in range(3)]
    assert hands.max_abs_diff(src, folded, xs) == 0.0
    # PRELU -> RELU + alpha * (x - RELU): the same function, and no PRELU left for the quantizer.
    assert fb.BuiltinOperator.PRELU in codes or fb.BuiltinOperator.PRELU in [
        fu.get_builtin_code_from_operator_code(after.operatorCodes[op.opcodeIndex])
        for op in after.subgraphs[0].operators]
    plain = hands.decompose_prelu(folded)
    m = fu.read_model_from_bytearray(bytearray(plain))
    codes = [fu.get_builtin_code_from_operator_code(m.operatorCodes[op.opcodeIndex]) for op in m.subgraphs[0].operators]
    assert fb.BuiltinOperator.PRELU not in codes and fb.BuiltinOperator.DEPTHWISE_CONV_2D in codes
    assert hands.max_abs_diff(folded, plain, xs) < 1e-6


@pytest.mark.slow
def test_quantize_gives_int8_input_and_outputs(tmp_path):
    pytest.importorskip("ai_edge_quantizer")
    from convert.pipeline import hands

    folded = hands.prepare_float(_fp16_model(tmp_path))
    cal = [np.random.default_rng(i).random((1, 16, 16, 3), dtype=np.float32) for i in range(60)]
    assert hands.count_float_ops(hands.quantize(folded, cal)) == 1  # the PRELU stays float
    q = hands.quantize(hands.decompose_prelu(folded), cal)
    it = hands._interp(q)
    assert it.get_input_details()[0]["dtype"] == np.int8
    assert all(o["dtype"] == np.int8 for o in it.get_output_details())
    assert hands.count_float_ops(q) == 0
    with pytest.raises(Exception, match="calibration"):
        hands.quantize(folded, cal[:10])


@pytest.mark.skipif(not SHIPPED.is_file(), reason="models/palm-detection-lite.json not built (make models)")
def test_shipped_palm_model_loads_and_agrees_with_its_float_reference():
    m = json.loads(SHIPPED.read_text())
    assert m["ssd"]["num_anchors"] == 2016 and m["labels"] == ["hand"]
    assert m["source"]["kind"] == "tflite" and "mediapipe==0.10.21" in m["metrics"]["origin"]["wheel"]
    agree = m["metrics"]["int8_vs_float"]
    assert agree["regions"] >= 100 and agree["tolerant_f1"] >= 0.8
    int8 = SsdDetector(SHIPPED)
    assert int8.model.input["dtype"] == np.int8
    img = np.full((240, 320, 3), 127, np.uint8)
    assert int8.detect(img) == []  # a flat grey region holds no hand
    if (SHIPPED.parent / m["float_tflite"]).is_file():  # the float reference is made by make models, not kept
        assert SsdDetector(SHIPPED, use_float=True).detect(img) == []


@pytest.mark.skipif(not SHIPPED.is_file(), reason="models/palm-detection-lite.json not built (make models)")
def test_arm_check_reads_the_palm_model():
    """test-arm: the shipped palm model is all int8 (no float island, so bit-identical is
    required of it) and its same-decision check decodes SSD outputs."""
    from ai_edge_litert.interpreter import Interpreter

    from benchmarks.arm import arm_check

    it = Interpreter(str(SHIPPED.parent / json.loads(SHIPPED.read_text())["tflite"]))
    it.allocate_tensors()
    assert arm_check.float_ops(it) == 0
    m = json.loads(SHIPPED.read_text())
    from edge.manifest import load_manifest

    man = load_manifest(SHIPPED, verify_hash=False)
    boxes, scores = (np.zeros((1, 2016, 18), np.int8), np.full((1, 2016, 1), -128, np.int8))
    keys = {o["name"]: f"out/x/{o['name']}" for o in m["outputs"]}
    ref = {keys["Identity"]: boxes, keys["Identity_1"]: scores}
    other = {keys["Identity"]: boxes + 1, keys["Identity_1"]: scores}
    assert arm_check._same_ssd_boxes(man, keys, ref, other)
