-- State of the webhook consumer (`gatehouse webhooks`): GitLab's
-- auto-disabling state per hook and one outcome per (event, hook).
--
-- In gatehouse_state like 002_access.sql: `public` holds only what a seed can
-- declare. Rows follow their hook: deleting a webhook (seed --prune) deletes
-- its state and its outcomes.
--
-- Written to be harmless when run a second time, like 001_core.sql.

CREATE SCHEMA IF NOT EXISTS gatehouse_state;

-- GitLab's WebHooks::AutoDisabling columns (anchors.md H16). A missing row
-- means a hook that never failed. recent_failures counts consecutive failed
-- deliveries (at most 40); from the 4th on, disabled_until is set to now +
-- base x 2^backoff_count (at most 24 h) and backoff_count grows; at 40 the
-- hook is permanently disabled. A delivered event resets the row. To enable
-- a hook again by hand: DELETE FROM gatehouse_state.webhook_states WHERE
-- hook_id = <id>.
CREATE TABLE IF NOT EXISTS gatehouse_state.webhook_states (
  hook_id              bigint PRIMARY KEY
    REFERENCES webhooks (id) ON DELETE CASCADE,
  recent_failures      integer NOT NULL DEFAULT 0 CHECK (recent_failures >= 0),
  backoff_count        integer NOT NULL DEFAULT 0 CHECK (backoff_count >= 0),
  disabled_until       timestamptz,
  permanently_disabled boolean NOT NULL DEFAULT false,
  updated_at           timestamptz NOT NULL DEFAULT now()
);

-- What happened to each push event for each of its project's enabled hooks.
-- The consumer acknowledges a JetStream message only after these rows are
-- committed, and skips a (event, hook) pair that already has one, so a
-- redelivered message is not delivered twice. status is the last HTTP status
-- (NULL when none arrived), attempts the requests made, error the last
-- failure ("HTTP 500", "blocked: ...", a transport error).
CREATE TABLE IF NOT EXISTS gatehouse_state.webhook_deliveries (
  event_id   uuid NOT NULL,
  hook_id    bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
  outcome    text NOT NULL CHECK (outcome IN ('delivered', 'failed',
               'skipped_disabled', 'skipped_bulk', 'skipped_not_subscribed')),
  status     integer,
  attempts   integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  error      text,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (event_id, hook_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_hook_idx
  ON gatehouse_state.webhook_deliveries (hook_id, created_at);
