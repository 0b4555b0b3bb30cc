"""The Mobility service: the installer catalog, which installer serves which OS, the manual install
commands, and the registration passphrase with which installed agents register (docs/mobility.md)."""
