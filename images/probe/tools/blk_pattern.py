#!/usr/bin/env python3
"""The probe's virtio-blk pattern (probe.blk-pattern=1), on the host side.

    blk_pattern.py verify DISK     # exit 0 if DISK holds the pattern throughout
    blk_pattern.py make DISK SIZE  # write the pattern into a new SIZE-byte file

The byte at disk offset o is (o * 31 + o // 512) & 0xff.
"""
import sys

CHUNK = 1 << 20


def pattern(start, length):
    return bytes(((o * 31) + (o >> 9)) & 0xFF for o in range(start, start + length))


def verify(path):
    with open(path, "rb") as f:
        offset = 0
        while True:
            data = f.read(CHUNK)
            if not data:
                break
            want = pattern(offset, len(data))
            if data != want:
                at = next(i for i in range(len(data)) if data[i] != want[i])
                print(f"bad at={offset + at}")
                return 1
            offset += len(data)
    print(f"ok bytes={offset}")
    return 0


def make(path, size):
    with open(path, "wb") as f:
        for offset in range(0, size, CHUNK):
            f.write(pattern(offset, min(CHUNK, size - offset)))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "verify":
        sys.exit(verify(sys.argv[2]))
    if len(sys.argv) == 4 and sys.argv[1] == "make":
        sys.exit(make(sys.argv[2], int(sys.argv[3], 0)))
    sys.exit(__doc__)
