"""Evaluation-time ensembles. EDeconvNet (Noh et al. 2015) is a DeconvNet and an FCN-8s combined this way:
`segtrain-eval ckpt=DECONVNET.pt ensemble=FCN8S.pt`."""
import torch
from torch import nn

from ._utils import SegmentationModel


class ProductEnsemble(SegmentationModel):
    """The product of the members' class probabilities, renormalised. Returns its log, so that argmax (the
    prediction), softmax (a CRF's unaries) and the metrics treat it like any model's scores."""

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_product = sum(torch.log_softmax(member(x).float(), dim=1) for member in self.members)
        return torch.log_softmax(log_product, dim=1)
