"""The package's layering: data flows one way (cli → run → train/eval → methods → models/data →
config), and no module imports one above it, lazily or not. docs/architecture.md draws the same
layers."""

from __future__ import annotations

import ast
from pathlib import Path

# Lowest first; a module belongs to the layer of the longest prefix that names it. The package
# root is the exception: it names itself only (it is the Python API's facade, on top of it all).
ROOT = "sslbench"
LAYERS: list[tuple[str, ...]] = [
    ("sslbench.version", "sslbench.limits", "sslbench.errors", "sslbench.formatting",
     "sslbench.canonical", "sslbench.seeds", "sslbench.provenance", "sslbench.paths",
     "sslbench.tensorboard", "sslbench.escape", "sslbench.files", "sslbench.process"),
    ("sslbench.config",),
    ("sslbench.store",),
    ("sslbench.data",),
    ("sslbench.models", "sslbench.mi", "sslbench.distributed",
     "sslbench.distributed.collectives", "sslbench.distributed.batchnorm"),
    ("sslbench.methods",),
    ("sslbench.train", "sslbench.eval", "sslbench.distributed.ddp", "sslbench.distributed.launch",
     "sslbench.losses", "sslbench.resolve"),
    ("sslbench.run.lifecycle",),
    ("sslbench.run.monitor",),
    ("sslbench.run.evaluate",),
    ("sslbench.run", "sslbench.run.pretrain"),
    ("sslbench.report", "sslbench.sweep", "sslbench.bench", "sslbench.reproduce",
     "sslbench.export", "sslbench.results"),
    ("sslbench.cli", "sslbench.__main__"),
    (ROOT,),
]
PACKAGE = Path(__file__).parents[1] / "sslbench"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def layer_of(module: str) -> int:
    best, level = "", -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module.startswith(prefix + ".") and prefix != ROOT
            if (module == prefix or inside) and len(prefix) > len(best):
                best, level = prefix, i
    assert level >= 0, f"{module} is in no layer: add it to LAYERS (and docs/architecture.md)"
    return level


def _imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its file (lazy imports too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            name = ".".join(parts)
            # a package's own __init__, seen from inside the package, is not an upward import
            if name.startswith("sslbench") and name != module and \
                    not module.startswith(name + "."):
                out.add(name)
    return out


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        layer_of(module)


def test_no_module_imports_one_above_it() -> None:
    known = _modules()
    upward = [f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
              for m, path in sorted(known.items()) for t in sorted(_imports(m, path, known))
              if layer_of(t) > layer_of(m)]
    assert upward == []


def test_the_walk_sees_lazy_imports() -> None:
    """The cli imports the run package only inside its commands: the walk must count those."""
    known = _modules()
    assert "sslbench.run.pretrain" in _imports("sslbench.cli.pretrain",
                                               known["sslbench.cli.pretrain"], known)
