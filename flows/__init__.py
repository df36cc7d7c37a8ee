"""Prefect flows: the wiring of the pipeline steps, and the `forecast` CLI."""
