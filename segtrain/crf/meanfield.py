"""The fully connected CRF's mean-field inference in PyTorch (Krähenbühl & Koltun, NIPS 2011), answer for answer
pydensecrf's: the same features, kernels, normalisation, update order and unary. It runs on CPU and CUDA, on a batch
of images of any sizes at once, and is differentiable, which CRF-as-RNN (segtrain.models.crfrnn) trains through."""
import torch

from .lattice import PermutohedralLattice


def crf_lattices(images, sigma_alpha: float, sigma_beta: float, sigma_gamma: float) -> tuple:
    """The (smoothness, appearance) kernels' lattices, normalised as densecrf's default, over the pixels of `images`
    ((H, W, 3) RGB tensors, 0-255, on one device; sizes may differ) in row-major order, each image on its own
    lattice. The features are densecrf's DenseCRF2D ones: (x, y) / sigma_gamma and (x, y) / sigma_alpha with
    (r, g, b) / sigma_beta."""
    positions, colours, owner = [], [], []
    for index, image in enumerate(images):
        height, width = image.shape[:2]
        ys, xs = torch.meshgrid(torch.arange(height, device=image.device, dtype=torch.float32),
                                torch.arange(width, device=image.device, dtype=torch.float32), indexing="ij")
        positions.append(torch.stack([xs, ys], -1).view(-1, 2))
        colours.append(image.reshape(-1, 3).float())
        owner.append(torch.full((height * width,), index, device=image.device))
    positions, colours, owner = torch.cat(positions), torch.cat(colours), torch.cat(owner)
    smoothness = PermutohedralLattice(positions / sigma_gamma, owner)
    appearance = PermutohedralLattice(torch.cat([positions / sigma_alpha, colours / sigma_beta], 1), owner)
    return smoothness.normalize(), appearance.normalize()


def mean_field(unary: torch.Tensor, lattices, weights, iterations: int,
               compatibility: torch.Tensor | None = None) -> torch.Tensor:
    """Mean-field inference: unary (N, C) energies -> (N, C) scores whose softmax is the marginals Q after
    `iterations` updates (0: the unary's own softmax). An update is Q <- softmax(-unary - mu(sum_k w_k K_k Q)),
    w_k a number or a (C, C) matrix, mu Potts (densecrf's compatibility -w Q: each class rewarded by its own message) unless a (C, C)
    `compatibility` matrix is given (Potts is minus the identity). Same order and normalisation as densecrf's
    inference. Differentiable in the unary, the weights (numbers or tensors) and the compatibility."""
    scores = -unary
    for _ in range(iterations):
        marginals = scores.softmax(1)
        message = kernel_message(lattices[0], marginals, weights[0])
        for lattice, weight in zip(lattices[1:], weights[1:]):
            message = message.add_(kernel_message(lattice, marginals, weight))  # in place: no (N, C) copy
        scores = (message if compatibility is None else -message @ compatibility.t()).sub_(unary)
    return scores


def kernel_message(lattice: PermutohedralLattice, marginals: torch.Tensor, weight) -> torch.Tensor:
    """One kernel's weighted message: a number or scalar tensor scales it (folded into the lattice's slice), a
    (C, C) matrix mixes the classes (CRF-as-RNN's per-class-pair kernel weights)."""
    if torch.is_tensor(weight) and weight.dim() == 2:
        return lattice.filter(marginals) @ weight.t()
    return lattice.filter(marginals, weight)


def dense_crf_torch(images, probs, w1: float, sigma_alpha: float, sigma_beta: float, w2: float, sigma_gamma: float,
                    iterations: int) -> list:
    """The CRF's labels for a batch: images [(H, W, 3)] and probs [(C, H, W)] tensors on one device ->
    [(H, W)] long tensors there. The unary is -log p with p clipped to 1e-5, as pydensecrf's unary_from_softmax."""
    with torch.no_grad():
        lattices = crf_lattices(images, sigma_alpha, sigma_beta, sigma_gamma)
        unary = torch.cat([-p.float().clamp(1e-5, 1.0).log().flatten(1).t() for p in probs])
        labels = mean_field(unary, lattices, (w2, w1), iterations).argmax(1)
    sizes = [p.shape[1] * p.shape[2] for p in probs]
    return [part.view(p.shape[1:]) for part, p in zip(labels.split(sizes), probs)]
