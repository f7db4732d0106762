-- The slot feed (the arrw output plugin, docs/cdc.md): its options, how it
-- renders vector columns, and which messages it marks "origin":"arrw".
-- Events are shown without their lsn and xid, which change from run to run.
SELECT 'slot' FROM pg_create_logical_replication_slot('cdc_feed_regress', 'arrw');

-- An option given twice is an error naming it (a second 'tables' silently
-- replaced the first list: every change of public.cdc_d1 was lost).
CREATE TABLE cdc_d1 (id int PRIMARY KEY);
CREATE TABLE cdc_d2 (id int PRIMARY KEY);
INSERT INTO cdc_d1 VALUES (1);
INSERT INTO cdc_d2 VALUES (2);
\set VERBOSITY sqlstate
SELECT data FROM pg_logical_slot_peek_changes('cdc_feed_regress', NULL, NULL,
  'tables', 'public.cdc_d1', 'tables', 'public.cdc_d2');
\set VERBOSITY default
SELECT data FROM pg_logical_slot_peek_changes('cdc_feed_regress', NULL, NULL,
  'tables', 'public.cdc_d1', 'tables', 'public.cdc_d2');
SELECT data FROM pg_logical_slot_peek_changes('cdc_feed_regress', NULL, NULL,
  'include-row', 'true', 'include-row', 'false');
-- One list with both tables.
SELECT data::jsonb - 'lsn' - 'xid' AS event
  FROM pg_logical_slot_peek_changes('cdc_feed_regress', NULL, NULL,
  'tables', 'public.cdc_d1, public.cdc_d2');

-- Table names in 'tables' are truncated to 63 bytes as SQL identifiers are
-- (the 70-character name SQL accepts matched nothing).
CREATE TABLE llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll (id int PRIMARY KEY);
INSERT INTO llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll VALUES (1);
SELECT data::jsonb - 'lsn' - 'xid' AS event
  FROM pg_logical_slot_peek_changes('cdc_feed_regress', NULL, NULL,
  'tables', 'public.llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll');
SELECT data::jsonb - 'lsn' - 'xid' AS event
  FROM pg_logical_slot_peek_changes('cdc_feed_regress', NULL, NULL,
  'tables', '"public"."llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllxyz"');
DROP TABLE llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll;
DROP TABLE cdc_d1, cdc_d2;

-- Vector columns are recognised by type, not by name: a type named vector in
-- another schema is rendered as a string (its text was embedded raw, line
-- breaks included, or left out as a vector), and arrw's own vector as a JSON
-- array.
CREATE SCHEMA cdc_s;
CREATE TYPE cdc_s.vector AS ENUM (E'[1,\n2]', E'{"a":\r\n1}');
CREATE TYPE cdc_s.halfvec AS ENUM (E'[3,\n4]');
CREATE TABLE cdc_vn (id cdc_s.vector PRIMARY KEY, h cdc_s.halfvec, e vector(3));
INSERT INTO cdc_vn VALUES (E'[1,\n2]', E'[3,\n4]', '[1,2,3]'), (E'{"a":\r\n1}', NULL, NULL);
SELECT data::jsonb - 'lsn' - 'xid' AS event, position(E'\n' IN data) > 0 AS has_raw_newline
  FROM pg_logical_slot_peek_changes('cdc_feed_regress', NULL, NULL, 'tables', 'public.cdc_vn');
SELECT data::jsonb - 'lsn' - 'xid' AS event, position(E'\n' IN data) > 0 AS has_raw_newline
  FROM pg_logical_slot_peek_changes('cdc_feed_regress', NULL, NULL, 'tables', 'public.cdc_vn',
    'include-vectors', 'true');
DROP TABLE cdc_vn;
DROP SCHEMA cdc_s CASCADE;

-- Arrays of vectors (a MaxSim column) are vectors too: left out and named in
-- "omitted" by default, JSON arrays of vectors with include-vectors (they
-- were sent whole every time, as a string of their text).
CREATE DOMAIN cdc_vd AS vector(2);
CREATE TABLE cdc_va (id int PRIMARY KEY, vs vector[], hs halfvec[], ds cdc_vd[], t text[]);
INSERT INTO cdc_va VALUES
  (1, ARRAY['[1,2]', '[3,4]']::vector[], ARRAY['[0.5,1]']::halfvec[], ARRAY['[5,6]']::cdc_vd[], '{a,b}'),
  (2, '{}', ARRAY[NULL, '[1,1]']::halfvec[], NULL, NULL),
  (3, ARRAY[['[1,2]', '[3,4]'], ['[5,6]', NULL]]::vector[], NULL, NULL, NULL);
SELECT data::jsonb - 'lsn' - 'xid' AS event
  FROM pg_logical_slot_peek_changes('cdc_feed_regress', NULL, NULL, 'tables', 'public.cdc_va');
SELECT data::jsonb - 'lsn' - 'xid' AS event
  FROM pg_logical_slot_peek_changes('cdc_feed_regress', NULL, NULL, 'tables', 'public.cdc_va',
    'include-vectors', 'true');
DROP TABLE cdc_va;
DROP DOMAIN cdc_vd;

-- arrw.cancel_job's "cancelled" event for a queued job is arrw's own, like the
-- "queued" one (it was "origin":"user": that transaction writes
-- arrw.job_cancel, not arrw.job); a copy sent by pg_logical_emit_message in
-- another transaction is still "user".
CREATE TABLE cdc_jt (id int PRIMARY KEY);
BEGIN;
SELECT txid_current() AS cancel_xid \gset
SELECT arrw.submit_job('batch_delete', '{"table": "cdc_jt", "where": "id < 7"}') AS job_id \gset
SELECT arrw.cancel_job(:job_id);
SELECT arrw.cancel_job(:job_id);
COMMIT;
BEGIN;
SELECT txid_current() AS forged_xid \gset
SELECT 'forged' FROM pg_logical_emit_message(true, 'arrw',
  format('{"kind": "job", "payload": {"id": %s, "kind": "batch_delete", "state": "cancelled"}}', :job_id));
COMMIT;
SELECT e->>'xid' = :'cancel_xid' AS in_cancel_txn, e->>'origin' AS origin,
       e->'content'->'payload'->>'state' AS state,
       e->'content'->'payload'->>'id' = :'job_id' AS same_job
  FROM (SELECT data::jsonb AS e FROM pg_logical_slot_peek_changes('cdc_feed_regress', NULL, NULL, 'tables', 'public.cdc_jt')) AS d
 WHERE e->>'op' = 'message' AND e->>'xid' IN (:'cancel_xid', :'forged_xid')
 ORDER BY (e->>'lsn')::pg_lsn;
SELECT arrw.wait_job(:job_id, '60s');
DROP TABLE cdc_jt;

SELECT 'dropped' FROM pg_drop_replication_slot('cdc_feed_regress');
