"""The fully connected CRF (Krähenbühl & Koltun, NIPS 2011) on a network's class probabilities:

    lattice    the permutohedral lattice (Adams, Baek and Davis 2010) in tensor ops
    meanfield  mean-field inference on it, answer for answer densecrf's (CRF-as-RNN trains through it)
    backends   one image refined by the torch mean field or by pydensecrf, the reference
    refiner    crf_refiner: a stream of images on the evaluating device or in CPU worker processes

Importing this package imports no torch: the CRF's pydensecrf worker processes start light."""
from .backends import BACKENDS, crf_params, dense_crf
from .refiner import crf_refiner

__all__ = ["BACKENDS", "crf_params", "crf_refiner", "dense_crf"]
