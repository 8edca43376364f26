"""``structbandits.agents`` exports every policy constructor of its submodules, without import cycles.

The oracle is the submodules' own source: every public function (listed in a module's ``__all__``)
annotated to return a ``Policy`` is a constructor and must be reachable as ``structbandits.agents.<name>``.
"""

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import structbandits.agents as agents

AGENTS_DIR = Path(agents.__file__).parent


def _submodules():
    return [importlib.import_module(f"structbandits.agents.{info.name}") for info in pkgutil.iter_modules(agents.__path__)]


def _constructors():
    """{name: function} of every function in a submodule's ``__all__`` defined there and returning a Policy."""
    found = {}
    for module in _submodules():
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if inspect.isfunction(obj) and obj.__module__ == module.__name__ \
                    and inspect.signature(obj).return_annotation in ("Policy", agents.Policy):
                found[name] = obj
    return found


def test_every_policy_constructor_is_exported_from_the_package():
    constructors = _constructors()
    # The scan itself works: it finds constructors of every family (a scan finding nothing would pass vacuously).
    assert {"lin_ts", "numpyro_ts", "fo_gambitts", "po_gambitts", "optional_prompting", "ens_po_gambitts",
            "ens_fo_gambitts", "standard_ts", "restless_policy", "bayes_restless_policy", "uniform_random"} \
        <= set(constructors)
    missing = sorted(name for name, fn in constructors.items()
                     if getattr(agents, name, None) is not fn or name not in agents.__all__)
    assert not missing, f"policy constructors not exported from structbandits.agents: {missing}"


def test_every_exported_name_resolves_and_restless_companions_are_exported():
    assert all(hasattr(agents, name) for name in agents.__all__)
    for name in ("PlannerSettings", "EXACT_SETTINGS", "RestlessContext", "POLICY_NAMES", "RestlessOutcome",
                 "TransitionCounts", "no_propensity", "Policy", "ActInfo"):
        assert name in agents.__all__, name


def _module_imports(path: Path) -> set[str]:
    """structbandits.agents submodules imported at module level (not inside functions) by ``path``."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module == "structbandits.agents":
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("structbandits.agents."):
            names.add(node.module.rsplit(".", 1)[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.rsplit(".", 1)[1] for a in node.names if a.name.startswith("structbandits.agents.")}
    return names


def test_agent_submodules_have_no_import_cycles():
    graph = {p.stem: _module_imports(p) for p in AGENTS_DIR.glob("*.py") if p.stem != "__init__"}
    done, on_path = set(), []

    def visit(name):
        if name in on_path:
            raise AssertionError(f"import cycle: {' -> '.join(on_path[on_path.index(name):] + [name])}")
        if name in done:
            return
        on_path.append(name)
        for dep in sorted(graph.get(name, ())):
            visit(dep)
        on_path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_importing_the_package_stays_light():
    # A fresh interpreter: the package imports no plotting / ArviZ / scipy.optimize (slow imports that
    # only some functions need), and the planners it pulls in come without import cycles.
    code = ("import sys, structbandits.agents; "
            "print(sorted(m for m in ('arviz', 'matplotlib', 'scipy.optimize', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]", out.stdout
