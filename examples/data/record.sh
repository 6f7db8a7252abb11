#!/bin/sh
# Records examples/data/demo.data: run from the repository root, as root.
# See README.md for why each option is there.
set -e
WORKLOAD_COMMS='comm == "sh" || comm == "ls" || comm == "cat" || comm == "dd" || comm == "sleep"'
perf record -a --synth=task --no-buildid -o examples/data/demo.data \
	-e raw_syscalls:sys_enter --filter "$WORKLOAD_COMMS" \
	-e raw_syscalls:sys_exit --filter "$WORKLOAD_COMMS" \
	-e sched:sched_switch -e sched:sched_wakeup -e sched:sched_process_exec \
	-- taskset -c 0 sh examples/data/workload.sh
chmod 644 examples/data/demo.data
