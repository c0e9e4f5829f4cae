"""The torch dense CRF (segtrain.crf.meanfield on segtrain.crf.lattice) against pydensecrf, its lattice, its
gradients, batching, the CUDA path, CRF-as-RNN and the published presets."""
import math

import numpy as np
import pytest
import torch

import segtrain.crf.lattice as lattice
from segtrain.crf import crf_refiner, dense_crf
from segtrain.crf.meanfield import crf_lattices, dense_crf_torch, mean_field
from segtrain.crf.lattice import PermutohedralLattice

VOC_LIKE = dict(w1=4.0, sigma_alpha=121.0, sigma_beta=5.0, w2=3.0, sigma_gamma=3.0, iterations=10)


def photo_and_probabilities(seed=0, height=375, width=500, classes=21):
    """A VOC-sized image (flat regions with texture noise) and noisy class probabilities like an upsampled net's
    output: smooth logits at 1/8 resolution, bilinearly upsampled."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 255, (8, 10, 3))
    image = np.kron(blocks, np.ones((height // 8 + 1, width // 10 + 1, 1)))[:height, :width]
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    logits = torch.from_numpy(rng.normal(0, 2, (1, classes, height // 8, width // 8)).astype(np.float32))
    probs = torch.nn.functional.interpolate(logits, size=(height, width), mode="bilinear").softmax(1)[0]
    return image, probs.numpy()


def grid_features(height, width, scale):
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    return torch.stack([xs, ys], -1).view(-1, 2) / scale


@pytest.mark.parametrize("seed", [0, 1])
def test_torch_crf_gives_pydensecrfs_labels_on_voc_sized_images(seed):
    image, probs = photo_and_probabilities(seed)
    reference = dense_crf(image, probs, **VOC_LIKE)
    ours = dense_crf_torch([torch.from_numpy(image)], [torch.from_numpy(probs)], **VOC_LIKE)[0].numpy()
    assert (reference != probs.argmax(0)).mean() > 0.1  # the CRF changes much: agreement is not the unary's
    assert (ours == reference).mean() >= 0.995


def test_torch_crf_agrees_with_the_deeplab_resnet_preset_too():
    image, probs = photo_and_probabilities(2, 120, 160, 5)
    params = dict(w1=4.0, sigma_alpha=67.0, sigma_beta=3.0, w2=3.0, sigma_gamma=1.0, iterations=10)
    reference = dense_crf(image, probs, **params)
    ours = dense_crf_torch([torch.from_numpy(image)], [torch.from_numpy(probs)], **params)[0].numpy()
    assert (ours == reference).mean() >= 0.995


def test_a_batch_of_images_of_two_sizes_gives_each_images_own_answer():
    jobs = [photo_and_probabilities(seed, h, w, 6) for seed, (h, w) in enumerate([(40, 56), (33, 29), (40, 56)])]
    images = [torch.from_numpy(image) for image, _ in jobs]
    probs = [torch.from_numpy(p) for _, p in jobs]
    together = dense_crf_torch(images, probs, **VOC_LIKE)
    for image, prob, label in zip(images, probs, together):
        assert torch.equal(label, dense_crf_torch([image], [prob], **VOC_LIKE)[0])
    assert [label.shape for label in together] == [(40, 56), (33, 29), (40, 56)]


def test_packed_and_row_keyed_lattices_are_the_same_lattice(monkeypatch):
    image, probs = photo_and_probabilities(3, 48, 64, 4)
    packed = dense_crf_torch([torch.from_numpy(image)], [torch.from_numpy(probs)], **VOC_LIKE)[0]
    monkeypatch.setattr(lattice, "PACKED_CODE_LIMIT", 0)  # keys too wide for an int64: unique over rows
    rows = dense_crf_torch([torch.from_numpy(image)], [torch.from_numpy(probs)], **VOC_LIKE)[0]
    assert torch.equal(packed, rows)


def test_lattice_weights_are_barycentric_and_the_filter_is_a_gaussian():
    torch.manual_seed(0)
    features = torch.rand(300, 3) * 4
    lattice = PermutohedralLattice(features)
    assert (lattice.barycentric >= -1e-6).all()
    torch.testing.assert_close(lattice.barycentric.sum(1), torch.ones(300))
    # normalised by its response to 1, filtering a constant gives the constant back
    constant = torch.full((300, 2), 7.0)
    torch.testing.assert_close(lattice.filter(constant) / lattice.filter(torch.ones(300, 1)), constant)
    # against the exact Gaussian sum: the lattice approximates it (densecrf's answers, not an exact filter)
    values = torch.rand(300, 1)
    exact = torch.exp(-torch.cdist(features, features) ** 2 / 2) @ values
    approx = lattice.filter(values)
    exact, approx = exact / exact.mean(), approx / approx.mean()
    assert torch.corrcoef(torch.stack([exact[:, 0], approx[:, 0]]))[0, 1] > 0.95


def test_a_lattice_of_two_images_is_two_lattices():
    first, second = grid_features(7, 9, 2.0), grid_features(5, 4, 2.0)
    both = PermutohedralLattice(torch.cat([first, second]), torch.cat([torch.zeros(63), torch.ones(20)]))
    values = torch.rand(83, 3)
    alone = torch.cat([PermutohedralLattice(first).filter(values[:63]),
                       PermutohedralLattice(second).filter(values[63:])])
    torch.testing.assert_close(both.filter(values), alone)


def test_mean_field_is_differentiable_in_the_unary_weights_and_compatibility():
    torch.manual_seed(0)
    image = torch.rand(4, 5, 3, dtype=torch.float64) * 255
    lattices = crf_lattices([image], 3.0, 20.0, 1.5)
    unary = torch.randn(20, 3, dtype=torch.float64, requires_grad=True)
    w1 = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    w2 = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    compatibility = (-torch.eye(3, dtype=torch.float64) + 0.1 * torch.rand(3, 3, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda u, a, b: mean_field(u, lattices, (b, a), 3), (unary, w1, w2))
    assert torch.autograd.gradcheck(lambda u, c: mean_field(u, lattices, (w2, w1), 2, c), (unary, compatibility))
    matrix = (1.5 * torch.eye(3, dtype=torch.float64)).requires_grad_()  # CRF-as-RNN's per-class-pair weights
    assert torch.autograd.gradcheck(lambda m: mean_field(unary, lattices, (m, w1), 2), (matrix,))


def test_potts_compatibility_matrix_is_the_default_update():
    image, probs = photo_and_probabilities(4, 30, 40, 5)
    lattices = crf_lattices([torch.from_numpy(image)], 50.0, 5.0, 3.0)
    unary = -torch.from_numpy(probs).clamp(1e-5, 1).log().flatten(1).t()
    torch.testing.assert_close(mean_field(unary, lattices, (3.0, 4.0), 5),
                               mean_field(unary, lattices, (3.0, 4.0), 5, -torch.eye(5)))
    torch.testing.assert_close(mean_field(unary, lattices, (3.0, 4.0), 0), -unary)  # no update: the unary


def test_both_backends_refine_in_worker_processes_in_order():
    jobs = [photo_and_probabilities(seed, 30, 40, 4) + (seed,) for seed in range(4)]
    results = {}
    for backend in ("torch", "pydensecrf"):
        with crf_refiner(VOC_LIKE, backend, workers=2) as refine:
            results[backend] = list(refine(iter(jobs)))
        assert [extra for _, extra in results[backend]] == [0, 1, 2, 3]
    agree = np.mean([(a == b).mean() for (a, _), (b, _) in zip(results["torch"], results["pydensecrf"])])
    assert agree >= 0.995


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gives_the_cpus_labels_and_gradients():
    image, probs = photo_and_probabilities(5, 120, 160, 8)
    cpu = dense_crf_torch([torch.from_numpy(image)], [torch.from_numpy(probs)], **VOC_LIKE)[0]
    gpu = dense_crf_torch([torch.from_numpy(image).cuda()], [torch.from_numpy(probs).cuda()], **VOC_LIKE)[0]
    assert gpu.is_cuda and (gpu.cpu() == cpu).float().mean() >= 0.999
    grads = []
    for device in ("cpu", "cuda"):
        lattices = crf_lattices([torch.from_numpy(image).to(device)], 121.0, 5.0, 3.0)
        unary = -torch.from_numpy(probs).to(device).clamp(1e-5, 1).log().flatten(1).t().requires_grad_()
        mean_field(unary, lattices, (3.0, 4.0), 3).logsumexp(1).sum().backward()
        grads.append(unary.grad.cpu())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-3, atol=1e-4)


def test_crf_presets_are_the_published_parameters():
    from segtrain.cli import compose_app

    published = {"deeplab": (4, 121, 5, 3, 3), "dense": (4, 121, 5, 3, 3), "deeplab_v2_vgg": (4, 65, 3, 2, 2),
                 "deeplab_resnet": (4, 67, 3, 3, 1), "deconvnet": (5, 20, 3, 3, 3)}
    for preset, values in published.items():
        crf = compose_app("eval", ["ckpt=unused.pt", f"crf={preset}"])[0].crf
        assert (crf.w1, crf.sigma_alpha, crf.sigma_beta, crf.w2, crf.sigma_gamma) == values, preset
        assert crf.iterations == 10 and crf.backend == "torch"


def test_crfrnn_trains_its_kernel_weights_checkpoints_and_evaluates(tiny_cfg, tmp_path):
    from segtrain.checkpoint import load_checkpoint
    from segtrain.cli.evaluate import run as run_eval
    from segtrain.train import train

    result = train(tiny_cfg("model.crf=crfrnn", "trainer.max_iters=2", "trainer.val_interval=2",
                            "trainer.ckpt_interval=2", "model.crf_iterations=2", "model.crf_test_iterations=3"),
                   tmp_path)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    weights = state["model"]["crf.bilateral_weights"]
    assert not torch.equal(weights, 5.0 * torch.eye(len(weights)))  # a training step moved the kernel weights
    assert not torch.equal(state["model"]["crf.compatibility"], -torch.eye(len(weights)))
    assert state["model"]["image_mean"].shape == (1, 3, 1, 1)
    evaluated = run_eval([f"ckpt={tmp_path / 'checkpoints' / 'last.pt'}"])
    assert math.isclose(evaluated["mean_iu"], result["mean_iu"])  # same 10-iteration CRF as validation


def test_crfrnn_starts_from_a_plain_networks_checkpoint(finished_run, tiny_cfg):
    from segtrain.models import build_model_from_config
    from segtrain.checkpoint import init_from_checkpoint

    run_dir, _ = finished_run
    cfg = tiny_cfg("model.crf=crfrnn")
    model = build_model_from_config(cfg, cfg.dataset.num_classes or 5)
    init_from_checkpoint(model, str(run_dir / "checkpoints" / "last.pt"))
    from segtrain.checkpoint import load_checkpoint

    source = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(model.state_dict()[f"network.{k}"], v) for k, v in source.items())
