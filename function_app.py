"""The Functions app: builds the DFApp and registers the blueprints. Nothing else lives here."""

import azure.durable_functions as df
import azure.functions as func

from functions.health import bp as health_bp

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(health_bp)
