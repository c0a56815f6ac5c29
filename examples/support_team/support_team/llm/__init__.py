"""The team's LLM use cases, one module each: a source, a `BatchSpec`, partitions."""
