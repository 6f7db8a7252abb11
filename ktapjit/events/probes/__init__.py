"""Probes on user code: where a probe can go, creating it, and naming what
it hit.

- ``elf.py``: reading ELF files (symbols, segments, USDT notes).
- ``probe_targets.py``: the file a probe target names (``libc``, ``bash``).
- ``dynamic_probes.py``: uprobe and USDT events made through tracefs, and
  taken down on every exit path.
- ``probe_sites.py``: the site table of one event that stands for many
  probed functions (a glob).
- ``symbolize.py``: addresses back to symbols, kernel and user.

May import: ktapjit.events (errors, tracefs, schema), ktapjit.events.records
(opening a probe's event, trial opens).
"""
