"""The operator alerts (infra/modules/alerts.bicep): an action group with email and webhook receivers,
one scheduled query rule per condition (RPO over the threshold, health Critical, a failed job, an
appliance silent, a Mobility agent silent), each query reading only metrics and dimensions the app's
telemetry emits."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from shared.health import HealthSettings
from shared.platform import telemetry as tm
from shared.platform.settings import Settings
from tests.infra.bicep_model import INFRA, resources
from tests.support.telemetry import read_emitted
from tests.unit.test_telemetry import BASE_ENV

ALERTS = INFRA / "modules" / "alerts.bicep"
MAIN = INFRA / "main.bicep"
_QUERY = re.compile(r"^\s*query: '((?:[^'\\]|\\.)*)'", re.MULTILINE)
_NAME = re.compile(r'\bname\s*==\s*"([\w.]+)"')
_DIMENSION = re.compile(r'customDimensions\["([\w.]+)"\]')
AT = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def alert_queries() -> list[str]:
    return [q.replace("\\n", "\n").replace("\\'", "'") for q in _QUERY.findall(ALERTS.read_text())]


def test_one_rule_per_condition_each_on_a_metric_the_app_emits() -> None:
    queries = alert_queries()
    names = [_NAME.findall(q) for q in queries]
    assert names == [
        [tm.METRIC_RPO],
        [tm.METRIC_MACHINE_HEALTH],
        [tm.METRIC_JOBS_FINISHED],
        [tm.METRIC_APPLIANCE_HEARTBEAT_AGE],
        [tm.METRIC_MOBILITY_AGENT_HEARTBEAT_AGE],
    ]
    assert all(q.startswith("customMetrics\n") for q in queries)
    for name in names:
        assert set(name) <= set(tm.METRIC_NAMES)


def test_every_dimension_an_alert_reads_is_one_its_metric_is_emitted_with(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    telemetry = tm.configure_telemetry(
        Settings.from_environ({**BASE_ENV, "TELEMETRY_FILE": str(path)}), set_global=False
    )
    telemetry.record_rpo(9000.0, machine_id="m-1")
    telemetry.record_machine_health("Critical", machine_id="m-1")
    telemetry.record_job_finished(
        machine_id="m-1", job_id="job-1", kind="PlannedFailover", status="Failed", error_code="StartFailed"
    )
    telemetry.record_appliance_heartbeat_age(1800.0, appliance_id="appl-1")
    telemetry.record_mobility_agent_heartbeat_age(1800.0, machine_id="m-1")
    telemetry.shutdown()
    emitted = read_emitted(path)
    for query in alert_queries():
        [metric] = _NAME.findall(query)
        dimensions = set(_DIMENSION.findall(query))
        assert dimensions, query
        points = emitted.metric_points(metric)
        assert any(dimensions <= set(p) for p in points), (metric, dimensions, points)


def test_the_health_levels_the_critical_rule_compares_with() -> None:
    [health] = [q for q in alert_queries() if tm.METRIC_MACHINE_HEALTH in q]
    assert f">= {tm.HEALTH_LEVELS['Critical']}" in health
    [job] = [q for q in alert_queries() if tm.METRIC_JOBS_FINISHED in q]
    assert '== "Failed"' in job


def test_rules_and_action_group_are_deployed_and_wired() -> None:
    found = {r.type: r for r in resources() if r.file == ALERTS}
    assert set(found) == {"Microsoft.Insights/actionGroups", "Microsoft.Insights/scheduledQueryRules"}
    text = ALERTS.read_text()
    for receiver in ("emailReceivers", "webhookReceivers", "useCommonAlertSchema: true"):
        assert receiver in text
    assert "actionGroup.id" in text and "appInsightsId" in text and "autoMitigate: true" in text
    main = MAIN.read_text()
    assert "module alerts 'modules/alerts.bicep'" in main
    for parameter in (
        "alertEmails",
        "alertWebhookUrls",
        "alertRpoThresholdSeconds",
        "alertApplianceSilentSeconds",
        "alertMobilityAgentSilentSeconds",
    ):
        assert re.search(rf"^param {parameter} ", main, re.MULTILINE), parameter
    assert "appInsightsId: monitoring.outputs.appInsightsId" in main
    assert "mobilityAgentSilentSeconds: alertMobilityAgentSilentSeconds" in main


def test_the_silent_agent_rule_fires_past_the_timeout_that_raises_mcp_5101() -> None:
    """The rule and the health monitor's MCP-5101 agree on when an agent is silent, by default."""
    [query] = [q for q in alert_queries() if tm.METRIC_MOBILITY_AGENT_HEARTBEAT_AGE in q]
    assert query.rstrip().endswith("| where valueMax > ${mobilityAgentSilentSeconds}")
    [default] = re.findall(
        r"^param mobilityAgentSilentSeconds int = (\d+)$", ALERTS.read_text(), re.MULTILINE
    )
    [main_default] = re.findall(
        r"^param alertMobilityAgentSilentSeconds int = (\d+)$", MAIN.read_text(), re.MULTILINE
    )
    health = HealthSettings.from_thresholds(Settings.from_environ(BASE_ENV).health)
    assert int(default) == int(main_default) == health.rules.agent_heartbeat_timeout.total_seconds()
    assert "MCP-5101" in ALERTS.read_text() and "migrate mobility show" in ALERTS.read_text()
