"""The README stays true: every diagnosis code documented, the quick start and CI commands exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from probes.codes import Code

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("code", list(Code))
def test_readme_documents_every_code(code: Code) -> None:
    """Each code has a row with its summary in the README's diagnosis table."""
    assert f"| `{code.value}` | {code.summary} |" in README


def test_quick_start_is_two_commands_that_exist() -> None:
    """The quick start is exactly the demo and the test command, both executable scripts."""
    block = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["./scripts/demo", "./scripts/test"]
    for command in commands:
        path = ROOT / command
        assert path.is_file() and path.stat().st_mode & 0o111


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs ./scripts/test, the README's test command."""
    assert re.search(r"^\./scripts/test\b", (ROOT / ".ci" / "run").read_text(), re.M)


def test_import_layering_contracts_hold() -> None:
    """probes/ never imports agent/ or kubernetes; only agent.kube talks to the API."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(ROOT / ".importlinter")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
