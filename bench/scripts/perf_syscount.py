# perf_syscount.py: `perf script -s` handler counting system calls by number.
#
# The same count as examples/syscount.kp's probe body (counts[syscall] += 1
# and a total), for comparing ktapjit's replay with perf's own Python
# scripting on one recording. It prints syscount.kp's first output line, so
# the two runs can be checked against each other. Runs inside perf's
# embedded interpreter: standard library only.

counts = {}


def raw_syscalls__sys_enter(event_name, context, common_cpu, common_secs, common_nsecs,
                            common_pid, common_comm, common_callchain, id, args,
                            perf_sample_dict=None):
    counts[id] = counts.get(id, 0) + 1


def trace_end():
    print("%d system calls, %d different ones" % (sum(counts.values()), len(counts)))
