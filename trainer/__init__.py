"""charwright.trainer: corpus -> character-level recurrent model -> run directory.

Nothing here imports TensorFlow at module level: `train()` and the step-graph builder import it
inside, so `charwright --help` and the runtime stay light.
"""

from charwright.trainer.config import ModelConfig, TrainConfig  # noqa: F401
