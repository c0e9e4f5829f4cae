"""Late fusion (FCN's RGB-HHA net): one network per input stream, their class scores summed."""
import torch
from torch import nn

from ._utils import SegmentationModel


class LateFusion(SegmentationModel):
    """`streams[i]` sees input channels [sum(channels[:i]), sum(channels[:i + 1])), e.g. RGB then HHA."""

    def __init__(self, streams, channels):
        super().__init__()
        self.streams = nn.ModuleList(streams)
        self.channels = list(channels)
        self.output_stride = streams[0].output_stride
        self.input_sizes = streams[0].input_sizes
        self.new_layers = tuple(f"streams.{i}.{layer}" for i, stream in enumerate(streams)
                                for layer in stream.new_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(stream(part) for stream, part in zip(self.streams, x.split(self.channels, dim=1)))
