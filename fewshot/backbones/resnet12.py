"""ResNet-12 (Oreshkin et al. 2018; Lee et al. 2019; Tian et al. 2020): four residual blocks of three 3x3 convs."""
from __future__ import annotations

from torch import Tensor, nn

from fewshot.backbones.registry import register_backbone


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        layers = []
        for i in range(3):
            layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1, bias=False),
                       nn.BatchNorm2d(out_channels)]
            if i < 2:
                layers.append(nn.LeakyReLU(0.1))
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        self.out = nn.Sequential(nn.LeakyReLU(0.1), nn.MaxPool2d(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x) + self.shortcut(x))


class ResNet12(nn.Module):
    """Channels 64-160-320-640, global average pooling: 640-dimensional features."""

    def __init__(self, in_channels: int = 3, channels: tuple[int, ...] = (64, 160, 320, 640)) -> None:
        super().__init__()
        blocks, previous = [], in_channels
        for width in channels:
            blocks.append(ResidualBlock(previous, width))
            previous = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = previous

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.blocks(x)).flatten(1)


@register_backbone("resnet12")
def resnet12(in_channels: int = 3, image_size: int = 84, channels: tuple[int, ...] = (64, 160, 320, 640)) -> ResNet12:
    return ResNet12(in_channels, tuple(channels))
