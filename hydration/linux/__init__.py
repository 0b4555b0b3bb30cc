"""Linux guests: inspection, the per-distribution family table and the preparation steps."""
