"""Every `vsc` command and option explains itself, and shell completion works as the README documents it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click

from tests.conftest import run_vsc
from vsc_provider.cli import main


def _missing_help(cmd: click.Command, path: list[str], ctx: click.Context) -> list[str]:
    missing = [] if (cmd.help or cmd.short_help) else [" ".join(path)]
    missing += [
        f"{' '.join(path)} {p.opts[0]}"
        for p in cmd.params
        if isinstance(p, click.Option) and not p.hidden and not p.help
    ]
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None, name
            missing += _missing_help(sub, [*path, name], click.Context(sub, parent=ctx, info_name=name))
    return missing


def test_every_command_and_option_has_help():
    assert _missing_help(main, ["vsc"], click.Context(main, info_name="vsc")) == []


def test_pin_change_help_says_what_it_does():
    out = run_vsc("pin", "change", "--help").stdout
    assert "Change the user PIN" in out and re.search(r"--old TEXT +current user PIN", out)


def _complete(words: str) -> list[str]:
    """What bash completion offers for `words` (click's protocol, as `eval "$(_VSC_COMPLETE=bash_source vsc)"`
    installs it); the program name decides the variable, so the entry point runs under the name `vsc`."""
    code = "import sys; from vsc_provider.cli import main; sys.exit(main(prog_name='vsc'))"
    env = {
        **os.environ,
        "_VSC_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - 1),
    }
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_bash_completion_lists_subcommands_and_options():
    assert "plain,self-sign" in _complete("vsc cert s")
    assert "plain,--no-key-ok" in _complete("vsc cert import --n")
    vsc = str(Path(sys.executable).parent / "vsc")  # the console script, named as users type it
    for shell in ("bash", "zsh", "fish"):
        script = subprocess.run(
            [vsc], capture_output=True, text=True, env={**os.environ, "_VSC_COMPLETE": f"{shell}_source"}, timeout=60
        ).stdout
        assert "_VSC_COMPLETE=" in script and "vsc" in script, shell
