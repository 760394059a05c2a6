"""The converters, parse -> build -> calibrate -> quantize -> verify -> report in one command each
(``doorguard convert darknet|keras|onnx|torch``; the hand model).

Imports the stages below it; nothing of train/.
"""
