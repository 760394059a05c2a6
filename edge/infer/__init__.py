"""Stages 2-4, preprocess -> infer -> decode: an RGB frame in, typed detections and scores out.

    preprocess.py  letterbox/stretch, colour order, quantize; model boxes back to the frame
    runtime.py     load_interpreter: ai-edge-litert, else tflite-runtime, else tf.lite
    models.py      Detector and Classifier, each built from a manifest (edge/manifest.py)
    yolo.py        YOLO head decode and NMS, in float on the host
    ssd.py         SSD decode (the palm detector of the face-touch check)

The workstation toolchain (convert/) calibrates and measures through these same modules.
Imports nothing of the later stages (track, decide, act) nor of capture.
"""
