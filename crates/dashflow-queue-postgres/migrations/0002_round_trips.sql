-- Submit and finish in one round trip each (docs/distributed.md). Their steps run inside the
-- server, after the thread's advisory lock, and each statement of a function reads with a
-- snapshot of its own (READ COMMITTED), as the steps of the client transactions they replace
-- did: a finish waiting for the lock of a submit in flight sees that submit's run once it has
-- the lock, and promotes it. Tables are found through the caller's search_path, like the
-- statements the client sends.

-- Ends run `p_run_id` if lease epoch `p_epoch` still holds it (the run is running under that
-- epoch and it is its thread's fence epoch), promotes the thread's oldest pending run, and
-- notifies. False, and nothing changed, when the lease was lost.
CREATE FUNCTION dashflow_finish_run(
    p_run_id text, p_epoch bigint, p_state text, p_checkpoint_id text, p_error text, p_thread_id text,
    p_lock int)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock, hashtext(p_thread_id));
    UPDATE dashflow_runs SET state = p_state, finished_at = now(), checkpoint_id = p_checkpoint_id,
           error = p_error, cancel_requested_at = NULL
    WHERE run_id = p_run_id AND lease_epoch = p_epoch AND state = 'running'
      AND EXISTS (SELECT 1 FROM dashflow_thread_fences f WHERE f.thread_id = p_thread_id AND f.epoch = p_epoch);
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE dashflow_runs SET state = 'queued' WHERE run_id = (
        SELECT p.run_id FROM dashflow_runs p WHERE p.thread_id = p_thread_id AND p.state = 'pending'
          AND NOT EXISTS (SELECT 1 FROM dashflow_runs a
                          WHERE a.thread_id = p_thread_id AND a.state IN ('queued', 'running'))
        ORDER BY p.created_at, p.run_id LIMIT 1);
    IF FOUND THEN
        PERFORM pg_notify('dashflow_wake', current_schema());
    END IF;
    PERFORM pg_notify('dashflow_done', p_run_id);
    RETURN true;
END $$;

-- Submits a run: `existing` with the stored state when the run id is taken (the same run
-- submitted twice is one run); `busy` with the thread's active run when it has one and
-- `p_enqueue` is false; else `submitted` with the new run's state, `pending` behind an active
-- or waiting run, `queued` otherwise. The start tag is the tenant's clock plus its share,
-- never below the queue's smallest queued tag, so an idle tenant banks no credit.
CREATE FUNCTION dashflow_submit_run(
    p_run_id text, p_queue text, p_graph_key text, p_thread_id text, p_tenant text, p_priority smallint,
    p_kind text, p_input bytea, p_config jsonb, p_max_attempts int, p_enqueue boolean, p_lock int)
RETURNS TABLE (outcome text, run_state text, active_run text) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_existing text;
    v_active text;
    v_state text;
    v_vtime bigint;
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
    WITH floor AS (
        SELECT coalesce((SELECT q.vtime FROM dashflow_runs q
                         WHERE q.state = 'queued' AND q.queue = p_queue AND q.priority = p_priority
                         ORDER BY q.vtime LIMIT 1), 0) AS v)
    INSERT INTO dashflow_tenant_clocks AS c (queue, priority, tenant, vtime)
    SELECT p_queue, p_priority, p_tenant, v FROM floor
    ON CONFLICT (queue, priority, tenant) DO UPDATE SET vtime = greatest(c.vtime + 1000 / c.weight, excluded.vtime)
    RETURNING c.vtime INTO v_vtime;
    INSERT INTO dashflow_runs
        (run_id, queue, graph_key, thread_id, tenant, priority, vtime, state, kind, input, config, max_attempts)
    VALUES (p_run_id, p_queue, p_graph_key, p_thread_id, p_tenant, p_priority, v_vtime, v_state, p_kind, p_input,
            p_config, p_max_attempts);
    IF v_state = 'queued' THEN
        PERFORM pg_notify('dashflow_wake', current_schema());
    END IF;
    RETURN QUERY SELECT 'submitted'::text, v_state, NULL::text;
END $$;
