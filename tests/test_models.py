"""Models: exact parameter counts, shapes at odd sizes, channels, registry, pretrained VGG16 loading."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from nets import MODEL_NAMES, build_model
from nets.blocks import ConcatConv2d
from nets.summary import count_flops, summarize
from utils.errors import UserError


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, num_classes, expected", [
    ("unet", 21, 24_892_437), ("unet", 2, 24_891_202), ("unet_bn", 2, 34_527_106), ("att_unet", 2, 34_878_638),
])
def test_parameter_counts(name: str, num_classes: int, expected: int) -> None:
    with torch.device("meta"):
        assert n_params(build_model(name, num_classes=num_classes, in_channels=3)) == expected


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("in_channels, size", [(1, (37, 50)), (3, (32, 48))])
def test_output_has_input_size(name: str, in_channels: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=3, in_channels=in_channels).eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, *size))
    assert out.shape == (2, 3, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_backward_reaches_every_parameter(name: str) -> None:
    model = build_model(name, num_classes=2, in_channels=1)
    model(torch.randn(2, 1, 32, 32)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unet, unet_bn, att_unet"):
        build_model("segformer", num_classes=2)


def test_bad_input_is_explained() -> None:
    model = build_model("unet_bn", num_classes=2, in_channels=3)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="at least 16"):
        model(torch.randn(1, 3, 8, 32))


def test_pretrained_torchvision_vgg16_loads(tmp_path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.vgg16(weights=None)
    path = tmp_path / "vgg16.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("unet", num_classes=2, in_channels=3, pretrained=str(path))
    assert torch.equal(model.encoder.features[28].weight, reference.features[28].weight)
    grey = build_model("unet", num_classes=2, in_channels=1, pretrained=str(path))
    # A grey image equals an RGB image with equal channels, so the first layer's response must match.
    x = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(grey.encoder.features[0](x), reference.features[0](x.repeat(1, 3, 1, 1)))


def test_pretrained_mismatch_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "vgg16_bn.pth"
    torch.save(torchvision.models.vgg11(weights=None).state_dict(), path)
    with pytest.raises(UserError, match="not a torchvision VGG16"):
        build_model("unet", num_classes=2, pretrained=str(path))
    with pytest.raises(UserError, match="not found"):
        build_model("unet", num_classes=2, pretrained=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot read"):
        build_model("unet", num_classes=2, pretrained=str(tmp_path / "junk.pth"))


def test_flops_of_two_convolutions_by_hand() -> None:
    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                    torch.nn.Conv2d(8, 4, 3, padding=1))
    # 2 FLOPs per multiply-add; each output pixel of a 3x3 conv takes 9 * c_in multiply-adds per output channel.
    first, second = 2 * 16 * 16 * 8 * 9 * 3, 2 * 16 * 16 * 4 * 9 * 8  # 110,592 and 147,456
    assert count_flops(model, 16, 3) == first + second
    # Backward: a weight gradient per conv (as costly as its forward) and an input gradient for the second
    # only (the image needs none); ReLU and bias terms are not counted.
    assert count_flops(model, 16, 3, backward=True) == 2 * first + 3 * second


def test_summary_lists_layers_and_totals() -> None:
    text = summarize("att_unet", 64)
    assert "parameters: 34,878,638" in text
    assert "gates.0.psi.0" in text and "(1, 2, 64, 64)" in text


@pytest.mark.parametrize("channels_last", [False, True])
def test_concat_conv_equals_a_convolution_of_the_concatenation(channels_last: bool) -> None:
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    conv = ConcatConv2d(5, 4, kernel_size=3, padding=1).to(memory_format=memory_format)
    a = torch.randn(2, 3, 6, 7).contiguous(memory_format=memory_format).requires_grad_(True)
    b = torch.randn(2, 2, 6, 7).contiguous(memory_format=memory_format).requires_grad_(True)
    weights = torch.randn(2, 4, 6, 7)
    (conv([a, b]) * weights).sum().backward()
    split = [a.grad, b.grad, conv.weight.grad, conv.bias.grad]
    a.grad = b.grad = conv.weight.grad = conv.bias.grad = None
    whole = F.conv2d(torch.cat([a, b], dim=1), conv.weight, conv.bias, padding=1)
    (whole * weights).sum().backward()
    assert torch.allclose(conv([a, b]), whole, atol=1e-5)
    for got, expected in zip(split, [a.grad, b.grad, conv.weight.grad, conv.bias.grad]):
        assert torch.allclose(got, expected, atol=1e-5)
    assert torch.equal(conv(torch.cat([a, b], dim=1)), whole)  # one tensor: a plain convolution
    with pytest.raises(ValueError, match=r"inputs of 5 channels in all, got \[3, 3\]"):
        conv([a, a])
