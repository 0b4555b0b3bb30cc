"""Durable orchestrations (deterministic) with their activities and typed contracts, one package per
capability."""
