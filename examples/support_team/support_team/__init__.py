"""The support team's Dagster project: its own ingestion asset, and LLM use cases over its data
(an asset, a Parquet dataset, SQL queries) run as OpenAI Batch API work by `batch_pipeline`."""
