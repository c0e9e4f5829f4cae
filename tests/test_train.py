import json
import logging
import math
import os
import warnings

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import segtrain.train as train_module
from segtrain.checkpoint import load_checkpoint, save_checkpoint
from segtrain.cli.evaluate import run as run_eval
from segtrain.errors import SegtrainError
from segtrain.models import MODELS
from segtrain.runtime import select_amp
from segtrain.train import train

from .conftest import compose_config


def test_run_writes_checkpoints_metrics_and_tensorboard(finished_run):
    run_dir, result = finished_run
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert last["iteration"] == 6 and best["iteration"] in (3, 6)
    assert set(last) >= {"model", "optimizer", "scheduler", "scaler", "iteration", "rng", "metrics", "config"}
    assert last["config"]["model"]["name"] == "fcn8s" and isinstance(last["config"], dict)
    assert best["metrics"]["mean_iu"] == result["best_mean_iu"] == result["best_monitored"]
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written["mean_iu"] == result["mean_iu"] and written["mean_dice"] == result["mean_dice"]
    assert (written["monitor"], written["best_iteration"], written["stopped_early"]) == ("mean_iu", best["iteration"],
                                                                                       False)
    assert list(written["dice"]) == ["background", "block", "disc", "wire", "dot"]
    assert not list((run_dir / "checkpoints").glob("*.tmp"))

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0}).Reload()
    tags = events.Tags()
    assert {"train/loss", "train/lr", "val/pixel_acc", "val/mean_acc", "val/mean_iu", "val/mean_dice", "val/fw_iu",
            "val_iu/block", "val_dice/block"} <= set(tags["scalars"])
    assert [e.value for e in events.Scalars("val/mean_dice")][-1] == pytest.approx(result["mean_dice"])
    assert [e.step for e in events.Scalars("val/mean_iu")] == [3, 6]
    assert [e.value for e in events.Scalars("val/mean_iu")][-1] == pytest.approx(result["mean_iu"])
    assert {"val/confusion", "val/iu_per_class"} <= set(tags["images"])  # figures at each validation
    assert [e.step for e in events.Images("val/confusion")] == [3, 6]
    (image,) = [e for e in events.Images("val/input_gt_pred") if e.step == 6]
    # 2 rows of 3 tiles of 32x32, each row under a 14 px line with its name, 2 px gaps
    assert (image.width, image.height) == (3 * 32 + 4 * 2, 2 * (32 + 14 + 2) + 2)


def test_poly_schedule_reaches_zero(finished_run):
    run_dir, _ = finished_run
    events = EventAccumulator(str(run_dir / "tb")).Reload()
    lrs = [e.value for e in events.Scalars("train/lr")]
    assert lrs[-1] == 0.0 and lrs == sorted(lrs, reverse=True)


@pytest.mark.slow
def test_resume_after_a_crash_ends_exactly_like_an_uninterrupted_run(finished_run, tiny_cfg, tmp_path, monkeypatch):
    full_dir, full_result = finished_run
    real_step, calls = train_module.train_step, []

    def crash_at_iteration_5(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt  # killed after last.pt was written at iteration 4
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", crash_at_iteration_5)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(), tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["iteration"] == 4
    monkeypatch.setattr(train_module, "train_step", real_step)

    resumed_result = train(tiny_cfg("trainer.resume=auto"), tmp_path)
    full = load_checkpoint(full_dir / "checkpoints" / "last.pt")
    resumed = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert resumed["metrics"] == full["metrics"]
    assert {k: v for k, v in resumed_result.items() if k != "train_images_per_s"} == {
        k: v for k, v in full_result.items() if k != "train_images_per_s"}


def test_eval_reproduces_the_logged_metrics(finished_run, tmp_path, capsys):
    run_dir, _ = finished_run
    for name in ("best.pt", "last.pt"):
        ckpt = load_checkpoint(run_dir / "checkpoints" / name)
        result = run_eval([f"ckpt={run_dir / 'checkpoints' / name}", f"hydra.run.dir={tmp_path / name}"])
        for key in ("pixel_acc", "mean_acc", "mean_iu", "mean_dice", "fw_iu"):
            assert result[key] == ckpt["metrics"][key]
        assert "identical" in capsys.readouterr().out
        assert json.loads((tmp_path / name / "metrics.json").read_text())["mean_iu"] == result["mean_iu"]


def test_checkpoints_from_before_dice_and_the_monitor_evaluate_identical_and_resume(finished_run, tiny_cfg, tmp_path,
                                                                                    capsys):
    run_dir, finished = finished_run
    old = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    for key in ("monitor", "best_monitored", "best_iteration", "stale_validations", "stopped_early"):
        del old[key]
    for key in ("dice", "mean_dice"):
        del old["metrics"][key]
    for key in ("monitor", "early_stop_patience"):
        del old["config"]["trainer"][key]
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    save_checkpoint(old, path)
    result = run_eval([f"ckpt={path}", f"hydra.run.dir={tmp_path / 'eval'}"])
    assert "training logged at iteration 6: identical" in capsys.readouterr().out
    assert result["mean_dice"] == finished["mean_dice"]
    resumed = train(tiny_cfg("trainer.max_iters=8"), tmp_path / "run", resume_from=path)
    assert resumed["iteration"] == 8 and resumed["monitor"] == "mean_iu"
    assert resumed["best_monitored"] == resumed["best_mean_iu"] == max(old["best_mean_iu"], resumed["mean_iu"])


def test_eval_overrides_are_validated(finished_run):
    run_dir, _ = finished_run
    ckpt = f"ckpt={run_dir / 'checkpoints' / 'last.pt'}"
    with pytest.raises(SegtrainError, match="num_vall"):
        run_eval([ckpt, "dataset.num_vall=2"])
    with pytest.raises(SegtrainError, match="trainer.val_batch_size=0: expected a whole number >= 1"):
        run_eval([ckpt, "trainer.val_batch_size=0"])
    with pytest.raises(SegtrainError, match="split"):
        run_eval([ckpt, "--split"])
    with pytest.raises(SegtrainError, match="crf"):
        run_eval([ckpt, "crf=bogus"])
    result = run_eval([ckpt, "dataset.num_val=2"])
    assert 0 <= result["mean_iu"] <= 1 and result["overrides"] == ["dataset.num_val=2"]


def test_missing_and_corrupt_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(SegtrainError, match="no such file"):
        run_eval([f"ckpt={tmp_path / 'nope.pt'}"])
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(SegtrainError, match="not a readable segtrain checkpoint") as info:
        run_eval([f"ckpt={corrupt}"])
    assert "\n" not in str(info.value)


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    config = {group: {"name": "x"} for group in ("model", "dataset", "optimizer", "schedule")}
    save_checkpoint({"model": {}, "config": config, "iteration": 1}, path)

    def die(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", die)
    with pytest.raises(SegtrainError, match=r"last\.pt: cannot write the checkpoint \(disk full\); the previous "
                       r"last\.pt is intact"):
        save_checkpoint({"model": {}, "config": config, "iteration": 2}, path)
    assert load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # the partial temporary file is gone


def test_existing_checkpoints_are_never_overwritten_without_resume(finished_run, tiny_cfg):
    run_dir, _ = finished_run
    before = (run_dir / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(SegtrainError, match="already holds checkpoints"):
        train(tiny_cfg(), run_dir)
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == before


def test_amp_falls_back_to_fp32_on_cpu(caplog):
    assert select_amp("fp16", torch.device("cpu")) == "off"
    assert "needs CUDA" in caplog.text


def test_sgd_and_fixed_schedule_train(tiny_cfg, tmp_path):
    cfg = tiny_cfg("optimizer=sgd", "schedule=fixed", "model=fcn32s", "trainer.max_iters=2")
    result = train(cfg, tmp_path)
    assert math.isfinite(result["mean_iu"])
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    lrs = [e.value for e in events.Scalars("train/lr")]
    assert lrs and lrs == pytest.approx([cfg.optimizer.lr] * len(lrs))


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_cfg, tmp_path):
    with pytest.raises(SegtrainError, match="non-finite|loss became"):
        train(tiny_cfg("optimizer=sgd", "optimizer.lr=1e12", "trainer.log_interval=1", "trainer.ckpt_interval=1"),
              tmp_path)
    for path in (tmp_path / "checkpoints").glob("*.pt"):
        state = load_checkpoint(path)["model"].values()
        assert all(torch.isfinite(v).all() for v in state if v.is_floating_point()), path


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_amp_on_cuda(tiny_cfg, tmp_path, amp):
    result = train(tiny_cfg("trainer.device=cuda", f"trainer.amp={amp}"), tmp_path)
    assert math.isfinite(result["mean_iu"])
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert (state["scaler"] != {}) == (amp == "fp16")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_speed_options_together(tiny_cfg, tmp_path):
    result = train(tiny_cfg("trainer.device=cuda", "trainer.amp=bf16", "trainer.channels_last=true",
                            "trainer.compile=true", "trainer.num_workers=2"), tmp_path)
    assert math.isfinite(result["mean_iu"])


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.slow
def test_every_model_trains_and_evaluates_from_its_checkpoint(tiny_cfg, tmp_path, model):
    result = train(tiny_cfg(f"model={model}", "model.width=0.0625", "trainer.max_iters=2"), tmp_path)
    evaluated = run_eval([f"ckpt={tmp_path / 'checkpoints' / 'last.pt'}"])
    assert evaluated["mean_iu"] == result["mean_iu"]


def test_edeconvnet_ensemble_of_checkpoints(finished_run, tiny_cfg, tmp_path, capsys):
    run_dir, _ = finished_run
    fcn8s = run_dir / "checkpoints" / "last.pt"
    alone = run_eval([f"ckpt={fcn8s}"])
    # A network with itself: squared probabilities keep every argmax, so the metrics cannot change
    doubled = run_eval([f"ckpt={fcn8s}", f"ensemble=[{fcn8s}]"])
    assert {k: doubled[k] for k in ("pixel_acc", "mean_iu")} == {k: alone[k] for k in ("pixel_acc", "mean_iu")}

    train(tiny_cfg("model=deconvnet", "trainer.max_iters=2"), tmp_path / "deconvnet")
    deconvnet = tmp_path / "deconvnet" / "checkpoints" / "last.pt"
    capsys.readouterr()
    result = run_eval([f"ckpt={deconvnet}", f"ensemble=[{fcn8s}]", f"hydra.run.dir={tmp_path / 'e'}"])
    out = capsys.readouterr().out
    assert "product of the class probabilities of deconvnet x fcn8s" in out and "identical" not in out
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["ensemble"] == [str(fcn8s)]
    assert 0 <= result["mean_iu"] <= 1

    other = load_checkpoint(fcn8s)
    other["config"]["dataset"]["num_classes"] = 4
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(SegtrainError, match="dataset.num_classes 4 against 5; the members of an ensemble"):
        run_eval([f"ckpt={deconvnet}", f"ensemble=[{tmp_path / 'other.pt'}]"])


def test_accumulating_two_half_batches_is_one_full_batch_step():
    """Caffe's iter_size: gradients of N batches, each loss divided by N, equal one batch N times larger."""
    from segtrain.engine import train_step
    from segtrain.losses import segmentation_loss
    from segtrain.models import build_model

    torch.manual_seed(0)
    images, targets = torch.randn(4, 3, 24, 24), torch.randint(0, 3, (4, 24, 24))
    targets[:, :2] = 255
    steps = {}
    for name, batches in (("full", [(images, targets)]), ("halves", [(images[:2], targets[:2]),
                                                                        (images[2:], targets[2:])])):
        torch.manual_seed(1)
        model = build_model("unet_same", 3, width=0.0625, batch_norm=False, dropout=0.0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
        scaler = torch.amp.GradScaler("cuda", enabled=False)
        from contextlib import nullcontext

        loss = train_step(model, batches, optimizer, scheduler, scaler, nullcontext(),
                          lambda logits, t: segmentation_loss(logits, t, 3, 255))
        steps[name] = (loss, [p.detach().clone() for p in model.parameters()])
    # equal halves of labelled pixels: the mean of the half-batch means is the full batch's mean
    torch.testing.assert_close(steps["full"][0], steps["halves"][0])
    for a, b in zip(steps["full"][1], steps["halves"][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_summed_loss_and_class_weights():
    from segtrain.losses import segmentation_loss

    logits, targets = torch.randn(2, 3, 5, 5), torch.randint(0, 3, (2, 5, 5))
    targets[0, 0] = 255
    labelled = int((targets != 255).sum())
    mean = segmentation_loss(logits, targets, 3, 255)
    torch.testing.assert_close(segmentation_loss(logits, targets, 3, 255, normalize=False), mean * labelled)
    only_class_1 = segmentation_loss(logits, targets, 3, 255, class_weights=torch.tensor([0.0, 1.0, 0.0]))
    keep = targets == 1
    expected = torch.nn.functional.cross_entropy(logits.permute(0, 2, 3, 1)[keep], targets[keep])
    torch.testing.assert_close(only_class_1, expected)


@pytest.mark.slow
def test_training_with_accumulation_step_schedule_and_class_weights(tiny_cfg, tmp_path):
    result = train(tiny_cfg("trainer.accumulate=2", "schedule=step", "schedule.step_size=3",
                            "schedule.warmup_iters=2", "loss.class_weights=[1,2,2,4,4]"), tmp_path)
    assert math.isfinite(result["mean_iu"])
    with pytest.raises(SegtrainError, match="loss.class_weights has 2 entries"):
        train(tiny_cfg("loss.class_weights=[1,2]"), tmp_path / "other")
    with pytest.raises(Exception, match="linear"):
        tiny_cfg("schedule.name=linear")


@pytest.mark.slow
def test_channels_last_trains_to_the_same_weights_as_nchw(tiny_cfg, tmp_path):
    # SGD: an update proportional to the gradient (Adam would magnify float noise in near-zero gradients)
    nchw = train(tiny_cfg("trainer.max_iters=2", "optimizer=sgd"), tmp_path / "nchw")
    nhwc = train(tiny_cfg("trainer.max_iters=2", "optimizer=sgd", "trainer.channels_last=true"), tmp_path / "nhwc")
    assert nhwc["mean_iu"] == pytest.approx(nchw["mean_iu"], abs=0.02)
    a = load_checkpoint(tmp_path / "nchw" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "nhwc" / "checkpoints" / "last.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4)


def test_compile_trains_through_the_compiled_module_and_saves_the_plain_one(tiny_cfg, tmp_path, monkeypatch):
    compiled = []
    real_compile = torch.compile

    def eager_compile(module, **kwargs):  # the wiring is segtrain's; inductor's C++ build would take minutes here
        compiled.append(module)
        return real_compile(module, backend="eager", **kwargs)

    monkeypatch.setattr(torch, "compile", eager_compile)
    result = train(tiny_cfg("trainer.max_iters=2", "trainer.compile=true", "model=unet_same"), tmp_path)
    assert len(compiled) == 1 and math.isfinite(result["mean_iu"])
    assert not any(k.startswith("_orig_mod") for k in load_checkpoint(tmp_path / "checkpoints" / "last.pt")["model"])


def test_unet_weight_map_weighs_the_gap_between_touching_objects():
    import numpy as np

    from segtrain.losses import unet_weight_map

    label = np.zeros((40, 40), np.uint8)
    label[10:30, 5:19] = 1
    label[10:30, 21:35] = 1  # two objects of the same class, 2 px apart
    label[0, 0] = 255
    weights = unet_weight_map(label, w0=10, sigma=5)
    counts = {0: int((label == 0).sum()), 1: int((label == 1).sum())}
    valid = counts[0] + counts[1]
    w_background, w_object = valid / (2 * counts[0]), valid / (2 * counts[1])  # class balancing
    # the gap's column 19 is 1 px from one object and 2 px from the other: w_c + 10 exp(-(1 + 2)^2 / 50)
    assert weights[20, 19] == pytest.approx(w_background + 10 * math.exp(-9 / 50), rel=1e-4)
    assert weights[39, 0] == pytest.approx(w_background, abs=1e-3)  # far from both: w_c alone
    assert weights[20, 10] == pytest.approx(w_object) and weights[15, 25] == pytest.approx(w_object)
    assert weights[0, 0] == 0  # ignored


def test_training_with_the_unet_weighted_loss(tiny_cfg, tmp_path):
    result = train(tiny_cfg("model=unet_same", "loss=unet_weighted", "trainer.max_iters=2"), tmp_path)
    assert math.isfinite(result["mean_iu"])


@pytest.mark.slow
def test_a_finished_run_leaves_no_model_behind(tiny_cfg, tmp_path, monkeypatch):
    """Sweeps run jobs one after another in one process: each must hand its memory back."""
    import weakref

    built = []
    real_build = train_module.build_model_from_config

    def tracked(*args, **kwargs):
        model = real_build(*args, **kwargs)
        built.append(weakref.ref(model))
        return model

    monkeypatch.setattr(train_module, "build_model_from_config", tracked)
    train(tiny_cfg("trainer.max_iters=2"), tmp_path)
    assert len(built) == 1 and built[0]() is None


@pytest.mark.slow
def test_fcn16s_starts_from_a_trained_fcn32s(tiny_cfg, tmp_path, monkeypatch):
    train(tiny_cfg("model=fcn32s", "trainer.max_iters=2"), tmp_path / "32s")
    coarse = load_checkpoint(tmp_path / "32s" / "checkpoints" / "last.pt")["model"]
    built = {}
    real_init = train_module.init_from_checkpoint

    def keep(model, path, *args):
        real_init(model, path, *args)
        built.update({k: v.clone() for k, v in model.state_dict().items()})

    monkeypatch.setattr(train_module, "init_from_checkpoint", keep)
    train(tiny_cfg("model=fcn16s", "trainer.max_iters=2",
                   f"model.init_from={tmp_path / '32s' / 'checkpoints' / 'last.pt'}"), tmp_path / "16s")
    assert torch.equal(built["score_fr.weight"], coarse["score_fr.weight"])
    assert torch.equal(built["backbone.body.28.weight"], coarse["backbone.body.28.weight"])
    assert not built["score_skips.0.weight"].any()  # the new pool4 skip starts at zero
    with pytest.raises(SegtrainError, match="none of its weights fits"):
        train(tiny_cfg("model=unet_same", f"model.init_from={tmp_path / '32s' / 'checkpoints' / 'last.pt'}"),
              tmp_path / "unet")


def test_unet_weights_come_with_the_batch():
    import numpy as np

    from segtrain.data import pad_collate
    from segtrain.losses import PixelWeighted, pixel_weights, unet_weight_map, unet_weighted_loss

    from .conftest import compose_config

    label = torch.zeros(20, 20, dtype=torch.long)
    label[2:8, 2:8] = 1
    label[2:8, 10:16] = 1
    items = PixelWeighted([(torch.zeros(3, 20, 20), label), (torch.zeros(3, 16, 18), label[:16, :18])],
                          pixel_weights(compose_config("loss=unet_weighted").loss, 255))
    images, targets, weights = pad_collate([items[0], items[1]])
    assert weights.shape == targets.shape == (2, 20, 20)
    assert np.array_equal(weights[1].numpy(), unet_weight_map(targets[1].numpy(), 255, 10.0, 5.0))
    assert (weights[1][16:] == 0).all()  # the padding is ignored
    logits = torch.randn(2, 2, 20, 20)
    per_pixel = torch.nn.functional.cross_entropy(logits, targets, ignore_index=255, reduction="none")
    expected = (per_pixel * weights).sum() / (targets != 255).sum()
    torch.testing.assert_close(unet_weighted_loss(logits, targets, weights, 255), expected)


def test_bootstrapped_cross_entropy_by_hand():
    from segtrain.losses import bootstrapped_cross_entropy

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 2, 3)
    targets = torch.tensor([[[0, 1, 2], [255, 1, 0]],  # 5 labelled pixels
                            [[255, 255, 2], [255, 255, 255]]])  # 1 labelled pixel: fewer than K
    log_probs = logits.log_softmax(1)

    def hardest_mean(image, k):
        losses = sorted((-log_probs[image, targets[image, y, x], y, x].item() for y in range(2) for x in range(3)
                         if targets[image, y, x] != 255), reverse=True)
        return sum(losses[:k]) / len(losses[:k])

    expected = (hardest_mean(0, 3) + hardest_mean(1, 3)) / 2
    assert bootstrapped_cross_entropy(logits, targets, 255, top_k=3).item() == pytest.approx(expected)
    # a fraction of each image's labelled pixels: ceil(0.4 * 5) = 2 and ceil(0.4 * 1) = 1
    expected = (hardest_mean(0, 2) + hardest_mean(1, 1)) / 2
    assert bootstrapped_cross_entropy(logits, targets, 255, top_fraction=0.4).item() == pytest.approx(expected)
    # K past every pixel is the plain per-image mean
    assert bootstrapped_cross_entropy(logits[:1], targets[:1], 255, top_k=100).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits[:1], targets[:1], ignore_index=255).item())


@pytest.mark.slow
def test_training_with_the_bootstrapped_loss(tiny_cfg, tmp_path):
    result = train(tiny_cfg("model=frrn_a", "loss=bootstrap", "loss.top_k=200", "trainer.max_iters=2"), tmp_path)
    assert math.isfinite(result["mean_iu"])
    with pytest.raises(SegtrainError, match="set exactly one of loss.top_k"):
        train(tiny_cfg("loss=bootstrap", "loss.top_fraction=0.5"), tmp_path / "both")


def test_speed_defaults_resolve_for_the_machine(tmp_path):
    from segtrain.data import build_dataset
    from segtrain.data.fake import make_folder
    from segtrain.runtime import resolve_deterministic, resolve_num_workers

    from .conftest import compose_config

    cfg = compose_config()
    assert (cfg.trainer.deterministic, cfg.trainer.num_workers) == ("auto", "auto")
    assert resolve_deterministic("auto", torch.device("cpu")) is True  # bit-exact resume on a CPU by default
    assert resolve_deterministic("auto", torch.device("cuda")) is False  # cuDNN autotuning on a GPU
    assert resolve_deterministic(True, torch.device("cuda")) is True
    synthetic = build_dataset(cfg.dataset, "train")
    assert resolve_num_workers("auto", synthetic) == 0 and resolve_num_workers(3, synthetic) == 3
    make_folder(tmp_path, 16)
    files = build_dataset(compose_config("dataset=folder", f"dataset.root={tmp_path / 'folder'}",
                                         f"dataset.classes={tmp_path / 'folder' / 'classes.yaml'}").dataset, "train")
    assert resolve_num_workers("auto", files) == min(8, os.cpu_count())


@pytest.mark.parametrize("override,message", [
    ("trainer.num_workers=many", "trainer.num_workers=many: expected auto or a whole number >= 0"),
    ("trainer.num_workers=-1", "trainer.num_workers=-1: expected auto or a whole number >= 0"),
    ("trainer.deterministic=sometimes", "trainer.deterministic=sometimes: expected auto, true or false"),
])
def test_speed_settings_are_checked(override, message, tiny_cfg, tmp_path):
    with pytest.raises(SegtrainError, match=message):
        train(tiny_cfg(override), tmp_path)


def test_bf16_autocast_trains_on_a_cpu_with_bfloat16(tiny_cfg, tmp_path, monkeypatch, caplog):
    from segtrain.runtime import cpu_has_bf16

    monkeypatch.setattr("segtrain.runtime.cpu_has_bf16", lambda: False)
    assert select_amp("bf16", torch.device("cpu")) == "off"  # no bfloat16 instructions: fp32, said in one line
    monkeypatch.undo()
    if not cpu_has_bf16():
        pytest.skip("this CPU has no bfloat16 instructions")
    caplog.set_level(logging.INFO, logger="segtrain")
    result = train(tiny_cfg("trainer.amp=bf16", "trainer.max_iters=2"), tmp_path)
    assert math.isfinite(result["mean_iu"]) and "with bf16 autocast" in caplog.text


def test_ops_without_a_deterministic_kernel_are_named_once_in_the_log(caplog, recwarn):
    """DeconvNet's unpooling has none: torch warns at every call under warn_only=True; the run's log names it once."""
    from segtrain.runtime import nondeterministic_ops_named

    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    caplog.set_level("INFO", logger="segtrain")
    pooled, switches = torch.nn.functional.max_pool2d(torch.randn(1, 2, 8, 8), 2, return_indices=True)
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        with nondeterministic_ops_named(True):
            for _ in range(3):
                torch.nn.functional.max_unpool2d(pooled, switches, 2)
            warnings.warn("another warning")  # passed on as before
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    assert [r.getMessage() for r in caplog.records] == [
        "deterministic kernels except max_unpooling2d_forward_out (torch has none for it)"]
    assert [str(w.message) for w in recwarn] == ["another warning"]


def scripted_validations(monkeypatch, **values):
    """Validation metrics whose `values` (name: list, one per validation) replace the measured ones."""
    real, count = train_module.evaluate, []

    def evaluate(*args, **kwargs):
        metrics, samples = real(*args, **kwargs)
        count.append(1)
        return {**metrics, **{name: series[len(count) - 1] for name, series in values.items()}}, samples

    monkeypatch.setattr(train_module, "evaluate", evaluate)
    return count


def test_early_stop_ends_the_run_writes_last_pt_and_a_resume_stays_stopped_unless_the_patience_grows(
        tiny_cfg, tmp_path, monkeypatch, caplog):
    """Patience 2 over validations at every one of 6 iterations: mean IU 0.5, 0.6 (best, at 2), 0.55, 0.58 stops
    the run at 4. Resumed with the same patience it stays stopped (nothing trains); with patience null it trains
    on."""
    validations = scripted_validations(monkeypatch, mean_iu=[0.5, 0.6, 0.55, 0.58, 0.7, 0.1])
    cfg = ["trainer.max_iters=6", "trainer.val_interval=1", "trainer.num_vis_images=0"]
    with caplog.at_level(logging.INFO, logger="segtrain"):
        result = train(tiny_cfg(*cfg, "trainer.early_stop_patience=2"), tmp_path)
    assert len(validations) == 4
    assert ("early stop at iteration 4: mean_iu has not improved for 2 validations (trainer.early_stop_patience=2); "
            "best 0.6000 at iteration 2, last.pt at iteration 4; to train on, resume with a larger "
            "trainer.early_stop_patience (or null)") in caplog.text
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert {k: written[k] for k in ("stopped_early", "iteration", "best_iteration", "best_monitored", "best_mean_iu",
                                    "mean_iu")} == {"stopped_early": True, "iteration": 4, "best_iteration": 2,
                                                    "best_monitored": 0.6, "best_mean_iu": 0.6, "mean_iu": 0.58}
    assert result["stopped_early"] and result["iteration"] == 4
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert (last["iteration"], last["validated"], last["metrics"]["mean_iu"]) == (4, True, 0.58)
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["iteration"] == 2
    written_at = (tmp_path / "checkpoints" / "last.pt").stat().st_mtime_ns

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="segtrain"):
        again = train(tiny_cfg(*cfg, "trainer.early_stop_patience=2", "trainer.resume=auto"), tmp_path)
    assert len(validations) == 4 and (tmp_path / "checkpoints" / "last.pt").stat().st_mtime_ns == written_at
    assert "the resumed run stays stopped at iteration 4: mean_iu has not improved" in caplog.text
    assert {k: v for k, v in again.items() if k != "train_images_per_s"} == {
        k: v for k, v in result.items() if k != "train_images_per_s"}

    with pytest.raises(SegtrainError) as info:  # another metric would be compared with mean IU's best
        train(tiny_cfg(*cfg, "trainer.monitor=mean_dice", "trainer.resume=auto"), tmp_path)
    assert str(info.value) == (
        f"trainer.monitor=mean_dice: {tmp_path / 'checkpoints' / 'last.pt'} chose its best.pt by mean_iu, and a "
        "resumed run goes on comparing with that best value; resume with trainer.monitor=mean_iu, or start a new run "
        f"(model.init_from={tmp_path / 'checkpoints' / 'last.pt'}) to choose by mean_dice")

    on = train(tiny_cfg(*cfg, "trainer.early_stop_patience=null", "trainer.resume=auto"), tmp_path)
    assert len(validations) == 6 and not on["stopped_early"]
    assert (on["iteration"], on["best_iteration"], on["best_monitored"], on["mean_iu"]) == (6, 5, 0.7, 0.1)


def test_monitor_chooses_best_pt_and_an_unknown_class_is_one_line_before_training(tiny_cfg, tmp_path,
                                                                                   monkeypatch):
    scripted_validations(monkeypatch, mean_iu=[0.5, 0.4], mean_dice=[0.3, 0.6])
    result = train(tiny_cfg("trainer.max_iters=2", "trainer.val_interval=1", "trainer.num_vis_images=0",
                            "trainer.monitor=mean_dice"), tmp_path)
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["iteration"] == 2 and best["monitor"] == "mean_dice"  # by mean Dice; mean IU was best at 1
    assert (result["best_monitored"], result["best_iteration"], result["best_mean_iu"]) == (0.6, 2, 0.5)

    with pytest.raises(SegtrainError) as info:
        train(tiny_cfg("trainer.monitor=car_iu"), tmp_path / "car")
    assert str(info.value) == ("trainer.monitor=car_iu: expected one of mean_iu, mean_dice, pixel_acc, background_iu, "
                               "block_iu, disc_iu, wire_iu, dot_iu")
    assert not (tmp_path / "car" / "checkpoints").exists()
    with pytest.raises(SegtrainError, match=r"^trainer.monitor=loss: expected mean_iu, mean_dice, pixel_acc or "
                                            r"CLASS_iu \(a class's IU\)$"):
        train(tiny_cfg("trainer.monitor=loss"), tmp_path / "loss")


def test_monitoring_a_class_the_val_labels_lack_is_one_line_before_training(tiny_cfg, tmp_path):
    import numpy as np
    from PIL import Image

    for split, objects in (("train", (1, 1)), ("val", (0,))):  # val: background only
        for folder in ("images", "masks"):
            (tmp_path / "data" / split / folder).mkdir(parents=True)
        for n, has_object in enumerate(objects):
            Image.fromarray(np.full((16, 16, 3), 100 + 50 * n, np.uint8)).save(tmp_path / "data" / split / "images"
                                                                              / f"{n}.png")
            mask = np.zeros((16, 16), np.uint8)
            mask[4:9, 4:9] = has_object
            Image.fromarray(mask).save(tmp_path / "data" / split / "masks" / f"{n}.png")
    (tmp_path / "data" / "classes.yaml").write_text("classes:\n  - {name: background}\n  - {name: object}\n")
    root = tmp_path / "data"
    folder = ["dataset=folder", f"dataset.root={root}", f"dataset.classes={root / 'classes.yaml'}",
              'dataset.image_dir="{split}/images"', 'dataset.mask_dir="{split}/masks"', "trainer.batch_size=2",
              "model.width=0.0625", "trainer.max_iters=2"]
    with pytest.raises(SegtrainError) as info:
        train(compose_config(*folder, "trainer.monitor=object_iu", "trainer.device=cpu"), tmp_path / "run")
    assert str(info.value) == ("trainer.monitor=object_iu: the 1 val label files hold no object pixels, so its IU is 0 "
                               "or undefined at every validation; monitor another metric (mean_iu, mean_dice, "
                               "pixel_acc or another class's IU)")
    assert not (tmp_path / "run" / "checkpoints").exists()
