"""Conv-4 (Vinyals et al. 2016; Snell et al. 2017): four conv3x3-BN-ReLU-maxpool blocks of 64 filters."""
from __future__ import annotations

from torch import Tensor, nn

from fewshot.backbones.registry import register_backbone


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class Conv4(nn.Module):
    """Four blocks; on 28x28 inputs the flattened output is 64-dimensional, on 84x84 it is 1600."""

    def __init__(self, in_channels: int = 1, hidden: int = 64, image_size: int = 28) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            conv_block(in_channels, hidden), conv_block(hidden, hidden),
            conv_block(hidden, hidden), conv_block(hidden, hidden),
        )
        side = image_size
        for _ in range(4):
            side //= 2
        self.out_features = hidden * side * side

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x).flatten(1)


@register_backbone("conv4")
def conv4(in_channels: int = 1, image_size: int = 28, hidden: int = 64) -> Conv4:
    return Conv4(in_channels, hidden, image_size)
