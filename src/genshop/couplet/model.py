"""The couplet tagger of "a couplet robot from CNN + sequence labelling" (kexue.fm archive 6270).

Answering a first line (上联) is sequence labelling: the answer (下联) has the same length and
its character i corresponds to character i of the input, so one forward pass classifies every
position at once. The post's network, as `CoupletNetConfig()` (the default):

    h₀ = Dropout₀.₂₅(Embedding(x))                        (dim 128)
    [g; c] = Conv1D_{d→2d, k=3, "same"}(hₗ)               (bias on; no activation on c)
    hₗ₊₁ = hₗ·σ(g) + c·(1 − σ(g))                          (6 gated residual blocks)
    p(yᵢ | x) = softmax(W hᵢ + b)                         (every position i, over the vocabulary)

The input hₗ is the residual kept where the gate g is open; c, the convolution's second half,
replaces it where it is shut (a highway-style convex mix, width unchanged). The post's receptive
field is 13 characters (6 blocks × 2 + 1); `CoupletNetConfig.dilated()` doubles the dilation
block by block (1, 2, 4, 8, 8, 8 with the default cap) so that every position of a line of up to
2·(1 + 2 + 4 + 8 + 8 + 8) + 1 = 63 characters sees the whole line.

`CoupletNetConfig.transformer()` (genshop's second configuration, not the post's) replaces the
blocks by pre-norm Transformer encoder layers (Vaswani et al. 2017) over the same embedding plus
a learned position embedding P[i], i < 64, so every position attends to the whole line:

    h₀ = Dropout(Embedding(x) + P),  hₗ₊₁ = hₗ' + FF(LN(hₗ')),  hₗ' = hₗ + MHA(LN(hₗ)),
    p(yᵢ | x) = softmax(W LN(h_N)ᵢ + b)                (FF: d → 4d → d with GELU)

`directions = 2` (genshop's, not the post's) lets one net answer both ways: a learned vector
D[r] is added to every embedding, r = 0 for 上联 → 下联 and r = 1 for 下联 → 上联,
h₀ = Dropout(Embedding(x) + D[r]).

Padding (id `PAD` = 0, when lines of several lengths share a batch) is masked: the hidden state
of a padded position is set to 0 after the embedding and after every block, which is exactly what
the convolution's own "same" zero padding shows the last real characters; the Transformer's
attention skips padded keys. So padding never changes the outputs at real positions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from genshop.couplet.vocab import Vocab

PAD = Vocab.PAD
UNK = Vocab.UNK
MAX_CHARS = 64  # the longest line the bot answers and the family trains on
KINDS = ("cnn", "transformer")


@dataclass(frozen=True)
class CoupletNetConfig:
    """Shape of the tagger; the defaults are the post's (dilation 1 in all six blocks).
    `kind` "transformer": `blocks` encoder layers of `heads` heads instead (no kernel or
    dilation)."""

    vocab_size: int
    dim: int = 128  # embedding size = block width
    blocks: int = 6
    kernel: int = 3
    dropout: float = 0.25  # after the embedding only
    dilations: tuple[int, ...] = field(default=())  # () = 1 in every block
    directions: int = 1  # 2: one net for both directions (a learned direction vector)
    kind: str = "cnn"
    heads: int = 4

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} must be one of {', '.join(KINDS)}")
        if self.kind == "transformer" and self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be a multiple of heads {self.heads}")
        if not self.dilations:
            object.__setattr__(self, "dilations", (1,) * self.blocks)
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        if len(self.dilations) != self.blocks or min(self.dilations) < 1:
            raise ValueError(f"dilations {self.dilations} must be {self.blocks} numbers >= 1")
        if self.directions not in (1, 2):
            raise ValueError(f"directions must be 1 or 2, got {self.directions}")
        if self.kernel % 2 != 1:
            raise ValueError(f"kernel {self.kernel} must be odd for 'same' padding")

    @classmethod
    def dilated(cls, vocab_size: int, blocks: int = 6, cap: int = 8, **options) -> CoupletNetConfig:
        """Dilations 1, 2, 4, … (at most `cap`): receptive field 1 + (k−1)·Σ dilations."""
        dilations = tuple(min(2**i, cap) for i in range(blocks))
        return cls(vocab_size, blocks=blocks, dilations=dilations, **options)

    @classmethod
    def transformer(cls, vocab_size: int, blocks: int = 4, **options) -> CoupletNetConfig:
        """`blocks` pre-norm encoder layers (module docstring): every position sees the line."""
        return cls(vocab_size, blocks=blocks, kind="transformer", **options)

    @property
    def receptive_field(self) -> int:
        if self.kind == "transformer":
            return 2 * MAX_CHARS - 1
        return 1 + (self.kernel - 1) * sum(self.dilations)

    def to_dict(self) -> dict:
        return {**asdict(self), "dilations": list(self.dilations)}


class GatedResBlock(nn.Module):
    """y = x·σ(g) + c·(1 − σ(g)) with [g; c] = Conv1D_{d→2d}(x), on (B, d, L) tensors."""

    def __init__(self, dim: int, kernel: int = 3, dilation: int = 1):
        super().__init__()
        self.dim = dim
        self.conv = nn.Conv1d(dim, 2 * dim, kernel, padding=dilation * (kernel // 2),
                              dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        g, c = self.conv(x).split(self.dim, dim=1)
        s = torch.sigmoid(g)
        return x * s + c * (1 - s)


class CoupletNet(nn.Module):
    """Per-position classifier: ids (B, L) → logits (B, L, V) (see the module docstring)."""

    def __init__(self, config: CoupletNetConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.direction = nn.Embedding(2, config.dim) if config.directions == 2 else None
        self.drop = nn.Dropout(config.dropout)
        if config.kind == "transformer":
            self.position = nn.Embedding(MAX_CHARS, config.dim)
            layer = nn.TransformerEncoderLayer(config.dim, config.heads, 4 * config.dim,
                                               config.dropout, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, config.blocks, nn.LayerNorm(config.dim),
                                                enable_nested_tensor=False)
        else:
            self.blocks = nn.ModuleList(GatedResBlock(config.dim, config.kernel, d)
                                        for d in config.dilations)
        self.out = nn.Linear(config.dim, config.vocab_size)

    def hidden(self, ids: Tensor, reverse: Tensor | None = None) -> Tensor:
        """The last block's states (B, L, d), zero at padded positions; `reverse` (B,) bool,
        only for a net of two directions (None = all forward)."""
        keep = (ids != PAD).unsqueeze(1).to(self.out.weight.dtype)  # (B, 1, L)
        e = self.embed(ids)
        if self.direction is not None:
            r = torch.zeros(len(ids), dtype=torch.long, device=ids.device) if reverse is None \
                else reverse.long()
            e = e + self.direction(r).unsqueeze(1)
        elif reverse is not None and bool(reverse.any()):
            raise ValueError("this net answers one direction only (directions = 1)")
        if self.config.kind == "transformer":
            h = self.drop(e + self.position.weight[:ids.shape[1]])
            h = self.blocks(h, src_key_padding_mask=ids == PAD)
            return h * keep.transpose(1, 2)
        h = self.drop(e).transpose(1, 2) * keep
        for block in self.blocks:
            h = block(h) * keep
        return h.transpose(1, 2)

    def forward(self, ids: Tensor, reverse: Tensor | None = None) -> Tensor:
        return self.out(self.hidden(ids, reverse))

    def log_probs(self, ids: Tensor, reverse: Tensor | None = None) -> Tensor:
        """log p(yᵢ = v | x) (B, L, V): the per-position log-softmax."""
        return self.forward(ids, reverse).log_softmax(-1)


def pair_loss(net: CoupletNet, batch: Tensor, reverse: Tensor | None = None) -> Tensor:
    """Mean cross-entropy −log p(yᵢ | x) over the real positions of a (B, 2, L) batch of
    (input, answer) id rows; a target `UNK` is a class like any other, as in the post."""
    logits = net(batch[:, 0], reverse)
    return nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1].flatten(),
                                       ignore_index=PAD)


def post_greedy(logits: Tensor, ids: Tensor) -> Tensor:
    """The post's decoding, one independent argmax per position: the most probable id other
    than PAD, UNK and the input's own id at that position; (B, L, V), (B, L) → (B, L)."""
    banned = torch.zeros_like(logits, dtype=torch.bool)
    banned[..., PAD] = banned[..., UNK] = True
    banned.scatter_(-1, ids.unsqueeze(-1), True)
    return logits.masked_fill(banned, float("-inf")).argmax(-1)


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def pad_rows(rows: list[list[int]]) -> Tensor:
    """Id rows of any lengths as one int64 tensor (N, max length), padded with `PAD`."""
    out = torch.full((len(rows), max((len(r) for r in rows), default=0)), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return out
