"""Hydration toolkit: prepares a migrated Linux or Windows disk to boot in Azure.

Runs inside the temporary helper VM (a Linux VM for both OS families) on Debian's system
python3, so it depends on the standard library and a few Debian packages only. It must never
import the control plane's packages.
"""

__version__ = "1.0.0"
