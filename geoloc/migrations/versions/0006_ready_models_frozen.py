"""A ready model is frozen: its weights and the settings they were made with never change.

Embeddings and evaluations of a model were computed with its registered weights; if those could be
retrained or swapped in place, new-weight queries would be searched against old-weight vectors.
Once `status` is 'ready', an UPDATE may not change weights_path, weights_sha256, backbone, dim,
input_size or hyperparams, nor move status away from 'ready'. Renaming and deleting stay allowed
(`geoloc demo --retrain` deletes the old model and renames its replacement in one transaction).

Triggers are not compared by autogenerate, so geoloc/db/schema.py does not change.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

FUNCTION = """
CREATE FUNCTION models_ready_is_frozen() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed text;
BEGIN
    IF OLD.status <> 'ready' THEN
        RETURN NEW;
    END IF;
    changed := CASE
        WHEN NEW.status <> 'ready' THEN 'status'
        WHEN NEW.weights_path IS DISTINCT FROM OLD.weights_path THEN 'weights_path'
        WHEN NEW.weights_sha256 IS DISTINCT FROM OLD.weights_sha256 THEN 'weights_sha256'
        WHEN NEW.backbone IS DISTINCT FROM OLD.backbone THEN 'backbone'
        WHEN NEW.dim IS DISTINCT FROM OLD.dim THEN 'dim'
        WHEN NEW.input_size IS DISTINCT FROM OLD.input_size THEN 'input_size'
        WHEN NEW.hyperparams IS DISTINCT FROM OLD.hyperparams THEN 'hyperparams'
    END;
    IF changed IS NOT NULL THEN
        RAISE EXCEPTION 'model % is ready: its % cannot change (train a new model under another name)',
                        OLD.name, changed
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;
"""

TRIGGER = """
CREATE TRIGGER models_ready_is_frozen
BEFORE UPDATE ON models
FOR EACH ROW EXECUTE FUNCTION models_ready_is_frozen();
"""


def upgrade() -> None:
    op.execute(FUNCTION)
    op.execute(TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS models_ready_is_frozen ON models")
    op.execute("DROP FUNCTION IF EXISTS models_ready_is_frozen()")
