-- Push processing state: the reference counters of pre_receive/post_receive
-- and the transactional outbox of push events.
--
-- post_receive changes the counter and inserts its events in one
-- transaction, then NOTIFYs gatehouse_outbox with the project id; the outbox
-- relay of every replica LISTENs, publishes unpublished rows to JetStream in
-- seq order per project (Nats-Msg-Id = event_id) and sets published_at only
-- on the PubAck.
--
-- Written to be harmless when run a second time, like 001_core.sql.

CREATE SCHEMA IF NOT EXISTS gatehouse_state;

-- GitLab keeps `git-receive-pack-reference-counter:<gl_repository>` in Redis
-- with a 600 s expiry set on every increment. A row whose expires_at has
-- passed counts as absent (value 0).
CREATE TABLE IF NOT EXISTS gatehouse_state.reference_counters (
  gl_repository text PRIMARY KEY,
  value         integer NOT NULL,
  expires_at    timestamptz NOT NULL
);

-- One row per push event. `seq` is the publication order within a project
-- (post_receive serialises its inserts per project, so seq order is commit
-- order). `body` is the JSON payload; the other columns become NATS headers.
CREATE TABLE IF NOT EXISTS gatehouse_state.outbox (
  seq                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id            uuid UNIQUE NOT NULL,
  project_id          bigint NOT NULL,
  subject             text NOT NULL,
  kind                text NOT NULL,
  bulk                boolean,
  commits_unavailable boolean,
  body                text NOT NULL,
  created_at          timestamptz DEFAULT now(),
  published_at        timestamptz,
  attempts            int DEFAULT 0,
  last_error          text
);

-- What the relay reads: unpublished rows, per project, in seq order.
CREATE INDEX IF NOT EXISTS outbox_unpublished_idx
  ON gatehouse_state.outbox (project_id, seq)
  WHERE published_at IS NULL;
