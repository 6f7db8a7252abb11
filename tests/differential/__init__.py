"""Differential fuzzing: random well-formed scripts on random event streams,
run under two engines that must agree byte for byte.

* ``scripts``     hypothesis strategies for ktap source text;
* ``streams``     hypothesis strategies for synthetic perf.data recordings;
* ``harness``     running an engine in-process and describing disagreements;
* ``regressions`` minimised disagreements, replayed by the test suite.
"""
