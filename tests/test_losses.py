"""The Dice, Dice + CE, focal and Lovasz-softmax losses against segmentation_models_pytorch's (a test-only
dependency), on random logits with ignored pixels and a class absent from the batch; their global-batch behaviour
under torch.distributed; and a tiny run with each."""
import os
from types import SimpleNamespace

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

from segtrain.config import check_config
from segtrain.errors import SegtrainError
from segtrain.losses import build_loss, lovasz_softmax_loss, soft_dice_loss

from .conftest import compose_config

CLASSES = 4
NEW_LOSSES = ("dice", "dice_ce", "focal", "lovasz")


def random_batch(seed=0, images=2, absent=2):
    """Logits (images, 4, 9, 7) float32 and labels with about 20% ignored pixels (255) and class `absent` never
    labelled."""
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(images, CLASSES, 9, 7, generator=g)
    targets = torch.randint(0, CLASSES, (images, 9, 7), generator=g)
    targets[targets == absent] = (absent + 1) % CLASSES
    targets[torch.rand(targets.shape, generator=g) < 0.2] = 255
    return logits, targets


def value_and_gradient(loss, logits, *args):
    logits = logits.clone().requires_grad_()
    value = loss(logits, *args)
    value.backward()
    return value.detach(), logits.grad


def loss_of(name, *overrides, tasks=None, world=1, class_names=None):
    """build_loss for `loss=NAME` as the composed config says, on a dataset of CLASSES classes."""
    cfg = compose_config(f"loss={name}", *overrides)
    names = class_names or [f"c{i}" for i in range(CLASSES)]
    dataset = SimpleNamespace(class_names=names, tasks=tasks, ignore_index=255)
    return build_loss(cfg.loss, len(names), dataset, "cpu", world=world)


def test_soft_dice_is_smps_dice_loss_with_ignored_pixels_absent_classes_and_class_weights():
    logits, targets = random_batch()
    ours = value_and_gradient(loss_of("dice"), logits, targets)
    theirs = value_and_gradient(smp.losses.DiceLoss("multiclass", ignore_index=255), logits, targets)
    torch.testing.assert_close(ours, theirs)

    # the definition, by hand: class 2 is absent, adds nothing, and still counts in the mean over the 4 classes
    labelled = targets != 255
    probs = logits.softmax(1)
    dice = [2 * (probs[:, c] * (targets == c))[labelled].sum() / (probs[:, c][labelled].sum()
                                                                 + (targets == c).sum()) for c in range(CLASSES)]
    torch.testing.assert_close(ours[0], sum(1 - dice[c] for c in (0, 1, 3)) / 4)

    weights = [1.0, 2.0, 3.0, 0.5]
    ours = value_and_gradient(loss_of("dice", f"loss.class_weights=[{','.join(map(str, weights))}]"),
                              logits, targets)
    theirs = value_and_gradient(smp.losses.DiceLoss("multiclass", ignore_index=255, class_weights=weights),
                                logits, targets)
    torch.testing.assert_close(ours, theirs)

    # several tasks (SIFT Flow's semantic + geometric heads): each task's Dice over its own channels, summed
    tasks = (("a", ["a0", "a1"]), ("b", ["b0", "b1"]))
    both = torch.stack([targets.clamp(max=1), (targets % 2).masked_fill(targets == 255, 255)], 1)
    expected = sum(soft_dice_loss(logits[:, 2 * t:2 * t + 2], both[:, t], None, 255) for t in range(2))
    torch.testing.assert_close(loss_of("dice", tasks=tasks)(logits, both), expected)


def test_dice_ce_is_the_sum_of_smps_dice_loss_and_cross_entropy():
    logits, targets = random_batch(1)
    ours = value_and_gradient(loss_of("dice_ce"), logits, targets)
    dice = smp.losses.DiceLoss("multiclass", ignore_index=255)
    theirs = value_and_gradient(lambda x, t: dice(x, t) + F.cross_entropy(x, t, ignore_index=255), logits, targets)
    torch.testing.assert_close(ours, theirs)

    weights = torch.tensor([0.5, 1.0, 2.0, 4.0])  # the same weights in both terms
    dice = smp.losses.DiceLoss("multiclass", ignore_index=255, class_weights=weights.tolist())
    theirs = value_and_gradient(lambda x, t: dice(x, t) + F.cross_entropy(x, t, weight=weights, ignore_index=255),
                                logits, targets)
    torch.testing.assert_close(value_and_gradient(loss_of("dice_ce", "loss.class_weights=[0.5,1,2,4]"),
                                                  logits, targets), theirs)


@pytest.mark.parametrize("gamma", [2.0, 0.5])
def test_focal_is_smps_softmax_focal_loss_and_gamma_0_is_cross_entropy(gamma):
    from segmentation_models_pytorch.losses._functional import softmax_focal_loss_with_logits

    logits, targets = random_batch(2)
    labelled = targets != 255
    ours = value_and_gradient(loss_of("focal", f"loss.gamma={gamma}"), logits, targets)
    theirs = value_and_gradient(lambda x, t: softmax_focal_loss_with_logits(x.movedim(1, -1)[labelled], t[labelled],
                                                                            gamma=gamma), logits, targets)
    torch.testing.assert_close(ours, theirs)

    # alpha_t per class is loss.class_weights, normalised as cross-entropy's weights are: gamma 0 is exactly
    # cross-entropy with those weights, and otherwise each pixel's term is alpha_t (1 - p_t)^gamma (-log p_t)
    weights = torch.tensor([0.25, 1.0, 2.0, 0.5])
    weighted = loss_of("focal", "loss.class_weights=[0.25,1,2,0.5]", "loss.gamma=0")
    torch.testing.assert_close(value_and_gradient(weighted, logits, targets), value_and_gradient(
        lambda x, t: F.cross_entropy(x, t, weight=weights, ignore_index=255), logits, targets))
    log_p = logits.log_softmax(1).gather(1, targets.clamp(max=3)[:, None])[:, 0][labelled]
    alpha = weights[targets[labelled]]
    by_hand = (alpha * (1 - log_p.exp()) ** gamma * -log_p).sum() / alpha.sum()
    torch.testing.assert_close(loss_of("focal", "loss.class_weights=[0.25,1,2,0.5]", f"loss.gamma={gamma}")(
        logits, targets), by_hand)


def test_smps_multiclass_focal_loss_is_a_one_vs_rest_sigmoid_loss_which_ours_is_not():
    """Documents why segtrain's focal loss is compared with smp's softmax_focal_loss_with_logits: smp's
    FocalLoss(mode="multiclass") scores each channel with a sigmoid against the rest (torchvision's
    sigmoid_focal_loss, averaged over the classes), a multi-label model whose channels need not sum to one."""
    from torchvision.ops import sigmoid_focal_loss

    logits, targets = random_batch(3)
    labelled = targets != 255
    one_vs_rest = torch.stack([sigmoid_focal_loss(logits[:, c][labelled], (targets[labelled] == c).float(),
                                                  alpha=-1, gamma=2.0, reduction="mean") for c in range(CLASSES)])
    smps = smp.losses.FocalLoss("multiclass", gamma=2.0, ignore_index=255)(logits, targets)
    torch.testing.assert_close(smps, one_vs_rest.mean())
    assert abs(loss_of("focal")(logits, targets) - smps) > 0.1


def test_lovasz_softmax_is_smps_lovasz_loss():
    for seed in range(3):
        logits, targets = random_batch(seed, images=3)
        ours = value_and_gradient(loss_of("lovasz"), logits, targets)
        theirs = value_and_gradient(smp.losses.LovaszLoss("multiclass", ignore_index=255), logits, targets)
        torch.testing.assert_close(ours, theirs)
    # a batch without labelled pixels: 0, still in the graph (no NaN), as for cross-entropy
    value, gradient = value_and_gradient(loss_of("lovasz"), logits, torch.full_like(targets, 255))
    assert value == 0 and torch.equal(gradient, torch.zeros_like(gradient))
    with pytest.raises(ValueError):
        lovasz_softmax_loss(logits, targets, torch.ones(CLASSES), 255)


def test_every_new_loss_adds_nothing_for_a_batch_without_labels():
    logits, targets = random_batch(4)
    for name in NEW_LOSSES:
        value, gradient = value_and_gradient(loss_of(name), logits, torch.full_like(targets, 255))
        assert value == 0 and torch.isfinite(gradient).all() and not gradient.any(), name


def test_class_weights_with_lovasz_is_one_line_saying_why():
    with pytest.raises(SegtrainError) as info:
        check_config(compose_config("loss=lovasz", "loss.class_weights=median_frequency"))
    assert str(info.value) == (
        "loss.class_weights=median_frequency: has no effect with loss=lovasz (only loss=cross_entropy|bootstrap|dice|"
        "dice_ce|focal uses it): Lovasz-softmax averages each present class's IoU surrogate with the same weight "
        "whatever its pixel count, so it is balanced already; use loss=dice_ce or loss=focal to weigh classes")
    with pytest.raises(SegtrainError, match=r"^loss.gamma=1.0: has no effect with loss=dice \(only loss=focal uses "
                                            r"it\)$"):
        check_config(compose_config("loss=dice", "loss.gamma=1"))
    with pytest.raises(SegtrainError, match=r"^loss.gamma=-1.0: expected a focusing exponent >= 0$"):
        check_config(compose_config("loss=focal", "loss.gamma=-1"))


def _gradients_on_rank(rank, world, init_file, out):
    """One rank of test_losses_over_the_global_batch: each loss's value and gradient on its half of the batch."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    logits, targets = random_batch(5, images=4)
    half = slice(rank * 2, rank * 2 + 2)
    results = {name: value_and_gradient(loss_of(name, world=world), logits[half], targets[half])
               for name in ("cross_entropy", *NEW_LOSSES)}
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_losses_over_the_global_batch_under_torch_distributed(tmp_path):
    """Two gloo processes, each with half of a batch of 4: with DDP's averaging of their gradients, cross-entropy,
    focal, Dice and Dice + CE step exactly as one process with the whole batch (the Dice sums are global, so each
    rank's Dice loss is the whole batch's); Lovasz-softmax is each rank's own half's, the two averaged."""
    import torch.multiprocessing as mp

    context = mp.start_processes(_gradients_on_rank, args=(2, tmp_path / "store", str(tmp_path)), nprocs=2,
                                 join=False, start_method="spawn")
    for _ in range(120):  # a hang fails here, within 2 minutes
        if context.join(timeout=1):
            break
    else:
        for process in context.processes:
            process.kill()
        pytest.fail("the two ranks did not finish")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    logits, targets = random_batch(5, images=4)
    for name in ("cross_entropy", "focal", "dice", "dice_ce"):
        value, gradient = value_and_gradient(loss_of(name), logits, targets)
        averaged = torch.cat([ranks[0][name][1], ranks[1][name][1]]) / 2  # DDP: the mean of the ranks' gradients
        torch.testing.assert_close(averaged, gradient, msg=name)
        if name == "dice":
            assert ranks[0][name][0] == pytest.approx(value.item()) == ranks[1][name][0]
    halves = [value_and_gradient(loss_of("lovasz"), logits[h], targets[h]) for h in (slice(0, 2), slice(2, 4))]
    torch.testing.assert_close(torch.cat([ranks[0]["lovasz"][1], ranks[1]["lovasz"][1]]) / 2,
                               torch.cat([halves[0][1], halves[1][1]]) / 2)
    whole = value_and_gradient(loss_of("lovasz"), logits, targets)[1]
    assert not torch.allclose(torch.cat([halves[0][1], halves[1][1]]) / 2, whole)  # not the whole batch's


@pytest.mark.parametrize("name", NEW_LOSSES)
def test_each_loss_trains_a_tiny_run(name, tiny_cfg, tmp_path):
    from segtrain.checkpoint import load_checkpoint
    from segtrain.train import train

    result = train(tiny_cfg(f"loss={name}", "trainer.max_iters=2", "trainer.val_interval=2"), tmp_path)
    assert 0 <= result["mean_iu"] <= 1 and 0 <= result["mean_dice"] <= 1
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["config"]["loss"]["name"] == name
    assert last["model"]["score_fr.weight"].abs().sum() > 0  # the score layers start at zero: it trained
