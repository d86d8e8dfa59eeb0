"""Name -> implementation registries (methods, corpora, tasks), lm-eval style."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import CalibpruneError


class Registry:
    """Name -> factory, with an error that lists the valid names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., object]] = {}

    def register(self, name: str):
        def decorator(factory):
            self._factories[name] = factory
            return factory

        return decorator

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a test's toy entry); nothing if it is not registered."""
        self._factories.pop(name, None)

    def names(self) -> list[str]:
        return list(self._factories)

    def __contains__(self, name: str) -> bool:
        return name in self._factories

    def get(self, name: str):
        """The factory registered as ``name`` (a class: its attributes, such as ``revision``,
        are read without building an instance)."""
        try:
            return self._factories[name]
        except KeyError:
            raise CalibpruneError(f"unknown {self.kind} {name!r}: known ones are {', '.join(self.names())}") from None

    def create(self, name: str, **kwargs):
        return self.get(name)(**kwargs)
