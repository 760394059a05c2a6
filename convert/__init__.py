"""doorguard workstation toolchain: darknet/Keras -> int8 TFLite, training, reports.

Imports tensorflow lazily. Preprocessing and YOLO decoding come from ``edge`` so
calibration and evaluation see exactly what the Pi runs.
"""
