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

SELECT 'dropped' FROM pg_drop_replication_slot('cdc_feed_regress');
