-- Build one model's partial HNSW index beside the live one (outside any transaction; the caller holds
-- the model's build lock). {name}: the index's name, {vtype}: the type its expression casts to, e.g.
-- halfvec(256), {ops}: that type's cosine operator class, {m} and {ef_construction}: the graph's
-- parameters, {model_id}: the model. All are filled in by geoloc.retrieval.index (DDL takes no binds).
CREATE INDEX CONCURRENTLY {name} ON embeddings USING hnsw ((embedding::{vtype}) {ops})
WITH (m = {m}, ef_construction = {ef_construction})
WHERE model_id = {model_id};
