"""The local stack: protocol emulators, a local Functions host and a local Durable extension.

Never imported by product code (functions/, orchestrators/, shared/, hydration/).
"""
