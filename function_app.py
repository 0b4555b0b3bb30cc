"""The Functions app: builds the DFApp and registers the blueprints. Nothing else lives here."""

import azure.durable_functions as df
import azure.functions as func

from functions.api_appliances import bp as api_appliances_bp
from functions.api_machines import bp as api_machines_bp
from functions.api_migration import bp as api_migration_bp
from functions.api_repair import bp as api_repair_bp
from functions.appliance_events import bp as appliance_events_bp
from functions.health import bp as health_bp
from functions.health_monitor import bp as health_monitor_bp
from functions.openapi import bp as openapi_bp
from functions.sweeper import bp as sweeper_bp
from orchestrators.hydration import bp as hydration_bp
from orchestrators.machine_replication import bp as machine_replication_bp
from orchestrators.migration import bp as migration_bp
from orchestrators.migration_activities import bp as migration_activities_bp
from orchestrators.test_migration import bp as test_migration_bp

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(health_bp)
app.register_functions(api_appliances_bp)
app.register_functions(api_machines_bp)
app.register_functions(api_repair_bp)
app.register_functions(openapi_bp)
app.register_functions(appliance_events_bp)
app.register_functions(health_monitor_bp)
app.register_functions(machine_replication_bp)
app.register_functions(api_migration_bp)
app.register_functions(sweeper_bp)
app.register_functions(migration_activities_bp)
app.register_functions(hydration_bp)
app.register_functions(test_migration_bp)
app.register_functions(migration_bp)
