"""A replica brought to a managed-disk snapshot's content (after a committed failback to on-premises: the
replica becomes the final reverse snapshot, the data the on-premises disks held before power-on, so that
a reprotect to Azure sends only what changed on-premises since).

Only the snapshot's written page ranges are copied and the replica's other data ranges are cleared; the
replica's fixed-VHD footer is left as it is. The copy is server side with Put Page From URL where the
replica's endpoint implements it (probed once, as the apply engine does); otherwise each <= 4 MiB range
is read from the snapshot's SAS and written with Put Page (the data passes through the worker: Azurite).
Idempotent: running it again writes the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from azure.storage.blob import BlobClient
from pydantic import BaseModel, ConfigDict

from shared.replication import apply_engine
from shared.replication.vhd import FOOTER_SIZE

# Put Page's largest write.
COPY_UNIT: Final = 4 * 1024 * 1024


class CopyTotals(BaseModel):
    model_config = ConfigDict(frozen=True)

    bytes_copied: int = 0
    bytes_cleared: int = 0
    from_url: bool = False


def _ranges(blob: BlobClient, length: int) -> list[tuple[int, int]]:
    """The blob's valid page ranges below `length`, as (offset, length)."""
    found = []
    for r in blob.list_page_ranges(offset=0, length=length):
        if r.cleared:
            continue
        start, end = r.start or 0, min((r.end or 0) + 1, length)
        if end > start:
            found.append((start, end - start))
    return found


def _minus(ranges: Iterable[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of `ranges` outside `holes` (both sorted, non-overlapping)."""
    left: list[tuple[int, int]] = []
    for offset, length in ranges:
        start, end = offset, offset + length
        for h_offset, h_length in holes:
            h_end = h_offset + h_length
            if h_end <= start or h_offset >= end:
                continue
            if h_offset > start:
                left.append((start, h_offset - start))
            start = max(start, h_end)
            if start >= end:
                break
        if end > start:
            left.append((start, end - start))
    return left


def sync_replica_from_snapshot(replica: BlobClient, snapshot_sas: str) -> CopyTotals:
    """The replica's data area becomes the snapshot's content byte for byte; its VHD footer is kept.
    Only the snapshot's written ranges are copied, and the replica's ranges the snapshot does not hold are
    cleared. Idempotent: a second run writes the same bytes again."""
    data_size = int(replica.get_blob_properties().size) - FOOTER_SIZE
    source = BlobClient.from_blob_url(snapshot_sas)
    snapshot_size = int(source.get_blob_properties().size)
    length = min(data_size, snapshot_size)
    written = _ranges(source, length)
    stale = _minus(_ranges(replica, data_size), written)
    cleared = 0
    for offset, size in stale:
        replica.clear_page(offset=offset, length=size)
        cleared += size
    from_url = apply_engine.supports_put_page_from_url(replica, snapshot_sas)
    copied = 0
    for offset, size in written:
        end = offset + size
        while offset < end:
            unit = min(COPY_UNIT, end - offset)
            if from_url:
                replica.upload_pages_from_url(snapshot_sas, offset=offset, length=unit, source_offset=offset)
            else:
                data = source.download_blob(offset=offset, length=unit, max_concurrency=1).readall()
                replica.upload_page(data, offset=offset, length=unit)
            copied += unit
            offset += unit
    return CopyTotals(bytes_copied=copied, bytes_cleared=cleared, from_url=from_url)
