"""The error catalog: every error Azure Migrate documents for agentless VMware replication, the
control plane's own, and the failures of a failover to Azure (Site Recovery's published failover
errors), with causes, recommended steps, severity and how it heals.

The entries are data (`entries.py`), validated when this package is imported; `matching` maps a reported
error to its entry and renders it (`failover_error` maps a failed failover step and its error code);
`shared.health.rules` turns failures, successes, heartbeats and time into a machine's health, as pure
functions the orchestration's activities call. docs/error-catalog.md is generated from the entries by
scripts/render_error_catalog.py.
"""

from shared.domain.health import ClearedBy
from shared.health.catalog.matching import (
    CATALOG,
    CatalogMatch,
    MatchedBy,
    build_event,
    commit_failback_error,
    control_plane_error,
    failover_error,
    forward_reprotect_error,
    match_appliance_error,
    match_domain_error,
    planned_failover_error,
    render,
    reprotect_error,
)
from shared.health.catalog.models import (
    Catalog,
    CatalogEntry,
    EventType,
    MessageFormat,
    Origin,
    RenderedError,
    Scope,
)

__all__ = [
    "CATALOG",
    "Catalog",
    "CatalogEntry",
    "CatalogMatch",
    "ClearedBy",
    "EventType",
    "MatchedBy",
    "MessageFormat",
    "Origin",
    "RenderedError",
    "Scope",
    "build_event",
    "commit_failback_error",
    "control_plane_error",
    "failover_error",
    "forward_reprotect_error",
    "match_appliance_error",
    "match_domain_error",
    "planned_failover_error",
    "render",
    "reprotect_error",
]
