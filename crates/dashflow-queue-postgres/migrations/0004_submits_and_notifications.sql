-- Submits of one tenant no longer wait for each other's commits, and notifications leave the
-- transactions that write (docs/distributed.md). PostgreSQL queues a
-- transaction's NOTIFY at its commit under one lock of the whole database, held until the
-- commit is flushed: every transaction that notifies commits one after another, each waiting
-- for the one before to reach the disk. The client now sends the notification after the
-- commit, in a transaction of its own that writes nothing durable and so waits for no flush.
-- A wake-up lost between the two (the client died) is covered by the listeners' polling.

-- The tenant's clock moves in a transaction of its own before the submit, which commits without
-- waiting for the disk (`synchronous_commit` off for it alone): the clock row is locked for as
-- long as that takes, where inside the submit it was locked until the submit's commit reached
-- the disk, and every submit of a tenant waited for the one before. A clock a crash set back
-- gives a few runs the tags of runs before them, a fairness hint lost, never a run.
-- Returns the start tag for run `p_run_id`: the tenant's clock plus its share, never below the
-- queue's smallest queued tag, so an idle tenant banks no credit. NULL, and the clock
-- untouched, when the run id is taken or the thread is busy and `p_enqueue` is false (the
-- submit that follows says which).
CREATE FUNCTION dashflow_tick_clock(
    p_run_id text, p_thread_id text, p_queue text, p_priority smallint, p_tenant text, p_enqueue boolean)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_vtime bigint;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    IF EXISTS (SELECT 1 FROM dashflow_runs r WHERE r.run_id = p_run_id) THEN
        RETURN NULL;
    END IF;
    IF NOT p_enqueue
       AND EXISTS (SELECT 1 FROM dashflow_runs r WHERE r.thread_id = p_thread_id AND r.state IN ('queued', 'running')) THEN
        RETURN NULL;
    END IF;
    WITH floor AS (
        SELECT coalesce((SELECT q.vtime FROM dashflow_runs q
                         WHERE q.state = 'queued' AND q.queue = p_queue AND q.priority = p_priority
                         ORDER BY q.vtime LIMIT 1), 0) AS v)
    INSERT INTO dashflow_tenant_clocks AS c (queue, priority, tenant, vtime)
    SELECT p_queue, p_priority, p_tenant, v FROM floor
    ON CONFLICT (queue, priority, tenant) DO UPDATE SET vtime = greatest(c.vtime + 1000 / c.weight, excluded.vtime)
    RETURNING c.vtime INTO v_vtime;
    RETURN v_vtime;
END $$;

-- Migration 2's submit, given the start tag `p_vtime` (from `dashflow_tick_clock`) and without
-- the notification: the caller wakes the workers after the commit when the run is `queued`.
-- With `p_vtime` NULL (the tick found the thread busy or the id taken, and that changed since)
-- it moves the clock itself, as migration 2's did.
DROP FUNCTION dashflow_submit_run(text, text, text, text, text, smallint, text, bytea, jsonb, int, boolean, int);
CREATE FUNCTION dashflow_submit_run(
    p_run_id text, p_queue text, p_graph_key text, p_thread_id text, p_tenant text, p_priority smallint,
    p_kind text, p_input bytea, p_config jsonb, p_max_attempts int, p_enqueue boolean, p_lock int, p_vtime bigint)
RETURNS TABLE (outcome text, run_state text, active_run text) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_existing text;
    v_active text;
    v_state text;
    v_vtime bigint := p_vtime;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock, hashtext(p_thread_id));
    SELECT r.state INTO v_existing FROM dashflow_runs r WHERE r.run_id = p_run_id;
    IF v_existing IS NOT NULL THEN
        RETURN QUERY SELECT 'existing'::text, v_existing, NULL::text;
        RETURN;
    END IF;
    SELECT r.run_id INTO v_active FROM dashflow_runs r
    WHERE r.thread_id = p_thread_id AND r.state IN ('queued', 'running') LIMIT 1;
    IF v_active IS NOT NULL AND NOT p_enqueue THEN
        RETURN QUERY SELECT 'busy'::text, NULL::text, v_active;
        RETURN;
    END IF;
    -- Runs waiting on a thread with no active run are promoted by the sweeper; a new one
    -- queues behind them to keep their order.
    IF v_active IS NOT NULL
       OR EXISTS (SELECT 1 FROM dashflow_runs r WHERE r.thread_id = p_thread_id AND r.state = 'pending') THEN
        v_state := 'pending';
    ELSE
        v_state := 'queued';
    END IF;
    IF v_vtime IS NULL THEN
        WITH floor AS (
            SELECT coalesce((SELECT q.vtime FROM dashflow_runs q
                             WHERE q.state = 'queued' AND q.queue = p_queue AND q.priority = p_priority
                             ORDER BY q.vtime LIMIT 1), 0) AS v)
        INSERT INTO dashflow_tenant_clocks AS c (queue, priority, tenant, vtime)
        SELECT p_queue, p_priority, p_tenant, v FROM floor
        ON CONFLICT (queue, priority, tenant) DO UPDATE SET vtime = greatest(c.vtime + 1000 / c.weight, excluded.vtime)
        RETURNING c.vtime INTO v_vtime;
    END IF;
    INSERT INTO dashflow_runs
        (run_id, queue, graph_key, thread_id, tenant, priority, vtime, state, kind, input, config, max_attempts)
    VALUES (p_run_id, p_queue, p_graph_key, p_thread_id, p_tenant, p_priority, v_vtime, v_state, p_kind, p_input,
            p_config, p_max_attempts);
    RETURN QUERY SELECT 'submitted'::text, v_state, NULL::text;
END $$;

-- Migration 2's `dashflow_finish_run`, without the notifications, saying whether it promoted
-- a run: 'lost' (nothing changed: the lease was lost), 'ended', or 'promoted' (ended, and the
-- thread's oldest pending run is queued now). The caller notifies `dashflow_done`, and
-- `dashflow_wake` after a promotion.
DROP FUNCTION dashflow_finish_run(text, bigint, text, text, text, text, int);
CREATE FUNCTION dashflow_end_run(
    p_run_id text, p_epoch bigint, p_state text, p_checkpoint_id text, p_error text, p_thread_id text,
    p_lock int)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock, hashtext(p_thread_id));
    UPDATE dashflow_runs SET state = p_state, finished_at = now(), checkpoint_id = p_checkpoint_id,
           error = p_error, cancel_requested_at = NULL
    WHERE run_id = p_run_id AND lease_epoch = p_epoch AND state = 'running'
      AND EXISTS (SELECT 1 FROM dashflow_thread_fences f WHERE f.thread_id = p_thread_id AND f.epoch = p_epoch);
    IF NOT FOUND THEN
        RETURN 'lost';
    END IF;
    UPDATE dashflow_runs SET state = 'queued' WHERE run_id = (
        SELECT p.run_id FROM dashflow_runs p WHERE p.thread_id = p_thread_id AND p.state = 'pending'
          AND NOT EXISTS (SELECT 1 FROM dashflow_runs a
                          WHERE a.thread_id = p_thread_id AND a.state IN ('queued', 'running'))
        ORDER BY p.created_at, p.run_id LIMIT 1);
    IF FOUND THEN
        RETURN 'promoted';
    END IF;
    RETURN 'ended';
END $$;

-- Stream items are stored as they come (`json` keeps the text, `jsonb` parsed each into a tree
-- that nothing reads: readers take the text).
ALTER TABLE dashflow_run_events ALTER COLUMN payload TYPE json USING payload::json;

-- Trimming event streams starts from the streams now; nothing else looks runs up by when they
-- ended, and every finish paid for this index.
DROP INDEX dashflow_runs_finished;
