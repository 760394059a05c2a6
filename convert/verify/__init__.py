"""Measure a converted model: int8 against float, against OpenCV / ground truth (the detector report),
the full pipeline on labelled photos (``doorguard eval``), the peers, doorway conditions, face touches.

Imports only the stages below it (data, tflite, parse).
"""
