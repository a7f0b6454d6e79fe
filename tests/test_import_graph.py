"""The import graph of `adatad/`, read from the source with `ast` (imports inside functions count too): no cycles,
and no module imports one from a layer above its own.

The layers, lowest first (a module may import its own layer and the layers below):

1. leaves: no import of the package (standard library, numpy, torch, transformers only);
2. configuration and outputs: `AdaTADConfig`, post-processing, annotation tables, the evaluation's inputs and metrics;
3. model and processor: they import the configuration and post-processing, never each other;
4. the pipeline: model + processor;
5. tools and entry points: presets, custom data, memory estimation, command lines, the `evaluate` metric.

The root `adatad/__init__.py` is a leaf: it names its attributes as strings and imports them lazily.
"""

import ast
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "adatad"

LAYERS = {
    "leaves": [
        "adatad",
        "adatad.argparse_types",
        "adatad.atomic_files",
        "adatad.augmentation",
        "adatad.lean_vit",
        "adatad.metrics",
        "adatad.metrics.temporal_detection_map",
        "adatad.model_card",
        "adatad.nms",
        "adatad.opentad_config",
        "adatad.strict_json",
        "adatad.synthetic",
        "adatad.time_grid",
        "adatad.video_decoding",
        "adatad.visualization",
        "adatad.custom_data.records",
    ],
    "configuration and outputs": [
        "adatad.configuration_adatad",
        "adatad.post_processing",
        "adatad.annotations",
        "adatad.evaluation",
        "adatad.evaluation.inputs",
        "adatad.evaluation.metrics",
    ],
    "model and processor": [
        "adatad.modeling_adatad",
        "adatad.model_loading",
        "adatad.opentad",
        "adatad.processing_adatad",
    ],
    "pipeline": ["adatad.pipeline_adatad"],
    "tools and entry points": [
        "adatad.dataset_transforms",
        "adatad.presets",
        "adatad.presets.__main__",
        "adatad.memory_estimation",
        "adatad.custom_data",
        "adatad.custom_data.readers",
        "adatad.custom_data.validation",
        "adatad.custom_data.conversion",
        "adatad.custom_data.preset_suggestion",
        "adatad.custom_data.cli",
        "adatad.evaluation.cli",
        "adatad.metrics.temporal_detection_map.temporal_detection_map",
        "adatad.env",
        "adatad.estimate_memory",
        "adatad.detect",
    ],
}
# Model and processor are side by side: neither imports the other (the pipeline joins them).
SIBLINGS = {
    ("adatad.modeling_adatad", "adatad.processing_adatad"),
    ("adatad.processing_adatad", "adatad.modeling_adatad"),
}
# What a saved model folder carries (`register_for_auto_class` copies the same-folder imports of these files): they
# may import only each other.
SAVED_FOLDER_MODULES = {
    "adatad.configuration_adatad",
    "adatad.modeling_adatad",
    "adatad.processing_adatad",
    "adatad.pipeline_adatad",
    "adatad.lean_vit",
    "adatad.time_grid",
    "adatad.post_processing",
    "adatad.nms",
    "adatad.augmentation",
    "adatad.video_decoding",
}


def package_modules(package: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package `__init__`), for every `.py` file under `package`."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def import_graph(modules: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """Module -> the modules of `modules` it imports (`from . import x` and `from .x import y` resolved)."""
    graph = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    submodule = f"{target}.{alias.name}"
                    if submodule in modules:
                        imported.add(submodule)
                    elif target in modules:
                        imported.add(target)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names if alias.name in modules)
        imported.discard(name)
        graph[name] = imported
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a list of modules (first == last), or None."""
    state = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target, path + [target])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def upward_imports(graph: dict[str, set[str]], layers: dict[str, list[str]], siblings=frozenset()) -> list[str]:
    """Imports of a module from a higher layer, and between the `siblings` pairs."""
    rank = {module: index for index, names in enumerate(layers.values()) for module in names}
    names = list(layers)
    return [
        f"{source} ({names[rank[source]]}) imports {target} ({names[rank[target]]})"
        for source, targets in sorted(graph.items())
        for target in sorted(targets)
        if rank[target] > rank[source] or (source, target) in siblings
    ]


def test_every_module_has_a_layer():
    modules = set(package_modules(PACKAGE))
    placed = [module for names in LAYERS.values() for module in names]
    assert len(placed) == len(set(placed)), "a module is listed in two layers"
    assert modules - set(placed) == set(), "new modules: add them to LAYERS (the lowest layer that fits)"
    assert set(placed) - modules == set(), "LAYERS lists modules that no longer exist"


def test_no_cycles():
    assert find_cycle(import_graph(package_modules(PACKAGE))) is None


def test_no_module_imports_a_layer_above_its_own():
    assert upward_imports(import_graph(package_modules(PACKAGE)), LAYERS, SIBLINGS) == []


def test_saved_folder_modules_import_only_each_other():
    graph = import_graph(package_modules(PACKAGE))
    outside = {module: graph[module] - SAVED_FOLDER_MODULES for module in SAVED_FOLDER_MODULES}
    assert {module: targets for module, targets in outside.items() if targets} == {}


def test_the_checks_can_fail(tmp_path):
    # A small package by hand: a -> b -> c -> a is a cycle; `low` importing `high` goes up a layer.
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("from .c import thing\n")
    (package / "c.py").write_text("def f():\n    from .a import x\n")  # inside a function: still an import
    (package / "sub" / "__init__.py").write_text("from ..high import y\n")
    (package / "low.py").write_text("import pkg.sub\n")
    (package / "high.py").write_text("")
    graph = import_graph(package_modules(package))
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert graph["pkg.sub"] == {"pkg.high"} and graph["pkg.low"] == {"pkg.sub"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    layers = {"bottom": ["pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.low", "pkg.sub"], "top": ["pkg.high"]}
    assert upward_imports(graph, layers) == ["pkg.sub (bottom) imports pkg.high (top)"]
    assert upward_imports(graph, layers, {("pkg.a", "pkg.b")})[0] == "pkg.a (bottom) imports pkg.b (bottom)"
