"""BUNDLE_DIR read and validated: the manifest's typed checks, every file's size and sha256, the
probe. `load_bundle(path)` is the entry point."""

from charwright.runtime.bundle.reader import Bundle, FileEntry, load_bundle  # noqa: F401
