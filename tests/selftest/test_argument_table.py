"""The README's argument table is the one generated from the argument descriptions, and those
descriptions say, for every argument of every drawn layer class, what is drawn or why not."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import torch.nn as nn
from hypothesis import HealthCheck, given, settings

from harness.problems.arguments import ARGUMENTS, NEVER_DRAWN
from harness.problems.drawn import LAYER_KINDS
from harness.problems.strategies import LAYER_STRATEGIES
from harness.tools.argumenttable import BLOCK, argument_table, main

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_generated_from_the_argument_descriptions():
    block = BLOCK.of(README.read_text())
    assert block is not None, f"README.md has no {BLOCK.begin} ... {BLOCK.end} block"
    assert block == BLOCK.around(argument_table()), (
        "README.md's argument table is stale: run python -m harness argument-table --write README.md"
    )


def test_write_replaces_only_the_block(tmp_path):
    target = tmp_path / "README.md"
    target.write_text(f"# title\n\n{BLOCK.begin}\nSTALE\n{BLOCK.end}\n\nafter\n")
    assert main(["--write", str(target)]) == 0
    assert target.read_text() == f"# title\n\n{BLOCK.around(argument_table())}\n\nafter\n"


def test_every_drawn_kind_is_described():
    assert list(ARGUMENTS) == list(LAYER_KINDS)


def _class(name: str) -> type | None:
    """``nn.Conv2d`` or ``opacus.layers.DPLSTM``; None where the installed release lacks it."""
    module, _, attribute = name.rpartition(".")
    found = nn if module == "nn" else importlib.import_module(module)
    return getattr(found, attribute, None)


def _parameters(cls: type) -> set[str]:
    """The constructor's named parameters (``nn.RNN(*args, **kwargs)``: ``nn.RNNBase``'s but ``mode``)."""
    parameters = inspect.signature(cls).parameters
    if any(p.kind is p.VAR_POSITIONAL for p in parameters.values()):
        parameters = inspect.signature(nn.RNNBase).parameters
    return {name for name, p in parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)} - {"mode"}


def _names(kind: str, drawn: bool | None = None) -> set[str]:
    return {
        name.strip()
        for argument in ARGUMENTS[kind].arguments
        if drawn is None or bool(argument.values) is drawn
        for name in argument.name.split(",")
    }


@pytest.mark.parametrize("kind", list(ARGUMENTS))
def test_every_constructor_argument_is_drawn_or_says_why_not(kind):
    if (missing := LAYER_KINDS[kind].missing()) is not None:
        pytest.skip(missing)
    for name in ARGUMENTS[kind].classes:
        cls = _class(name)
        assert cls is not None, name
        undescribed = _parameters(cls) - _names(kind) - set(NEVER_DRAWN)
        assert not undescribed, f"{kind}: {name} takes {sorted(undescribed)}, which the argument table does not describe"


@pytest.mark.parametrize("kind", list(ARGUMENTS))
def test_what_the_table_says_is_drawn_is_drawn(kind):
    """The constructor arguments the table lists as drawn are in the drawn layers' arguments, and
    those it lists as not drawn are not, or always hold one value."""
    if (missing := LAYER_KINDS[kind].missing()) is not None:
        pytest.skip(missing)
    seen: dict[str, set[str]] = {}

    @settings(max_examples=60, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(LAYER_STRATEGIES[kind])
    def collect(layers):
        for name, value in layers[0].args:
            seen.setdefault(name, set()).add(repr(value))

    collect()
    constructor = set().union(*(_parameters(cls) for name in ARGUMENTS[kind].classes if (cls := _class(name))))
    varied = {name for name, values in seen.items() if len(values) > 1}
    assert not (_names(kind, drawn=False) & varied), f"{kind}: drawn, but the table says not"
    absent = {name for name in _names(kind, drawn=True) & constructor if name not in seen}
    optional = {"bias"} if kind in ("group_norm", "instance_norm") else set()  # only where torch takes it
    assert absent <= optional, f"{kind}: the table says {sorted(absent)} are drawn, but no draw sets them"
