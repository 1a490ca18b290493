-- DashFlow checkpoint schema, version 3: less work per put (docs/benchmarks.md, B8).

-- One index on checkpoints instead of two. The primary key takes the order `list` walks
-- (thread, then id, then namespace), which still finds a record by its three columns and a
-- namespace's records by thread and id range; the second index, the same columns in that
-- order, goes. The constraint keeps its name. Building the new index locks the table for
-- writes while it runs.
CREATE UNIQUE INDEX dashflow_checkpoints_key ON dashflow_checkpoints (thread_id, checkpoint_id, namespace);
ALTER TABLE dashflow_checkpoints DROP CONSTRAINT dashflow_checkpoints_pkey;
ALTER TABLE dashflow_checkpoints ADD CONSTRAINT dashflow_checkpoints_pkey PRIMARY KEY USING INDEX dashflow_checkpoints_key;
DROP INDEX dashflow_checkpoints_thread_newest;

-- The backend writes only the two kinds and reads every kind back through a parser that
-- calls any other one corrupt; PostgreSQL re-read this check's expression for every put.
ALTER TABLE dashflow_checkpoints DROP CONSTRAINT IF EXISTS dashflow_checkpoints_kind_check;

-- Every put updates its namespace's head row. With no index on the columns it changes, the
-- update stays on the row's page (a HOT update: no new index entries), and the free space
-- left on each page gives it room. `delete_idle_threads`, a rare retention job, scans the
-- heads instead of reading an index of `newest_created_at_ms`.
DROP INDEX dashflow_checkpoint_heads_newest;
ALTER TABLE dashflow_checkpoint_heads SET (fillfactor = 70);
