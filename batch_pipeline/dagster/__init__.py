"""dagster stage."""
