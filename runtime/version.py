"""The installed charwright version (for --version, run.json and manifests)."""

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    try:
        return version("charwright")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
