"""Name -> implementation registries for pluggable parts (data sources, teacher backends,
losses, metrics, self-distillation methods). An unknown name fails listing the known ones."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(self._unknown(name)) from None

    def check(self, name: str, also: tuple[str, ...] = ()) -> str:
        """``name`` if registered (or one of ``also``); else ValueError listing the known names
        (what a config validator raises, so the error names the key)."""
        if name not in self._items and name not in also:
            raise ValueError(self._unknown(name, also))
        return name

    def _unknown(self, name: str, also: tuple[str, ...] = ()) -> str:
        known = ", ".join(sorted([*self._items, *also])) or "(none)"
        return f"unknown {self.kind} {name!r}; known: {known}"

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
