-- State that Gatehouse writes itself while serving access control: the LFS
-- token signing key, 2FA recovery codes, the short-lived "project moved"
-- messages, and the ids of tokens created through the internal API.
--
-- It lives in its own schema, gatehouse_state, because `public` holds
-- exactly what a seed document can declare (001_core.sql): seed tooling and
-- its tests treat every public table as seedable. Nothing here sends a
-- NOTIFY, so writes to it never make the read models reload.
--
-- Written to be harmless when run a second time, like 001_core.sql.

CREATE SCHEMA IF NOT EXISTS gatehouse_state;

-- Shared secrets, generated once by `gatehouse migrate` (the 'lfs' key signs
-- the HS256 lfs_token of /lfs_authenticate) and read by every replica.
CREATE TABLE IF NOT EXISTS gatehouse_state.signing_keys (
  name       text PRIMARY KEY,
  secret     bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- A user's current 2FA recovery codes, as the lower-case hex SHA-256 of each
-- clear code. Regeneration replaces all of a user's rows.
CREATE TABLE IF NOT EXISTS gatehouse_state.two_factor_recovery_codes (
  user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  code_digest text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, code_digest)
);

-- "Project moved" notices that /allowed leaves for the next post_receive of
-- the same user and project (GitLab keeps them in Redis for 5 minutes).
-- Ephemeral, hence no foreign keys: an expired row is just ignored.
CREATE TABLE IF NOT EXISTS gatehouse_state.project_moved_messages (
  user_id    bigint NOT NULL,
  project_id bigint NOT NULL,
  message    text NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (user_id, project_id)
);
CREATE INDEX IF NOT EXISTS project_moved_messages_expires_at_idx
  ON gatehouse_state.project_moved_messages (expires_at);

-- Ids of personal access tokens created through the internal API. Seed
-- documents choose their own ids; starting far above them avoids collisions
-- (the store still retries on a conflict).
CREATE SEQUENCE IF NOT EXISTS gatehouse_state.personal_access_token_ids
  AS bigint START WITH 1000000000;
