"""Pipeline steps: each module holds a plain step function and a thin Prefect task."""
