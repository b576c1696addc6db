"""Inside a guestvm guest: the longest wait between back-to-back O_DIRECT writes.

Writes 4 KiB blocks with O_DIRECT|O_DSYNC, one after the other, over a file it
preallocated on the guest's /run/data (so no write allocates or journals), for
SECONDS after it made FILE.started, and prints one JSON line: the number of writes, the median and the
longest write (ms), and when the longest one started (s after the first). A live
snapshot of the disk shows as the longest write: the guest's I/O waits for it.

    python3 stall_probe.py SECONDS [FILE]
"""

import json
import mmap
import os
import sys
import time

BLOCK = 4096
SPAN = 64 * 1024 * 1024


def main() -> None:
    seconds = float(sys.argv[1])
    path = sys.argv[2] if len(sys.argv) > 2 else "/run/data/stall_probe.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.posix_fallocate(fd, 0, SPAN)
    os.fsync(fd)
    os.close(fd)
    fd = os.open(path, os.O_RDWR | os.O_DIRECT | os.O_DSYNC)
    buf = mmap.mmap(-1, BLOCK)
    buf.write(b"\xa5" * BLOCK)
    blocks = SPAN // BLOCK
    os.pwritev(fd, [buf], 0)
    with open(path + ".started", "w"):  # the host waits for this before it snapshots
        pass
    durations = []
    starts = []
    first = time.monotonic()
    end = first + seconds
    i = 0
    while True:
        t = time.monotonic()
        if t >= end:
            break
        os.pwritev(fd, [buf], (i % blocks) * BLOCK)
        durations.append(time.monotonic() - t)
        starts.append(t - first)
        i += 1
    os.close(fd)
    longest = max(range(len(durations)), key=durations.__getitem__)
    ordered = sorted(durations)
    print(
        json.dumps(
            {
                "writes": len(durations),
                "median_ms": ordered[len(ordered) // 2] * 1000,
                "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
                "max_ms": durations[longest] * 1000,
                "max_at_s": starts[longest],
            }
        )
    )


main()
