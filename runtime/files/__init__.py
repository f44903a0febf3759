"""Safe, bounded, atomic file I/O: atomic writes and directories, one-writer locks, bounded reads
of regular files inside a root, npz arrays checked from their headers. Used by the trainer and
export too."""
