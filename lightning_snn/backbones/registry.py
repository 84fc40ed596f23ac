"""Name registry of backbones, so that a config can say ``backbone: resnet19`` (timm-style)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["register_backbone", "create_backbone", "list_backbones", "get_backbone_fn"]

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a backbone constructor under ``name``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name.lower()
        if key in _BACKBONES and _BACKBONES[key] is not fn:
            raise ValueError(f"backbone {name!r} is already registered")
        _BACKBONES[key] = fn
        return fn

    return wrap


def list_backbones() -> list[str]:
    """Names of all registered backbones."""
    return sorted(_BACKBONES)


def get_backbone_fn(name: str) -> Callable[..., nn.Module]:
    try:
        return _BACKBONES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; registered backbones: {', '.join(list_backbones())}") from None


def create_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build the backbone registered as ``name``; raises ``ValueError`` listing the known names."""
    fn = get_backbone_fn(name)
    try:
        return fn(**kwargs)
    except TypeError as err:
        raise ValueError(f"backbone {name!r}: invalid arguments {sorted(kwargs)}: {err}") from None
