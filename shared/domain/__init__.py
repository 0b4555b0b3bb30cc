"""The domain: typed records, the machine lifecycle and the errors the rest of the app speaks.

Nothing here does I/O or imports Azure SDKs; adapters and the service layer build on it.
"""
