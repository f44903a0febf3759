"""charwright.export: RUN_DIR -> BUNDLE_DIR (TFLite, ONNX, numpy weights) with parity figures.

TensorFlow, tf2onnx and onnx are imported inside the functions that need them.
"""
