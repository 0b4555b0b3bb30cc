"""Durable orchestrators (deterministic) and their activities."""
