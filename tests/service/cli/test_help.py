"""``--help`` of every command, kept as snapshot files (``snapshots/*.txt``): a changed
help text shows up in review as a changed file. ``VIGIL_TEST_UPDATE_SNAPSHOTS=1``
rewrites them. Every help text is plain: no ``<bool>`` type tags, no rich markup, no
reStructuredText backticks, no boxes, and every option and argument explains itself."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import typer

from service.cli import app

from .conftest import vigil

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("VIGIL_TEST_UPDATE_SNAPSHOTS") == "1"


def _commands(command=None, path=()) -> list[tuple[tuple[str, ...], object]]:
    command = command or typer.main.get_command(app)
    found = [(path, command)]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands()


def _snapshot(path: tuple[str, ...]) -> Path:
    return SNAPSHOTS / ("-".join(("vigil", *path)) + ".txt")


def test_the_command_tree_has_every_group_and_command():
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"register", "demo", "serve", "status", "simulate", "models list", "models show", "alerts list",
            "alerts silence", "alerts unsilence", "alerts ack", "alerts rebaseline",
            "alerts export-prometheus"} <= names


def _help(path: tuple[str, ...], capsys) -> str:
    """``vigil PATH --help`` as a terminal of COLUMNS=100 shows it (typer's CliRunner would
    force 80 columns, so the command's own ``main`` is called here)."""
    code = typer.main.get_command(app).main([*path, "--help"], prog_name="vigil", standalone_mode=False)
    assert code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "vigil")
def test_help_matches_its_snapshot_and_is_plain_text(path, capsys):
    text = _help(path, capsys)
    assert text.startswith(f"Usage: vigil {' '.join(path)}".rstrip() + " ")
    for bad in ("<bool>", "``", "[/", "[bold", "[yellow", "[red", "╭", "│", "\x1b["):
        assert bad not in text, f"{bad!r} in the help of {path}"
    assert max(len(line) for line in text.splitlines()) <= 100
    snap = _snapshot(path)
    if UPDATE or not snap.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        snap.write_text(text)
        if not UPDATE:
            pytest.fail(f"{snap.name} did not exist: written now, review and commit it")
    assert text == snap.read_text(), f"{snap.name} is out of date (VIGIL_TEST_UPDATE_SNAPSHOTS=1 rewrites it)"


def test_no_snapshot_is_left_over_from_a_removed_command():
    expected = {_snapshot(p).name for p, _ in COMMANDS}
    assert {p.name for p in SNAPSHOTS.glob("*.txt")} == expected


@pytest.mark.parametrize("path, command", [(p, c) for p, c in COMMANDS if p], ids=lambda x: " ".join(x)
                         if isinstance(x, tuple) else "")
def test_every_option_and_argument_says_what_it_is_for(path, command):
    assert (command.help or "").strip(), f"vigil {' '.join(path)} has no help"
    for param in command.params:
        assert (getattr(param, "help", None) or "").strip(), f"vigil {' '.join(path)}: {param.name} has no help"
    shorts = [o for param in command.params for o in param.opts if re.fullmatch(r"-\w", o)]
    assert len(shorts) == len(set(shorts))


def test_v_is_not_a_short_name_for_validation():
    r = vigil("register", "m.joblib", "--reference", "r.csv", "--target", "y", "-v", "valid.csv")
    assert r.exit_code == 2
    assert "No such option: -v" in r.stderr
