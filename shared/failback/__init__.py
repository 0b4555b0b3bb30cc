"""Failback: the failed-over Azure VM protected back to its on-premises machine, and brought home.

`snapshot_diff` reads the blocks an Azure disk changed between two managed-disk incremental snapshots;
`manifest` turns changes (or differing block hashes) into the reverse manifest the appliance applies.
"""
