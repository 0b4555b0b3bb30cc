"""Everything below the triggers and orchestrations: `domain` (pure models), `platform` (settings, stores,
clients, telemetry), then one package per capability. No Azure Functions imports here (ruff TID251)."""
