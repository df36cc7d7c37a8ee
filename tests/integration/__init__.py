"""Integration tests: real Prefect servers, workers, PostgreSQL and a browser (docs/production.md)."""
