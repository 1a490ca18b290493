-- Event streams as one row per append instead of one per item (docs/distributed.md): a row
-- holds the items `seq .. seq + n_items - 1` of its run, as one JSON array, with each item's
-- superstep in `steps` (same order; NULL for an item of no step). Every row the table held
-- becomes a row of one item, so streams written before the upgrade read as they did.
CREATE UNLOGGED TABLE dashflow_run_event_rows (
    run_id   text COLLATE "C" NOT NULL,
    seq      bigint NOT NULL,
    n_items  int NOT NULL,
    epoch    bigint NOT NULL,
    attempt  int NOT NULL,
    steps    bigint[] NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    payloads json NOT NULL,
    CONSTRAINT dashflow_run_event_rows_pkey PRIMARY KEY (run_id, seq)
);

-- A row's items are one value of a few kilobytes, which PostgreSQL compresses: with lz4 where
-- the server has it (PostgreSQL 14 and later, built with lz4), for less CPU than pglz and a
-- little more space (docs/benchmarks.md); pglz otherwise.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        EXECUTE 'ALTER TABLE dashflow_run_event_rows ALTER COLUMN payloads SET COMPRESSION lz4';
    END IF;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END $$;

INSERT INTO dashflow_run_event_rows (run_id, seq, n_items, epoch, attempt, steps, at, payloads)
SELECT run_id, seq, 1, epoch, attempt, ARRAY[step], at, json_build_array(payload)
FROM dashflow_run_events;

DROP TABLE dashflow_run_events;
ALTER TABLE dashflow_run_event_rows RENAME TO dashflow_run_events;
ALTER TABLE dashflow_run_events RENAME CONSTRAINT dashflow_run_event_rows_pkey TO dashflow_run_events_pkey;
