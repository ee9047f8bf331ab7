-- Staging table for one chunk of new embeddings: filled with a binary COPY, then merged.
CREATE TEMP TABLE embedding_staging (
    image_id  bigint NOT NULL,
    embedding vector NOT NULL
) ON COMMIT DROP;
