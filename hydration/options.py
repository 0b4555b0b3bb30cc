from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_WORK_ROOT = "/mnt/azure_sms_root"  # Azure Migrate's base mount point
DEFAULT_PAYLOAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "payload")


@dataclass(frozen=True)
class Options:
    disks: list[str] = field(default_factory=list)
    dry_run: bool = False
    os_hint: str | None = None
    work_root: str = DEFAULT_WORK_ROOT
    payload_dir: str = DEFAULT_PAYLOAD
    use_repos: bool = True
