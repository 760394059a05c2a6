"""Source models -> a faithful float Keras model: darknet cfg+weights, ONNX graphs, Coral's MobileNet weights.

Imports only convert.data and convert.tflite.
"""
