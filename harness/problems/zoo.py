"""The model zoo: every model the harness checks, kept as data.

Each entry says how to build the module and how to draw a batch of inputs and targets
from a seeded generator (the BackPACK style of test problems as dicts of functions).
Parameters are initialised and inputs drawn in float32 on the CPU, then cast, so the
float64 oracle and a float32 case see exactly the same numbers.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class ModelSpec:
    """How to build one model of the zoo and a batch for it.

    Specs are equal when ``name`` and ``key`` are: a registered model is known by its name,
    a drawn one (see :mod:`harness.problems.drawn`) by the problem it was made from. ``numerics``
    picks the float32 row of the tolerance table: ``"smooth"``, ``"kinks"`` (ReLU, max-pool),
    ``"drawn"`` or ``"drawn-stack"`` (random smooth layers whose conditioning nobody chose).
    """

    name: str
    build: Callable[[], nn.Module] = field(compare=False)
    make_batch: Callable[[int, torch.Generator], Batch] = field(compare=False)
    loss: Callable[..., torch.Tensor] = field(default=F.cross_entropy, compare=False)
    batch_sizes: tuple[int, ...] = field(default=(1, 7), compare=False)
    slow_batch_sizes: tuple[int, ...] = field(default=(), compare=False)
    train_mode: bool = field(default=True, compare=False)
    numerics: str = field(default="kinks", compare=False)
    #: Millions of parameters: beyond the per-sample gradients, its checks run under ``-m slow``.
    heavy: bool = field(default=False, compare=False)
    key: Hashable = None


MODELS: dict[str, ModelSpec] = {}
#: How many times each model name was registered (a name removed and registered again counts too).
_REGISTRATIONS: dict[str, int] = {}


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add a model to the zoo; refuse to shadow an existing name unless ``replace``."""
    if spec.name in MODELS and not replace:
        raise ValueError(f"model {spec.name!r} is already registered (pass replace=True to swap it)")
    _REGISTRATIONS[spec.name] = _REGISTRATIONS.get(spec.name, 0) + 1
    MODELS[spec.name] = spec
    return spec


def generation(spec: ModelSpec) -> int:
    """Which registration of its name the spec is (-1: not the registered one, as a drawn
    problem's): a cache of results per model (the oracle's) keys on it too, since specs of the
    same name are equal."""
    return _REGISTRATIONS.get(spec.name, 0) if MODELS.get(spec.name) is spec else -1


def get_model(name: str | ModelSpec) -> ModelSpec:
    """The spec registered under ``name``, or a clear error listing the known ones (a spec is returned as is)."""
    if isinstance(name, ModelSpec):
        return name
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None


def images(channels: int, size: int, classes: int = 10) -> Callable[[int, torch.Generator], Batch]:
    """A batch maker for image classifiers: standard normal pixels, uniform class labels."""

    def make(batch_size: int, gen: torch.Generator) -> Batch:
        x = torch.randn(batch_size, channels, size, size, generator=gen)
        y = torch.randint(classes, (batch_size,), generator=gen)
        return x, y

    return make


def vectors(*shape: int, classes: int = 10) -> Callable[[int, torch.Generator], Batch]:
    """A batch maker for inputs of shape ``(B, *shape)`` with class labels."""

    def make(batch_size: int, gen: torch.Generator) -> Batch:
        x = torch.randn(batch_size, *shape, generator=gen)
        y = torch.randint(classes, (batch_size,), generator=gen)
        return x, y

    return make


def tokens(vocab: int, length: int, classes: int) -> Callable[[int, torch.Generator], Batch]:
    """A batch maker for text classifiers: token ids and class labels."""

    def make(batch_size: int, gen: torch.Generator) -> Batch:
        x = torch.randint(vocab, (batch_size, length), generator=gen)
        y = torch.randint(classes, (batch_size,), generator=gen)
        return x, y

    return make


class SimpleCNN(nn.Module):
    """The seeds' SimpleCNN, including its quirk: it returns the logits (``output = x``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


def resnet18_gn() -> nn.Module:
    """torchvision's resnet18 with GroupNorm where BatchNorm was, as Opacus' ``ModuleValidator.fix``
    makes it (``GroupNorm(gcd(32, C), C)``), built without Opacus: the model must not depend on
    which Opacus release is installed, or whether one imports (Opacus 1.4's fixer clones the
    model with ``torch.load``, which torch 2.6 refuses). A self-test holds it to Opacus' fixer."""
    from torchvision.models import resnet18

    return resnet18(num_classes=10, norm_layer=lambda channels: nn.GroupNorm(math.gcd(32, channels), channels))


def _basic_block_out_of_place(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision's ``BasicBlock.forward`` with the residual add and ReLU out of place."""
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    identity = x if self.downsample is None else self.downsample(x)
    return self.relu(out + identity)


def resnet18_gn_no_inplace() -> nn.Module:
    """resnet18_gn without in-place ops on module outputs, which Opacus' backward hooks forbid.

    Switching ReLU's ``inplace`` off is not enough: ``BasicBlock`` also does ``out += identity``
    on the GroupNorm output, which raises the same error. Each block's forward is replaced.
    """
    from torchvision.models.resnet import BasicBlock

    model = resnet18_gn()
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
        if isinstance(module, BasicBlock):
            module.forward = types.MethodType(_basic_block_out_of_place, module)
    return model


class TextLSTM(nn.Module):
    """Embedding + LSTM text classifier reading the last hidden state."""

    def __init__(self, vocab: int = 50, embed: int = 8, hidden: int = 12, classes: int = 4) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(x))
        return self.fc(out[:, -1])


class TinyTransformer(nn.Module):
    """One Transformer encoder layer (no dropout) with mean pooling and a linear head."""

    def __init__(self, d_model: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(
            d_model, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True
        )
        self.fc = nn.Linear(d_model, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.encoder(x).mean(dim=1))


def bn_eval_cnn() -> nn.Module:
    """A small CNN whose BatchNorm uses running statistics (eval mode), made non-trivial."""
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 6 * 6, 10),
    )
    bn = model[1]
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return model


#: The target a loss ignores: PyTorch's default ``ignore_index``, the label of a padding position
#: or of a sample left out of a classification loss.
IGNORED = -100
#: The padding token of :class:`TinyLM`'s inputs.
PAD = 0


def _reduce_over_samples(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    """Each sample's loss reduced over the batch: ``mean`` over samples (a sample whose targets are
    all ignored counts, with loss 0, as Opacus' ``loss_reduction="mean"`` assumes), ``sum`` or ``none``."""
    if reduction == "none":
        return per_sample
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


def cross_entropy_ignoring(outputs: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy where samples labelled :data:`IGNORED` contribute nothing, reduced over samples.

    ``F.cross_entropy(..., ignore_index=...)`` with its own mean divides by the number of samples
    not ignored, which is not a mean of per-sample losses: a batch of one ignored sample is 0/0.
    """
    per_sample = F.cross_entropy(outputs, targets, ignore_index=IGNORED, reduction="none")
    return _reduce_over_samples(per_sample, reduction)


def sequence_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """A language model's loss over logits ``[B, T, V]`` and targets ``[B, T]``: each sequence's
    mean over its positions not ignored (padding), then reduced over sequences (the privacy unit
    is the sequence; Opacus' ghost-clipping loss for ``[B, T, V]`` logits computes the same)."""
    per_token = F.cross_entropy(outputs.transpose(1, 2), targets, ignore_index=IGNORED, reduction="none")
    counted = (targets != IGNORED).sum(dim=1).clamp(min=1)
    return _reduce_over_samples(per_token.sum(dim=1) / counted, reduction)


def padded_sequences(vocab: int, length: int, shifted_view: bool = False) -> Callable[[int, torch.Generator], Batch]:
    """A batch maker for next-token prediction: sequences of random lengths (1 to ``length``),
    padded with :data:`PAD` after their end, whose targets there are :data:`IGNORED`. The inputs
    are ``text[:, :-1]``: contiguous, as a data loader collates them, or with ``shifted_view``
    the view a training loop takes of the batch (not contiguous)."""

    def make(batch_size: int, gen: torch.Generator) -> Batch:
        text = torch.randint(1, vocab, (batch_size, length + 1), generator=gen)
        ends = torch.randint(1, length + 1, (batch_size, 1), generator=gen)
        padding = torch.arange(length + 1) > ends
        text = text.masked_fill(padding, PAD)
        targets = text[:, 1:].masked_fill(padding[:, 1:], IGNORED)
        inputs = text[:, :-1]
        return (inputs if shifted_view else inputs.contiguous()), targets

    return make


def some_targets_ignored(*shape: int, classes: int, every: int = 3) -> Callable[[int, torch.Generator], Batch]:
    """Like :func:`vectors`, with the targets of samples 1, 1 + every, ... set to :data:`IGNORED`."""
    draw = vectors(*shape, classes=classes)

    def make(batch_size: int, gen: torch.Generator) -> Batch:
        x, y = draw(batch_size, gen)
        return x, y.masked_fill(torch.arange(batch_size) % every == 1, IGNORED)

    return make


class TinyLM(nn.Module):
    """A next-token model over ``[B, T]`` tokens giving logits ``[B, T, V]``: embedding, a tanh
    layer, and an output projection that is the embedding's own weight where ``tied`` (one
    parameter used by two modules, as GPT-2's input and output embeddings)."""

    def __init__(self, vocab: int = 16, embed: int = 8, tied: bool = False) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.hidden = nn.Linear(embed, embed)
        self.head = nn.Linear(embed, vocab, bias=False)
        if tied:
            self.head.weight = self.embedding.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.hidden(self.embedding(x))))


class ScaledBlock(nn.Module):
    """A child layer whose output is multiplied by a parameter of the block's own (ConvNeXt's and
    CaiT's layer scale, kept next to the child modules rather than in one of its own)."""

    def __init__(self, features: int = 10, width: int = 16) -> None:
        super().__init__()
        self.fc = nn.Linear(features, width)
        self.gain = nn.Parameter(torch.rand(width) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.gain


def frozen_mlp() -> nn.Module:
    """A tanh MLP fine-tuned on top of a frozen first layer, with the last layer's bias frozen too."""
    model = nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 10))
    model[0].requires_grad_(False)
    model[4].bias.requires_grad_(False)
    return model


#: The batch sizes of the models of model features: B=7 by default, B=1 under ``slow`` (every other
#: model runs B=1 by default; these add 2 to 3 seconds each per batch size on 2 cores).
_FEATURE_SIZES: dict[str, tuple[int, ...]] = {"batch_sizes": (7,), "slow_batch_sizes": (1,)}

for _spec in (
    # the seeds' SimpleCNN (1x28x28, ReLU, max-pool), nll_loss on raw logits
    ModelSpec(
        "simple_cnn", SimpleCNN, images(1, 28), loss=F.nll_loss, batch_sizes=(1, 7, 64),
    ),
    # torchvision resnet18, BatchNorm->GroupNorm by Opacus' ModuleValidator.fix
    ModelSpec(
        "resnet18_gn", resnet18_gn, images(3, 32), batch_sizes=(1, 3), slow_batch_sizes=(128,), heavy=True,
    ),
    # resnet18_gn with ReLU and residual adds out of place (what Opacus' hooks accept)
    ModelSpec(
        "resnet18_gn_noinplace", resnet18_gn_no_inplace, images(3, 32),
        batch_sizes=(1, 3), slow_batch_sizes=(128,), heavy=True,
    ),
    # three Linear layers with ReLU
    ModelSpec(
        "mlp", lambda: nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10)),
        vectors(20),
    ),
    # tanh and average pooling: no kinks
    ModelSpec(
        "smooth_cnn",
        lambda: nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(8, 8, 3), nn.Tanh(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(8 * 2 * 2, 10),
        ),
        images(3, 14), numerics="smooth",
    ),
    # Embedding(50, 8) + LSTM(8, 12) + Linear on the last step
    ModelSpec(
        "lstm_text", TextLSTM, tokens(vocab=50, length=10, classes=4),
    ),
    # one TransformerEncoderLayer (d_model 16, 2 heads, no dropout), mean-pooled
    ModelSpec(
        "transformer", TinyTransformer, vectors(6, 16, classes=4), numerics="smooth",
    ),
    # two Conv1d layers (one grouped, strided)
    ModelSpec(
        "conv1d",
        lambda: nn.Sequential(
            nn.Conv1d(4, 8, 5), nn.ReLU(), nn.Conv1d(8, 8, 3, stride=2, groups=2), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 5),
        ),
        vectors(4, 24, classes=5),
    ),
    # Conv2d + BatchNorm2d in eval mode (running statistics) + Linear
    ModelSpec(
        "bn_eval", bn_eval_cnn, images(3, 8), train_mode=False,
    ),
    # next-token prediction over padded sequences: logits [B, T, V], padding targets ignored
    ModelSpec(
        "lm_padded", TinyLM, padded_sequences(vocab=16, length=6), loss=sequence_cross_entropy, numerics="smooth", **_FEATURE_SIZES,
    ),
    # lm_padded with the output projection tied to the input embedding (one parameter, two modules), fed a view
    ModelSpec(
        "tied_lm", lambda: TinyLM(tied=True), padded_sequences(vocab=16, length=6, shifted_view=True),
        loss=sequence_cross_entropy, numerics="smooth", **_FEATURE_SIZES,
    ),
    # a tanh MLP with its first layer and last bias frozen (requires_grad=False)
    ModelSpec(
        "frozen_mlp", frozen_mlp, vectors(20), numerics="smooth", **_FEATURE_SIZES,
    ),
    # a block using its own nn.Parameter next to its child layer, in a Sequential
    ModelSpec(
        "own_param", lambda: nn.Sequential(ScaledBlock(), nn.Tanh(), nn.Linear(16, 4)),
        vectors(10, classes=4), numerics="smooth", **_FEATURE_SIZES,
    ),
    # a tanh classifier whose samples 1, 4, ... have their targets ignored (they contribute nothing)
    ModelSpec(
        "ignored_targets", lambda: nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 5)),
        some_targets_ignored(12, classes=5), loss=cross_entropy_ignoring, numerics="smooth", **_FEATURE_SIZES,
    ),
):
    register_model(_spec)
