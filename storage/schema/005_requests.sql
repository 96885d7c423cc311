-- Idempotent retries of the NATS edge: the answer given to each
-- (Gatehouse-Request-Id, call), so that a caller retrying on timeout with
-- the same id gets the same answer from whichever replica serves it.
--
-- pre_receive and post_receive insert their row in the transaction that
-- changes the counter / inserts the outbox events, with `outcome` (what the
-- store committed): a second write with the same id finds the row, changes
-- nothing and answers `outcome`. The edge then fills `status` and
-- `response` (the encoded reply) once it has answered, and serves later
-- retries from them. Rows older than 10 minutes are purged by every replica
-- (the retry window the README promises is 10 minutes).
--
-- Written to be harmless when run a second time, like 001_core.sql.

CREATE SCHEMA IF NOT EXISTS gatehouse_state;

CREATE TABLE IF NOT EXISTS gatehouse_state.requests (
  -- The caller's Gatehouse-Request-Id.
  request_id text NOT NULL,
  -- The call: "pre_receive", "post_receive", ...
  call       text NOT NULL,
  -- The store's committed result (JSON): {"counted":true} for pre_receive,
  -- {"counter_decreased":…,"moved_message":…} for post_receive.
  outcome    jsonb,
  -- The HTTP-equivalent status of the reply; NULL until the edge answered.
  status     integer,
  -- The reply body as sent (Protobuf bytes); NULL until the edge answered.
  response   bytea,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (request_id, call)
);

-- What the purge reads.
CREATE INDEX IF NOT EXISTS requests_created_at_idx
  ON gatehouse_state.requests (created_at);
