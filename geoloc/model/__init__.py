"""The retrieval model: backbone + GeM aggregator trained with a multi-similarity loss from the database."""
