"""CRF-as-RNN (Zheng et al., ICCV 2015): a network's logits refined by mean-field iterations of the fully connected
CRF, appended as its last layers and trained end to end. As the release (torrvision/crfasrnn): the unary is the
network's score, the spatial and bilateral kernel weights are (C, C) matrices initialised to 3 I and 5 I, the
compatibility a (C, C) matrix initialised to Potts (-I), all three learnt; the kernels' scales are fixed (theta_gamma
3, theta_alpha 160, theta_beta 3); 5 iterations when training, 10 at test. The iterations run in float32 on the
permutohedral lattice of segtrain.crf.meanfield, on whatever device the network is."""
import torch
from torch import nn

from ..crf.meanfield import crf_lattices, mean_field
from ._utils import SegmentationModel


class MeanFieldCRF(nn.Module):
    """The learnt parameters of CRF-as-RNN's mean-field layers."""

    def __init__(self, num_classes: int, spatial_weight: float = 3.0, bilateral_weight: float = 5.0):
        super().__init__()
        eye = torch.eye(num_classes)
        self.spatial_weights = nn.Parameter(spatial_weight * eye)
        self.bilateral_weights = nn.Parameter(bilateral_weight * eye)
        self.compatibility = nn.Parameter(-eye)


class CRFasRNN(SegmentationModel):
    """`network` (normalised images -> logits at the input's size) followed by the CRF's mean-field iterations.
    The bilateral kernel compares RGB colours, so the module keeps the normalisation it undoes (`image_mean`,
    `image_std`: buffers, stored with the weights)."""

    def __init__(self, network: nn.Module, num_classes: int, iterations: int = 5, test_iterations: int = 10,
                 sigma_alpha: float = 160.0, sigma_beta: float = 3.0, sigma_gamma: float = 3.0,
                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
        super().__init__()
        self.network = network
        self.crf = MeanFieldCRF(num_classes)
        self.iterations, self.test_iterations = iterations, test_iterations
        self.sigmas = (sigma_alpha, sigma_beta, sigma_gamma)
        self.register_buffer("image_mean", torch.tensor(mean[:3], dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(std[:3], dtype=torch.float32).view(1, 3, 1, 1))
        # the CRF's parameters train at optimizer.head_lr_mult (the release: lr_mult 1000 and 10000 on them alone);
        # the network is fine-tuned from its own run, every layer at the base lr
        self.new_layers = ("crf",)
        self.output_stride = network.output_stride

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.network(images)
        batch, classes, height, width = logits.shape
        rgb = ((images[:, :3].float() * self.image_std + self.image_mean) * 255).clamp(0, 255)
        if rgb.shape[-2:] != (height, width):  # a network scoring fewer pixels than it reads (valid convolutions)
            rgb = nn.functional.interpolate(rgb, size=(height, width), mode="bilinear", align_corners=False)
        with torch.autocast(images.device.type, enabled=False):
            lattices = crf_lattices([image.permute(1, 2, 0) for image in rgb.detach()], *self.sigmas)
            unary = -logits.float().permute(0, 2, 3, 1).reshape(-1, classes)
            scores = mean_field(unary, lattices, (self.crf.spatial_weights, self.crf.bilateral_weights),
                                self.iterations if self.training else self.test_iterations, self.crf.compatibility)
        return scores.view(batch, height, width, classes).permute(0, 3, 1, 2)
