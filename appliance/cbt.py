"""VMware-style changed block tracking (CBT) over a raw disk image.

Writes made through the tracker go to the image and set bits in a per-block bitmap. As with
VMware's QueryChangedDiskAreas, a caller asks for the areas changed since a *change id* it got at
the end of the previous cycle; `"*"` asks for every area holding data (the initial copy).

The bitmap is persisted beside the image (`<image>.ctk.json`, like VMware's `-ctk.vmdk`) when the
tracker is flushed or closed. Like CBT after an unclean shutdown, a tracker that cannot vouch for
its bitmap (state file missing or unreadable, image changed outside the tracker, different tracker
instance) raises ChangeTrackingReset: the catalog's "An error occurred while trying to fetch changed
blocks"; the caller resyncs (hash diff or full copy) and the control plane records the event.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
import zlib
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from appliance.blocks import (
    DEFAULT_BLOCK_SIZE,
    SECTOR,
    ImageFile,
    Range,
    block_ranges,
    check_aligned,
    nonzero_ranges,
)

ALL_AREAS: Final = "*"
_STATE_VERSION: Final = 1


class ChangeTrackingReset(RuntimeError):
    """Changed block tracking cannot answer for this change id; a resync is needed."""


def state_path_for(image: Path) -> Path:
    return image.with_name(image.name + ".ctk.json")


class ChangedBlockTracker:
    """Records which blocks of a disk image were written through it since the last change id."""

    def __init__(
        self,
        image: ImageFile,
        *,
        tracker_id: str,
        epoch: int,
        block_size: int,
        bitmap: bytearray,
        state_path: Path,
    ) -> None:
        self.image = image
        self.tracker_id = tracker_id
        self.epoch = epoch
        self.block_size = block_size
        self._bitmap = bitmap
        self._state_path = state_path
        self._dirty = False

    # -- lifecycle

    @classmethod
    def enable(cls, image_path: Path, *, block_size: int = DEFAULT_BLOCK_SIZE) -> ChangedBlockTracker:
        """Start tracking a disk (VMware: enable CBT). Any earlier tracking state is discarded."""
        if block_size % SECTOR:
            raise ValueError("block_size must be a multiple of 512")
        image = ImageFile(image_path, writable=True)
        blocks = -(-image.size // block_size)
        tracker = cls(
            image,
            tracker_id=str(uuid.uuid4()),
            epoch=1,
            block_size=block_size,
            bitmap=bytearray(-(-blocks // 8)),
            state_path=state_path_for(Path(image_path)),
        )
        tracker.flush(force=True)
        return tracker

    @classmethod
    def open(cls, image_path: Path) -> ChangedBlockTracker:
        """Reopen tracking; raises ChangeTrackingReset when the persisted state cannot be trusted."""
        path = state_path_for(Path(image_path))
        try:
            state = json.loads(path.read_text())
            if state["version"] != _STATE_VERSION:
                raise ValueError(f"state version {state['version']}")
            bitmap = bytearray(zlib.decompress(base64.b64decode(state["bitmap"])))
        except (OSError, ValueError, KeyError, zlib.error) as exc:
            raise ChangeTrackingReset(
                f"changed block tracking state for {image_path} is unusable: {exc}"
            ) from exc
        image = ImageFile(image_path, writable=True)
        st = os.fstat(image.fd)
        if st.st_size != state["imageSize"] or st.st_mtime_ns != state["imageMtimeNs"]:
            image.close()
            raise ChangeTrackingReset(
                f"{image_path} changed since its tracking state was saved (unclean shutdown or untracked writes)"
            )
        return cls(
            image,
            tracker_id=state["trackerId"],
            epoch=state["epoch"],
            block_size=state["blockSize"],
            bitmap=bitmap,
            state_path=path,
        )

    def flush(self, *, force: bool = False) -> None:
        if not (self._dirty or force):
            return
        os.fsync(self.image.fd)
        st = os.fstat(self.image.fd)
        state = {
            "version": _STATE_VERSION,
            "trackerId": self.tracker_id,
            "epoch": self.epoch,
            "blockSize": self.block_size,
            "imageSize": st.st_size,
            "imageMtimeNs": st.st_mtime_ns,
            "bitmap": base64.b64encode(zlib.compress(bytes(self._bitmap))).decode(),
        }
        tmp = self._state_path.with_name(self._state_path.name + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self._state_path)  # atomic: a crash leaves the old state or the new, never half
        self._dirty = False

    def close(self) -> None:
        self.flush()
        self.image.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the guest's writes

    def write(self, offset: int, data: bytes) -> None:
        check_aligned(offset, len(data))
        self.image.write(offset, data)
        first = offset // self.block_size
        last = (offset + len(data) - 1) // self.block_size
        for block in range(first, last + 1):
            self._bitmap[block >> 3] |= 1 << (block & 7)
        self._dirty = True

    # -- queries

    @property
    def change_id(self) -> str:
        """Identifies "now": pass it to changed_areas() next cycle."""
        return f"{self.tracker_id}/{self.epoch}"

    def changed_areas(self, since: str) -> list[Range]:
        """Areas written since `since` (a change id from this tracker), or all data areas for "*"."""
        if since == ALL_AREAS:
            return nonzero_ranges(self.image, block_size=self.block_size)
        if since != self.change_id:
            raise ChangeTrackingReset(
                f"change id {since!r} is not this disk's current one ({self.change_id!r}): "
                "tracking was reset or a cycle was lost"
            )
        return block_ranges(self._changed_blocks(), self.block_size, self.image.size)

    def _changed_blocks(self) -> list[int]:
        blocks: list[int] = []
        for byte_index, byte in enumerate(self._bitmap):
            if byte:
                base = byte_index << 3
                blocks.extend(base + bit for bit in range(8) if byte >> bit & 1)
        return blocks

    def next_epoch(self) -> str:
        """The cycle's data is safely uploaded: start a new epoch and return its change id."""
        self._bitmap[:] = bytes(len(self._bitmap))
        self.epoch += 1
        self._dirty = True
        self.flush()
        return self.change_id
