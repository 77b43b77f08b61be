"""The ``raftlab`` command: one click group whose subcommands load only when used.

Each subcommand lives with the part it drives (``raftlab/commands/*.py`` for the harness,
``impl/cli.py`` for the standalone node), so ``raftlab check`` never imports asyncio labs and
``raftlab node`` never imports the checker. The table below is the whole command list.
"""

from __future__ import annotations

import importlib
import sys

import click

from raftlab import __version__

# name -> "module:attribute" of a click command or group
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("raftlab.commands.check:check", "Check histories for linearizability."),
    "run": ("raftlab.commands.run:run", "Run a nemesis campaign against a cluster."),
    "replay": ("raftlab.commands.run:replay", "Re-run a stored campaign with its seed."),
    "report": ("raftlab.commands.report:report", "Rebuild a stored run's report."),
    "serve": ("raftlab.commands.serve:serve", "Browse stored runs and their reports in a web browser."),
    "lab": ("raftlab.commands.lab:lab", "Create, inspect and destroy labs."),
    "sim": ("raftlab.commands.sim:sim", "Simulate a Raft cluster deterministically."),
    "system": ("raftlab.commands.system:system", "Check a system module's capabilities before a campaign."),
    "mutate": ("raftlab.commands.mutate:mutate", "Seed known bugs into the reference node; score what is caught."),
    "node": ("raftlab.impl.cli:node", "Run or inspect a reference Raft + DtKV node."),
    "kv": ("raftlab.impl.cli:kv", "Talk to a DtKV cluster."),
    "admin": ("raftlab.impl.admin:admin", "Change a cluster's membership, move its leader, show its configuration."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target[0].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and module_name.startswith(e.name):
                raise click.ClickException(f"'{cmd_name}' is not available in this build ({e})") from None
            raise
        command = getattr(module, attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="raftlab")
def cli() -> None:
    """raftlab: break a distributed system on purpose, and prove whether it stayed linearizable.

    Exit codes everywhere: 0 valid, 1 a violation found, 2 bad input or usage, 3 unknown.
    """


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
