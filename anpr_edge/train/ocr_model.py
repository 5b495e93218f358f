"""The attention-OCR network (PyTorch; training and export only).

Design, chosen for plates and for a static TensorRT-compilable graph:

- Encoder: a small ResNet-style CNN over the fixed-size crop (normalised inside the graph), down to
  a 2D feature map of stride 8 (8 x 24 cells for a 64 x 192 crop). The map keeps rows, so two-line
  plates (motorcycles, stacked US characters) stay readable: attention can move down a line.
- Context: a learned 2D position embedding on the map cells, then ``context_layers`` transformer-encoder
  layers over them (0 or 1: the layer's self-attention over every cell is about a third of the batched
  inference time, and the decoder's cross-attention already looks at the whole map).
- Decoder, one of two (``OcrModelConfig.decoder``):

  * ``autoregressive``: transformer decoder layers with causal self-attention over the characters read
    so far and cross-attention over the whole 2D map. Training uses teacher forcing in one parallel
    pass; inference is greedy and unrolled to ``max_len`` steps inside the graph, so the exported ONNX is
    one static graph (dynamic batch) with no Python in the loop. The map's keys and values are computed
    once per image, not per step.
  * ``parallel``: the same layers, but each output position is a learned query that reads the map
    without being told the characters before it (a position-query decoder, as in the non-autoregressive
    mode of PARSeq); the positions see one another through unmasked self-attention. One pass reads every
    position, in training and at inference: no unrolled loop, so batch-1 latency is mostly the encoder's,
    and the graph is smaller and simpler for TensorRT. The price: a position query must find its
    character without knowing where the previous one was, which is harder where group lengths vary
    (Tunisian plates); docs/BENCHMARKS.md has the measured trade.
- Auxiliary CTC head (training only): per-column character evidence from the encoder, which makes the
  encoder learn glyphs early so the attention has something to align to; it is not exported.
- Output: per-step softmax over ``1 + len(charset)`` symbols (0 = end of text), and each step's
  cross-attention map, for ``anpr-edge ocr --explain``.

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
    context_layers: int = 1
    dropout: float = 0.1
    decoder: str = "autoregressive"  # or "parallel" (see the module docstring)

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


DECODERS = ("autoregressive", "parallel")


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

    def keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, lk, _ = memory.shape
        k = self.k(memory).reshape(b, lk, self.heads, self.head_dim).transpose(1, 2)
        v = self.v(memory).reshape(b, lk, self.heads, self.head_dim).transpose(1, 2)
        return k, v

    def attend(
        self, query: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attended values and the head-averaged attention weights (B, Lq, Lk)."""
        b, lq, d = query.shape
        q = self.q(query).reshape(b, lq, self.heads, self.head_dim).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores + mask
        weights = torch.softmax(scores, dim=-1)
        attended = (self.drop(weights) @ v).transpose(1, 2).reshape(b, lq, d)
        return self.out(attended), weights.mean(dim=1)

    def forward(
        self, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attend(query, *self.keys_values(memory), mask)


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

    def memory_keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cross_attn.keys_values(self.norm_m(memory))

    def forward(
        self, slots: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.norm_s(slots)
        slots = slots + self.drop(self.self_attn(h, h, mask)[0])
        attended, weights = self.cross_attn.attend(self.norm_q(slots), *memory_kv)
        slots = slots + self.drop(attended)
        return slots + self.drop(self.ff(self.norm_f(slots))), weights

    def step(
        self,
        slot: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor] | None,
        memory_kv: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One new position (B, 1, dim) given the cached self-attention keys/values of the earlier ones;
        the same result as ``forward`` on the whole prefix with the causal mask, at a fraction of the cost."""
        h = self.norm_s(slot)
        k, v = self.self_attn.keys_values(h)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        slot = slot + self.self_attn.attend(h, k, v)[0]
        attended, weights = self.cross_attn.attend(self.norm_q(slot), *memory_kv)
        slot = slot + attended
        return slot + self.ff(self.norm_f(slot)), weights, (k, v)


class PlateOcrNet(nn.Module):
    """(B, 3, H, W) RGB in 0..1 -> probs (B, max_len, 1 + charset), attention (B, max_len, h, w)."""

    def __init__(self, config: OcrModelConfig) -> None:
        super().__init__()
        self.config = config
        rows, cols = config.feature_size
        dim = config.dim
        self.encoder = Encoder(config.channels, dim)
        self.position = nn.Parameter(torch.randn(1, rows * cols, dim) * 0.02)
        if config.context_layers not in (0, 1):
            raise ValueError(f"context_layers must be 0 or 1, not {config.context_layers}")
        self.context: nn.Module = _EncoderLayer(dim, config.heads, config.dropout) if config.context_layers else nn.Identity()
        self.slots = nn.Parameter(torch.randn(1, config.max_len, dim) * 0.02)
        if config.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, not {config.decoder!r}")
        self.parallel = config.decoder == "parallel"
        self.begin = config.n_symbols  # the start token: one past the last output symbol
        if not self.parallel:  # a parallel decoder is never told the characters, so it has no embedding
            self.embed = nn.Embedding(config.n_symbols + 1, dim)
        self.decoder = nn.ModuleList(_DecoderLayer(dim, config.heads, config.dropout) for _ in range(config.decoder_layers))
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, config.n_symbols)
        self.ctc = nn.Linear(dim, config.n_symbols)
        causal = torch.triu(torch.full((config.max_len, config.max_len), float("-inf")), diagonal=1)
        self.register_buffer("causal", causal, persistent=False)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> map cells (B, rows * cols, dim) with position and context."""
        features = self.encoder((images - 0.5) / 0.5)  # (B, dim, rows, cols)
        return self.context(features.flatten(2).transpose(1, 2) + self.position)

    def _decode(self, memory_kvs: list[tuple[torch.Tensor, torch.Tensor]], tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, T, symbols) and last-layer attention (B, T, cells) for input tokens (B, T)."""
        steps = tokens.shape[1]
        slots = self.slots[:, :steps] + self.embed(tokens)
        mask = self.causal[:steps, :steps]
        weights = slots.new_zeros(0)
        for layer, kv in zip(self.decoder, memory_kvs):
            slots, weights = layer(slots, kv, mask)
        return self.classifier(self.norm(slots)), weights

    def _decode_parallel(self, memory_kvs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, max_len, symbols) and last-layer attention (B, max_len, cells) of every position at once."""
        batch = memory_kvs[0][0].shape[0]
        slots = self.slots.expand(batch, -1, -1)
        weights = slots.new_zeros(0)
        for layer, kv in zip(self.decoder, memory_kvs):
            slots, weights = layer(slots, kv, None)
        return self.classifier(self.norm(slots)), weights

    def train_logits(self, images: torch.Tensor, targets: torch.Tensor, token_noise: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, max_len, symbols) (autoregressive: teacher forcing, given the true previous characters,
        each replaced by a random character with probability ``token_noise``) and the CTC head's per-column
        logits (B, cols, symbols)."""
        memory = self.encode(images)
        memory_kvs = [layer.memory_keys_values(memory) for layer in self.decoder]
        if self.parallel:
            logits, _ = self._decode_parallel(memory_kvs)
        else:
            begin = torch.full_like(targets[:, :1], self.begin)
            told = targets[:, :-1]
            if token_noise > 0.0:
                noisy = (told > 0) & (torch.rand(told.shape, device=told.device) < token_noise)
                random = torch.randint(1, self.config.n_symbols, told.shape, device=told.device)
                told = torch.where(noisy, random, told)
            tokens = torch.cat([begin, told], dim=1)
            logits, _ = self._decode(memory_kvs, tokens)
        return logits, self.ctc_logits(memory)

    def ctc_logits(self, memory: torch.Tensor) -> torch.Tensor:
        """The auxiliary CTC head's logits (B, cols, symbols) over the map's columns (rows averaged)."""
        rows, cols = self.config.feature_size
        return self.ctc(memory.reshape(memory.shape[0], rows, cols, -1).mean(dim=1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding, unrolled to max_len steps (a static graph once traced). Each step runs the
        decoder on the new character only, with per-layer caches of the earlier ones."""
        memory = self.encode(images)
        memory_kvs = [layer.memory_keys_values(memory) for layer in self.decoder]
        rows, cols = self.config.feature_size
        if self.parallel:
            logits, weights = self._decode_parallel(memory_kvs)
            return torch.softmax(logits, dim=-1), weights.reshape(images.shape[0], -1, rows, cols)
        token = torch.full((images.shape[0],), self.begin, dtype=torch.long, device=images.device)
        caches: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.decoder)
        probs, attention = [], []
        for step in range(self.config.max_len):
            slot = self.slots[:, step : step + 1] + self.embed(token)[:, None]
            weights = slot.new_zeros(0)
            for n, (layer, kv) in enumerate(zip(self.decoder, memory_kvs)):
                slot, weights, caches[n] = layer.step(slot, caches[n], kv)
            p = torch.softmax(self.classifier(self.norm(slot))[:, 0], dim=-1)
            probs.append(p)
            attention.append(weights[:, 0])
            token = p.argmax(dim=-1)
        return torch.stack(probs, dim=1), torch.stack(attention, dim=1).reshape(images.shape[0], -1, rows, cols)

    @torch.no_grad()
    def forward_reference(self, images: torch.Tensor) -> torch.Tensor:
        """Greedy decoding by re-running the masked decoder on the whole prefix (slow, obviously right):
        the tests check ``forward`` against it. A parallel decoder has no steps: this is ``forward``."""
        if self.parallel:
            return self(images)[0]
        memory = self.encode(images)
        memory_kvs = [layer.memory_keys_values(memory) for layer in self.decoder]
        tokens = torch.full((images.shape[0], 1), self.begin, dtype=torch.long, device=images.device)
        probs = []
        for step in range(self.config.max_len):
            logits, _ = self._decode(memory_kvs, tokens)
            p = torch.softmax(logits[:, step], dim=-1)
            probs.append(p)
            tokens = torch.cat([tokens, p.argmax(dim=-1, keepdim=True)], dim=1)
        return torch.stack(probs, dim=1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
