"""Package layout rules: no top-level ``tokenizers`` shadowing HuggingFace's; light imports stay light."""

from __future__ import annotations

import subprocess
import sys


def test_huggingface_tokenizers_is_not_shadowed(repo_root):
    assert not (repo_root / "tokenizers").exists()
    out = subprocess.run(
        [sys.executable, "-c", "import tokenizers; print(tokenizers.__file__)"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "site-packages" in out and str(repo_root / "tokenizers") not in out


def test_tokenizers_and_backbone_import_without_lightning_or_gradio(repo_root):
    code = (  # transformers too: the pretrained adapters import it only when one is built
        "import sys, anytoken.tokenizers, anytoken.backbone, anytoken.heads; "
        "heavy = ('lightning', 'pytorch_lightning', 'gradio', 'transformers'); "
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_console_script_help(repo_root):
    out = subprocess.run(
        [sys.executable, "-m", "anytoken.cli", "--help"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "fit | validate | test | predict" in out


def test_atomic_writes_leave_nothing_behind_on_failure(tmp_path):
    import pytest

    from anytoken.atomic import atomic_directory, atomic_path

    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.png") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "release") as tmp:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("done")
    assert (tmp_path / "out.txt").read_text() == "done" and len(list(tmp_path.iterdir())) == 1


# Rooms from the ground up; a module may import only from its own rank or below.
RANKS = {"backbone": 0, "tokenizers": 0, "atomic": 0, "loading": 0, "registry": 0, "heads": 1, "models": 2,
         "checkpoint": 3, "anytoken": 4, "tasks": 5, "bench": 5, "demos": 6, "cli": 7}
HEAVY = {"lightning": 5, "pytorch_lightning": 5, "gradio": 6}  # the lowest rank that may import each


def _import_graph(repo_root):
    """``{module: {imported module or heavy package}}`` of anytoken/ and demos/ (function-level imports
    too)."""
    import ast

    files = {p: p.relative_to(repo_root).with_suffix("").parts for d in ("anytoken", "demos")
             for p in (repo_root / d).rglob("*.py")}
    names = {".".join(parts[:-1] if parts[-1] == "__init__" else parts): p for p, parts in files.items()}
    graph = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base])
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for target in targets:
                while target and target not in names and "." in target:
                    target = target.rpartition(".")[0]
                if target in names and target != name and not name.startswith(target + "."):
                    deps.add(target)
                elif target.split(".")[0] in HEAVY:
                    deps.add(target.split(".")[0])
        graph[name] = deps
    return graph


def _room(module):
    parts = module.split(".")
    return parts[0] if parts[0] == "demos" or len(parts) == 1 else parts[1]


def test_imports_point_one_way(repo_root):
    """No import circles; no module imports a room above its own (the CLI is the top, demos below it, the
    Lightning tasks below them; the model and lower rooms import neither Lightning nor Gradio)."""
    graph = _import_graph(repo_root)
    upward = []
    for module, deps in graph.items():
        rank = RANKS[_room(module)]
        for dep in deps:
            above = HEAVY[dep] > rank if dep in HEAVY else RANKS[_room(dep)] > rank
            if above:
                upward.append(f"{module} -> {dep}")
    assert upward == []
    state, stack, circles = {}, [], []

    def visit(module):  # depth-first search; a grey module met again closes a circle
        state[module] = "grey"
        stack.append(module)
        for dep in graph.get(module, ()):
            if state.get(dep) == "grey":
                circles.append(stack[stack.index(dep):] + [dep])
            elif dep in graph and dep not in state:
                visit(dep)
        stack.pop()
        state[module] = "black"

    for module in graph:
        if module not in state:
            visit(module)
    assert circles == []
