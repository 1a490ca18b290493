-- The live event streams of runs (docs/distributed.md). UNLOGGED: a database crash loses
-- the streams of live runs, never a checkpoint or a run row; writes skip the WAL.
CREATE UNLOGGED TABLE dashflow_run_events (
    run_id   text COLLATE "C" NOT NULL,
    seq      bigint NOT NULL,
    epoch    bigint NOT NULL,
    attempt  int NOT NULL,
    step     bigint,
    at       timestamptz NOT NULL DEFAULT now(),
    payload  jsonb NOT NULL,
    PRIMARY KEY (run_id, seq)
);
