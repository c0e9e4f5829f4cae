"""The two backends of the fully connected CRF (Krähenbühl & Koltun, NIPS 2011), which compute the same mean-field
inference: `torch` (segtrain.crf.meanfield: CPU or CUDA, batched, differentiable) and `pydensecrf` (Krähenbühl's C++
code through its Python binding, CPU only), which stays as the reference the torch one is tested against.

Energy: unary -log p, plus a Gaussian (smoothness) kernel w2 exp(-|dp|^2 / 2 sigma_gamma^2) and a bilateral
(appearance) kernel w1 exp(-|dp|^2 / 2 sigma_alpha^2 - |dI|^2 / 2 sigma_beta^2), both with Potts compatibility.
docs/reference.md section 5 holds the published parameters (configs/crf/). torch is imported only when its backend
runs."""
import numpy as np

BACKENDS = ("torch", "pydensecrf")


def dense_crf(image: np.ndarray, probs: np.ndarray, w1: float, sigma_alpha: float, sigma_beta: float, w2: float,
              sigma_gamma: float, iterations: int) -> np.ndarray:
    """pydensecrf: image (H, W, 3) uint8 RGB and probs (C, H, W) float -> (H, W) uint8 labels."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    classes, height, width = probs.shape
    crf = dcrf.DenseCRF2D(width, height, classes)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs.astype(np.float32))))
    crf.addPairwiseGaussian(sxy=sigma_gamma, compat=w2)
    crf.addPairwiseBilateral(sxy=sigma_alpha, srgb=sigma_beta, rgbim=np.ascontiguousarray(image), compat=w1)
    q = np.array(crf.inference(iterations)).reshape(classes, height, width)
    return q.argmax(0).astype(np.uint8)


def crf_params(crf_cfg) -> dict:
    """dense_crf's keyword arguments from a `crf` config (its name, backend and parallelism dropped)."""
    return {key: crf_cfg[key] for key in ("w1", "sigma_alpha", "sigma_beta", "w2", "sigma_gamma", "iterations")}


def refine_one(job):
    """One job (image, probabilities, params, backend, extra) in this process (a CPU worker): (labels, extra)."""
    image, probs, params, backend, extra = job
    if backend == "pydensecrf":
        return dense_crf(image, probs, **params), extra
    import torch

    from .meanfield import dense_crf_torch

    labels = dense_crf_torch([torch.from_numpy(image)], [torch.from_numpy(probs)], **params)[0]
    return labels.to(torch.uint8).numpy(), extra
