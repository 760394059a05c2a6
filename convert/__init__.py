"""doorguard workstation toolchain: darknet/Keras/ONNX/PyTorch -> int8 TFLite, training, reports.

The folders follow a model's flow, each importing only the ones before it (tests/test_layers.py):

- ``data``: the labelled photos (image folders, VOC boxes, the dataroots CSV, face crops);
- ``tflite``: float32 reference, calibration, full-integer int8 quantization and its checks;
- ``parse``: source models (darknet cfg+weights, ONNX, Coral weights) -> a float Keras model;
- ``verify``: int8 against float and OpenCV, the pipeline on labelled photos (``doorguard eval``),
  the peers, doorway conditions;
- ``report``: a build's files all together or none, the model cards;
- ``pipeline``: one command per converter (``doorguard convert darknet|keras|onnx|torch``);
- ``train``: the detector and classifier recipes, each finished by a converter of pipeline/;
- ``build_models``: ``make models``, every shipped model from ../shared, on top of them all.

Imports tensorflow lazily. Preprocessing and YOLO decoding come from ``edge`` so calibration and
evaluation see exactly what the Pi runs; nothing of convert/ imports ``benchmarks``.
"""
