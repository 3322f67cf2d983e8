"""The layers of the code, as the README's "How the code is organised" draws them, held.

Each module belongs to one layer and may import only from its own layer and those
below it. Imports under ``if TYPE_CHECKING:`` count too: a type from a higher layer
is a dependency on it all the same. Front ends (the SMPP server, the HTTP routes)
also may not reach the store or the simulated network around the kernel's services.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "smpp", "privacy")

# Lowest first. A module's layer is that of the longest prefix here that names it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "smpp wire",
        (
            "smpp.vocabulary",
            "smpp.bodies",
            "smpp.pdu",
            "smpp.framer",
            "smpp.session",
            "smpp.times",
        ),
    ),
    ("kernel", ("gateway",)),
    ("privacy", ("privacy",)),
    ("smpp front end", ("smpp",)),
    ("composition root", ("gateway.server", "gateway.testing", "gateway.__main__")),
)
RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}
# Front-end modules that must go through the kernel's services, never around them.
FRONT_ENDS = ("smpp.server", "smpp.translate", "gateway.server.http_")
AROUND_THE_KERNEL = ("gateway.store", "gateway.storage", "gateway.network")


def layer_of(module: str) -> str:
    best, best_length = None, -1
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = name, len(prefix)
    assert best is not None, f"{module} is in no layer"
    return best


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(module: str, path: Path) -> set[str]:
    """Every project module ``module`` imports, absolute or relative, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    known = modules()
    return {name for name in names if name in known and name != module}


MODULES = modules()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_layer_above_its_own(module: str) -> None:
    rank = RANK[layer_of(module)]
    above = sorted(name for name in imports(module, MODULES[module]) if RANK[layer_of(name)] > rank)
    assert above == [], f"{module} ({layer_of(module)}) imports {above}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(FRONT_ENDS)))
def test_front_ends_go_through_the_kernels_services(module: str) -> None:
    around = sorted(
        name for name in imports(module, MODULES[module]) if name.startswith(AROUND_THE_KERNEL)
    )
    assert around == [], f"{module} reaches {around} around the pipeline"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(FRONT_ENDS)))
def test_front_ends_take_no_store_or_network_from_the_app(module: str) -> None:
    """HTTP routes find the parts in the app; the store and network keys are not for them."""
    tree = ast.parse(MODULES[module].read_text())
    taken = sorted(
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name in ("STORE", "NETWORK")
    )
    assert taken == [], f"{module} takes {taken} from the app"


def test_the_check_sees_a_violation() -> None:
    """The walk finds imports inside functions and TYPE_CHECKING blocks alike."""
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import privacy.registry\n"
    tree_path = ROOT / "tests" / "_layer_probe.py"
    try:
        tree_path.write_text(source)
        found = imports("gateway.config", tree_path)
    finally:
        tree_path.unlink()
    assert RANK[layer_of(next(iter(found)))] > RANK[layer_of("gateway.config")]
