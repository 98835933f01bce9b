"""Small PyTorch models for the export tests (factories usable as package.module:function)."""

from __future__ import annotations


def tiny_cnn():
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.BatchNorm2d(8), torch.nn.ReLU6(),
        torch.nn.Conv2d(8, 16, 3, stride=2), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 5),
    )
    with torch.no_grad():
        bn = model[1]
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


def not_a_module():
    return "nope"


def _channel_means(reverse: bool):
    """Per-channel means of the input as 3 "logits" (``reverse``: in the other order)."""
    import torch

    class ChannelMeans(torch.nn.Module):
        def forward(self, x):
            means = x.mean(dim=(2, 3))
            return means.flip(1) if reverse else means

    return ChannelMeans().eval()


def channel_means():
    return _channel_means(reverse=False)


def channel_means_reversed():
    """Ranks the channels the other way round: top-1 differs from channel_means on most photos."""
    return _channel_means(reverse=True)


def dict_heads():
    """Returns a dict whose keys are not in sorted order ("b" then "a"), heads of different
    widths and values: "b" the 6 channel means and their negatives, "a" the first 2 reversed."""
    import torch

    class DictHeads(torch.nn.Module):
        def forward(self, x):
            means = x.mean(dim=(2, 3))
            return {"b": torch.cat([means, -means], dim=1), "a": means.flip(1)[:, :2]}

    return DictHeads().eval()


def nested_heads():
    """Returns nested outputs with a None among them, as ``{"b": (wide, None), "a": [narrow, wide * 2]}``:
    the exporters flatten them to wide, narrow, wide * 2 and leave the None out."""
    import torch

    class NestedHeads(torch.nn.Module):
        def forward(self, x):
            means = x.mean(dim=(2, 3))
            wide = torch.cat([means, -means], dim=1)
            return {"b": (wide, None), "a": [means.flip(1)[:, :2], wide * 2]}

    return NestedHeads().eval()


def squeezed_logit():
    """A binary classifier ending in ``.squeeze()``, as BCEWithLogitsLoss code often does: (N, 1)
    becomes (N,) for every batch of two or more, but a scalar for the batch of one the function runs."""
    import torch

    class SqueezedLogit(torch.nn.Module):
        def forward(self, x):
            means = x.mean(dim=(2, 3))
            return (means[:, :1] - means[:, 2:]).squeeze()

    return SqueezedLogit().eval()


def _flat_linear(size: int):
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * size * size, 3)).eval()


def flat_linear_16():
    """Takes only 16x16 inputs (a Linear over the flattened image)."""
    return _flat_linear(16)


def flat_linear_32():
    """Takes only 32x32 inputs: not a source for a model whose card says 16x16."""
    return _flat_linear(32)


def image_and_meta():
    """forward(x, meta): a second input the function never sends."""
    import torch

    class ImageAndMeta(torch.nn.Module):
        def forward(self, x, meta):
            return x.mean(dim=(2, 3)) + meta

    return ImageAndMeta().eval()


def image_and_optional_meta():
    """forward(x, meta=None): takes the image alone, so it exports."""
    import torch

    class ImageAndOptionalMeta(torch.nn.Module):
        def forward(self, x, meta=None):
            means = x.mean(dim=(2, 3))
            return means if meta is None else means + meta

    return ImageAndOptionalMeta().eval()


def small_logit():
    """A binary classifier's raw logit, 2 * (mean red - mean blue) + 0.05: inside [0, 1] on many photos,
    below 0 on a blue one (sklearn's china.jpg: 0.08, a probability of 0.52 once through the sigmoid)."""
    import torch

    class SmallLogit(torch.nn.Module):
        def forward(self, x):
            return 2 * (x[:, 0].mean(dim=(1, 2)) - x[:, 2].mean(dim=(1, 2))).unsqueeze(1) + 0.05

    return SmallLogit().eval()


def conv_head():
    """Four classes out of a pooled 1x1 convolution: an (N, 4, 1, 1) output."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Conv2d(3, 4, 1)).eval()


def always_second():
    """Two scores whose second always wins (zero weights, biases 0 and 1): every photo gets the same top-1."""
    import torch

    head = torch.nn.Linear(3, 2)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, 1.0]))
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), head).eval()
