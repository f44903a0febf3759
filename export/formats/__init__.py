"""One writer per file format export writes (export/writer.py's WRITERS): npz.py (weights.npz),
onnx.py, tflite/ (float, dynamic-range and full-integer files, the integer-form step graph and
their calibration); job.py is what each writer is given and returns."""
