"""perf's record stream: the bytes live rings and perf.data files both hold.

- ``perf_abi.py``: the kernel's perf_event ABI (attr, record types, ioctls).
- ``perf_ring.py``: opening events and reading their mmap rings, live.
- ``decode.py``: the one decoder, bytes -> one dataclass a record.
- ``merge.py``: the order records are delivered in (by time, per round).
- ``perfdata.py``: reading and writing perf.data files.
- ``companion.py``: the payload of companion records (memory a BPF program
  read when a tracepoint fired, carried as bpf-output samples).

May import: ktapjit.events (errors, tracefs and the schema of a format).
"""
