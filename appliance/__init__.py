"""The appliance's replication data path: change tracking over raw disk images and cycle uploads.

A real client of the control plane (never imported by product code):
- `ChangedBlockTracker` (VMware CBT-like) and `HyperVChangeTracker` + `ReplicationLog` (Hyper-V
  Replica `.hrl` logs) record writes made through them to a disk image;
- `diff_blocks` finds changed blocks from the last cycle's block hashes when tracking was reset;
- `upload_cycle` uploads a cycle's data blobs, then its manifests, and returns the manifest names
  for the caller's `Migrate.Replication.CycleUploaded` event;
- `apply_reverse_manifest`, `hash_blocks` and `PowerSwitch` are the on-premises side of reverse
  protection (the Azure VM's disks written back from a snapshot's SAS URL).
"""

from appliance.blocks import BlockSource, ImageFile, merge_ranges, nonzero_ranges
from appliance.cbt import ALL_AREAS, ChangedBlockTracker, ChangeTrackingReset
from appliance.hashdiff import BlockHashIndex, diff_blocks
from appliance.hrl import HyperVChangeTracker, ReplicationLog, ReplicationLogCorrupt
from appliance.reverse import (
    PowerSwitch,
    ReverseApplyOptions,
    SnapshotReader,
    apply_reverse_manifest,
    hash_blocks,
)
from appliance.upload import (
    CycleUpload,
    CycleUploadResult,
    DiskCycle,
    SasDestination,
    Throttle,
    UploadOptions,
    upload_cycle,
    upload_cycle_with_stats,
)

__all__ = [
    "ALL_AREAS",
    "BlockHashIndex",
    "BlockSource",
    "ChangeTrackingReset",
    "ChangedBlockTracker",
    "CycleUpload",
    "CycleUploadResult",
    "DiskCycle",
    "HyperVChangeTracker",
    "ImageFile",
    "PowerSwitch",
    "ReplicationLog",
    "ReplicationLogCorrupt",
    "ReverseApplyOptions",
    "SasDestination",
    "SnapshotReader",
    "Throttle",
    "UploadOptions",
    "apply_reverse_manifest",
    "diff_blocks",
    "hash_blocks",
    "merge_ranges",
    "nonzero_ranges",
    "upload_cycle",
    "upload_cycle_with_stats",
]
