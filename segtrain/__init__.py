"""segtrain: config-driven training of the classic semantic segmentation networks.

`from segtrain import Segmenter` gives the Python API for trained checkpoints (segtrain.segmenter); it is imported
on first use, so `import segtrain` alone imports no torch."""

__version__ = "0.1.0"
__all__ = ["Segmenter", "__version__"]


def __getattr__(name):
    if name == "Segmenter":
        from .segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'segtrain' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), "Segmenter"])
