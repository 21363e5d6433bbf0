"""One dict round trip for the settings dataclasses stored in checkpoints (model, diffusion, training)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import ClassVar, TypeVar

T = TypeVar("T", bound="Settings")


class Settings:
    """Mixin for dataclasses: ``to_dict`` and a ``from_dict`` that names unknown keys."""

    #: What the settings are, for error messages ("model", "diffusion", "training").
    settings_name: ClassVar[str] = "settings"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls: type[T], d: dict) -> T:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.settings_name} settings {sorted(unknown)}")
        return cls(**d)
