"""`charwright import`: a Keras model trained elsewhere, checked before Keras reads it
(archive.py), converted into a RUN_DIR (convert.py) with its vocabulary (vocab.py)."""
