#!/usr/bin/env python3
"""The disk's own floor for a durable answer: fdatasync latency of 4 KiB writes.

    python3 benches/fsync_probe.py DIR [COUNT]

Writes COUNT (default 500) 4 KiB blocks into a file in DIR, each followed by fdatasync, and
prints p50/p99/max of the fdatasync alone. A decision answered after its group commit
cannot be faster at one request in flight than this sync, so benches/grpc.sh prints it
beside the 1-in-flight figures.
"""
import os
import sys
import time

directory = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 500
path = os.path.join(directory, "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
try:
    latencies = []
    for i in range(count):
        os.pwrite(fd, os.urandom(4096), (i % 256) * 4096)
        started = time.perf_counter()
        os.fdatasync(fd)
        latencies.append((time.perf_counter() - started) * 1000)
finally:
    os.close(fd)
    os.remove(path)
latencies.sort()
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
print(f"fdatasync of 4 KiB ({count} syncs): p50 {pick(0.5):.2f} ms, "
      f"p99 {pick(0.99):.2f} ms, max {latencies[-1]:.2f} ms")
