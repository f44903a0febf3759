"""TFLite files: float32, float16, dynamic-range int8, full int8 and int16x8 (convert.py), the
file writer (write.py), the integer-form step graph full int8 is converted from (int8_graph.py),
its calibrated integer ranges (int8.py) and the (token, state) pairs they are calibrated on
(calibration.py)."""
