//! The statements the checkpointer runs: strings checked at run time (no `query!` macros, so
//! building needs no database), prepared once per connection by sqlx's statement cache. Most
//! are constants; the writes are built once per fence table (see [`Writes`]).

use std::sync::{Arc, LazyLock};

/// The first key of the advisory locks on threads (the second is `hashtext(thread_id)`).
/// `DFCP` in ASCII. A put into a namespace without a head takes it shared, so it runs
/// alongside other puts; deleting and copying into a thread take it exclusively, so that no
/// namespace can appear in the thread while they work.
pub(crate) const THREAD_LOCK: i32 = 0x4446_4350;

/// The statements that write a thread, in one of two forms: unguarded, or fenced by a table
/// of epochs ([`crate::FenceTable`]). A fenced statement reads the thread's epoch `FOR SHARE`
/// in a `fence` CTE and writes only where it equals the writer's (the statement's last
/// parameter), so the check and the write are one statement, one round trip and one implicit
/// transaction: whoever moves the epoch waits for a write in flight, and a write that starts
/// later reads the new epoch and stores nothing. Every statement returns one row: `fence`, the
/// epoch it found (NULL unguarded or when the thread has none), and `changed`, the rows the
/// write itself stored or deleted.
#[derive(Debug)]
pub(crate) struct Writes {
    /// Puts a record expecting head `$11` (see [`Writes::new`]).
    pub(crate) put_expecting: Arc<str>,
    /// Puts a record into a namespace expected to be empty; `$11` is [`THREAD_LOCK`].
    pub(crate) put_first: Arc<str>,
    /// Puts a chain of records of one namespace (each the parent's successor, the first
    /// expecting head `$11`) in one statement: the columns of [`Writes::put_expecting`] from
    /// `$3` to `$10` as arrays in the chain's order; the head moves to the last record, and
    /// all are stored or none. `changed` counts the records stored.
    pub(crate) put_chain: Arc<str>,
    /// [`Writes::put_chain`] into a namespace expected to be empty, as [`Writes::put_first`]
    /// puts one record: `$11` is [`THREAD_LOCK`].
    pub(crate) put_first_chain: Arc<str>,
    /// Stores pending writes `($4, $5, $6)` = (task ids, nodes, blobs) of checkpoint `$3`, in
    /// order; a task id stored before keeps its place and takes the new node and blob.
    pub(crate) put_writes: Arc<str>,
    /// Deletes the checkpoints of thread `$1`, namespace `$2` with ids below `$3`, and their
    /// pending writes; never the head (after a fork its id may be below `$3`), as in the other
    /// backends. `changed` counts the checkpoints.
    pub(crate) delete_before: Arc<str>,
    /// Deletes namespace `$2` of thread `$1`: checkpoints, pending writes and head; `changed`
    /// counts the checkpoints.
    pub(crate) delete_namespace: Arc<str>,
    /// Turns checkpoint `$3` of thread `$1`, namespace `$2` into a snapshot with blob `$4`, in
    /// place; `changed` is 0 when there is no such checkpoint.
    pub(crate) rewrite_as_snapshot: Arc<str>,
    /// Reads thread `$1`'s epoch `FOR SHARE` (the fence table's lookup), for the writes of a
    /// whole thread that take their locks in a transaction; `None` unguarded.
    pub(crate) lookup: Option<Arc<str>>,
    /// Puts records of several threads at once, each expecting its head, each fenced by its own
    /// thread's epoch (see [`Writes::new`]): the columns of [`Writes::put_expecting`] as
    /// arrays `$1` to `$11`, and the writers' epochs as `$12`. Returns the ordinal (from 1) of
    /// each record it stored.
    pub(crate) put_many: Arc<str>,
    /// Puts records into namespaces expected to be empty, as [`Writes::put_first`] does one,
    /// several at once: the columns as in `put_many` (`$11` unused), `$13` is [`THREAD_LOCK`].
    pub(crate) put_first_many: Arc<str>,
}

/// How a fence table is read: one thread's epoch (`$1` is its id), or several threads' with
/// their ids (`$1` is an array of ids), both `FOR SHARE`.
pub(crate) struct FenceLookup<'a> {
    /// A `SELECT` of one `epoch` column.
    pub(crate) one: &'a str,
    /// A `SELECT` of `thread_id` and `epoch` columns.
    pub(crate) many: &'a str,
}

/// How one statement is fenced: the CTE that reads the epoch, the condition each of its
/// writes adds, and the epoch it reports.
struct Fencing {
    cte: String,
    ok: String,
    found: &'static str,
}

impl Fencing {
    /// `lookup` reads the epoch (`$1` is the thread id); `epoch` numbers the writer's parameter.
    fn new(lookup: Option<&str>, epoch: usize) -> Self {
        match lookup {
            Some(lookup) => Self {
                cte: format!("fence AS MATERIALIZED ({lookup}),"),
                ok: format!("(SELECT epoch FROM fence) = ${epoch}"),
                found: "(SELECT epoch FROM fence)",
            },
            None => Self { cte: String::new(), ok: "true".to_owned(), found: "NULL::bigint" },
        }
    }
}

impl Writes {
    /// The statements, fenced by `fence` (which reads epochs and locks the rows it reads) or
    /// unguarded.
    ///
    /// A put moves the head and inserts the record in one statement. Concurrent writers queue
    /// on the head row's lock; when the first commits, PostgreSQL re-evaluates the others'
    /// `head_id = $11` against the new row, which fails, so they insert nothing. A put of an id
    /// already stored in the namespace moves nothing either (the `NOT EXISTS`), so it leaves
    /// an open transaction usable instead of aborting it with a unique violation. The first
    /// put into a namespace creates the head row with `ON CONFLICT DO NOTHING`, so of two
    /// concurrent first puts exactly one inserts it; it takes the thread's advisory lock
    /// shared, so it runs alongside other puts but never during a delete or copy of the thread.
    ///
    /// `put_many` is `put_expecting` for several records of distinct threads or namespaces in
    /// one statement (so one commit): each moves its own head only where that head is the one
    /// it expects and, fenced, where its own thread's epoch is its writer's; the others store
    /// nothing and leave the rest to be stored.
    pub(crate) fn new(fence: Option<&FenceLookup<'_>>) -> Self {
        let lookup = fence.map(|fence| fence.one);
        let put = Fencing::new(lookup, 12);
        let insert_record = "INSERT INTO dashflow_checkpoints
        (thread_id, namespace, checkpoint_id, parent_id, step, kind, blob, metadata, next_nodes, created_at_ms)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10
    WHERE EXISTS (SELECT 1 FROM moved)
    RETURNING 1";
        let absent = "NOT EXISTS (SELECT 1 FROM dashflow_checkpoints c
          WHERE c.thread_id = $1 AND c.namespace = $2 AND c.checkpoint_id = $3)";
        let put_expecting = format!(
            "
WITH {cte} moved AS (
    UPDATE dashflow_checkpoint_heads
    SET head_id = $3, newest_created_at_ms = greatest(newest_created_at_ms, $10)
    WHERE thread_id = $1 AND namespace = $2 AND head_id = $11 AND {ok}
      AND {absent}
    RETURNING 1
), stored AS (
    {insert_record}
)
SELECT {found} AS fence, (SELECT count(*) FROM stored) AS changed",
            cte = put.cte,
            ok = put.ok,
            found = put.found,
        );
        let put_first = format!(
            "
WITH {cte} moved AS (
    INSERT INTO dashflow_checkpoint_heads (thread_id, namespace, head_id, newest_created_at_ms)
    SELECT $1, $2, $3, $10
    FROM (SELECT pg_advisory_xact_lock_shared($11, hashtext($1))) AS thread_lock
    WHERE {ok}
      AND {absent}
    ON CONFLICT (thread_id, namespace) DO NOTHING
    RETURNING 1
), stored AS (
    {insert_record}
)
SELECT {found} AS fence, (SELECT count(*) FROM stored) AS changed",
            cte = put.cte,
            ok = put.ok,
            found = put.found,
        );
        let chain_values = "v AS MATERIALIZED (
    SELECT * FROM unnest($3::text[], $4::text[], $5::bigint[], $6::text[], $7::bytea[], $8::text[], $9::text[],
                         $10::bigint[])
        WITH ORDINALITY AS v(checkpoint_id, parent_id, step, kind, blob, metadata, next_nodes, created_at_ms, ord)
)";
        let chain_absent =
            "NOT EXISTS (SELECT 1 FROM dashflow_checkpoints c JOIN v ON c.checkpoint_id = v.checkpoint_id
                      WHERE c.thread_id = $1 AND c.namespace = $2)";
        let chain_stored = "stored AS (
    INSERT INTO dashflow_checkpoints
        (thread_id, namespace, checkpoint_id, parent_id, step, kind, blob, metadata, next_nodes, created_at_ms)
    SELECT $1, $2, v.checkpoint_id, v.parent_id, v.step, v.kind, v.blob, v.metadata::jsonb, v.next_nodes::jsonb,
           v.created_at_ms
    FROM v
    WHERE EXISTS (SELECT 1 FROM moved)
    ORDER BY v.ord
    RETURNING 1
)";
        let put_first_chain = format!(
            "
WITH {cte} {chain_values}, moved AS (
    INSERT INTO dashflow_checkpoint_heads (thread_id, namespace, head_id, newest_created_at_ms)
    SELECT $1, $2, (SELECT v.checkpoint_id FROM v ORDER BY v.ord DESC LIMIT 1), (SELECT max(v.created_at_ms) FROM v)
    FROM (SELECT pg_advisory_xact_lock_shared($11, hashtext($1))) AS thread_lock
    WHERE {ok} AND {chain_absent}
    ON CONFLICT (thread_id, namespace) DO NOTHING
    RETURNING 1
), {chain_stored}
SELECT {found} AS fence, (SELECT count(*) FROM stored) AS changed",
            cte = put.cte,
            ok = put.ok,
            found = put.found,
        );
        let put_chain = format!(
            "
WITH {cte} {chain_values}, moved AS (
    UPDATE dashflow_checkpoint_heads
    SET head_id = (SELECT v.checkpoint_id FROM v ORDER BY v.ord DESC LIMIT 1),
        newest_created_at_ms = greatest(newest_created_at_ms, (SELECT max(v.created_at_ms) FROM v))
    WHERE thread_id = $1 AND namespace = $2 AND head_id = $11 AND {ok} AND {chain_absent}
    RETURNING 1
), {chain_stored}
SELECT {found} AS fence, (SELECT count(*) FROM stored) AS changed",
            cte = put.cte,
            ok = put.ok,
            found = put.found,
        );
        let writes = Fencing::new(lookup, 7);
        let put_writes = format!(
            "
WITH {cte} stored AS (
    INSERT INTO dashflow_checkpoint_writes (thread_id, namespace, checkpoint_id, task_id, node, blob)
    SELECT $1, $2, $3, w.task_id, w.node, w.blob
    FROM unnest($4::text[], $5::text[], $6::bytea[]) WITH ORDINALITY AS w(task_id, node, blob, ord)
    WHERE {ok}
    ORDER BY w.ord
    ON CONFLICT (thread_id, namespace, checkpoint_id, task_id)
    DO UPDATE SET node = excluded.node, blob = excluded.blob
    RETURNING 1
)
SELECT {found} AS fence, (SELECT count(*) FROM stored) AS changed",
            cte = writes.cte,
            ok = writes.ok,
            found = writes.found,
        );
        let before = Fencing::new(lookup, 4);
        let delete_before = format!(
            "
WITH {cte} head AS (
    SELECT head_id FROM dashflow_checkpoint_heads WHERE thread_id = $1 AND namespace = $2
), writes AS (
    DELETE FROM dashflow_checkpoint_writes
    WHERE thread_id = $1 AND namespace = $2 AND checkpoint_id < $3
      AND checkpoint_id IS DISTINCT FROM (SELECT head_id FROM head) AND {ok}
), deleted AS (
    DELETE FROM dashflow_checkpoints
    WHERE thread_id = $1 AND namespace = $2 AND checkpoint_id < $3
      AND checkpoint_id IS DISTINCT FROM (SELECT head_id FROM head) AND {ok}
    RETURNING 1
)
SELECT {found} AS fence, (SELECT count(*) FROM deleted) AS changed",
            cte = before.cte,
            ok = before.ok,
            found = before.found,
        );
        let namespace = Fencing::new(lookup, 3);
        let delete_namespace = format!(
            "
WITH {cte} writes AS (
    DELETE FROM dashflow_checkpoint_writes WHERE thread_id = $1 AND namespace = $2 AND {ok}
), head AS (
    DELETE FROM dashflow_checkpoint_heads WHERE thread_id = $1 AND namespace = $2 AND {ok}
), deleted AS (
    DELETE FROM dashflow_checkpoints WHERE thread_id = $1 AND namespace = $2 AND {ok}
    RETURNING 1
)
SELECT {found} AS fence, (SELECT count(*) FROM deleted) AS changed",
            cte = namespace.cte,
            ok = namespace.ok,
            found = namespace.found,
        );
        let rewrite = Fencing::new(lookup, 5);
        let rewrite_as_snapshot = format!(
            "
WITH {cte} rewritten AS (
    UPDATE dashflow_checkpoints SET kind = 'snapshot', blob = $4
    WHERE thread_id = $1 AND namespace = $2 AND checkpoint_id = $3 AND {ok}
    RETURNING 1
)
SELECT {found} AS fence, (SELECT count(*) FROM rewritten) AS changed",
            cte = rewrite.cte,
            ok = rewrite.ok,
            found = rewrite.found,
        );
        let (fence_cte, fence_join, fence_ok) = match fence {
            Some(fence) => (
                format!("fence AS MATERIALIZED ({}),", fence.many),
                "JOIN fence ON fence.thread_id = v.thread_id",
                "fence.epoch = v.epoch",
            ),
            None => (String::new(), "", "true"),
        };
        let many_values = "v AS MATERIALIZED (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
                         $7::bytea[], $8::text[], $9::text[], $10::bigint[], $11::text[], $12::bigint[])
        WITH ORDINALITY AS v(thread_id, namespace, checkpoint_id, parent_id, step, kind, blob, metadata,
                             next_nodes, created_at_ms, expected, epoch, ord)
)";
        let many_absent = "NOT EXISTS (SELECT 1 FROM dashflow_checkpoints c
          WHERE c.thread_id = v.thread_id AND c.namespace = v.namespace AND c.checkpoint_id = v.checkpoint_id)";
        let many_insert = "INSERT INTO dashflow_checkpoints
        (thread_id, namespace, checkpoint_id, parent_id, step, kind, blob, metadata, next_nodes, created_at_ms)
    SELECT v.thread_id, v.namespace, v.checkpoint_id, v.parent_id, v.step, v.kind, v.blob, v.metadata::jsonb,
           v.next_nodes::jsonb, v.created_at_ms";
        let put_first_many = format!(
            "
WITH {many_values}, {fence_cte} moved AS (
    INSERT INTO dashflow_checkpoint_heads (thread_id, namespace, head_id, newest_created_at_ms)
    SELECT v.thread_id, v.namespace, v.checkpoint_id, v.created_at_ms
    FROM v {fence_join}
    CROSS JOIN LATERAL (SELECT pg_advisory_xact_lock_shared($13, hashtext(v.thread_id))) AS thread_lock
    WHERE {fence_ok} AND {many_absent}
    ON CONFLICT (thread_id, namespace) DO NOTHING
    RETURNING thread_id, namespace
), stored AS (
    {many_insert}
    FROM v JOIN moved ON moved.thread_id = v.thread_id AND moved.namespace = v.namespace
)
SELECT v.ord FROM v JOIN moved ON moved.thread_id = v.thread_id AND moved.namespace = v.namespace"
        );
        let put_many = format!(
            "
WITH {many_values}, {fence_cte} moved AS (
    UPDATE dashflow_checkpoint_heads h
    SET head_id = v.checkpoint_id, newest_created_at_ms = greatest(h.newest_created_at_ms, v.created_at_ms)
    FROM v {fence_join}
    WHERE h.thread_id = v.thread_id AND h.namespace = v.namespace AND h.head_id = v.expected AND {fence_ok}
      AND {many_absent}
    RETURNING v.ord
), stored AS (
    {many_insert}
    FROM v JOIN moved ON moved.ord = v.ord
)
SELECT ord FROM moved"
        );
        Self {
            put_many: put_many.into(),
            put_first_many: put_first_many.into(),
            put_expecting: put_expecting.into(),
            put_first: put_first.into(),
            put_chain: put_chain.into(),
            put_first_chain: put_first_chain.into(),
            put_writes: put_writes.into(),
            delete_before: delete_before.into(),
            delete_namespace: delete_namespace.into(),
            rewrite_as_snapshot: rewrite_as_snapshot.into(),
            lookup: lookup.map(Arc::from),
        }
    }
}

/// The unguarded writes, built once per process.
pub(crate) static UNGUARDED: LazyLock<Arc<Writes>> = LazyLock::new(|| Arc::new(Writes::new(None)));

/// The head of a namespace.
pub(crate) const HEAD: &str = "SELECT head_id FROM dashflow_checkpoint_heads WHERE thread_id = $1 AND namespace = $2";

/// The columns of a record, in the order `record_from_row` reads them.
macro_rules! record_columns {
    ($table:literal) => {
        concat!(
            $table,
            ".namespace, ",
            $table,
            ".checkpoint_id, ",
            $table,
            ".parent_id, ",
            $table,
            ".step, ",
            $table,
            ".kind, ",
            $table,
            ".blob, ",
            $table,
            ".metadata::text AS metadata, ",
            $table,
            ".next_nodes::text AS next_nodes, ",
            $table,
            ".created_at_ms"
        )
    };
}

/// One stored record, to tell whether an earlier try of a put committed.
pub(crate) const RECORD: &str = concat!(
    "SELECT ",
    record_columns!("c"),
    " FROM dashflow_checkpoints c WHERE c.thread_id = $1 AND c.namespace = $2 AND c.checkpoint_id = $3"
);

/// The chain of checkpoint `$3` (the head when NULL) of thread `$1`, namespace `$2`: the
/// record, then its parents up to and including the nearest snapshot, at most `$4` deep. A
/// missing parent (pruned by `delete_before`) ends the chain at the oldest record still
/// stored, as in the other backends; `path` stops a cycle of parent links, which the caller
/// reports as corrupt. One statement, so one snapshot of the data: the chain and its pending
/// writes are consistent with each other whatever commits meanwhile. The requested record
/// (depth 0) carries its pending writes as three arrays in stored order. Rows come oldest
/// first. The parent is looked up in a `LATERAL ... LIMIT 1` that the planner cannot flatten,
/// so each step is one primary-key probe whatever the table statistics say (as a plain join
/// on a fresh table it scanned the whole thread per step).
pub(crate) const LOAD: &str = concat!(
    "
WITH RECURSIVE chain AS (
    SELECT c.*, 0 AS depth, ARRAY[c.checkpoint_id] AS path
    FROM dashflow_checkpoints c
    WHERE c.thread_id = $1 AND c.namespace = $2
      AND c.checkpoint_id = coalesce(
          $3::text,
          (SELECT h.head_id FROM dashflow_checkpoint_heads h WHERE h.thread_id = $1 AND h.namespace = $2))
    UNION ALL
    SELECT p.*, chain.depth + 1, chain.path || p.checkpoint_id
    FROM chain
    CROSS JOIN LATERAL (
        SELECT * FROM dashflow_checkpoints p
        WHERE p.thread_id = $1 AND p.namespace = $2 AND p.checkpoint_id = chain.parent_id
        LIMIT 1
    ) p
    WHERE chain.kind = 'delta' AND chain.depth < $4 AND NOT p.checkpoint_id = ANY (chain.path)
)
SELECT ",
    record_columns!("chain"),
    ", chain.depth, w.task_ids, w.nodes, w.blobs
FROM chain
LEFT JOIN LATERAL (
    SELECT array_agg(w.task_id ORDER BY w.seq) AS task_ids,
           array_agg(w.node ORDER BY w.seq) AS nodes,
           array_agg(w.blob ORDER BY w.seq) AS blobs
    FROM dashflow_checkpoint_writes w
    WHERE w.thread_id = $1 AND w.namespace = $2 AND w.checkpoint_id = chain.checkpoint_id
) w ON chain.depth = 0
ORDER BY chain.depth DESC"
);

/// Checkpoints of thread `$1`, newest first: only namespace `$2` and ids before `$3` when
/// they are not NULL, only metadata with every entry of `$4`, at most `$5` (all when NULL).
/// `@>` narrows; the `NOT EXISTS` makes each entry an exact match (containment alone would
/// let `{"tags": ["a", "b"]}` match a filter on `["a"]`).
pub(crate) const LIST: &str = concat!(
    "SELECT ",
    record_columns!("c"),
    "
FROM dashflow_checkpoints c
WHERE c.thread_id = $1
  AND ($2::text IS NULL OR c.namespace = $2)
  AND ($3::text IS NULL OR c.checkpoint_id < $3)
  AND c.metadata @> $4::jsonb
  AND NOT EXISTS (
      SELECT 1 FROM jsonb_each($4::jsonb) AS f(key, value)
      WHERE c.metadata -> f.key IS DISTINCT FROM f.value)
ORDER BY c.checkpoint_id DESC, c.namespace DESC
LIMIT $5"
);

/// Takes [`THREAD_LOCK`] `$1` on thread `$2` exclusively, until the transaction ends.
pub(crate) const LOCK_THREAD: &str = "SELECT pg_advisory_xact_lock($1, hashtext($2))";

/// Locks every head row of thread `$1`, waiting for puts in flight to commit or roll back,
/// and returns each namespace's newest `created_at_ms`.
pub(crate) const LOCK_HEADS: &str =
    "SELECT namespace, head_id, newest_created_at_ms FROM dashflow_checkpoint_heads WHERE thread_id = $1 FOR UPDATE";

/// One head of thread `$1`, if it has any: whether the thread has checkpoints.
pub(crate) const HEADS_OF: &str =
    "SELECT namespace, head_id FROM dashflow_checkpoint_heads WHERE thread_id = $1 ORDER BY namespace LIMIT 1";

/// Deletes every checkpoint, pending write and head of thread `$1`.
pub(crate) const DELETE_THREAD: &str = "
WITH checkpoints AS (DELETE FROM dashflow_checkpoints WHERE thread_id = $1),
     writes AS (DELETE FROM dashflow_checkpoint_writes WHERE thread_id = $1)
DELETE FROM dashflow_checkpoint_heads WHERE thread_id = $1";

/// Copies heads, checkpoints and pending writes of thread `$1` into thread `$2` in one
/// statement, so from one snapshot of `$1`; returns how many heads and checkpoints it copied.
/// The caller made sure `$2` has no heads (so no checkpoints); writes stored there without a
/// checkpoint belong to nothing and are replaced.
pub(crate) const COPY_THREAD: &str = "
WITH heads AS (
    INSERT INTO dashflow_checkpoint_heads (thread_id, namespace, head_id, newest_created_at_ms)
    SELECT $2, namespace, head_id, newest_created_at_ms FROM dashflow_checkpoint_heads WHERE thread_id = $1
    RETURNING 1
), checkpoints AS (
    INSERT INTO dashflow_checkpoints
        (thread_id, namespace, checkpoint_id, parent_id, step, kind, blob, metadata, next_nodes, created_at_ms)
    SELECT $2, namespace, checkpoint_id, parent_id, step, kind, blob, metadata, next_nodes, created_at_ms
    FROM dashflow_checkpoints WHERE thread_id = $1
    RETURNING 1
), writes AS (
    INSERT INTO dashflow_checkpoint_writes (thread_id, namespace, checkpoint_id, task_id, seq, node, blob)
    SELECT $2, namespace, checkpoint_id, task_id, seq, node, blob
    FROM dashflow_checkpoint_writes WHERE thread_id = $1
    ON CONFLICT (thread_id, namespace, checkpoint_id, task_id)
    DO UPDATE SET seq = excluded.seq, node = excluded.node, blob = excluded.blob
    RETURNING 1
)
SELECT (SELECT count(*) FROM heads) AS heads, (SELECT count(*) FROM checkpoints) AS checkpoints";

/// Threads whose newest checkpoint was created before `$1`, in id order: namespaces idle since
/// then, found by a scan of the heads (no index of `newest_created_at_ms`, so that a put's
/// update of its head stays on the row's page), and a thread qualifies when none of its
/// namespaces is newer.
pub(crate) const IDLE_THREADS: &str = "
SELECT DISTINCT h.thread_id FROM dashflow_checkpoint_heads h
WHERE h.newest_created_at_ms < $1
  AND NOT EXISTS (
      SELECT 1 FROM dashflow_checkpoint_heads n
      WHERE n.thread_id = h.thread_id AND n.newest_created_at_ms >= $1)
ORDER BY h.thread_id";

/// Threads with a head in the root namespace, newest first (by the newest
/// `newest_created_at_ms` of their namespaces, then by id, descending): only ids starting with
/// `$1`, updated at or after `$2` and before `$3`, after the cursor (`$4`, `$5`), whose head's
/// metadata has every entry of `$6` (matched as `LIST` does), at most `$7` (all when NULL).
/// Each comes with its head's id, step and metadata and the root namespace's checkpoint count.
pub(crate) const LIST_THREADS: &str = "
WITH threads AS (
    SELECT h.thread_id, max(h.newest_created_at_ms) AS updated_at_ms
    FROM dashflow_checkpoint_heads h
    WHERE $1::text IS NULL OR left(h.thread_id, length($1)) = $1
    GROUP BY h.thread_id
)
SELECT t.thread_id, t.updated_at_ms, c.checkpoint_id, c.step, c.metadata::text AS metadata,
       (SELECT count(*) FROM dashflow_checkpoints n
        WHERE n.thread_id = t.thread_id AND n.namespace = '') AS checkpoints
FROM threads t
JOIN dashflow_checkpoint_heads r ON r.thread_id = t.thread_id AND r.namespace = ''
JOIN dashflow_checkpoints c ON c.thread_id = t.thread_id AND c.namespace = '' AND c.checkpoint_id = r.head_id
WHERE ($2::bigint IS NULL OR t.updated_at_ms >= $2)
  AND ($3::bigint IS NULL OR t.updated_at_ms < $3)
  AND ($4::bigint IS NULL OR t.updated_at_ms < $4 OR (t.updated_at_ms = $4 AND t.thread_id < $5::text))
  AND c.metadata @> $6::jsonb
  AND NOT EXISTS (
      SELECT 1 FROM jsonb_each($6::jsonb) AS f(key, value)
      WHERE c.metadata -> f.key IS DISTINCT FROM f.value)
ORDER BY t.updated_at_ms DESC, t.thread_id DESC
LIMIT $7";
