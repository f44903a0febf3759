"""charwright.runtime: load a bundle and generate text, without TensorFlow.

Module-level imports here are numpy and the standard library only; onnxruntime and ai_edge_litert
are imported inside the backends that need them.
"""

from .errors import (  # noqa: F401
    BackendUnavailable,
    BundleError,
    CharwrightError,
    ConfigError,
    CorpusError,
    ExportError,
    ParityError,
    RunDirError,
    VocabularyError,
)
from .vocab import Vocabulary  # noqa: F401
from .model import Model, Score, load  # noqa: F401,E402
from .sampling import SamplingConfig  # noqa: F401,E402
