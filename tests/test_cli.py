"""The CLI: every command documents itself with an example; user errors are messages with
exit code 2, never tracebacks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from click.testing import CliRunner

from augment.cli import main
from tests.helpers import DIGITS


def commands() -> list[str]:
    return sorted(main.commands)


@pytest.mark.parametrize("name", commands())
def test_every_command_has_help_with_an_example(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0
    assert main.commands[name].help, f"{name} has no help text"
    assert "Example" in result.output and f"augment {name}" in result.output


def test_top_level_help_lists_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in commands():
        assert name in result.output


def test_recipes_lists_bundled_recipes() -> None:
    result = CliRunner().invoke(main, ["recipes"])
    assert result.exit_code == 0
    assert "default" in result.output and "no-flip" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["expand", "no/such/dir", "OUT"], "does not exist"),
        (["expand", str(DIGITS), "OUT", "--recipe", "nosuch"], "unknown recipe"),
        (["expand", str(DIGITS), "OUT", "--val", "-0.5"], "must not be negative"),
        (["expand", str(DIGITS), str(DIGITS / "3")], "inside the source"),
    ],
)
def test_user_errors_are_clean(tmp_path: Path, args: list[str], message: str) -> None:
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_ray_address_without_the_ray_executor_is_a_usage_error(tmp_path: Path) -> None:
    args = ["expand", str(DIGITS), str(tmp_path / "out"), "--ray-address", "127.0.0.1:6379"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--ray-address needs --executor ray" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="Ray is installed")
def test_the_ray_executor_without_ray_says_how_to_install_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["expand", str(DIGITS), str(tmp_path / "out"), "--executor", "ray"]
    )
    assert result.exit_code == 2
    assert "pip install 'augment[ray]'" in result.output
    assert not isinstance(result.exception, ImportError)
    assert not (tmp_path / "out").exists()
