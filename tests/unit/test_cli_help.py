"""Every `gesture-maze` subcommand prints its help and exits 0 (argparse formats help text with
%-placeholders: a stray percent sign in an option's help crashes `--help` for the whole command)."""

from __future__ import annotations

import pytest

from stream.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_prints_its_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--help" in out
