"""One small exception hierarchy for the project."""


class BirdclefError(Exception):
    """Base class of every error this package raises on purpose."""


class SchemaError(BirdclefError, ValueError):
    """A CSV (taxonomy, train.csv, submission, solution) does not have the expected shape."""


class AudioError(BirdclefError):
    """An audio file cannot be decoded or holds no usable signal."""


class CacheMismatchError(BirdclefError):
    """A cache or run folder was built under another configuration."""


class SubmissionError(BirdclefError, ValueError):
    """A submission would be invalid (missing rows, columns, non-finite values)."""


class InferenceError(BirdclefError):
    """An inference engine (ONNX Runtime, OpenVINO) failed on one input: that file falls back, the run goes on."""


class BackboneUnavailable(BirdclefError):
    """A backbone's weights or optional dependency are not installed here."""


class ParameterError(BirdclefError, ValueError):
    """A parameter is unknown, or its value does not fit its field (the message is one line)."""
