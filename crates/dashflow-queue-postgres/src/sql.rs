//! The queue's statements (docs/distributed.md).

/// Serializes a thread's submit, finish, release and cancel: `DFTH`, then `hashtext(thread)`.
pub(crate) const THREAD_LOCK: i32 = 0x4446_5448;
/// A worker's session lock on its heartbeat connection: `DFWK`, then the worker's `lock_key`.
pub(crate) const WORKER_LOCK: i32 = 0x4446_574b;
/// One sweeper at a time per schema: `DFSW`, then `hashtext(current_schema())`.
pub(crate) const SWEEP_LOCK: i32 = 0x4446_5357;

pub(crate) const LOCK_THREAD: &str = "SELECT pg_advisory_xact_lock($1, hashtext($2))";

/// The start tag of a run about to be submitted (migration 4's `dashflow_tick_clock`): moves
/// the tenant's clock in a transaction of its own that waits for no flush, so the clock's row
/// is locked for moments, not until a submit is on disk. NULL when the run id is taken or the
/// thread busy ([`SUBMIT`] says which).
pub(crate) const TICK: &str = "SELECT dashflow_tick_clock($1, $2, $3, $4, $5, $6)";

/// Submits a run with start tag `$13` (migration 4's `dashflow_submit_run`): `outcome`,
/// `run_state`, `active_run`. It notifies no one: the caller wakes the workers after the commit
/// when the run is queued.
pub(crate) const SUBMIT: &str = "SELECT outcome, run_state, active_run FROM dashflow_submit_run($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $13)";

/// [`TICK`] for several runs in one statement (one transaction that waits for no flush): the
/// columns as arrays `$1` to `$6`; a row per run, `ord` (from 1) and `vtime`. Each tick sees
/// the ones before it.
pub(crate) const TICK_MANY: &str = "
SELECT t.ord, dashflow_tick_clock(t.run_id, t.thread_id, t.queue, t.priority, t.tenant, t.enqueue) AS vtime
FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::text[], $6::boolean[])
     WITH ORDINALITY AS t(run_id, thread_id, queue, priority, tenant, enqueue, ord)";

/// [`SUBMIT`] for runs of distinct threads in one statement (one commit): the columns as
/// arrays (`$12` the lock's first key, `$13` the start tags); a row per run, `ord` (from 1)
/// and the submit's outcome. The runs are submitted in the order of their threads' lock keys,
/// so two such statements take their locks in the same order.
pub(crate) const SUBMIT_MANY: &str = "
SELECT r.ord, s.outcome, s.run_state, s.active_run
FROM (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::smallint[], $7::text[],
                           $8::bytea[], $9::text[], $10::int[], $11::boolean[], $13::bigint[])
          WITH ORDINALITY AS r(run_id, queue, graph_key, thread_id, tenant, priority, kind, input, config,
                               max_attempts, enqueue, vtime, ord)
      ORDER BY hashtext(r.thread_id), r.thread_id) AS r
CROSS JOIN LATERAL dashflow_submit_run(r.run_id, r.queue, r.graph_key, r.thread_id, r.tenant, r.priority, r.kind,
                                       r.input, r.config::jsonb, r.max_attempts, r.enqueue, $12, r.vtime) AS s";

pub(crate) const SCHEMA: &str = "SELECT coalesce(current_schema(), '')";
/// Registering grants no lease of its own (the first heartbeat does): until then the sweeper
/// judges the worker by its registration time against the fleet's freshest heartbeat, so a
/// worker that freezes before its first heartbeat, its session lock already taken, is not
/// left holding runs for long.
pub(crate) const REGISTER: &str = "INSERT INTO dashflow_workers
    (worker_id, host, pid, version, queues, graph_keys, slots, lock_key, lease_expires_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, hashtext(current_schema() || '/' || $1), now())
    ON CONFLICT (worker_id) DO UPDATE SET host = excluded.host, pid = excluded.pid, version = excluded.version,
        queues = excluded.queues, graph_keys = excluded.graph_keys, slots = excluded.slots, running = 0,
        heartbeat_at = now(), lease_expires_at = excluded.lease_expires_at, draining = false, stopped_at = NULL";

pub(crate) const TAKE_WORKER_LOCK: &str =
    "SELECT pg_try_advisory_lock($1, lock_key) FROM dashflow_workers WHERE worker_id = $2";

pub(crate) const STOP_WORKER: &str =
    "UPDATE dashflow_workers SET stopped_at = now(), running = 0 WHERE worker_id = $1 AND stopped_at IS NULL";

/// Renews the lease in database time and answers, per run the worker holds, whether it still
/// holds it, whether it ended under that lease (a finish of its own: the thread's fence is
/// still the lease's epoch, which every change of owner moves) and whether a cancel was asked.
pub(crate) const HEARTBEAT: &str = "
WITH me AS (
    UPDATE dashflow_workers SET heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => $2),
           running = cardinality($3::text[])
    WHERE worker_id = $1 AND stopped_at IS NULL RETURNING worker_id, draining)
SELECT h.run_id, coalesce(r.state = 'running', false) AS held,
       coalesce(r.state IN ('completed', 'interrupted', 'failed', 'cancelled')
                AND EXISTS (SELECT 1 FROM dashflow_thread_fences f WHERE f.thread_id = r.thread_id AND f.epoch = h.epoch),
                false) AS ended,
       (r.cancel_requested_at IS NOT NULL) AS cancel,
       (SELECT count(*) FROM me) AS alive, coalesce((SELECT bool_or(draining) FROM me), false) AS draining
FROM unnest($3::text[], $4::bigint[]) AS h(run_id, epoch)
LEFT JOIN dashflow_runs r ON r.run_id = h.run_id AND r.lease_epoch = h.epoch AND r.worker_id = $1
UNION ALL
SELECT NULL, false, false, false, (SELECT count(*) FROM me), coalesce((SELECT bool_or(draining) FROM me), false)
WHERE cardinality($3::text[]) = 0";

/// Claims a batch (distinct threads, thanks to `dashflow_runs_one_active`) and bumps each
/// thread's fence epoch in the same statement. `first_claim`: no claim started the run before,
/// so nothing of it can be stored; `empty_thread`: a first claim on a thread without a
/// checkpoint, whose run need not read one. Each of the worker's queues is read in the order of its
/// index (`dashflow_runs_claim`), up to the batch, and the queues' heads merged: the cost is
/// the batch's, whatever the depth of the queue (a single scan over `queue = ANY(...)` sorted
/// every queued run for each claim).
pub(crate) const CLAIM: &str = "
WITH next AS (
    SELECT c.run_id, c.thread_id, c.first_claim
    FROM unnest($2::text[]) AS q(queue)
    CROSS JOIN LATERAL (
        SELECT r.run_id, r.thread_id, r.started_at IS NULL AS first_claim, r.priority, r.vtime
        FROM dashflow_runs r
        WHERE r.state = 'queued' AND r.queue = q.queue AND r.graph_key = ANY($3) AND r.run_at <= now()
          AND EXISTS (SELECT 1 FROM dashflow_workers WHERE worker_id = $1 AND stopped_at IS NULL AND NOT draining)
        ORDER BY r.priority, r.vtime, r.run_id
        LIMIT $4 FOR UPDATE SKIP LOCKED
    ) c
    ORDER BY c.priority, c.vtime, c.run_id
    LIMIT $4
), fence AS (
    INSERT INTO dashflow_thread_fences AS f (thread_id, epoch) SELECT thread_id, 1 FROM next
    ON CONFLICT (thread_id) DO UPDATE SET epoch = f.epoch + 1
    RETURNING thread_id, epoch
)
UPDATE dashflow_runs r SET state = 'running', worker_id = $1, lease_epoch = fence.epoch,
       attempt = r.attempt + 1, started_at = coalesce(r.started_at, now()), error = NULL
FROM next JOIN fence USING (thread_id)
WHERE r.run_id = next.run_id
RETURNING r.run_id, r.thread_id, r.lease_epoch, r.graph_key, r.kind, r.input, r.config::text AS config,
          r.attempt, next.first_claim, r.queue, r.tenant,
          greatest((extract(epoch FROM now() - r.run_at) * 1000)::bigint, 0) AS waited_ms,
          next.first_claim AND NOT EXISTS (SELECT 1 FROM dashflow_checkpoint_heads h
                                           WHERE h.thread_id = r.thread_id) AS empty_thread";

/// Ends a run in one round trip (migration 4's `dashflow_end_run`): fenced, then promotes the
/// thread's next pending run; `lost` when the lease was lost, else `ended` or `promoted`. The
/// caller announces it (`dashflow_done`) after the commit.
pub(crate) const FINISH: &str = "SELECT dashflow_end_run($1, $2, $3, $4, $5, $6, $7)";

/// [`FINISH`] for runs of distinct threads in one statement (one commit): the columns as
/// arrays (`$7` the lock's first key); a row per run, `ord` (from 1) and `ended`. The runs end
/// in the order of their threads' lock keys, as [`SUBMIT_MANY`] submits them.
pub(crate) const FINISH_MANY: &str = "
SELECT f.ord, dashflow_end_run(f.run_id, f.epoch, f.state, f.checkpoint_id, f.error, f.thread_id, $7) AS ended
FROM (SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])
          WITH ORDINALITY AS f(run_id, epoch, state, checkpoint_id, error, thread_id, ord)
      ORDER BY hashtext(f.thread_id), f.thread_id) AS f";

/// Puts a held run back, fenced, without charging the attempt; a run whose cancel was
/// requested is cancelled instead (queued again, another worker would run it). Returns the
/// state it is in now.
pub(crate) const RELEASE: &str = "UPDATE dashflow_runs SET
        state = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE 'queued' END,
        finished_at = CASE WHEN cancel_requested_at IS NOT NULL THEN now() END,
        attempt = CASE WHEN cancel_requested_at IS NOT NULL THEN attempt ELSE greatest(attempt - 1, 0) END,
        error = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled as asked; its worker released it: ' || $3
                     ELSE $3 END,
        worker_id = NULL, run_at = now()
    WHERE run_id = $1 AND lease_epoch = $2 AND state = 'running'
      AND EXISTS (SELECT 1 FROM dashflow_thread_fences f WHERE f.thread_id = $4 AND f.epoch = $2)
    RETURNING state";

/// Gives a held run up, fenced, charging the attempt: cancelled when its cancel was
/// requested, else queued again, or failed when it was the last.
pub(crate) const GIVE_UP: &str = "UPDATE dashflow_runs SET
        state = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled'
                     WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
        finished_at = CASE WHEN cancel_requested_at IS NOT NULL OR attempt >= max_attempts THEN now() END,
        error = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled as asked; its worker gave it up: ' || $3
                     ELSE $3 END,
        worker_id = NULL, run_at = now()
    WHERE run_id = $1 AND lease_epoch = $2 AND state = 'running'
      AND EXISTS (SELECT 1 FROM dashflow_thread_fences f WHERE f.thread_id = $4 AND f.epoch = $2)
    RETURNING state";

pub(crate) const BUMP_FENCE: &str =
    "UPDATE dashflow_thread_fences SET epoch = epoch + 1 WHERE thread_id = $1 AND epoch = $2";

/// Promotes the thread's oldest pending run, if it has no active one.
pub(crate) const PROMOTE: &str = "UPDATE dashflow_runs SET state = 'queued' WHERE run_id = (
    SELECT run_id FROM dashflow_runs p WHERE p.thread_id = $1 AND p.state = 'pending'
      AND NOT EXISTS (SELECT 1 FROM dashflow_runs a WHERE a.thread_id = $1 AND a.state IN ('queued', 'running'))
    ORDER BY created_at, run_id LIMIT 1)";

pub(crate) const CANCEL_WAITING: &str = "UPDATE dashflow_runs SET state = 'cancelled', finished_at = now(),
        error = 'cancelled before it ran'
    WHERE run_id = $1 AND state IN ('pending', 'queued')";

pub(crate) const CANCEL_RUNNING: &str =
    "UPDATE dashflow_runs SET cancel_requested_at = coalesce(cancel_requested_at, now())
    WHERE run_id = $1 AND state = 'running'";

/// The newest other run of run `$1`'s thread submitted at or after it, if any.
pub(crate) const LATER_RUN: &str = "SELECT o.run_id FROM dashflow_runs r JOIN dashflow_runs o
    ON o.thread_id = r.thread_id AND o.run_id <> r.run_id AND o.created_at >= r.created_at
    WHERE r.run_id = $1 ORDER BY o.created_at DESC LIMIT 1";

/// Queues failed or cancelled run `$1` again with `$2` more claims allowed, due now; its
/// last error goes (the run log keeps the attempts' events).
pub(crate) const RETRY: &str = "UPDATE dashflow_runs SET state = 'queued', max_attempts = attempt + $2,
        run_at = now(), error = NULL, finished_at = NULL, cancel_requested_at = NULL
    WHERE run_id = $1 AND state IN ('failed', 'cancelled')";

pub(crate) const TRY_SWEEP_LOCK: &str = "SELECT pg_try_advisory_xact_lock($1, hashtext(current_schema()))";

/// Stops dead workers and re-queues their runs with a bumped fence. Dead: its lease expired
/// relative to the live fleet (a paused database makes every lease look old at once), or its
/// heartbeat session is gone and it missed two beats (a killed process closes its socket).
/// Runs still held by a worker stopped earlier are re-queued too: one whose release failed
/// before its worker stopped, or one an earlier sweep skipped because its row was locked (a
/// finish or cancel in flight); the sweeper never looks at that worker again.
pub(crate) const SWEEP: &str = "
WITH newest AS (SELECT max(heartbeat_at) AS t FROM dashflow_workers WHERE stopped_at IS NULL),
dead AS (
    SELECT w.worker_id FROM dashflow_workers w, newest
    WHERE w.stopped_at IS NULL AND (
          (w.lease_expires_at < now() AND w.heartbeat_at < newest.t - make_interval(secs => $1))
       OR (w.heartbeat_at < now() - make_interval(secs => 2 * $2)
           AND NOT EXISTS (SELECT 1 FROM pg_locks l
                           WHERE l.locktype = 'advisory' AND l.classid = $3::int4::oid
                             AND l.objid = w.lock_key::oid AND l.objsubid = 2 AND l.granted
                             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))))),
stopped AS (UPDATE dashflow_workers SET stopped_at = now(), running = 0
            WHERE worker_id IN (SELECT worker_id FROM dead) RETURNING worker_id),
orphans AS (SELECT r.run_id, r.thread_id FROM dashflow_runs r
            WHERE r.state = 'running'
              AND (r.worker_id IN (SELECT worker_id FROM stopped)
                   OR EXISTS (SELECT 1 FROM dashflow_workers w
                              WHERE w.worker_id = r.worker_id AND w.stopped_at IS NOT NULL))
            FOR UPDATE OF r SKIP LOCKED),
fenced AS (UPDATE dashflow_thread_fences f SET epoch = f.epoch + 1 FROM orphans o
           WHERE f.thread_id = o.thread_id RETURNING f.thread_id),
moved AS (
    UPDATE dashflow_runs r SET
        state = CASE WHEN r.cancel_requested_at IS NOT NULL THEN 'cancelled'
                     WHEN r.attempt >= r.max_attempts THEN 'failed' ELSE 'queued' END,
        finished_at = CASE WHEN r.cancel_requested_at IS NOT NULL OR r.attempt >= r.max_attempts
                           THEN now() END,
        run_at = now() + least(power(2, greatest(r.attempt - 1, 0)), 300) * (0.5 + random() / 2) * $4 * interval '1 second',
        worker_id = NULL,
        error = CASE WHEN r.cancel_requested_at IS NOT NULL THEN 'cancelled as asked; ' ELSE '' END
                || 'worker ' || r.worker_id || CASE WHEN r.worker_id IN (SELECT worker_id FROM stopped)
                THEN ' stopped heart-beating' ELSE ' stopped while holding the run' END || ' during attempt ' || r.attempt
    FROM orphans o WHERE r.run_id = o.run_id AND r.state = 'running'
    RETURNING r.run_id, r.state)
SELECT 'worker' AS what, worker_id AS id, NULL AS state FROM stopped
UNION ALL SELECT 'run', run_id, state FROM moved";

/// Promotes, per thread without an active run, its oldest pending run (repairs a promotion a
/// finish missed).
pub(crate) const PROMOTE_ALL: &str = "UPDATE dashflow_runs SET state = 'queued' WHERE run_id IN (
    SELECT DISTINCT ON (p.thread_id) p.run_id FROM dashflow_runs p
    WHERE p.state = 'pending'
      AND NOT EXISTS (SELECT 1 FROM dashflow_runs a WHERE a.thread_id = p.thread_id AND a.state IN ('queued', 'running'))
    ORDER BY p.thread_id, p.created_at, p.run_id)";

macro_rules! run_columns {
    () => {
        "run_id, queue, graph_key, thread_id, tenant, priority, state, kind, attempt, worker_id, lease_epoch,
         cancel_requested_at IS NOT NULL AS cancel_requested, checkpoint_id, error,
         (extract(epoch FROM created_at) * 1000)::bigint AS created_at_ms,
         (extract(epoch FROM started_at) * 1000)::bigint AS started_at_ms,
         (extract(epoch FROM finished_at) * 1000)::bigint AS finished_at_ms"
    };
}

pub(crate) const GET: &str = concat!("SELECT ", run_columns!(), " FROM dashflow_runs WHERE run_id = $1");

pub(crate) const LIST: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM dashflow_runs WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR thread_id = $2)
      ORDER BY created_at DESC, run_id DESC LIMIT $3"
);

pub(crate) const STATS: &str = "SELECT queue, priority, state, count(*) AS count,
    (extract(epoch FROM (now() - min(created_at) FILTER (WHERE state = 'queued'))) * 1000)::bigint AS oldest_wait_ms
    FROM dashflow_runs GROUP BY queue, priority, state ORDER BY queue, priority, state";

pub(crate) const WORKERS: &str = "SELECT worker_id, host, pid, version, queues, graph_keys, slots, running, draining,
    stopped_at IS NOT NULL AS stopped, lease_expires_at < now() AND heartbeat_at > started_at AS expired,
    (extract(epoch FROM (now() - heartbeat_at)) * 1000)::bigint AS heartbeat_age_ms
    FROM dashflow_workers ORDER BY stopped_at IS NOT NULL, started_at DESC";
