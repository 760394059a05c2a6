"""Keras -> TFLite: the float32 reference, calibration and full-integer int8 quantization, the int8 checks;
and TensorFlow's own logging kept out of the commands' output.

Imports only convert.data.
"""
