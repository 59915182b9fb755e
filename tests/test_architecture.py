"""The layers of docs/architecture.md: every import of the package (at the top of a module or inside a
function) goes to its own layer or one below, and no modules import each other in a loop."""

from __future__ import annotations

import ast
import subprocess
import sys

from mgmvae.config import ROOT

# Bottom up, as docs/architecture.md lists them; a module belongs to the longest prefix that names it.
LAYERS = [
    (
        "foundation",
        [
            "mgmvae.config",
            "mgmvae.params",
            "mgmvae.paths",
            "mgmvae.io",
            "mgmvae.seeding",
            "mgmvae.compat",
            "mgmvae.provenance",
        ],
    ),
    ("data", ["mgmvae.data"]),
    ("networks", ["mgmvae.nets", "mgmvae.distributions", "mgmvae.contrastive"]),
    ("models", ["mgmvae.base", "mgmvae.model", "baselines"]),
    ("plumbing", ["mgmvae.registry", "mgmvae.study_datasets", "mgmvae.contracts", "mgmvae.model_file"]),
    ("training", ["mgmvae.train"]),
    ("evaluation", ["mgmvae.evaluation"]),
    ("aggregation", ["mgmvae.paper", "mgmvae.tables", "mgmvae.figures"]),
    (
        "infrastructure",
        ["mgmvae.tracking", "mgmvae.process_supervision", "mgmvae.mlflow_provisioning", "mgmvae.gpu_slots"],
    ),
    ("top", ["mgmvae.stages", "mgmvae.cli", "mgmvae.bench", "mgmvae.docs", "mgmvae.likelihood_sweep", "mgmvae"]),
]


def layer(module: str) -> int | None:
    """The layer of ``module`` by its longest matching prefix; None outside the package."""
    matches = [
        (len(p), i)
        for i, (_, prefixes) in enumerate(LAYERS)
        for p in prefixes
        if module == p or module.startswith(p + ".")
    ]
    return max(matches)[1] if matches else None


def modules() -> dict[str, ast.Module]:
    found = {}
    for folder in ("mgmvae", "baselines"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = ast.parse(path.read_text())
    return found


def imports(tree: ast.Module, known: set[str]) -> set[str]:
    """Every package module a module imports, wherever the import stands."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            out |= subs or {node.module}
    return {m for m in out if layer(m) is not None}


def test_every_module_has_a_layer_and_imports_run_downward():
    found = modules()
    assert all(layer(m) is not None for m in found), [m for m in found if layer(m) is None]
    upward = [
        f"{m} ({LAYERS[layer(m)][0]}) imports {t} ({LAYERS[layer(t)][0]})"
        for m, tree in found.items()
        for t in sorted(imports(tree, set(found)))
        if layer(t) > layer(m)
    ]
    assert not upward, upward


def test_a_hand_made_upward_import_is_caught():
    tree = ast.parse("def f():\n    from mgmvae.stages import write_tables\n")
    found = imports(tree, {"mgmvae.stages"})
    assert found == {"mgmvae.stages"} and layer("mgmvae.stages") > layer("mgmvae.train")


def test_each_module_imports_on_its_own():
    """No module depends on another having been imported first (as a loop hidden by import order would)."""
    found = [m for m in modules() if m not in ("mgmvae.__main__",)]
    code = (
        "import importlib, sys\n"
        "for m in sys.argv[1:]:\n"
        "    importlib.import_module(m)\n"
        "    [sys.modules.pop(k) for k in list(sys.modules) if k.startswith(('mgmvae', 'baselines'))]\n"
    )
    result = subprocess.run([sys.executable, "-c", code, *found], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
