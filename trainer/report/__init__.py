"""`charwright report`: a run's or a bundle's training curves and parity, as PNG or HTML."""
