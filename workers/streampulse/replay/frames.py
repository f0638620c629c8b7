"""Websocket frames encoded once per event, so serving is writing bytes that already exist.

Server-to-client frames are not masked, so a whole frame (header and payload) can be built once
and written straight to the transport. With compression, each event is one zstd frame made with
the shared Jetstream dictionary, content size included, sent as a binary message. Cycle 0 is
encoded (and compressed, given a dictionary) at startup; loop cycles are rendered lazily, a
batch at a time, on the event loop (no thread fighting the sender for the GIL), and shared by
every connection.
"""

from __future__ import annotations

import asyncio
import logging
import struct

import zstandard

from streampulse.replay.streams import Stream

log = logging.getLogger(__name__)

ZSTD_LEVEL = 3  # zstd's default level, as Jetstream's encoder uses
KEPT_CYCLES = 3  # loop cycles kept encoded; older ones are rebuilt if a slow client needs them


def ws_frame(payload: bytes, *, text: bool) -> bytes:
    """One unfragmented, unmasked websocket data frame (FIN set)."""
    first = 0x81 if text else 0x82
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", first, 126, size) + payload
    return struct.pack("!BBQ", first, 127, size) + payload


class Compressor:
    """zstd with the shared dictionary; one per thread (zstandard objects are not shared)."""

    def __init__(self, dictionary: bytes) -> None:
        self._zstd = zstandard.ZstdCompressor(
            level=ZSTD_LEVEL,
            dict_data=zstandard.ZstdCompressionDict(dictionary),
            write_content_size=True,
        )

    def compress(self, payload: bytes) -> bytes:
        return bytes(self._zstd.compress(payload))


class EncodedCycle:
    """One loop cycle of the stream, column by column; frames filled in on demand."""

    def __init__(self, stream: Stream, number: int, compressor: Compressor | None) -> None:
        self.number = number
        self.offset_us = number * stream.period_us
        self.base_times = stream.times
        self.dids = [e.did for e in stream.events]
        self.collections = [e.collection for e in stream.events]
        self.sizes = [len(e.raw) for e in stream.events]  # what maxMessageSizeBytes limits
        self.frames: list[bytes | None] = [None] * len(stream.events)
        self._render = stream.renderer(number)
        self._compressor = compressor
        self._filled_to = 0  # every frame before this index exists

    def __len__(self) -> int:
        return len(self.frames)

    def time_us(self, index: int) -> int:
        return self.base_times[index] + self.offset_us

    def fill(self, start: int, stop: int) -> None:
        """Make sure frames ``start:stop`` exist."""
        if stop <= self._filled_to:
            return
        frames, render, compressor = self.frames, self._render, self._compressor
        for index in range(start, stop):
            if frames[index] is not None:
                continue
            raw = render(index)
            self.sizes[index] = len(raw)
            if compressor is None:
                frames[index] = ws_frame(raw, text=True)
            else:
                frames[index] = ws_frame(compressor.compress(raw), text=False)
        if start <= self._filled_to:
            self._filled_to = max(self._filled_to, stop)


class FrameStore:
    """Encoded cycles shared by every connection."""

    def __init__(self, stream: Stream, dictionary: bytes | None) -> None:
        self.stream = stream
        self.dictionary = dictionary
        self._cycles: dict[tuple[int, bool], EncodedCycle] = {}
        self._compressor = self.compressor() if dictionary is not None else None

    def cycle(self, number: int, *, compressed: bool) -> EncodedCycle:
        """Cycle ``number``, as text frames or as compressed binary frames."""
        key = (number, compressed)
        cycle = self._cycles.get(key)
        if cycle is None:
            if compressed and self._compressor is None:
                raise ValueError("compression needs the zstd dictionary")
            cycle = EncodedCycle(self.stream, number, self._compressor if compressed else None)
            self._cycles[key] = cycle
            for old in [k for k in self._cycles if 0 < k[0] <= number - KEPT_CYCLES]:
                del self._cycles[old]
        return cycle

    def warm(self) -> None:
        """Encode cycle 0 as text frames now, before the first connection."""
        self.cycle(0, compressed=False).fill(0, len(self.stream.events))

    async def warm_compressed(self) -> None:
        """Compress cycle 0 off the event loop, with a compressor of its own."""
        if self.dictionary is None:
            return
        in_thread = EncodedCycle(self.stream, 0, self.compressor())
        await asyncio.to_thread(in_thread.fill, 0, len(in_thread))
        compressed = self.cycle(0, compressed=True)
        compressed.frames[:] = in_thread.frames  # same bytes as any compressed on demand
        compressed.fill(0, len(compressed))
        log.debug("compressed cycle 0: %d events", len(compressed))

    def compressor(self) -> Compressor:
        """A compressor with the shared dictionary."""
        if self.dictionary is None:
            raise ValueError("compression needs the zstd dictionary")
        return Compressor(self.dictionary)
