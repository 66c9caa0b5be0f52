"""birdclef: BirdCLEF competition data → embeddings → head → submission.csv, on a CPU, offline."""
from birdclef.config import Config, build_config
from birdclef.evaluate import score

__version__ = "0.1.0"
__all__ = ["Config", "build_config", "score", "__version__"]
