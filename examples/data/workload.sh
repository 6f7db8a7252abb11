#!/bin/sh
# The demo workload recorded in demo.data (see README.md): about half a
# second of small, ordinary commands. Every run does the same work.
for i in 1 2; do
	ls / > /dev/null
	cat /etc/passwd > /dev/null
	dd if=/dev/zero of=/dev/null bs=4096 count=16 2> /dev/null
	sleep 0.2
done
