"""Jobs: the one writer of the `jobs` container (create, step changes, finish, read)."""
