"""One module per file format export writes: onnx.py, tflite/ (float, dynamic-range and full
integer files, their calibration), each turning the run's step graph into files of the bundle."""
