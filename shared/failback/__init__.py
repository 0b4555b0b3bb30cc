"""Failback: the failed-over Azure VM protected back to its on-premises machine, and brought home."""
