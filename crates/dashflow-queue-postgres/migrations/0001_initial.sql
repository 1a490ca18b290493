-- The run queue (docs/distributed.md). Ownership is a row plus a fence epoch, never a
-- held lock or transaction, so nothing pins the xmin horizon across a run.
CREATE TABLE dashflow_runs (
    run_id           text COLLATE "C" PRIMARY KEY,
    queue            text NOT NULL DEFAULT 'default',
    graph_key        text NOT NULL,
    thread_id        text COLLATE "C" NOT NULL,
    tenant           text NOT NULL DEFAULT '',
    priority         smallint NOT NULL DEFAULT 2 CHECK (priority BETWEEN 0 AND 3),
    vtime            bigint NOT NULL,
    state            text NOT NULL CHECK (state IN
                       ('pending','queued','running','completed','interrupted','failed','cancelled')),
    kind             text NOT NULL CHECK (kind IN ('invoke','update','resume')),
    input            bytea,
    config           jsonb NOT NULL DEFAULT '{}',
    attempt          int NOT NULL DEFAULT 0,
    max_attempts     int NOT NULL DEFAULT 5,
    run_at           timestamptz NOT NULL DEFAULT now(),
    worker_id        text,
    lease_epoch      bigint,
    cancel_requested_at timestamptz,
    checkpoint_id    text COLLATE "C",
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz
) WITH (fillfactor = 80);
CREATE INDEX dashflow_runs_claim ON dashflow_runs (queue, priority, vtime, run_id) WHERE state = 'queued';
CREATE INDEX dashflow_runs_owner ON dashflow_runs (worker_id) WHERE state = 'running';
CREATE INDEX dashflow_runs_pending ON dashflow_runs (thread_id, created_at) WHERE state = 'pending';
CREATE UNIQUE INDEX dashflow_runs_one_active ON dashflow_runs (thread_id) WHERE state IN ('queued','running');
CREATE INDEX dashflow_runs_finished ON dashflow_runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX dashflow_runs_thread ON dashflow_runs (thread_id, created_at);

-- The fencing-token register: one row per thread, bumped at every change of owner.
CREATE TABLE dashflow_thread_fences (
    thread_id text COLLATE "C" PRIMARY KEY,
    epoch     bigint NOT NULL
);

-- Narrow and hot: heartbeats update unindexed columns only (HOT updates).
CREATE TABLE dashflow_workers (
    worker_id        text PRIMARY KEY,
    host             text NOT NULL,
    pid              int NOT NULL,
    version          text NOT NULL,
    queues           text[] NOT NULL,
    graph_keys       text[] NOT NULL,
    slots            int NOT NULL,
    running          int NOT NULL DEFAULT 0,
    lock_key         int NOT NULL,
    started_at       timestamptz NOT NULL DEFAULT now(),
    heartbeat_at     timestamptz NOT NULL DEFAULT now(),
    lease_expires_at timestamptz NOT NULL,
    draining         bool NOT NULL DEFAULT false,
    stopped_at       timestamptz
) WITH (fillfactor = 50);

-- Start-time fair queueing across tenants of one queue and priority.
CREATE TABLE dashflow_tenant_clocks (
    queue    text NOT NULL,
    priority smallint NOT NULL,
    tenant   text NOT NULL,
    vtime    bigint NOT NULL,
    weight   int NOT NULL DEFAULT 1,
    PRIMARY KEY (queue, priority, tenant)
);

ALTER TABLE dashflow_runs SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0);
