"""`migrate`: the operator's command-line client of the control plane's HTTP API.

Thin by design: it speaks the API's JSON (docs/api.md) and imports nothing of the control plane but
its wire vocabulary (`shared.domain`), so it runs wherever the API is reachable.
"""
