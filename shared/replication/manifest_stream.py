"""Read a delta manifest as a stream: memory does not grow with the number of extents.

A whole-disk copy of a 2 TiB disk in 4 MiB extents is a ~100 MB manifest of 524k extents; parsed whole
into pydantic models it costs ~580 MiB, more than a Functions worker should spend on one disk. Here the
document is read from a local file (the activity downloads the blob into an unlinked temp file first)
one value at a time: the header fields whole, the extents one object at a time, each validated on its
own and against the header as it goes by. Nothing but the header, a few running totals and each data
blob's expected size (one entry per blob, not per extent) is kept.

`StreamedManifest.read` makes one validating pass (so a bad manifest is refused before anything is
touched) and `iter_extents()` re-reads the file for each later pass (verify, write). The rules are the
same as `DeltaManifest`'s: `ManifestHeader.extent_problem` is shared by both.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from typing import IO, Any, Final

from pydantic import ValidationError

from shared.domain.cycle import CycleKind
from shared.domain.errors import FieldProblem, ValidationFailed
from shared.replication.delta_manifest import (
    DeltaManifest,
    Extent,
    ManifestHeader,
    ManifestInvalid,
)

READ_SIZE: Final = 1024 * 1024
_WHITESPACE: Final = " \t\n\r"
_EXTENTS_KEY: Final = "extents"


class _Incomplete(Exception):
    """The document ended in the middle of a value."""


class _JsonReader:
    """Pull JSON tokens from a text stream through a buffer of about READ_SIZE characters.

    Values are decoded with the standard library's `raw_decode`; one that straddles the end of the
    buffer is retried after the buffer is refilled, so only the value being decoded (an extent, a header
    field) is ever held beyond the buffer itself.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._json = json.JSONDecoder()
        self._buf = ""
        self._pos = 0
        self._eof = False

    def _fill(self) -> bool:
        if self._eof:
            return False
        data = self._raw.read(READ_SIZE)
        if not data:
            self._eof = True
            tail = self._decoder.decode(b"", final=True)
        else:
            tail = self._decoder.decode(data)
        self._buf = self._buf[self._pos :] + tail
        self._pos = 0
        return True

    def peek(self) -> str:
        """The next non-whitespace character ('' at the end of the document)."""
        while True:
            while self._pos < len(self._buf) and self._buf[self._pos] in _WHITESPACE:
                self._pos += 1
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._fill():
                return ""

    def expect(self, *chars: str) -> str:
        found = self.peek()
        if found not in chars or not found:
            raise _Unexpected(found, chars)
        self._pos += 1
        return found

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                value, end = self._json.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                if self._fill():
                    continue
                if exc.pos >= len(self._buf) - 1:
                    raise _Incomplete from exc
                raise
            # A number at the very end of the buffer may continue in the next read.
            if end == len(self._buf) and not self._eof and isinstance(value, int | float):
                self._fill()
                continue
            self._pos = end
            return value

    def at_end(self) -> bool:
        return self.peek() == ""


class _Unexpected(Exception):
    def __init__(self, found: str, wanted: tuple[str, ...]) -> None:
        super().__init__(f"expected {' or '.join(repr(c) for c in wanted)}, found {found or 'the end'!r}")


def _events(raw: IO[bytes]) -> Iterator[tuple[str, Any]]:
    """("field", (name, value)) for each top-level field but the extents, ("extent", value) for each
    extent, in document order. Raises ManifestInvalid-worthy errors as `_Unexpected`, `_Incomplete`,
    `json.JSONDecodeError`, or ValueError for a structural problem."""
    reader = _JsonReader(raw)
    reader.expect("{")
    seen: set[str] = set()
    if reader.peek() == "}":
        reader.expect("}")
    else:
        while True:
            key = reader.value()
            if not isinstance(key, str):
                raise _Unexpected(str(key)[:1], ('"',))
            if key in seen:
                raise ValueError(f"field {key!r} appears twice")
            seen.add(key)
            reader.expect(":")
            if key == _EXTENTS_KEY:
                reader.expect("[")
                if reader.peek() == "]":
                    reader.expect("]")
                else:
                    while True:
                        yield "extent", reader.value()
                        if reader.expect(",", "]") == "]":
                            break
                yield "field", (key, None)
            else:
                yield "field", (key, reader.value())
            if reader.expect(",", "}") == "}":
                break
    if not reader.at_end():
        raise ValueError("there is more after the manifest's closing '}'")


class StreamedManifest:
    """A validated manifest held as a local file: the header in memory, the extents re-read per pass.

    It quacks like `DeltaManifest` for the apply engine (header fields, `iter_extents()`, `extent_count`,
    `total_bytes`, `referenced_blob_sizes()`), but never holds the extent list.
    """

    def __init__(
        self,
        file: IO[bytes],
        header: ManifestHeader,
        *,
        source: str,
        extent_count: int,
        total_bytes: int,
        blob_sizes: dict[str, int],
    ) -> None:
        self._file = file
        self.header = header
        self.source = source
        self.extent_count = extent_count
        self.total_bytes = total_bytes
        self._blob_sizes = blob_sizes

    @classmethod
    def read(cls, file: IO[bytes], *, source: str = "manifest") -> StreamedManifest:
        """Validate the whole document in one streaming pass; raises ManifestInvalid naming the field.

        `file` must be seekable (later passes re-read it) and stays owned by the result (`close()`)."""
        file.seek(0)
        header_fields: dict[str, Any] = {}
        pending_extents = False
        try:
            for kind, value in _events(file):
                if kind == "field":
                    name, field_value = value
                    if name == _EXTENTS_KEY:
                        pending_extents = True
                    else:
                        header_fields[name] = field_value
                # Extents are checked in the second loop below, once the header is known wherever in the
                # document it was: JSON does not fix the order of fields.
        except (_Unexpected, _Incomplete, json.JSONDecodeError, ValueError) as exc:
            raise ManifestInvalid([_syntax_problem(exc)], source=source) from exc
        problems: list[FieldProblem] = []
        if not pending_extents:
            problems.append(FieldProblem(_EXTENTS_KEY, "Field required"))
        try:
            header = ManifestHeader.model_validate(header_fields)
        except ValidationError as exc:
            problems = ValidationFailed.from_pydantic(exc).problems + problems
            raise ManifestInvalid(problems, source=source) from exc
        if problems:
            raise ManifestInvalid(problems, source=source)
        count = total = 0
        sizes: dict[str, int] = {}
        streamed = cls(file, header, source=source, extent_count=0, total_bytes=0, blob_sizes={})
        for extent in streamed.iter_extents():
            count += 1
            total += extent.length
            sizes[extent.blob] = max(sizes.get(extent.blob, 0), extent.blob_end)
        streamed.extent_count, streamed.total_bytes, streamed._blob_sizes = count, total, sizes
        return streamed

    def iter_extents(self) -> Iterator[Extent]:
        """Every extent in document order, each validated alone and against the header and its predecessor."""
        self._file.seek(0)
        previous_end = 0
        index = 0
        try:
            for kind, value in _events(self._file):
                if kind != "extent":
                    continue
                try:
                    extent = Extent.model_validate(value)
                except ValidationError as exc:
                    problems = ValidationFailed.from_pydantic(exc, prefix=f"extents.{index}").problems
                    raise ManifestInvalid(problems, source=self.source) from exc
                problem = self.header.extent_problem(index, extent, previous_end)
                if problem is not None:
                    raise ManifestInvalid([problem], source=self.source)
                previous_end = extent.end
                index += 1
                yield extent
        except (_Unexpected, _Incomplete, json.JSONDecodeError) as exc:
            raise ManifestInvalid([_syntax_problem(exc)], source=self.source) from exc
        except ValueError as exc:  # structural: a repeated field, trailing data
            raise ManifestInvalid([_syntax_problem(exc)], source=self.source) from exc

    def referenced_blob_sizes(self) -> dict[str, int]:
        return dict(self._blob_sizes)

    def to_manifest(self) -> DeltaManifest:
        """The whole manifest in memory: for tests and small documents only."""
        return DeltaManifest.model_validate(
            {**self.header.model_dump(by_alias=True), "extents": list(self.iter_extents())}
        )

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> StreamedManifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The header's fields, so the engine reads a streamed manifest like an in-memory one.
    @property
    def machine_id(self) -> str:
        return self.header.machine_id

    @property
    def disk_id(self) -> str:
        return self.header.disk_id

    @property
    def cycle_id(self) -> str:
        return self.header.cycle_id

    @property
    def sequence(self) -> int:
        return self.header.sequence

    @property
    def kind(self) -> CycleKind:
        return self.header.kind

    @property
    def disk_size(self) -> int:
        return self.header.disk_size

    @property
    def blob_name(self) -> str:
        return self.header.blob_name

    @property
    def describes_whole_disk(self) -> bool:
        return self.header.describes_whole_disk


def _syntax_problem(exc: Exception) -> FieldProblem:
    if isinstance(exc, _Incomplete):
        return FieldProblem(
            "(manifest)", "the document ends in the middle of a value: the upload was cut short"
        )
    if isinstance(exc, json.JSONDecodeError):
        return FieldProblem("(manifest)", f"is not valid JSON: {exc.msg}")
    return FieldProblem("(manifest)", f"is not a valid manifest document: {exc}")
