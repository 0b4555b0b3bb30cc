"""Failover to Azure: the settings the operator reviews before failing over (`settings`)."""
