"""High-dimensional Gaussian filtering on the permutohedral lattice (Adams, Baek and Davis, Eurographics 2010), in
tensor ops so that it runs on CPU and CUDA, over several images at once, and is differentiable in the values.

It follows the lattice of Krähenbühl and Koltun's densecrf (the code inside pydensecrf) step by step: the same
elevation, rounding, rank and barycentric weights, the same [1/2, 1, 1/2] blur along each of the d+1 lattice axes
with missing neighbours read as zero, and the same slice with its scale 1 / (1 + 2^-d). With the same features its
answers equal densecrf's up to float rounding, which is what lets the torch CRF agree with pydensecrf.

The lattice's hash table becomes sorted integer codes: every lattice point's key (its first d coordinates, and the
image it belongs to so that images never exchange values) is packed into one int64, and neighbours are found with
searchsorted. Keys that do not pack into 63 bits fall back to torch.unique over the key rows.
"""
import math

import torch
import torch.nn.functional as F

PACKED_CODE_LIMIT = 2 ** 62  # lattice keys pack into one int64 below this many codes (tests lower it)


class PermutohedralLattice:
    """The lattice of `features` (N, d) float, point n belonging to image `image_index[n]` (default: one image):
    each point's d+1 enclosing vertices (`offsets`, lattice index + 1) with their `barycentric` weights, and each
    lattice point's neighbours along each axis (`blur_neighbours`, index + 1, 0 where absent).

    `filter(values)` with values (N, C) approximates sum_m exp(-|f_n - f_m|^2 / 2) values_m for every n (the
    point itself included) as densecrf's lattice does: splat onto the lattice, blur along each of its axes, slice
    back with 1 / (1 + 2^-d). Every stage is a weighted sum of rows, which embedding_bag computes, several times
    faster than sparse matrix products or index_add on a CPU: the splat sums each lattice point's pixels, the
    blur a point and its two neighbours, the slice each pixel's vertices."""

    def __init__(self, features: torch.Tensor, image_index: torch.Tensor | None = None):
        with torch.no_grad():
            self._build(features.float(), image_index)

    def _build(self, features, image_index):
        points, d = features.shape
        device = features.device
        self.points, self.dim = points, d
        # elevate onto the plane x_0 + ... + x_d = 0, scaled so the blur below has the right variance (p. 5-6)
        i = torch.arange(d, device=device, dtype=torch.float64)
        scale = (math.sqrt(2.0 / 3.0) * (d + 1) / torch.sqrt((i + 2) * (i + 1))).float()
        scaled = features * scale
        suffix = torch.flip(torch.cumsum(torch.flip(scaled, [1]), 1), [1])  # suffix[:, j] = sum_{i >= j} scaled_i
        elevated = torch.empty(points, d + 1, device=device)
        elevated[:, 0] = suffix[:, 0]
        j = torch.arange(1, d + 1, device=device, dtype=torch.float32)
        elevated[:, 1:] = torch.cat([suffix[:, 1:], torch.zeros(points, 1, device=device)], 1) - j * scaled
        # the nearest remainder-0 lattice point, coordinate by coordinate (ties round down, as densecrf does)
        down_factor = torch.tensor(1.0 / (d + 1), dtype=torch.float32)
        v = elevated * down_factor
        up, down = torch.ceil(v) * (d + 1), torch.floor(v) * (d + 1)
        rem0 = torch.where(up - elevated < elevated - down, up, down)
        coordinate_sum = torch.round(rem0 / (d + 1)).sum(1, keepdim=True).long()
        # rank of each coordinate's residual: the larger residuals, and the equal ones before it (densecrf's loop
        # breaks ties so), which is its position in a stable descending sort
        residual = elevated - rem0
        by_size = torch.sort(residual, dim=1, descending=True, stable=True).indices
        rank = torch.empty_like(by_size).scatter_(1, by_size, torch.arange(d + 1, device=device).expand_as(by_size))
        # bring the point back onto the plane when the rounded coordinates do not sum to zero
        rank = rank + coordinate_sum
        low, high = rank < 0, rank > d
        rank = torch.where(low, rank + d + 1, torch.where(high, rank - d - 1, rank))
        rem0 = torch.where(low, rem0 + d + 1, torch.where(high, rem0 - d - 1, rem0))
        # barycentric weights of the enclosing simplex's d+1 vertices (p. 10)
        weights = (elevated - rem0) * down_factor
        barycentric = torch.zeros(points, d + 2, device=device)
        barycentric.scatter_add_(1, d - rank, weights)
        barycentric.scatter_add_(1, d - rank + 1, -weights)
        barycentric[:, 0] += 1.0 + barycentric[:, d + 1]
        self.barycentric = barycentric[:, : d + 1].contiguous()  # (N, d+1)
        image = (torch.zeros(points, dtype=torch.long, device=device) if image_index is None
                 else image_index.to(device).long())
        self.offsets, self.blur_neighbours = self._hash(rem0.round().long(), rank, image)
        self.lattice_points = int(self.blur_neighbours.shape[2]) - 1
        # embedding_bag's indices as int32: half the index traffic of these memory-bound sums
        self._vertices = self.offsets.int()
        # the blur's bags along axis j: each lattice point, its neighbour one way and the other way
        every = torch.arange(self.lattice_points + 1, device=device)
        self._blur = [torch.stack([every, *self.blur_neighbours[j]], 1).int() for j in range(d + 1)]
        self._blur_weights = torch.tensor([1.0, 0.5, 0.5], device=device).expand(self.lattice_points + 1, 3)
        self.scale, self._cached = None, {}

    def _hash(self, rem0, rank, image):
        """(lattice index + 1 of each point's d+1 vertices (N, d+1), (d+1, 2, M+1) indices + 1 of each lattice
        point's two neighbours along each axis, 0 where there is none: row 0 is a zero row absent neighbours read).

        Vertex r of a point has the key rem0_k + r - (d+1) [rank_k > d - r] (its first d coordinates; the last
        follows from the zero sum); its neighbours along axis j add -1 to every coordinate but j, and +d to j, or
        the opposite."""
        d, device = self.dim, rem0.device
        keys = rem0[:, :d]
        margin = 2 * (d + 1)  # vertices lie within d+1 of rem0, their neighbours within d more
        low = keys.min(0).values - margin
        spans = (keys.max(0).values - low + margin + 1).tolist()
        images = int(image.max()) + 1
        vertex = torch.arange(d + 1, device=device)
        if images * math.prod(spans) < PACKED_CODE_LIMIT:
            # one int64 per (image, key), mixed radix: linear in the key, so a neighbour is a constant away
            strides = [images]
            for span in reversed(spans[1:]):
                strides.insert(0, strides[0] * span)
            strides = torch.tensor(strides, device=device)
            base = ((keys - low) * strides).sum(1) + image
            # the strides of the coordinates ranked above d - r, summed: sorted by rank, then suffix sums
            by_rank = torch.zeros_like(rem0).scatter_(1, rank, torch.cat([strides, strides.new_zeros(1)])
                                                     .expand(len(rank), -1))
            above = torch.flip(torch.cumsum(torch.flip(by_rank, [1]), 1), [1])  # above[:, i] = sum_{t >= i}
            lowered = torch.cat([above[:, 1:], torch.zeros_like(above[:, :1])], 1).flip(1)  # r -> above[d+1-r]
            codes = base.unsqueeze(1) + vertex * strides.sum() - (d + 1) * lowered
            # sorted once: the order groups each lattice point's vertices (the splat's bags) for free
            sorted_codes, order = torch.sort(codes.view(-1))
            first = torch.ones_like(sorted_codes, dtype=torch.bool)
            first[1:] = sorted_codes[1:] != sorted_codes[:-1]
            lattice = sorted_codes[first]
            vertex_lattice = torch.empty_like(order).scatter_(0, order, torch.cumsum(first, 0) - 1)
            deltas = [(d + 1) * int(strides[j]) - int(strides.sum()) for j in range(d)] + [-int(strides.sum())]
            found = []
            for delta in deltas:
                query = lattice + delta  # sorted, like the lattice
                at = torch.searchsorted(lattice, query).clamp_(max=len(lattice) - 1)
                ahead = torch.where(lattice[at] == query, at + 1, 0)
                # the neighbour the other way round: i is the point ahead of its neighbour behind
                behind = torch.zeros(len(lattice) + 1, dtype=torch.long, device=device)
                behind[ahead] = torch.arange(1, len(lattice) + 1, device=device)
                found += [ahead, behind[1:]]
        else:  # too spread out to pack into an int64: compare the key rows themselves
            shift = (rank[:, None, :d] > d - vertex.view(1, -1, 1)).long() * (d + 1)   # (N, d+1, d)
            rows = keys[:, None, :] + vertex.view(1, -1, 1) - shift
            rows = torch.cat([image.view(-1, 1, 1).expand(-1, d + 1, 1), rows], 2).view(-1, d + 1)
            lattice_rows, vertex_lattice = torch.unique(rows, dim=0, return_inverse=True)
            step = torch.full((d + 1, d + 1), -1, dtype=torch.long, device=device)
            step[:, 0] = 0  # the image column
            step[torch.arange(d), torch.arange(1, d + 1)] = d
            queries = [lattice_rows + sign * step[j] for j in range(d + 1) for sign in (1, -1)]
            every, inverse = torch.unique(torch.cat([lattice_rows, *queries]), dim=0, return_inverse=True)
            lattice_of = torch.zeros(len(every), dtype=torch.long, device=device)
            lattice_of[inverse[: len(lattice_rows)]] = torch.arange(1, len(lattice_rows) + 1, device=device)
            found = list(lattice_of[inverse[len(lattice_rows):]].view(2 * (d + 1), -1))
            order = torch.argsort(vertex_lattice)
        zero = torch.zeros(1, dtype=torch.long, device=device)
        neighbours = torch.stack([torch.cat([zero, f]) for f in found]).view(d + 1, 2, -1)
        # the splat's bags: the (point, vertex) entries sorted by lattice point, one bag per lattice point
        self._splat_order, self._splat_points = order, (order // (d + 1)).int()
        counts = torch.bincount(vertex_lattice + 1, minlength=len(found[0]) + 1)
        self._splat_bags = (torch.cumsum(counts, 0) - counts).int()
        return (vertex_lattice + 1).view(-1, d + 1), neighbours

    def _weights(self, dtype):
        """The splat's and the slice's per-entry weights in `dtype`: barycentric, times `scale` when set, the
        slice's also times 1 / (1 + 2^-d) (densecrf's alpha); computed once per dtype."""
        if dtype not in self._cached:
            weights = self.barycentric.to(dtype)
            if self.scale is not None:
                weights = weights * self.scale.to(dtype).unsqueeze(1)
            self._cached[dtype] = (weights.reshape(-1)[self._splat_order], weights * (1.0 / (1.0 + 2.0 ** -self.dim)),
                                   self._blur_weights.to(dtype))
        return self._cached[dtype]

    def filter(self, values: torch.Tensor, weight=1.0) -> torch.Tensor:
        """values (N, C) -> weight * filter(values) (N, C), scaled by `scale` before and after when set.
        Differentiable in the values and in `weight` (a number or a scalar tensor, folded into the slice)."""
        splat_weights, slice_weights, blur_weights = self._weights(values.dtype)
        lattice = F.embedding_bag(self._splat_points, values, self._splat_bags, mode="sum",
                                  per_sample_weights=splat_weights)
        for neighbourhood in self._blur:
            lattice = F.embedding_bag(neighbourhood, lattice, mode="sum", per_sample_weights=blur_weights)
        return F.embedding_bag(self._vertices, lattice, mode="sum", per_sample_weights=slice_weights * weight)

    def normalize(self):
        """Scale the filter symmetrically, s * filter(s * values) with s = 1 / sqrt(filter(1)): densecrf's
        default normalisation."""
        self.scale, self._cached = None, {}
        self.scale = (self.filter(torch.ones(self.points, 1, device=self.offsets.device)) + 1e-20).rsqrt().squeeze(1)
        self._cached = {}
        return self
