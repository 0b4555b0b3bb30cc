"""Reading the toolkit's verdict: the full report (from its blob) wins over the 4 KiB output tails; without
a report the exit status decides (0 ok, 3 manual preparation, anything else failed)."""

from __future__ import annotations

from orchestrators.hydration.activities import _preparation_result

MANUAL_REPORT = {
    "status": "manual_preparation_required",
    "os": {"family": "linux", "distribution": "centos", "version": "7.2"},
    "steps": [{"name": "detect_os_version", "status": "would_change", "message": "CentOS 7.2: manual"}],
    "changes": [],
    "manual_steps": ["validate_fstab: /etc/fstab line 1: /dev/sda1 -> UUID=...", "install waagent"],
    "warnings": [],
    "errors": [],
}


def test_manual_preparation_lists_the_changes() -> None:
    result = _preparation_result(3, "Enable failed: exit status=3", "tail", MANUAL_REPORT, "reports/m/j.json")
    assert result.status == "manual_preparation_required"
    assert result.os_description == "centos 7.2"
    assert result.manual_steps == MANUAL_REPORT["manual_steps"]
    assert [s.name for s in result.steps] == ["detect_os_version"]
    assert result.report_blob == "reports/m/j.json"


def test_a_failed_run_says_what_the_toolkit_said() -> None:
    report = {
        "status": "failed",
        "steps": [],
        "errors": ["no etc/fstab on any partition: wrong OS disk?"],
        "changes": [{"step": "x", "target": "/etc/a", "changed": True, "note": "n"}],
    }
    result = _preparation_result(1, "Enable failed: exit status=1", "", report, "r")
    assert result.status == "failed"
    assert result.message == "no etc/fstab on any partition: wrong OS disk?"
    assert result.changes == ["x: /etc/a (n)"]


def test_without_a_report_the_exit_status_decides() -> None:
    assert _preparation_result(0, "ok", "", {}, "r").status == "succeeded"
    assert _preparation_result(3, "exit status=3", "", {}, "r").status == "manual_preparation_required"
    missing = _preparation_result(None, "VMExtensionProvisioningTimeout", "", {}, "r")
    assert missing.status == "failed" and missing.report_blob is None
