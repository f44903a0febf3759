"""TFLite files: float32, float16, dynamic-range int8, full int8 and int16x8 (convert.py), the
calibrated integer ranges (int8.py) and the (token, state) pairs they are calibrated on."""
