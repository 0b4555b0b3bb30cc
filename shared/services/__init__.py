"""The service layer: plain functions taking repositories and commands, returning views.

Entry points (functions/) translate HTTP into these calls and domain errors into status codes.
"""
