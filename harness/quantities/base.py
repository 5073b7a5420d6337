"""What every quantity says about itself (see :mod:`harness.quantities`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch

from harness.core.case import Case

PerSample = dict[str, torch.Tensor]


class Quantity(ABC):
    """One thing a method can return, and everything the harness does with it."""

    #: The name methods register under (``returns=``), support rows cover and ids use.
    name: str
    #: How messages name it after the method and case ("" for the gradients themselves).
    label: str = ""
    #: How messages name the method's own call for it (``method 'm' on <case> (norms)``).
    call_label: str = ""
    #: Where a benchmark of a method that gives several quantities times this one: lowest first.
    timing_preference: int = 0

    def id_tag(self, batch_size: int) -> str | None:
        """What a test id adds after the case for this quantity (None: nothing)."""
        return None

    def prepare(self, case: Case, oracle_grads: Mapping[str, torch.Tensor]) -> None:  # noqa: B027 (most need nothing)
        """Set on ``case`` what a method needs to compute this quantity (the clipping bound, say)."""

    @abstractmethod
    def validate(self, result: Any, case: Case, where: str) -> Any:
        """Check a method's result has this quantity's form; return it detached."""

    @abstractmethod
    def from_grads(self, grads: Mapping[str, torch.Tensor], case: Case) -> Any:
        """This quantity computed by the harness from a method's per-sample gradients."""

    @abstractmethod
    def reference(self, oracle_grads: Mapping[str, torch.Tensor], case: Case, clip_eps: float = 0.0) -> Any:
        """This quantity of the float64 oracle's per-sample gradients (``clip_eps``: the method's stabilizer)."""

    @abstractmethod
    def per_sample(self, value: Any) -> PerSample:
        """The value as ``{name: tensor (n, ...)}``, the form the norm-wise distance compares."""

    def describe(self, case: Case) -> str:
        """What a message adds after ``method 'm' on <case>``."""
        return f", {self.label}," if self.label else ""
