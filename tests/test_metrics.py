import math

import pytest
import torch

from segtrain.metrics import ConfusionMatrix


def metrics_of(target, pred, num_classes=3, chunks=1):
    confusion = ConfusionMatrix(num_classes)
    for t, p in zip(torch.as_tensor(target).chunk(chunks), torch.as_tensor(pred).chunk(chunks)):
        confusion.update(t, p)
    return confusion.hist, confusion.compute()


def test_ignored_pixels_and_class_absent_from_both():
    # 255 and 7 are outside [0, 3): those pixels are skipped even though something (class 2) is predicted there.
    target = [0, 0, 0, 1, 1, 0, 255, 7]
    pred = [0, 1, 0, 1, 0, 0, 2, 2]
    hist, m = metrics_of(target, pred)
    assert hist.tolist() == [[3, 1, 0], [1, 1, 0], [0, 0, 0]]
    assert m["pixel_acc"] == pytest.approx(4 / 6)
    assert m["mean_acc"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert m["iu"][0] == pytest.approx(3 / 5)
    assert m["iu"][1] == pytest.approx(1 / 3)
    assert math.isnan(m["iu"][2])  # absent from ground truth and prediction: skipped by the mean
    assert m["mean_iu"] == pytest.approx((3 / 5 + 1 / 3) / 2)
    assert m["fw_iu"] == pytest.approx(4 / 6 * 3 / 5 + 2 / 6 * 1 / 3)


def test_class_predicted_but_absent_from_ground_truth_counts_as_zero():
    hist, m = metrics_of([0, 1, 1], [0, 2, 1])
    assert hist.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    assert m["iu"] == pytest.approx([1.0, 0.5, 0.0])
    assert m["mean_iu"] == pytest.approx(0.5)  # FCN's nanmean: the 0 counts
    assert m["mean_acc"] == pytest.approx(0.75)  # accuracy of class 2 is NaN (no ground truth) and skipped
    assert m["fw_iu"] == pytest.approx(1 / 3 * 1.0 + 2 / 3 * 0.5)
    assert m["pixel_acc"] == pytest.approx(2 / 3)


def test_accumulates_over_batches_like_one_pass():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (4, 9, 7), generator=g)
    target[target == 3] = 255
    pred = torch.randint(0, 3, (4, 9, 7), generator=g)
    one_pass, _ = metrics_of(target, pred)
    batched, _ = metrics_of(target, pred, chunks=4)
    assert torch.equal(one_pass, batched)
    assert one_pass.sum() == (target != 255).sum()
