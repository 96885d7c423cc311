-- post_receive writes in one statement per batch of pushes (group commit):
-- a push session takes every push queued while its previous commit ran and
-- sends them here as one JSON array, in autocommit, so the whole batch costs
-- one round trip and one WAL flush. Each push gets the result the per-push
-- transaction gave before (storage/push_store.cpp): what a retry recorded
-- (gatehouse_state.requests), or the counter decrement, the moved message
-- taken and its events written to the outbox.
--
-- Two batches on two sessions (or two replicas) may touch the same rows, so
-- the locks are taken phase by phase in one global order (request ids, then
-- project insert locks, then counters, then moved messages), never in the
-- order the pushes arrived: two batches cannot deadlock.
--
-- pushes: [{"gl_repository", "user_id", "project_id", "request_id",
--           "events": [{"event_id", "project_id", "subject", "kind", "bulk",
--                       "commits_unavailable", "body_at", "body_bytes"}]}]
-- bodies: every event body, one after the other; an event's body is the
--   body_bytes bytes (UTF-8) from byte offset body_at. Kept out of the JSON
--   so that kilobytes of JSON per event are neither escaped by Gatehouse
--   nor parsed by PostgreSQL.
-- A request id must not appear twice in one batch (the caller splits).
-- insert_lock_class: storage::outbox_insert_lock_class.
--
-- Written to be harmless when run a second time, like 001_core.sql.

CREATE OR REPLACE FUNCTION gatehouse_state.post_receive_batch(
  pushes jsonb, bodies text, insert_lock_class int)
RETURNS TABLE (ordinal int, was_retry boolean, counter_decreased boolean,
               moved_message text)
LANGUAGE plpgsql AS $fn$
DECLARE
  total      int := jsonb_array_length(pushes);
  retried    boolean[] := array_fill(false, ARRAY[total]);
  decreased  boolean[] := array_fill(true, ARRAY[total]);
  moved      text[] := array_fill(''::text, ARRAY[total]);
  body_data  bytea := convert_to(bodies, 'UTF8');
  recorded   jsonb;
  item       record;
  left_value bigint;
  taken      text;
  fresh      boolean;
BEGIN
  -- Claim each request id; an id recorded already is a retry that changes
  -- nothing and answers what the first write committed.
  FOR item IN
    SELECT t.n::int AS n, t.e->>'request_id' AS request_id
    FROM jsonb_array_elements(pushes) WITH ORDINALITY AS t(e, n)
    WHERE coalesce(t.e->>'request_id', '') <> ''
    ORDER BY 2, 1
  LOOP
    INSERT INTO gatehouse_state.requests (request_id, call)
    VALUES (item.request_id, 'post_receive')
    ON CONFLICT (request_id, call) DO NOTHING;
    IF NOT FOUND THEN
      retried[item.n] := true;
      SELECT r.outcome INTO recorded FROM gatehouse_state.requests r
      WHERE r.request_id = item.request_id AND r.call = 'post_receive';
      IF jsonb_typeof(recorded) = 'object' THEN
        decreased[item.n]
          := coalesce((recorded->>'counter_decreased')::boolean, true);
        moved[item.n] := coalesce(recorded->>'moved_message', '');
      END IF;
    END IF;
  END LOOP;

  -- Serialise outbox inserts per project until commit (seq order is commit
  -- order within a project, which the relay relies on), keys ascending.
  FOR item IN
    SELECT DISTINCT ((ev->>'project_id')::bigint % 2147483647)::int AS k
    FROM jsonb_array_elements(pushes) WITH ORDINALITY AS t(e, n),
         jsonb_array_elements(t.e->'events') AS ev
    WHERE NOT retried[t.n::int]
    ORDER BY 1
  LOOP
    PERFORM pg_advisory_xact_lock(insert_lock_class, item.k);
  END LOOP;

  -- GitLab's DECR; a counter that would go below 0, or has expired, is
  -- deleted. Either way the decrement "succeeded".
  FOR item IN
    SELECT t.n::int AS n, t.e->>'gl_repository' AS repo
    FROM jsonb_array_elements(pushes) WITH ORDINALITY AS t(e, n)
    WHERE NOT retried[t.n::int]
    ORDER BY 2, 1
  LOOP
    UPDATE gatehouse_state.reference_counters c SET value = c.value - 1
    WHERE c.gl_repository = item.repo AND c.expires_at > now()
    RETURNING c.value INTO left_value;
    IF NOT FOUND OR left_value < 0 THEN
      DELETE FROM gatehouse_state.reference_counters c
      WHERE c.gl_repository = item.repo;
    END IF;
  END LOOP;

  -- The moved message of (user, project), taken once; an expired one is
  -- consumed without being handed out.
  FOR item IN
    SELECT t.n::int AS n, (t.e->>'user_id')::bigint AS user_id,
           (t.e->>'project_id')::bigint AS project_id
    FROM jsonb_array_elements(pushes) WITH ORDINALITY AS t(e, n)
    WHERE NOT retried[t.n::int] AND (t.e->>'user_id')::bigint <> 0
      AND (t.e->>'project_id')::bigint <> 0
    ORDER BY 2, 3, 1
  LOOP
    DELETE FROM gatehouse_state.project_moved_messages m
    WHERE m.user_id = item.user_id AND m.project_id = item.project_id
    RETURNING m.message, m.expires_at > now() INTO taken, fresh;
    IF FOUND AND fresh THEN
      moved[item.n] := taken;
    END IF;
  END LOOP;

  -- Every event, numbered in batch order and, within a push, list order.
  INSERT INTO gatehouse_state.outbox (event_id, project_id, subject, kind,
                                      bulk, commits_unavailable, body)
  SELECT (ev.x->>'event_id')::uuid, (ev.x->>'project_id')::bigint,
         ev.x->>'subject', ev.x->>'kind', (ev.x->>'bulk')::boolean,
         (ev.x->>'commits_unavailable')::boolean,
         convert_from(substring(body_data FROM (ev.x->>'body_at')::int + 1
                                FOR (ev.x->>'body_bytes')::int), 'UTF8')
  FROM jsonb_array_elements(pushes) WITH ORDINALITY AS t(e, n)
       CROSS JOIN LATERAL
       jsonb_array_elements(t.e->'events') WITH ORDINALITY AS ev(x, m)
  WHERE NOT retried[t.n::int]
  ORDER BY t.n, ev.m;

  -- What a retry of each tracked push will be answered.
  UPDATE gatehouse_state.requests r
  SET outcome = jsonb_build_object('counter_decreased', decreased[t.n::int],
                                   'moved_message', moved[t.n::int])
  FROM jsonb_array_elements(pushes) WITH ORDINALITY AS t(e, n)
  WHERE coalesce(t.e->>'request_id', '') <> '' AND NOT retried[t.n::int]
    AND r.request_id = t.e->>'request_id' AND r.call = 'post_receive';

  RETURN QUERY
    SELECT i, retried[i], decreased[i], moved[i]
    FROM generate_series(1, total) AS i;
END
$fn$;
