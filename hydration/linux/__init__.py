"""Linux guests: inspection, the per-distribution family table and the seed's steps."""
