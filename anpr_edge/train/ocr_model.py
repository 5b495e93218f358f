"""The attention-OCR network (PyTorch; training and export only).

Design, chosen for plates and for a static TensorRT-compilable graph:

- Encoder: a small ResNet-style CNN over the fixed-size crop (normalised inside the graph), down to
  a 2D feature map of stride 8 (8 x 24 cells for a 64 x 192 crop). The map keeps rows, so two-line
  plates (motorcycles, stacked US characters) stay readable: attention can move down a line.
- Context: one transformer-encoder layer over the map cells with a learned 2D position embedding.
- Decoder: parallel position-query attention. ``max_len`` learned queries (one per character slot)
  attend over the whole 2D map in two decoder layers (self-attention among slots so they agree on
  layout and length, then cross-attention to the map). All slots are decoded at once: no Python loop
  and no data-dependent control flow, so the exported ONNX is one static graph with a dynamic batch.
- Output: per-slot softmax over ``1 + len(charset)`` symbols (0 = end of text), and the last layer's
  cross-attention map per slot, for ``anpr-edge ocr --explain``.

Attention is written with plain matmul/softmax (not ``nn.MultiheadAttention``) so the exported graph is
simple and the attention weights are an output.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class OcrModelConfig:
    """Hyper-parameters of the network; saved in checkpoints and in the ONNX metadata."""

    charset: str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    height: int = 64
    width: int = 192
    max_len: int = 12
    channels: tuple[int, ...] = (16, 32, 64)
    dim: int = 64
    heads: int = 4
    decoder_layers: int = 2
    dropout: float = 0.1

    @property
    def n_symbols(self) -> int:
        return len(self.charset) + 1

    @property
    def feature_size(self) -> tuple[int, int]:
        return self.height // 8, self.width // 8

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["channels"] = list(self.channels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> OcrModelConfig:
        values = dict(data)
        values["channels"] = tuple(values.get("channels", cls.channels))  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


def _conv(cin: int, cout: int, stride: tuple[int, int] = (1, 1)) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    """Two 3x3 convolutions with a skip connection (a ResNet basic block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class Encoder(nn.Module):
    """Crop -> 2D feature map at stride 8: rows are kept for two-line plates.

    ``channels`` gives one stage per entry: the first two stages are single strided convolutions (cheap
    at high resolution), each later stage a strided convolution followed by a residual block.
    """

    def __init__(self, channels: tuple[int, ...], dim: int) -> None:
        super().__init__()
        c1, c2, c3 = channels[:3]
        layers: list[nn.Module] = [
            _conv(3, c1, (2, 2)),  # /2
            _conv(c1, c2, (2, 2)),  # /4
            _Residual(c2),
            _conv(c2, c3, (2, 2)),  # /8
            _Residual(c3),
        ]
        for cin, cout in zip(channels[2:], channels[3:]):
            layers += [_conv(cin, cout), _Residual(cout)]
        layers.append(nn.Conv2d(channels[-1], dim, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the attended values and the head-averaged attention weights (B, Lq, Lk)."""
        b, lq, d = query.shape
        lk = memory.shape[1]
        q = self.q(query).reshape(b, lq, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(memory).reshape(b, lk, self.heads, self.head_dim).transpose(1, 2)
        v = self.v(memory).reshape(b, lk, self.heads, self.head_dim).transpose(1, 2)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)
        attended = (self.drop(weights) @ v).transpose(1, 2).reshape(b, lq, d)
        return self.out(attended), weights.mean(dim=1)


class _FeedForward(nn.Sequential):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, dim * 2), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim * 2, dim))


class _EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads, dropout)
        self.ff = _FeedForward(dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h)[0])
        return x + self.drop(self.ff(self.norm2(x)))


class _DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_q, self.norm_s, self.norm_m, self.norm_f = (nn.LayerNorm(dim) for _ in range(4))
        self.self_attn = _Attention(dim, heads, dropout)
        self.cross_attn = _Attention(dim, heads, dropout)
        self.ff = _FeedForward(dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, slots: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.norm_s(slots)
        slots = slots + self.drop(self.self_attn(h, h)[0])
        attended, weights = self.cross_attn(self.norm_q(slots), self.norm_m(memory))
        slots = slots + self.drop(attended)
        return slots + self.drop(self.ff(self.norm_f(slots))), weights


class PlateOcrNet(nn.Module):
    """(B, 3, H, W) RGB in 0..1 -> probs (B, max_len, 1 + charset), attention (B, max_len, h, w)."""

    def __init__(self, config: OcrModelConfig) -> None:
        super().__init__()
        self.config = config
        rows, cols = config.feature_size
        dim = config.dim
        self.encoder = Encoder(config.channels, dim)
        self.position = nn.Parameter(torch.randn(1, rows * cols, dim) * 0.02)
        self.context = _EncoderLayer(dim, config.heads, config.dropout)
        self.slots = nn.Parameter(torch.randn(1, config.max_len, dim) * 0.02)
        self.decoder = nn.ModuleList(_DecoderLayer(dim, config.heads, config.dropout) for _ in range(config.decoder_layers))
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, config.n_symbols)

    def logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (images - 0.5) / 0.5
        features = self.encoder(x)  # (B, dim, rows, cols)
        b, d, rows, cols = features.shape
        memory = features.flatten(2).transpose(1, 2) + self.position  # (B, rows * cols, dim)
        memory = self.context(memory)
        slots = self.slots.expand(b, -1, -1)
        weights = memory.new_zeros(0)
        for layer in self.decoder:
            slots, weights = layer(slots, memory)
        return self.classifier(self.norm(slots)), weights.reshape(b, -1, rows, cols)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, attention = self.logits(images)
        return torch.softmax(logits, dim=-1), attention


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
