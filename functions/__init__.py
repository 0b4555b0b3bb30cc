"""Triggers only, thin: translate HTTP / Event Grid / timers into domain commands and errors into codes."""
