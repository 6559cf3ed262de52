"""Imports point one way: every engine module sits in one layer and imports only from its own layer or lower
ones (the README's architecture table). A new module must be given a layer here."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "chemlm_engine"
# Lowest first. Within a layer, modules may import each other (no circles: Python would fail).
LAYERS = [
    ("foundation", {"errors", "columns", "tokenizer", "ionisation", "depict", "molecules", "filekinds", "sdfile",
                    "sheets", "tables", "outputs", "guard", "hub", "methods", "methods.influence.solvers", "readings"}),
    ("spec and store", {"spec", "spec.config", "spec.options", "spec.job_options", "spec.registry", "store",
                        "store.runs", "store.schema", "store.uploads"}),
    ("data and features", {"data", "descriptors", "training_set", "methods.pretrain.corpus",
                           "methods.pretrain.drug_corpus"}),
    ("models", {"model", "export", "quantise", "inference", "training", "costs", "compare", "predict", "predict.batch",
                "predict.domain", "predict.ensemble", "predict.explain", "predict.trees",
                "predict.morgan"}),
    ("methods and jobs", {"pipeline", "jobs", "methods.baseline", "methods.curriculum", "methods.distill",
                          "methods.ensemble", "methods.mlm", "methods.peft", "methods.uncertainty", "methods.influence",
                          "methods.influence.tracked", "methods.influence.scores", "methods.influence.job",
                          "methods.influence.isal", "methods.selection",
                          "methods.pretrain", "methods.pretrain.trainer", "methods.pretrain.batches",
                          "methods.pretrain.job", "methods.pretrain.card"}),
    ("execution", {"cluster", "manager", "library", "library_input", "library_results", "tune"}),
    ("entry points", {"cli_interrupts", "cli_predict", "cli_tune", "cli_runs", "cli", "__main__", ""}),
]
LAYER = {module: i for i, (_, modules) in enumerate(LAYERS) for module in modules}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Engine modules that ``module`` imports (relative imports resolved; ``from . import x`` names x)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
            elif (node.module or "").startswith("chemlm_engine"):
                base = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:
                target = ".".join(base + [alias.name])
                found.add(target if target in modules else ".".join(base))
        elif isinstance(node, ast.Import):
            found |= {".".join(a.name.split(".")[1:]) for a in node.names if a.name.startswith("chemlm_engine.")}
    return {t for t in found if t != module}


def test_every_module_has_a_layer_and_imports_point_down():
    modules = _modules()
    assert set(modules) - set(LAYER) == set(), "give the new module a layer in LAYERS"
    upward = [f"{m} ({LAYERS[LAYER[m]][0]}) imports {t} ({LAYERS[LAYER[t]][0]})"
              for m, path in modules.items() for t in _imports(m, path, modules) if LAYER[t] > LAYER[m]]
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path):
    fake = {"errors": tmp_path / "errors.py", "cli": tmp_path / "cli.py"}
    fake["errors"].write_text("from .cli import app\n")
    assert _imports("errors", fake["errors"], fake) == {"cli"} and LAYER["cli"] > LAYER["errors"]
