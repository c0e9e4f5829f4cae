"""The PASCAL VOC colour map (docs/reference.md section 1) and helpers to colour label maps with it."""
import torch


def voc_palette(num_entries: int = 256) -> torch.Tensor:
    """(num_entries, 3) uint8: bit 3i of k -> bit 7-i of R, bit 3i+1 -> G, bit 3i+2 -> B."""
    palette = torch.zeros(num_entries, 3, dtype=torch.uint8)
    for k in range(num_entries):
        label, r, g, b = k, 0, 0, 0
        for i in range(8):
            r |= ((label >> 0) & 1) << (7 - i)
            g |= ((label >> 1) & 1) << (7 - i)
            b |= ((label >> 2) & 1) << (7 - i)
            label >>= 3
        palette[k] = torch.tensor([r, g, b], dtype=torch.uint8)
    return palette


def colorize(labels: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """(..., H, W) integer labels -> (..., 3, H, W) uint8 colours; values past the palette wrap to 255's."""
    labels = labels.long().clamp(0, len(palette) - 1)
    return palette.to(labels.device)[labels].movedim(-1, -3)
