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
  (3, ARRAY[['[1,2]', '[3,4]'], ['[5,6]', NULL]]::vector[], NULL, NULL, NULL),
  -- Lower bounds other than 1 go as the array's text, which keeps them.
  (4, '[0:1]={"[1,2]","[3,4]"}'::vector[], NULL, NULL, NULL);
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

-- An update that changes the key gives the new key in "new_key" (rendered
-- as "key" is), whatever the options: it was only in "row", which
-- include-row=false leaves out, and which leaves out a vector key (hunt-122).
-- No "new_key" when the key did not change, or when there is no key.
SELECT count(*) > 0 AS consumed FROM pg_logical_slot_get_changes('cdc_feed_regress', NULL, NULL);
CREATE TABLE cdc_k (id int PRIMARY KEY, t text);
CREATE TABLE cdc_kv (v vector(2) PRIMARY KEY, n int);
CREATE TABLE cdc_ki (a int NOT NULL, b int NOT NULL, t text);
CREATE UNIQUE INDEX cdc_ki_ab ON cdc_ki (a, b);
ALTER TABLE cdc_ki REPLICA IDENTITY USING INDEX cdc_ki_ab;
CREATE TABLE cdc_kf (a int, b text, v vector(2));
ALTER TABLE cdc_kf REPLICA IDENTITY FULL;
CREATE TABLE cdc_kn (id int PRIMARY KEY, t text);
ALTER TABLE cdc_kn REPLICA IDENTITY NOTHING;
CREATE TABLE cdc_kt (k text PRIMARY KEY, n int);
ALTER TABLE cdc_kt ALTER k SET STORAGE EXTERNAL;
INSERT INTO cdc_k VALUES (1, 'x');
UPDATE cdc_k SET id = 2;
UPDATE cdc_k SET t = 'y';
DELETE FROM cdc_k;
INSERT INTO cdc_kv VALUES ('[1,2]', 1);
UPDATE cdc_kv SET v = '[5,6]';
UPDATE cdc_kv SET n = 2;
DELETE FROM cdc_kv;
INSERT INTO cdc_ki VALUES (1, 1, 'x');
UPDATE cdc_ki SET b = 2;
UPDATE cdc_ki SET t = 'y';
INSERT INTO cdc_kf VALUES (1, 'x', '[1,2]');
UPDATE cdc_kf SET b = 'y';
UPDATE cdc_kf SET v = '[3,4]';
UPDATE cdc_kf SET a = a;
INSERT INTO cdc_kn VALUES (1, 'x');
UPDATE cdc_kn SET id = 2;
-- A key stored out of line (2496 bytes of hex digits, which do not compress):
-- PostgreSQL logs the old key whenever it is, also when the update left it
-- alone (then the new row has only its TOAST pointer, and the key did not
-- change).
INSERT INTO cdc_kt SELECT string_agg(md5(i::text), ''), 1 FROM generate_series(1, 78) i;
UPDATE cdc_kt SET n = 2;
UPDATE cdc_kt SET k = 'j' || k;
SELECT data::jsonb - 'lsn' - 'xid' AS event
  FROM pg_logical_slot_peek_changes('cdc_feed_regress', NULL, NULL, 'include-row', 'false',
    'tables', 'public.cdc_k, public.cdc_kv, public.cdc_ki, public.cdc_kf, public.cdc_kn')
 WHERE data::jsonb->>'op' <> 'message';
SELECT data::jsonb - 'lsn' - 'xid' AS event
  FROM pg_logical_slot_peek_changes('cdc_feed_regress', NULL, NULL,
    'tables', 'public.cdc_k, public.cdc_kv, public.cdc_kf')
 WHERE data::jsonb->>'op' <> 'message';
SELECT data::jsonb - 'lsn' - 'xid' AS event
  FROM pg_logical_slot_peek_changes('cdc_feed_regress', NULL, NULL, 'include-vectors', 'true',
    'tables', 'public.cdc_kf')
 WHERE data::jsonb->>'op' <> 'message';
SELECT e->>'op' AS op, left(e->'key'->>'k', 5) AS key, length(e->'key'->>'k') AS key_len,
       left(e->'new_key'->>'k', 5) AS new_key, length(e->'new_key'->>'k') AS new_key_len,
       e->'new_key'->>'k' = (SELECT k FROM cdc_kt) AS new_key_is_the_row,
       e->'unchanged_toast' AS unchanged_toast
  FROM (SELECT data::jsonb AS e FROM pg_logical_slot_peek_changes('cdc_feed_regress', NULL, NULL,
    'tables', 'public.cdc_kt')) AS d
 WHERE e->>'op' <> 'message';
DROP TABLE cdc_k, cdc_kv, cdc_ki, cdc_kf, cdc_kn, cdc_kt;

-- U+2028, U+2029 and U+0085 are escaped wherever a string is written (table
-- and column names, values, json values, messages): raw, they are valid JSON,
-- but readers that split lines by Unicode's rules (Python's splitlines, Java's
-- \R) cut the event there (hunt-122).
CREATE TABLE U&"cdc_u\2028" (id int PRIMARY KEY, U&"c\0085" text, j json, jb jsonb);
INSERT INTO U&"cdc_u\2028" VALUES (1, U&'a\2028b\2029c\0085d\2027\00e9',
  U&'{"k\2028": "v\2029"}', U&'{"k\0085": "v\2028"}');
SELECT 'msg' FROM pg_logical_emit_message(true, 'arrw', U&'{"m": "x\2028y"}');
SELECT 'msg' FROM pg_logical_emit_message(true, 'arrw', U&'not json \2029');
SELECT regexp_replace(data, '"lsn":"[^"]*","xid":[0-9]+', '"lsn":..,"xid":..') AS data,
       data ~ U&'[\2028\2029\0085]' AS has_raw_line_break,
       data::jsonb->'row'->>U&'c\0085' = U&'a\2028b\2029c\0085d\2027\00e9' AS same_value
  FROM pg_logical_slot_peek_changes('cdc_feed_regress', NULL, NULL, 'tables', U&'public."cdc_u\2028"')
 WHERE data::jsonb->>'table' = U&'public.cdc_u\2028' OR data::jsonb->>'origin' = 'user';
DROP TABLE U&"cdc_u\2028";

SELECT 'dropped' FROM pg_drop_replication_slot('cdc_feed_regress');
