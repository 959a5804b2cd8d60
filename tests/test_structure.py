"""The code's shape (issue: one shape a newcomer can read): stage packages with one import direction,
no import cycles, small functions and modules, a torch-free plan, and no pointer to a file outside the
repository."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VIT = REPO / "vit"
# The declared direction: a package may import its own modules and those of any package before it.
LAYERS = ["vit", "vit.plan", "vit.models", "vit.data", "vit.evaluate", "vit.train", "vit.account", "vit.report"]
MAX_FUNCTION_LINES, MAX_MODULE_LINES = 80, 400
# shared reference files of the team that users never get; the repository keeps its own copies (docs/)
OUTSIDE = re.compile(r"CPU_PERF\.md|FACTS\.md|DATASETS\.md|STYLE\.md|SNAKEMAKE\.md|USER_NEEDS\.md|\.\./shared|/work/")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(VIT.rglob("*.py"))}


def layer(module: str) -> int:
    """The index of the package a module belongs to (vit.cli, vit.errors, vit.logs: the base, 0)."""
    package = ".".join(module.split(".")[:2])
    return LAYERS.index(package) if package in LAYERS else 0


def imports(module: str) -> set[str]:
    """The vit modules a module imports anywhere in it (top level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("vit.") or a.name == "vit"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and \
                (node.module == "vit" or node.module.startswith("vit.")):
            for a in node.names:  # `from vit.data import synth` imports a module, `from vit.data import MANIFEST` a name
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in MODULES else node.module)
    out.discard(module)
    return {m for m in out if m != "vit"}


def test_every_module_belongs_to_a_declared_package():
    stray = [m for m in MODULES if m.count(".") >= 1 and ".".join(m.split(".")[:2]) not in LAYERS
             and m not in ("vit.cli", "vit.errors", "vit.logs", "vit.stops")]
    assert not stray, f"modules outside the declared packages {LAYERS}: {stray}"


def test_imports_follow_the_declared_direction():
    upward = [f"{m} (layer {LAYERS[layer(m)]}) imports {t} (layer {LAYERS[layer(t)]})"
              for m in MODULES for t in sorted(imports(m)) if layer(t) > layer(m)]
    assert not upward, "imports against the direction " + " < ".join(LAYERS) + ":\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = {m: imports(m) & set(MODULES) for m in MODULES}
    state, cycles = {}, []

    def visit(m, path):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(" -> ".join(path[path.index(t):] + [t]))
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in MODULES:
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_plan_is_torch_free():
    """The workflow reads the plan at parse time: importing it must not import torch (seconds per parse)."""
    code = "import sys, vit.plan, vit.plan.recipes, vit.plan.tasks; print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip() == "[]", f"importing vit.plan loads {out.strip()}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_functions_and_modules_are_short(module):
    text = MODULES[module].read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{module}: {len(text.splitlines())} lines > {MAX_MODULE_LINES}"
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse(text))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{module}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_workflow_helpers_and_readme_stay_short():
    assert len((REPO / "workflow/rules/common.smk").read_text().splitlines()) <= 125
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) <= 8192, f"README.md is {len(readme.encode())} bytes (at most 8 KB)"
    assert "make run" in readme[:1500] and "make test" in readme[:1500], "README starts with the two commands"


def test_no_lambdas_in_rules():
    for smk in [REPO / "workflow/Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]:
        assert "lambda" not in smk.read_text(), f"{smk.relative_to(REPO)}: use a named function, not a lambda"


def test_no_reference_to_files_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, check=True, cwd=REPO).stdout.split()
    texts = [REPO / f for f in tracked if f.endswith((".py", ".smk", ".md", ".yaml", ".rst", ".toml", "Makefile", "Snakefile"))
             and not f.startswith("reports/") and f != "tests/test_structure.py"]
    hits = [f"{p.relative_to(REPO)}:{i}: {line.strip()}" for p in texts if p.exists()
            for i, line in enumerate(p.read_text().splitlines(), 1) if OUTSIDE.search(line)]
    assert not hits, "pointers to files users do not have (copy the fact into docs/ or vit/reference.yaml):\n" + "\n".join(hits)


STAGES = sorted(m.removesuffix(".__main__") for m, p in MODULES.items()
                if p.name == "__main__.py" or 'if __name__ == "__main__":' in p.read_text())


def test_every_stage_of_the_workflow_is_a_module_here():
    """Each `python -m vit...` that a rule runs exists (a renamed module would otherwise fail mid-run)."""
    called = set()
    for smk in [REPO / "workflow/Snakefile", *(REPO / "workflow/rules").glob("*.smk")]:
        called |= set(re.findall(r"-m (vit(?:\.[a-z_]+)+)", smk.read_text()))
    assert called and called <= set(STAGES), f"rules call modules that are no stage: {called - set(STAGES)}"


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")  # runpy on an imported module
@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_answers_help(stage, monkeypatch, capsys):
    """`python -m <stage> --help` lists every setting with its type and default, and exits 0."""
    import runpy

    monkeypatch.setattr(sys, "argv", [stage, "--help"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_module(stage, run_name="__main__", alter_sys=True)
    out = capsys.readouterr().out
    assert stop.value.code in (0, None), f"{stage} --help exited {stop.value.code}"
    assert f"usage: python -m {stage}" in out and "(default:" in out
