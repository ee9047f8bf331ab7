-- Staging table for one chunk of new embeddings: filled with a binary COPY of float32 vectors, then
-- merged (embed_insert.sql casts them to the table's halfvec).
CREATE TEMP TABLE embedding_staging (
    image_id  bigint NOT NULL,
    embedding vector NOT NULL
) ON COMMIT DROP;
