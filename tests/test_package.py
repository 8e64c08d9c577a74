"""The package's shape: its public names, lazy imports, layers without circles, size limits."""
import ast
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "keras_imae")
# The layers, bottom up: a module imports only from its own layer or the ones below.
LAYERS = {"_backend": 0, "_checks": 0, "_defaults": 0, "_files": 0, "losses": 1, "noise": 2,
          "data": 3, "models": 4, "callbacks": 5, "run_folder": 6, "config": 7, "run": 8,
          "training": 9, "label_issues": 10, "plotting": 11, "cli": 12}
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


def _modules():
    """``{dotted name: path}`` of every module of the package."""
    found = {}
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = path
    return found


def _imports(path, modules):
    """The package modules ``path`` imports, anywhere in it (a name imported from a package
    counts as its submodule when it is one)."""
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("keras_imae"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_imae"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
    return out & set(modules)


def _layer(module):
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else None


def test_modules_import_only_from_their_layer_or_below_and_have_no_circles():
    modules = _modules()
    graph = {m: _imports(p, modules) for m, p in modules.items()}
    upward = [(m, i) for m, deps in graph.items() for i in deps
              if _layer(m) is not None and _layer(i) is not None and _layer(i) > _layer(m)]
    assert upward == []
    # A package's own __init__ re-exports its modules: drop those edges, then no cycles.
    edges = {m: {i for i in deps if not (i.startswith(m + ".") and m in graph)}
             for m, deps in graph.items()}
    edges = {m: {i for i in deps if i != m and not (m.startswith(i + ".")
                                                     and modules[i].endswith("__init__.py"))}
             for m, deps in edges.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_no_module_or_function_is_too_long():
    too_long = []
    for module, path in _modules().items():
        source = open(path).read()
        if source.count("\n") > MAX_MODULE_LINES:
            too_long.append((module, source.count("\n")))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append((f"{module}.{node.name}", lines))
    assert too_long == []


def _imported_names(source):
    """Every ``keras_imae`` name ``source`` imports, anywhere in it: ``import a.b``,
    ``from a import b`` (as ``a.b``: a module or a name), and a string that is a dotted
    ``keras_imae`` name (what ``importlib.import_module`` and lazy ``__getattr__`` tables
    import)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(
                r"keras_imae(\.\w+)+", node.value):
            names.add(node.value)
    return {name for name in names if name.split(".")[0] == "keras_imae"}


def _private_reaches(module, source):
    """The names ``module`` imports from another package's private part.

    A name is private from its first ``_``-prefixed part on (``keras_imae.losses._labels``,
    ``keras_imae.run._noise.corrupt``, ``keras_imae.data._split``); the package above that
    part owns it, and only modules inside that package (at any depth) may import it. So a
    subpackage's private modules are its own (``keras_imae.config._run_config`` is imported
    by ``keras_imae.config`` and its modules only; the others import what its ``__init__``
    exports), while the top-level private modules (``keras_imae._checks``, ``_files``,
    ``_defaults``, ``_backend``) belong to the package ``keras_imae`` itself, which every
    module is inside: anyone in the package may import them.
    """
    found = []
    for name in sorted(_imported_names(source)):
        parts = name.split(".")
        private = next((i for i, part in enumerate(parts) if part.startswith("_")
                        and not part.startswith("__")), None)
        if private is None:
            continue
        owner = ".".join(parts[:private])
        if module != owner and not module.startswith(owner + "."):
            found.append(name)
    return found


def test_no_module_imports_another_package_s_private_module():
    reaches = {module: _private_reaches(module, open(path).read())
               for module, path in _modules().items()}
    assert {module: names for module, names in reaches.items() if names} == {}


def test_the_training_facade_is_for_users_only():
    # keras_imae.training re-exports run, RunConfig, recipe, ... for user code; the library
    # imports them from the packages that own them (config, run, run_folder)
    importers = sorted(module for module, path in _modules().items()
                       if not module.startswith("keras_imae.training") and any(
                           name.startswith("keras_imae.training")
                           for name in _imported_names(open(path).read())))
    assert importers == []
    from keras_imae import training

    assert set(training.__all__) == {
        "ExportFailed", "NOISE_TYPES", "RunConfig", "RunLocked", "export_target",
        "finished_results", "fit_monitor", "format_results", "read_log", "recipe", "run",
        "validate", "write_json"}


def test_private_reaches_are_found_in_every_form():
    source = ("import keras_imae.losses._labels\n"
              "from keras_imae.run import _noise\n"
              "from keras_imae.config._run_config import RunConfig\n"
              "from keras_imae.run_folder import RunFolder, _folder\n"
              "from keras_imae import _checks, run\n"
              "from keras_imae.models._robust import RobustModel\n"
              "LAZY = {'recommended': 'keras_imae.config._recommended'}\n"
              "DOC = 'see keras_imae.run._tune for the grid'\n")
    assert _private_reaches("keras_imae.models._architectures", source) == [
        "keras_imae.config._recommended", "keras_imae.config._run_config.RunConfig",
        "keras_imae.losses._labels", "keras_imae.run._noise", "keras_imae.run_folder._folder"]
    assert _private_reaches("keras_imae", source) == [
        "keras_imae.config._recommended", "keras_imae.config._run_config.RunConfig",
        "keras_imae.losses._labels", "keras_imae.models._robust.RobustModel",
        "keras_imae.run._noise", "keras_imae.run_folder._folder"]


def _fresh(code, **env):
    """Run ``code`` in a new interpreter (nothing imported yet); returns its stdout."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3",
                               **env}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_top_level_names_and_lazy_imports():
    out = _fresh(
        "import sys, keras_imae\n"
        "print('keras' in sys.modules, 'tensorflow' in sys.modules)\n"
        "import numpy as np\n"
        "p = np.array([[.9, .1], [.8, .2], [.3, .7], [.9, .1]])\n"
        "r = keras_imae.find_label_issues([0, 0, 1, 1], p)\n"
        "print(r.is_issue.tolist(), 'keras' in sys.modules, 'tensorflow' in sys.modules)\n")
    assert out.splitlines() == ["False False", "[False, False, False, True] False False"]


@pytest.mark.slow
def test_losses_and_models_import_without_tensorflow_on_jax():
    pytest.importorskip("jax")
    out = _fresh(
        "import sys, keras_imae\n"
        "from keras_imae import losses, models, callbacks\n"
        "loss = keras_imae.DerivativeManipulation(beta=4.0, lam=2.0)\n"
        "model = keras_imae.models.build_model('mlp', (4,), 3, seed=0)\n"
        "print(type(model).__name__, 'tensorflow' in sys.modules)\n", KERAS_BACKEND="jax")
    assert out.splitlines()[-1] == "RobustModel False"


def test_main_names_are_exported_at_the_top_level():
    import keras_imae
    from keras_imae import callbacks, config, label_issues, losses, models

    assert keras_imae.DerivativeManipulation is losses.DerivativeManipulation
    assert keras_imae.IMAE is losses.IMAE
    for name in ("CategoricalCrossentropy", "MeanAbsoluteError", "MeanSquaredError",
                 "GeneralizedCrossEntropy", "SymmetricCrossEntropy",
                 "NormalizedCrossEntropyReverse"):
        assert getattr(keras_imae, name) is getattr(losses, name)
    assert keras_imae.RobustModel is models.RobustModel
    assert keras_imae.find_label_issues is label_issues.find_label_issues
    assert keras_imae.recommended is config.recommended
    assert keras_imae.EmphasisWarmup is callbacks.EmphasisWarmup
    assert keras_imae.PairMargins is callbacks.PairMargins
    assert set(dir(keras_imae)) >= {"losses", "data", "noise", "models", "training"}
    with pytest.raises(AttributeError, match="has no attribute 'weighting'"):
        keras_imae.weighting  # noqa: B018  (moved: keras_imae.losses.weighting)


def test_load_model_registers_the_classes(tmp_path):
    import keras
    import numpy as np

    import keras_imae

    model = keras_imae.models.build_model("mlp", (4,), 3, seed=0)
    model.compile("adam", keras_imae.DerivativeManipulation(beta=4.0, lam=2.0))
    model.save(tmp_path / "m.keras")
    loaded = keras_imae.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, keras_imae.RobustModel) and loaded.loss.beta == 4.0
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert keras.models.load_model(tmp_path / "m.keras").loss.lam == 2.0  # registered now
