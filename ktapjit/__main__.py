"""`python -m ktapjit` is the `ktapjit` command."""

from ktapjit.cli import entry

entry()
