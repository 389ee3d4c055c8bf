"""Registry entries as "module:Class" strings: one line per entry, no import line beside it
(docs/design.md, "Architecture")."""
import importlib


def load(path: str) -> type:
    """The class a "package.module:Class" path names."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def load_all(*paths: str) -> tuple[type, ...]:
    return tuple(load(path) for path in paths)
