"""A job's reports on their way to the server, first in, first out: held in memory up to a bound,
and beyond it in a file of the job's own (0600, in the runner's directory, removed with the job),
within a disk budget. Whatever a step prints, the runner's memory stays flat; what a server
away for minutes cannot take waits on disk.

Records in memory are always older than those on disk: once one record went to the file, every
later one follows it there until the file is read to its end (then it is emptied and memory is
used again). Not thread-safe: its owner (``runner.delivery``) holds a lock.
"""

from __future__ import annotations

import collections
import os
import struct
from pathlib import Path

_LENGTH = struct.Struct(">I")
# Room beyond the disk budget for the runner's own short records (a step's end, a notice that
# output was lost), so the log can still say what happened when the budget is spent.
RESERVE_BYTES = 256 * 1024


class SpoolFull(Exception):
    """The record does not fit in the spool's disk budget."""


class Spool:
    def __init__(self, path: Path, memory_bytes: int, disk_bytes: int) -> None:
        self.path = path
        self.memory_bytes = memory_bytes
        self.disk_bytes = disk_bytes
        self._memory: collections.deque[bytes] = collections.deque()
        self._in_memory = 0
        self._fd: int | None = None
        self._read_at = 0  # offset of the oldest record on disk
        self._write_at = 0  # end of the newest
        self._head: bytes | None = None  # the oldest record on disk, once read

    def __len__(self) -> int:
        """Bytes waiting, in memory and on disk."""
        return self._in_memory + self._write_at - self._read_at

    @property
    def in_memory(self) -> int:
        return self._in_memory

    @property
    def on_disk(self) -> int:
        return self._write_at - self._read_at

    def put(self, record: bytes, *, reserve: bool = False) -> None:
        """Append ``record``; ``reserve``: a short record of the runner's own, which may use the
        room kept beyond the disk budget. Raises ``SpoolFull``, or ``OSError`` (disk error)."""
        if self._write_at == self._read_at and (
            self._in_memory + len(record) <= self.memory_bytes or not self._memory
        ):
            self._memory.append(record)
            self._in_memory += len(record)
            return
        budget = self.disk_bytes + (RESERVE_BYTES if reserve else 0)
        if self.on_disk + _LENGTH.size + len(record) > budget:
            raise SpoolFull(f"the spool of {self.path.name} holds {self.on_disk:,} bytes already")
        if self._fd is None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        data = _LENGTH.pack(len(record)) + record
        written = os.pwrite(self._fd, data, self._write_at)
        if written != len(data):
            raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
        self._write_at += len(data)

    def peek(self) -> bytes | None:
        """The oldest record, or None when nothing waits."""
        if self._memory:
            return self._memory[0]
        if self._write_at == self._read_at:
            return None
        if self._head is None:
            assert self._fd is not None
            (length,) = _LENGTH.unpack(os.pread(self._fd, _LENGTH.size, self._read_at))
            self._head = os.pread(self._fd, length, self._read_at + _LENGTH.size)
            if len(self._head) != length:
                raise OSError(f"{self.path} ends inside a record")
        return self._head

    def pop(self) -> None:
        """Forget the oldest record (it was delivered, or given up)."""
        if self._memory:
            self._in_memory -= len(self._memory.popleft())
            return
        record = self.peek()
        if record is None:
            return
        self._read_at += _LENGTH.size + len(record)
        self._head = None
        if self._read_at == self._write_at and self._fd is not None:
            # Read to its end: empty the file, and use memory again.
            os.ftruncate(self._fd, 0)
            self._read_at = self._write_at = 0

    def close(self) -> None:
        """Drop everything and remove the file."""
        self._memory.clear()
        self._in_memory = 0
        self._head = None
        self._read_at = self._write_at = 0
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)
