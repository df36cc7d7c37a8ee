"""Deployments: schedules and work pools for the flows (prefect.yaml, serve.py)."""
