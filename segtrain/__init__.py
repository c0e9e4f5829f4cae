"""segtrain: config-driven training of the classic semantic segmentation networks.

`from segtrain import Segmenter` gives the Python API for trained checkpoints (segtrain.segmenter); it is imported
on first use, so `import segtrain` alone imports no torch. Every bad input it meets raises SegtrainError (one line
naming the file or key), importable from here too."""

__version__ = "0.1.0"
from .errors import SegtrainError

__all__ = ["Segmenter", "SegtrainError", "__version__"]


def __getattr__(name):
    if name == "Segmenter":
        from .segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'segtrain' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), "Segmenter"])
