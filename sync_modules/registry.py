"""Every sync module by name, in the order a full run visits them."""

from __future__ import annotations

import importlib
import pkgutil

from sync_modules import views
from sync_modules.base import SyncModule

_MODULES: dict[str, SyncModule] = {}


def register(module: SyncModule) -> SyncModule:
    if module.name in _MODULES:
        raise ValueError(f"sync module {module.name!r} is registered twice")
    _MODULES[module.name] = module
    return module


def _load() -> None:
    for info in sorted(pkgutil.iter_modules(views.__path__), key=lambda i: i.name):
        importlib.import_module(f"{views.__name__}.{info.name}")


def all_modules() -> dict[str, SyncModule]:
    if not _MODULES:
        _load()
    return dict(sorted(_MODULES.items(), key=lambda kv: ORDER.get(kv[0], len(ORDER))))


def get_module(name: str) -> SyncModule:
    modules = all_modules()
    if name not in modules:
        raise KeyError(f"unknown sync module {name!r}; known: {', '.join(modules)}")
    return modules[name]


# The seed's order: sales first, stock last.
ORDER = {
    name: i
    for i, name in enumerate(
        [
            "vendas",
            "contas_receber_posicao",
            "contas_pagar",
            "contas_pagas",
            "contas_recebidas",
            "estoque",
        ]
    )
}
