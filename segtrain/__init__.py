"""segtrain: config-driven training of the classic semantic segmentation networks."""

__version__ = "0.1.0"
