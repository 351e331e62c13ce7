"""``Registry``: name -> class, filled by decorators; a file names an entry, never the class that runs."""

from __future__ import annotations

from typing import Any


class Registry(dict[str, Any]):
    """One extension point's classes, keyed by their ``key`` attribute (``what`` names them in errors)."""

    def __init__(self, what: str, key: str) -> None:
        super().__init__()
        self.what, self.key = what, key

    def register(self, cls: Any) -> Any:
        """Class decorator adding ``cls`` under ``getattr(cls, key)``; a different class there is an error."""
        if self.get(name := getattr(cls, self.key), cls) is not cls:
            raise ValueError(f"{self.what} {name!r} is already registered by {self[name].__name__}")
        self[name] = cls
        return cls

    def lookup(self, name: str) -> Any:
        """The class registered as ``name``; ``ValueError`` listing the registered names otherwise."""
        if name not in self:
            raise ValueError(f"unknown {self.what} {name!r}; registered: {sorted(self)}")
        return self[name]
