"""One single-producer/single-consumer ring of opaque frames laid out in a byte buffer.

Sans-I/O: the ring only reads and writes the buffer it is given (a
`bytearray` in tests, a `multiprocessing.shared_memory` mapping in
`transport.shm`); it never sleeps, signals or looks at processes. The shell
decides when to wait and whom to wake, using the `*_waiting` words here.

Layout (little-endian, offsets in bytes, every word 8-byte aligned)::

    0    magic b"RVEDGRNG"        56   reader state (0 new, 1 open, 2 closed)
    8    version u32              64   tail: bytes ever written   (writer's cache line)
    12   header size u32          72   writer waiting for space (0/1)
    16   capacity u64             128  head: bytes ever read      (reader's cache line)
    24   max frame u64            136  reader waiting for data (0/1)
    32   writer pid u64           256  data area, `capacity` bytes
    40   reader pid u64
    48   writer state (0 new, 1 open, 2 closed)

A record is a u32 length, its bitwise complement (a cheap guard against a
corrupt or foreign segment) and the payload, padded to 8 bytes; it may wrap
around the end of the data area. Head and tail only grow, so `tail - head` is
the number of bytes in flight and full/empty are never ambiguous.

Why this is safe without atomics. Python has no atomic types or fences, so
the protocol relies on three facts. (1) Only one process ever stores each
word: the writer stores the data and `tail`, the reader stores `head`. (2) A
word is stored through a memoryview cast to ``'Q'``, which CPython performs as
a memcpy of a constant 8 bytes, compiled to one aligned 8-byte move; on
x86-64 such a move is atomic, so the peer never sees a torn position. (3) The
writer copies the payload *before* it stores `tail`, and the reader copies the
payload out *before* it stores `head`; x86-64 (TSO) never makes a store
visible before an earlier store, and never reorders loads with loads or a
load with a later store, so a reader that sees a new `tail` sees the bytes
behind it, and a writer that sees a new `head` may overwrite what was behind
it. The one reordering TSO allows — a later load passing an earlier store —
matters only for the sleep/wake handshake, and the shell puts a full fence
there. On weaker memory models (ARM) point (3) needs fences too; this ring
targets x86-64 hosts.
"""

from __future__ import annotations

import struct

from ..errors import MalformedMessage, OversizedMessage

MAGIC = b"RVEDGRNG"
VERSION = 1
HEADER_SIZE = 256
RECORD_HEADER = 8
NEW, OPEN, CLOSED = 0, 1, 2

# Header words by byte offset, as indexes into the header cast to 8-byte words. Tail and head sit
# on separate 64-byte cache lines so the two processes do not invalidate each other's line.
_CAPACITY, _MAX_FRAME = 16 // 8, 24 // 8
_WRITER_PID, _READER_PID = 32 // 8, 40 // 8
_WRITER_STATE, _READER_STATE = 48 // 8, 56 // 8
_TAIL, _WRITER_WAITING = 64 // 8, 72 // 8
_HEAD, _READER_WAITING = 128 // 8, 136 // 8

_PREFIX = struct.Struct("<8sII")
_RECORD = struct.Struct("<II")
_MASK32 = 0xFFFFFFFF


def record_size(length: int) -> int:
    """Bytes a frame of `length` bytes occupies in the ring, header and padding included."""
    return (RECORD_HEADER + length + 7) & ~7


def region_size(capacity: int) -> int:
    """Bytes of buffer a ring with this data capacity needs."""
    return HEADER_SIZE + capacity


class Ring:
    """A view of one ring inside `buf`; both ends may use the same class, each calls its own half."""

    def __init__(self, buf: memoryview | bytearray, offset: int = 0) -> None:
        """The ring whose header starts at `offset` in `buf`; a bad header raises MalformedMessage."""
        with memoryview(buf) as whole:
            view = whole[offset:]
        try:
            words = _check_header(view)
        except MalformedMessage:
            view.release()  # a view left behind would keep a shared-memory mapping from closing
            raise
        capacity, max_frame = words[_CAPACITY], words[_MAX_FRAME]
        self.capacity: int = capacity
        self.max_frame: int = max_frame
        self._view = view
        self._words = words
        self._data = view[HEADER_SIZE:HEADER_SIZE + capacity]

    @classmethod
    def format(cls, buf: memoryview | bytearray, capacity: int, max_frame: int, offset: int = 0) -> Ring:
        """Write a fresh, empty header at `offset` in `buf` and return the ring over it."""
        if not valid_geometry(capacity, max_frame):
            raise ValueError(f"capacity {capacity} must be a positive multiple of 8 holding one "
                             f"record of max_frame {max_frame} (needs {record_size(max_frame)})")
        with memoryview(buf) as whole:
            if whole.nbytes - offset < region_size(capacity):
                raise ValueError(f"buffer of {whole.nbytes} bytes cannot hold a ring of capacity "
                                 f"{capacity} at offset {offset}")
            with whole[offset:offset + HEADER_SIZE] as header, header.cast("Q") as words:
                header[:] = bytes(HEADER_SIZE)
                words[_CAPACITY] = capacity
                words[_MAX_FRAME] = max_frame
                # The magic goes last: a half-formatted header is rejected, never half-trusted.
                _PREFIX.pack_into(header, 0, MAGIC, VERSION, HEADER_SIZE)
        return cls(buf, offset)

    def release(self) -> None:
        """Drop every view of the buffer, so a shared-memory mapping under it can be closed."""
        self._data.release()
        self._words.release()
        self._view.release()

    # Writer half -----------------------------------------------------------------
    def try_write(self, frame: bytes | bytearray | memoryview) -> bool:
        """Append one frame; False when there is no room yet. Nothing is partly written."""
        payload = memoryview(frame).cast("B") if not isinstance(frame, bytes) else frame
        length = len(payload)
        if length > self.max_frame:
            raise OversizedMessage(f"frame of {length} bytes exceeds the ring's max frame {self.max_frame}")
        words = self._words
        tail = words[_TAIL]
        used = tail - words[_HEAD]
        cap = self.capacity
        if used < 0 or used > cap:
            raise MalformedMessage(f"ring positions are inconsistent (tail={tail}, {used} bytes in flight)")
        need = record_size(length)
        if cap - used < need:
            return False
        pos = tail % cap
        _RECORD.pack_into(self._data, pos, length, length ^ _MASK32)
        self._copy_in((pos + RECORD_HEADER) % cap, payload)
        words[_TAIL] = tail + need
        return True

    def free(self) -> int:
        """Bytes the writer could use right now (a frame needs `record_size(len)` of them)."""
        return self.capacity - (self._words[_TAIL] - self._words[_HEAD])

    # Reader half -----------------------------------------------------------------
    def try_read(self) -> bytes | None:
        """Take the oldest frame, or None when the ring is empty; a corrupt ring raises MalformedMessage."""
        words = self._words
        head = words[_HEAD]
        used = words[_TAIL] - head
        if used == 0:
            return None
        cap = self.capacity
        if used < 0 or used > cap or used % 8:
            raise MalformedMessage(f"ring positions are inconsistent (head={head}, {used} bytes in flight)")
        pos = head % cap
        length, check = _RECORD.unpack_from(self._data, pos)
        if check != length ^ _MASK32 or length > self.max_frame or record_size(length) > used:
            raise MalformedMessage(f"corrupt record header at {pos}: length {length}, {used} bytes in flight")
        frame = self._copy_out((pos + RECORD_HEADER) % cap, length)
        words[_HEAD] = head + record_size(length)
        return frame

    def pending(self) -> int:
        """Bytes written but not yet read."""
        return self._words[_TAIL] - self._words[_HEAD]

    # Words the shell uses to sleep, wake and tell who is on each end --------------
    @property
    def reader_waiting(self) -> bool:
        return bool(self._words[_READER_WAITING])

    @reader_waiting.setter
    def reader_waiting(self, value: bool) -> None:
        self._words[_READER_WAITING] = int(value)

    @property
    def writer_waiting(self) -> bool:
        return bool(self._words[_WRITER_WAITING])

    @writer_waiting.setter
    def writer_waiting(self, value: bool) -> None:
        self._words[_WRITER_WAITING] = int(value)

    @property
    def writer_pid(self) -> int:
        return self._words[_WRITER_PID]

    @writer_pid.setter
    def writer_pid(self, pid: int) -> None:
        self._words[_WRITER_PID] = pid

    @property
    def reader_pid(self) -> int:
        return self._words[_READER_PID]

    @reader_pid.setter
    def reader_pid(self, pid: int) -> None:
        self._words[_READER_PID] = pid

    @property
    def writer_state(self) -> int:
        return self._words[_WRITER_STATE]

    @writer_state.setter
    def writer_state(self, state: int) -> None:
        self._words[_WRITER_STATE] = state

    @property
    def reader_state(self) -> int:
        return self._words[_READER_STATE]

    @reader_state.setter
    def reader_state(self, state: int) -> None:
        self._words[_READER_STATE] = state

    # Copies that may wrap around the end of the data area ---------------------------
    def _copy_in(self, pos: int, payload: bytes | memoryview) -> None:
        first = min(len(payload), self.capacity - pos)
        self._data[pos:pos + first] = payload[:first]
        if first < len(payload):
            self._data[:len(payload) - first] = payload[first:]

    def _copy_out(self, pos: int, length: int) -> bytes:
        end = pos + length
        if end <= self.capacity:
            return bytes(self._data[pos:end])
        return bytes(self._data[pos:]) + bytes(self._data[:end - self.capacity])


def _check_header(view: memoryview) -> memoryview:
    if view.nbytes < HEADER_SIZE:
        raise MalformedMessage(f"ring buffer of {view.nbytes} bytes is smaller than its header")
    magic, version, header_size = _PREFIX.unpack_from(view, 0)
    if magic != MAGIC:
        raise MalformedMessage(f"bad ring magic {magic!r}")
    if version != VERSION or header_size != HEADER_SIZE:
        raise MalformedMessage(f"unsupported ring version {version} / header size {header_size}")
    words = view[:HEADER_SIZE].cast("Q")
    capacity, max_frame = words[_CAPACITY], words[_MAX_FRAME]
    if not valid_geometry(capacity, max_frame) or region_size(capacity) > view.nbytes:
        words.release()
        raise MalformedMessage(f"ring geometry capacity={capacity} max_frame={max_frame} "
                               f"does not fit a {view.nbytes}-byte buffer")
    return words


def valid_geometry(capacity: int, max_frame: int) -> bool:
    """Capacity a positive multiple of 8 that holds at least one record of `max_frame` bytes."""
    return 0 < capacity and capacity % 8 == 0 and 0 <= max_frame < 2**32 and record_size(max_frame) <= capacity
