import pytest

from segtrain.models import build_model
from segtrain.optim import build_optimizer, build_schedule


def lrs_by_parameter(model, optimizer):
    by_id = {id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    return {name: by_id[id(p)] for name, p in model.named_parameters() if p.requires_grad}


def test_fcn_recipe_biases_at_twice_the_lr_without_decay():
    model = build_model("fcn8s", 3, width=0.0625)
    optimizer = build_optimizer(model, "sgd", lr=1e-3, weight_decay=5e-4, bias_lr_mult=2.0, bias_decay=False,
                                momentum=0.99, nesterov=False)
    lrs = lrs_by_parameter(model, optimizer)
    assert lrs["backbone.body.0.weight"] == (1e-3, 5e-4)
    assert lrs["backbone.body.0.bias"] == (2e-3, 0.0)
    assert lrs["score_fr.weight"] == (1e-3, 5e-4) and lrs["score_fr.bias"] == (2e-3, 0.0)
    assert len(lrs) == sum(len(g["params"]) for g in optimizer.param_groups)  # every trainable one, once
    assert optimizer.param_groups[0]["lr"] == 1e-3  # the base group comes first


def test_deeplab_recipe_classifier_at_10x_and_its_bias_at_20x():
    model = build_model("deeplab_largefov", 3, width=0.0625)
    optimizer = build_optimizer(model, "sgd", lr=1e-3, weight_decay=5e-4, bias_lr_mult=2.0, head_lr_mult=10.0,
                                momentum=0.9, nesterov=False)
    lrs = lrs_by_parameter(model, optimizer)
    assert lrs["classifier.weight"][0] == pytest.approx(1e-2)
    assert lrs["classifier.bias"][0] == pytest.approx(2e-2)
    assert lrs["head.0.weight"][0] == pytest.approx(1e-3) and lrs["head.0.bias"][0] == pytest.approx(2e-3)

    schedule = build_schedule(optimizer, 10, "poly", power=0.9)
    for _ in range(5):
        optimizer.step()
        schedule.step()
    factor = (1 - 5 / 10) ** 0.9
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(
        [g["initial_lr"] * factor for g in optimizer.param_groups])  # the schedule keeps the multipliers


def test_fixed_layers_are_left_out():
    model = build_model("fcn32s_fixed", 3, width=0.0625)
    optimizer = build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.0, betas=[0.9, 0.999], eps=1e-8)
    assert {p for g in optimizer.param_groups for p in g["params"]} == {model.score_fr.weight, model.score_fr.bias}


@pytest.mark.parametrize("name,at_half", [("fixed", 1.0), ("step", 0.1), ("poly", 0.5 ** 0.9), ("cosine", 0.5)])
def test_schedules(name, at_half):
    from segtrain.optim import schedule_factor

    assert schedule_factor(name, 0, 100, step_size=50) == 1.0
    assert schedule_factor(name, 50, 100, step_size=50) == pytest.approx(at_half)
    assert schedule_factor("step", 99, 100, step_size=50, gamma=0.5) == 0.5


def test_warmup_ramps_linearly_into_any_schedule():
    from segtrain.optim import schedule_factor

    assert schedule_factor("cosine", 0, 100, warmup_iters=10, warmup_start=0.1) == pytest.approx(0.1)
    assert schedule_factor("fixed", 5, 100, warmup_iters=10, warmup_start=0.0) == pytest.approx(0.5)
    assert schedule_factor("poly", 10, 100, warmup_iters=10) == pytest.approx(0.9 ** 0.9)


def test_unknown_schedule_fails_before_training():
    import torch

    from segtrain.errors import SegtrainError

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(SegtrainError, match="schedule.name='linear'"):
        build_schedule(optimizer, 10, "linear")
