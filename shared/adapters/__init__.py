"""Adapters: the document store port and its Cosmos DB implementation, and the typed repositories."""
