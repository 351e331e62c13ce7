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
    code = (
        "import sys, anytoken.tokenizers, anytoken.backbone, anytoken.heads; "
        "bad = [m for m in ('lightning', 'pytorch_lightning', 'gradio') if m in sys.modules]; print(bad)"
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
