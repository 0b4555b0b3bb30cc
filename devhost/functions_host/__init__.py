"""A local Azure Functions host for the Python v2 programming model."""
