import pytest
import torch

from segtrain.models import MODELS, build_model, count_parameters
from segtrain.models.fcn import bilinear_kernel

# docs/reference.md section 3: trainable parameters at full width, 21 classes (FCN upsampling fixed, as the release)
FCN_PARAMETERS = {"fcn32s": 134_346_581, "fcn16s": 134_357_354, "fcn8s": 134_362_751}
PARAMETERS = {**FCN_PARAMETERS, "fcn8s_atonce": 134_362_751, "fcn32s_fixed": 4096 * 21 + 21,
              "deeplab_largefov": 20_505_429,
              "deeplab_aspp": 42_500_160 + 4 * (2048 * 9 * 21 + 21),  # ResNet-101 without fc + four ASPP convs
              "deconvnet": 251_772_245 + 33_408,  # weights and biases + BN affine
              # torchvision's backbones, not the papers' Caffe nets (CaffeNet: 56,954,261; GoogLeNet: "6M"):
              # AlexNet features 2,469,696 + fc6 6x6 37,752,832 + fc7 16,781,312 + score 86,037
              "fcn_alexnet": 57_089_877,
              # GoogLeNet 6,624,904 without aux heads - fc 1,025,000 + score 1024 * 21 + 21
              "fcn_googlenet": 5_621_429}


def frrn_parameters(encoder, decoder, classes: int) -> int:
    """FRRN's count from its layer table (Pohlen et al. 2017; the release's architectures.py): 3x3 convs without
    bias plus BN (2 per channel); each FRRU ends in a 1x1 conv to the 32 lanes with bias."""
    def conv(k, c_in, c_out, bias=False):
        return k * k * c_in * c_out + (c_out if bias else 0)

    def conv_bn(k, c_in, c_out):
        return conv(k, c_in, c_out) + 2 * c_out

    def ru(c_in, c_out):
        return conv_bn(3, c_in, c_out) + conv_bn(3, c_out, c_out) + (conv(1, c_in, c_out) if c_in != c_out else 0)

    total = conv_bn(5, 3, 48) + 3 * ru(48, 48) + conv_bn(1, 48, 32)  # stem, then the residual stream's start
    channels = 48
    for stage_channels, units in encoder + decoder:
        for _ in range(units):
            total += conv_bn(3, channels + 32, stage_channels) + conv_bn(3, stage_channels, stage_channels)
            total += conv(1, stage_channels, 32, bias=True)
            channels = stage_channels
    return total + ru(channels + 32, 48) + 2 * ru(48, 48) + conv(1, 48, classes, bias=True)


# Cityscapes' 19 classes; the paper gives 17.7M and 24.8M
FRRN_PARAMETERS = {
    "frrn_a": frrn_parameters([(96, 3), (192, 4), (384, 2), (384, 2)], [(192, 2), (192, 2), (96, 2)], 19),
    "frrn_b": frrn_parameters([(96, 3), (192, 4), (384, 2), (384, 2), (384, 2)],
                              [(192, 2), (192, 2), (192, 2), (96, 2)], 19),
}


# U-Net's reference counts are for 2 classes: the original with 1 input channel, "same" with 3 and BN
UNET_PARAMETERS = {"unet": (dict(in_channels=1), 31_030_658),
                   "unet_same": (dict(in_channels=3, batch_norm=True), 31_037_698)}


def test_every_model_has_a_reference_count():
    assert set(PARAMETERS) | set(UNET_PARAMETERS) | set(FRRN_PARAMETERS) == set(MODELS)


@pytest.mark.parametrize("name,paper_millions", [("frrn_a", 17.7), ("frrn_b", 24.8)])
def test_frrn_parameter_counts(name, paper_millions):
    with torch.device("meta"):
        assert count_parameters(build_model(name, 19)) == FRRN_PARAMETERS[name]
    assert round(FRRN_PARAMETERS[name] / 1e6, 1) == paper_millions


@pytest.mark.parametrize("name", sorted(UNET_PARAMETERS))
def test_unet_parameter_counts(name):
    options, expected = UNET_PARAMETERS[name]
    with torch.device("meta"):
        assert count_parameters(build_model(name, 2, **options)) == expected


def test_unet_keeps_the_papers_geometry_and_aligns_its_output():
    model = build_model("unet", 2, in_channels=1, width=0.0625).eval()
    with torch.no_grad():
        untiled = build_model("unet", 2, in_channels=1, width=0.0625).eval()
        untiled.tile_input = lambda x: x  # the bare network: 572 in, 388 out
        assert untiled(torch.randn(1, 1, 572, 572)).shape[-2:] == (388, 388)

        # Change one input pixel: the outputs that change are its field of view, 185 pixels plus up to 16 where
        # the four 2x pools' 16-pixel grid widens it, centred on that same pixel up to half a grid cell. A crop
        # off by the 92-pixel border (or any real misalignment) moves the centre far more.
        x = torch.randn(1, 1, 300, 300)
        y = x.clone()
        y[..., 150, 150] += 10
        changed = (model(x) - model(y)).abs().sum(1)[0, 150].nonzero().flatten()
    assert 185 <= changed.max() - changed.min() + 1 <= 185 + 16 + 4
    assert abs((changed.min() + changed.max()) / 2 - 150) <= 8


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_full_width_parameter_counts(name):
    with torch.device("meta"):  # no memory, no init time
        model = build_model(name, 21)
    assert count_parameters(model) == PARAMETERS[name]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_training_steps_reach_exactly_the_trainable_weights(name):
    torch.manual_seed(0)
    no_dropout = {} if name in ("deeplab_aspp", "frrn_a", "frrn_b") else {"dropout": 0.0}  # they have none
    model = build_model(name, 3, width=0.0625, **no_dropout)
    before = {k: v.clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    images, targets = torch.randn(2, 3, 37, 41), torch.randint(0, 3, (2, 37, 41))
    for _ in range(2):  # FCN's score layers start at zero: the layers below them learn from the second step
        loss = torch.nn.functional.cross_entropy(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
    for key, param in model.named_parameters():
        if param.requires_grad:  # a gradient, not a changed value: a tiny step can vanish in a float32 near 1.0
            assert param.grad is not None and bool(param.grad.any()), key
        else:
            assert torch.equal(param, before[key]), key


def test_learned_upsampling_trains_the_deconvolutions():
    with torch.device("meta"):
        model = build_model("fcn32s", 21, learned_upsampling=True)
    assert count_parameters(model) == FCN_PARAMETERS["fcn32s"] + 64 * 64 * 21 * 21


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("size", [(1, 1), (31, 45), (64, 64), (97, 50)])
def test_output_matches_input_size(name, size):
    model = build_model(name, 3, width=0.0625).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 3, *size)


def test_bilinear_kernel():
    w = bilinear_kernel(2, 4)
    profile = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(w[0, 0], profile[:, None] * profile[None, :])
    assert torch.equal(w[0, 1], torch.zeros(4, 4))  # class diagonal only
    odd = bilinear_kernel(1, 3)[0, 0]
    assert odd[1, 1] == 1.0 and odd[0, 0] == 0.25


@pytest.mark.parametrize("name,skip_index", [("fcn16s", 0), ("fcn8s", 1)])
def test_finest_skip_reaches_the_output_aligned(name, skip_index):
    """With every score zero but the finest skip's bias, the output is that bias, upsampled: ~1 away from
    the borders. A wrong crop or a dropped skip would leave zeros."""
    model = build_model(name, 2, width=0.0625).eval()
    with torch.no_grad():
        model.score_skips[skip_index].bias.copy_(torch.tensor([1.0, 0.0]))
        out = model(torch.randn(1, 3, 96, 96))
    assert torch.allclose(out[0, 0, 16:-16, 16:-16], torch.ones(64, 64), atol=1e-5)
    assert torch.equal(out[0, 1], torch.zeros(96, 96))


def linearised(model):
    """The model with ReLU, BN and dropout removed, max pools made average pools of the same geometry and every
    conv a uniform average: each output's receptive field is then symmetric about the input point it maps to."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.MaxPool2d):
                setattr(module, name, torch.nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                                         ceil_mode=child.ceil_mode))
            elif isinstance(child, (torch.nn.ReLU, torch.nn.BatchNorm2d, torch.nn.Dropout)):
                setattr(module, name, torch.nn.Identity())
    for conv in model.modules():
        if isinstance(conv, torch.nn.Conv2d):
            torch.nn.init.constant_(conv.weight, 1.0 / conv.weight[0].numel())
            if conv.bias is not None:
                torch.nn.init.zeros_(conv.bias)
    return model.eval()


@pytest.mark.parametrize("name", ["fcn32s", "fcn_alexnet", "fcn_googlenet"])
def test_fcn_crop_offsets_align_each_output_with_its_input_pixel(name):
    """The centre of an output pixel's receptive field is that same input pixel (within the bilinear
    upsampling's sub-cell spread). A crop offset off by a few pixels moves it by as many."""
    model = linearised(build_model(name, 1, width=0.0625))
    columns = torch.arange(400, dtype=torch.float64)
    for z in (150, 201):
        x = torch.ones(1, 3, 400, 400, requires_grad=True)
        model(x)[0, 0, z, z].backward()
        weight = x.grad[0].sum((0, 1)).double()
        assert abs(float((weight * columns).sum() / weight.sum()) - z) < 1.0


def test_frozen_bn_keeps_statistics_and_affine_fixed():
    from torchvision.ops import FrozenBatchNorm2d

    model = build_model("deeplab_aspp", 3, width=0.0625, frozen_bn=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(frozen) == 104  # the stem's BN + 33 bottlenecks x 3 + 4 downsample BNs
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 33, 33)), torch.randint(0, 3, (2, 33, 33))).backward()
    optimizer.step()
    bn_keys = [k for k in before if ".bn" in k or "downsample.1" in k]
    assert bn_keys and all(torch.equal(model.state_dict()[k], before[k]) for k in bn_keys)
    with pytest.raises(Exception, match="no BN layers"):
        build_model("fcn32s", 3, width=0.0625, frozen_bn=True)


def test_unknown_model_is_a_clear_error():
    from segtrain.errors import SegtrainError

    with pytest.raises(SegtrainError, match="fcn9s"):
        build_model("fcn9s", 21)


def test_fcn8s_atonce_scales_its_skips():
    assert build_model("fcn8s_atonce", 3, width=0.0625).skip_scales == (0.01, 0.0001)


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    """A VGG16 state dict saved exactly as torchvision saves its ImageNet weights (random values here)."""
    from torchvision.models import vgg16

    torch.manual_seed(0)
    vgg = vgg16(weights=None).eval()
    path = tmp_path_factory.mktemp("weights") / "vgg16-397923af.pth"
    torch.save(vgg.state_dict(), path)
    return vgg, path


def test_pretrained_vgg16_is_convolutionalised(vgg16_file):
    vgg, path = vgg16_file
    model = build_model("fcn32s", 21, pretrained=str(path)).eval()
    assert torch.equal(model.backbone.body["28"].weight, vgg.features[28].weight)  # conv5_3
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        pool5 = vgg.features(x)  # (1, 512, 7, 7)
        linear = vgg.classifier[:5](torch.flatten(pool5, 1))  # fc6, relu, dropout, fc7, relu
        conv = model.head(pool5)  # the same two layers as 7x7 and 1x1 convolutions
    assert conv.shape == (1, 4096, 1, 1)
    torch.testing.assert_close(conv.flatten(1), linear, rtol=1e-4, atol=1e-5)


def test_pretrained_errors_are_one_line(vgg16_file, tmp_path):
    from segtrain.errors import SegtrainError

    with pytest.raises(SegtrainError, match="vgg16-397923af.pth") as info:
        build_model("fcn8s", 21, pretrained=str(tmp_path / "missing.pth"))
    assert "no such file" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(SegtrainError, match="model.width=1.0"):
        build_model("fcn8s", 21, width=0.5, pretrained=str(vgg16_file[1]))


def test_deeplab_largefov_decimates_fc6_fc7_and_keeps_stride_8(vgg16_file):
    vgg, path = vgg16_file
    model = build_model("deeplab_largefov", 21, pretrained=str(path)).eval()
    assert torch.equal(model.backbone.body["0"].weight, vgg.features[0].weight)
    fc6 = vgg.classifier[0].weight.view(4096, 512, 7, 7)
    assert torch.equal(model.head[0].weight[5, :, 1, 2], fc6[20, :, 3, 6])  # unit 4*5, taps (3*1, 3*2)
    assert torch.equal(model.head[3].weight[7, 9, 0, 0], vgg.classifier[3].weight[28, 36])
    assert model.backbone(torch.randn(1, 3, 64, 64))["pool5"].shape[-2:] == (9, 9)  # ceil(64 / 8)


def test_option_values_a_model_cannot_combine_are_errors():
    """(Options a family does not have at all are not keys of its schema: tests/test_config.py.)"""
    from segtrain.errors import SegtrainError

    with pytest.raises(SegtrainError, match="no AlexNet weights with BN"):
        build_model("fcn_alexnet", 21, batch_norm=True, pretrained="alexnet-owt-7be5be79.pth")


@pytest.mark.slow
def test_deconvnet_loads_vgg16_and_unpools_with_the_encoders_switches(vgg16_file):
    vgg, path = vgg16_file
    model = build_model("deconvnet", 3, batch_norm=False, pretrained=str(path)).eval()
    assert torch.equal(model.features[28].weight, vgg.features[28].weight)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        pool5 = vgg.features(x)
        torch.testing.assert_close(model.fc(pool5).flatten(1), vgg.classifier[:5](pool5.flatten(1)), rtol=1e-4,
                                   atol=1e-5)

    small = build_model("deconvnet", 3, width=0.0625).eval()
    unpooled = []
    small.unpool.register_forward_hook(lambda module, inputs, output: unpooled.append((inputs, output)))
    with torch.no_grad():
        small(torch.randn(1, 3, 64, 96))
    # 64x96 is mirrored out to 224x224: pool5 7x7 is unpooled to 14x14, then on up to the full 224
    assert [tuple(out.shape[-2:]) for _, out in unpooled] == [(14, 14), (28, 28), (56, 56), (112, 112), (224, 224)]
    (values, switches), out = unpooled[0]
    # each value lands where pool5 found its maximum, and nowhere else
    assert torch.equal(out.flatten(2).gather(2, switches.flatten(2)), values.flatten(2))
    assert int((out != 0).sum()) <= values.numel()


def saved_torchvision_weights(tmp_path, builder, file_name, **kwargs):
    """A torchvision classifier's state dict saved as torchvision saves its ImageNet weights (random values)."""
    torch.manual_seed(0)
    net = builder(weights=None, **kwargs).eval()
    path = tmp_path / file_name
    torch.save(net.state_dict(), path)
    return net, path


def test_fcn_alexnet_loads_and_convolutionalises_torchvisions_alexnet(tmp_path):
    from torchvision.models import alexnet

    net, path = saved_torchvision_weights(tmp_path, alexnet, "alexnet-owt-7be5be79.pth")
    model = build_model("fcn_alexnet", 21, pretrained=str(path)).eval()
    assert torch.equal(model.backbone[10].weight, net.features[10].weight)  # conv5
    assert model.backbone[0].padding == (100, 100)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        pool5 = net.features(x)  # (1, 256, 6, 6)
        linear = net.classifier[:6](torch.flatten(pool5, 1))  # dropout, fc6, relu, dropout, fc7, relu
        conv = model.head(pool5)
    torch.testing.assert_close(conv.flatten(1), linear, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_fcn_googlenet_loads_torchvisions_googlenet_with_its_aux_heads(tmp_path):
    from torchvision.models import googlenet

    net, path = saved_torchvision_weights(tmp_path, googlenet, "googlenet-1378be20.pth", aux_logits=True,
                                          init_weights=True)
    model = build_model("fcn_googlenet", 21, pretrained=str(path)).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        features = {}
        net.inception5b.register_forward_hook(lambda m, i, o: features.setdefault("5b", o))
        net(x)
        torch.testing.assert_close(model.backbone(x), features["5b"])  # (1, 1024, 7, 7)


def test_deeplab_aspp_loads_resnet101_at_output_stride_8(tmp_path):
    from torchvision.models import resnet101

    net, path = saved_torchvision_weights(tmp_path, resnet101, "resnet101-63fe2227.pth")
    model = build_model("deeplab_aspp", 21, pretrained=str(path), frozen_bn=True).eval()
    assert torch.equal(model.backbone.layer4[2].conv3.weight, net.layer4[2].conv3.weight)
    assert torch.equal(model.backbone.layer3[5].bn2.running_var, net.layer3[5].bn2.running_var)
    assert model.backbone.layer4[0].conv2.dilation == (2, 2) and model.backbone.layer4[1].conv2.dilation == (4, 4)
    with torch.no_grad():
        assert model.backbone(torch.randn(1, 3, 65, 65))["out"].shape == (1, 2048, 9, 9)
    rates = [branch.dilation[0] for branch in model.aspp.branches]
    assert rates == [6, 12, 18, 24] and 0.009 < float(model.aspp.branches[0].weight.detach().std()) < 0.011


def test_product_ensemble_multiplies_the_members_probabilities():
    from segtrain.models import ProductEnsemble

    class Fixed(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, x):
            return self.logits

    a, b = torch.randn(1, 3, 2, 2), torch.randn(1, 3, 2, 2)
    product = a.softmax(1) * b.softmax(1)
    out = ProductEnsemble([Fixed(a), Fixed(b)])(None)
    torch.testing.assert_close(out.exp(), product / product.sum(1, keepdim=True))


def test_pretrained_imagenet_comes_through_torchvisions_cache(vgg16_file, tmp_path, monkeypatch):
    """TORCH_HOME's hub/checkpoints holds the file under torchvision's name: used as torchvision would. Offline
    with an empty cache: one line naming the file and where to put it."""
    import shutil

    from segtrain.errors import SegtrainError

    vgg, path = vgg16_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # get_dir() reads TORCH_HOME again

    def offline(url, dst, **kwargs):
        with open(f"{dst}.partial", "wb"):
            pass
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    with pytest.raises(SegtrainError) as info:
        build_model("fcn32s", 21, pretrained="imagenet")
    assert str(info.value) == (
        "model.pretrained=imagenet: vgg16-397923af.pth is not in torchvision's cache and could not be downloaded "
        "([Errno -3] Temporary failure in name resolution); put the file from "
        f"https://download.pytorch.org/models/vgg16-397923af.pth at {cache / 'vgg16-397923af.pth'} (or set "
        "TORCH_HOME to a folder whose hub/checkpoints/ holds it), or pass a local file as model.pretrained=PATH")
    assert list(cache.iterdir()) == []  # no partial download left behind

    shutil.copy(path, cache / "vgg16-397923af.pth")
    model = build_model("fcn32s", 21, pretrained="imagenet")
    assert torch.equal(model.backbone.body["28"].weight, vgg.features[28].weight)


def test_every_network_declares_its_output_stride_and_new_layers():
    """A SegmentationModel says what the loss's cell sampling and the optimizer's head lr read, and the declared
    new layers are modules the network has."""
    from segtrain.models._utils import SegmentationModel

    strides = {"fcn32s": 32, "fcn16s": 16, "fcn8s": 8, "fcn8s_atonce": 8, "fcn32s_fixed": 32, "fcn_alexnet": 32,
               "fcn_googlenet": 32, "deeplab_largefov": 8, "deeplab_aspp": 8}
    for name in MODELS:
        model = build_model(name, 3, width=0.0625)
        assert isinstance(model, SegmentationModel), name
        assert model.output_stride == strides.get(name, 1), name
        modules = dict(model.named_modules())
        assert all(layer in modules for layer in model.new_layers), name


@pytest.mark.parametrize("name", ["unet", "unet_same", "frrn_a", "frrn_b", "deconvnet"])
def test_input_sizes_are_the_sizes_forward_pads_alike(name, monkeypatch):
    """A network's `input_sizes` (which an ONNX export with dynamic sizes takes) are those its forward() pads by
    the same amounts, none depending on the size; other sizes it pads otherwise."""
    import sys

    model = build_model(name, 3, width=0.0625).eval()
    sizes = model.input_sizes
    module = sys.modules[type(model).__module__]
    pads, mirror_pad = [], module.mirror_pad
    monkeypatch.setattr(module, "mirror_pad", lambda x, *amounts: pads.append(amounts) or mirror_pad(x, *amounts))
    first = sizes.fitting(1)
    assert first == sizes.minimum or name == "unet" and first == 100
    with torch.no_grad():
        for height, width in ((first, first + sizes.multiple), (first + 3 * sizes.multiple, first), (first + 1, first)):
            assert model(torch.zeros(1, 3, height, width)).shape[-2:] == (height, width)
    assert pads[0] == pads[1] != pads[2]
    assert sizes.fitting(first + 1) == first + sizes.multiple and sizes.fitting(first) == first


def test_other_networks_take_any_size():
    for name in set(MODELS) - {"unet", "unet_same", "frrn_a", "frrn_b", "deconvnet"}:
        assert build_model(name, 3, width=0.0625).input_sizes.any_size(), name


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("channels", [1, 4])
def test_the_convolution_that_takes_the_image_is_the_one_adapted(name, channels):
    """A grey (or RGB-D) narrow network: at width 0.0625 FRRN's classifier also takes 3 channels; the conv the
    image reaches first is the one rebuilt from its RGB filters (summed for grey, kept for RGB-D)."""
    torch.manual_seed(0)
    rgb = build_model(name, 2, width=0.0625)
    torch.manual_seed(0)  # the same initial weights before the adaptation
    model = build_model(name, 2, in_channels=channels, width=0.0625).eval()
    first = []
    hooks = [m.register_forward_pre_hook(lambda m, args: first.append(m)) for m in model.modules()
             if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        assert model(torch.zeros(1, channels, 40, 40)).shape == (1, 2, 40, 40)
    for hook in hooks:
        hook.remove()
    path = next(path for path, m in model.named_modules() if m is first[0])
    filters = rgb.get_submodule(path).weight
    assert first[0].in_channels == channels and torch.equal(
        first[0].weight, filters.sum(1, keepdim=True) if channels == 1 else torch.cat(
            [filters, filters.mean(1, keepdim=True)], 1))
