"""The Functions app: builds the DFApp and registers one blueprint per capability. Nothing else lives here."""

import azure.durable_functions as df
import azure.functions as func

from functions import (
    appliances,
    failback,
    failover,
    health,
    jobs,
    liveness,
    migration,
    mobility,
    openapi,
    replication,
    starts,
    status_page,
)
from orchestrators.failback import activities as failback_activities
from orchestrators.failback import commit as commit_failback
from orchestrators.failback import commit_activities as commit_failback_activities
from orchestrators.failback import forward as reprotect_to_azure
from orchestrators.failback import forward_activities as reprotect_to_azure_activities
from orchestrators.failback import orchestrator as reverse_flow
from orchestrators.failback import planned as planned_failback
from orchestrators.failback import planned_activities as planned_failback_activities
from orchestrators.failover import activities as failover_activities
from orchestrators.failover import after as after_failover
from orchestrators.failover import orchestrator as failover_flow
from orchestrators.hydration import activities as hydration_activities
from orchestrators.hydration import orchestrator as hydration
from orchestrators.migration import activities as migration_activities
from orchestrators.migration import cutover, test_migration
from orchestrators.mobility import activities as mobility_activities
from orchestrators.mobility import orchestrator as push_install
from orchestrators.replication import orchestrator as machine_replication

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (
    # HTTP, Event Grid and timer triggers
    liveness.bp,
    openapi.bp,
    appliances.bp,
    replication.bp,
    health.bp,
    migration.bp,
    failover.bp,
    failback.bp,
    jobs.bp,
    mobility.bp,
    status_page.bp,
    starts.bp,
    # orchestrations and their activities
    machine_replication.bp,  # its activities register on the same blueprint
    hydration.bp,
    hydration_activities.bp,
    test_migration.bp,
    cutover.bp,
    migration_activities.bp,
    failover_flow.bp,
    failover_activities.bp,
    after_failover.bp,
    reverse_flow.bp,
    failback_activities.bp,
    push_install.bp,
    mobility_activities.bp,
    planned_failback.bp,
    planned_failback_activities.bp,
    commit_failback.bp,
    commit_failback_activities.bp,
    reprotect_to_azure.bp,
    reprotect_to_azure_activities.bp,
):
    app.register_functions(blueprint)
