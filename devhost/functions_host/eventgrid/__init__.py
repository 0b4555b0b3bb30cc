"""A local Event Grid custom topic and the Functions Event Grid extension's webhook."""
