"""Benchmarks: `python -m bench` runs every module here that defines `run() -> dict` and merges the results.

One module per benchmark; modules whose name starts with "_" are helpers. Each benchmark starts the
emulators it needs (devhost.emulators) and returns flat metric -> value pairs; targets live in
bench/__main__.py so results.json says whether each was met.
"""
