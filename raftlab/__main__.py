"""``python -m raftlab`` is the ``raftlab`` command."""

from raftlab.cli import main

main()
