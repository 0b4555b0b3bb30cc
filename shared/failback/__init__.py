"""Failback from Azure: the changed blocks of a failed-over VM's disks, read from managed-disk
incremental snapshots (`snapshot_diff`)."""
