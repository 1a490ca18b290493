-- DashFlow checkpoint schema, version 2.

-- The state schemas blobs were written with, by fingerprint (a u64 stored as the bigint of the
-- same bits), so that a changed state type can read older threads. Never deleted: a schema is
-- small and any thread may still need it.
CREATE TABLE dashflow_state_schemas (
    fingerprint  bigint PRIMARY KEY,
    schema       bytea NOT NULL
);
