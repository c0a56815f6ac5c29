"""The ticket desk: a Dagster project made with `create-dagster project`, its LLM use cases
declared in YAML as `batch_pipeline.BatchUseCase` components under `defs/`."""
