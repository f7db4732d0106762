-- Scan profiling: with ivfpq.profile on, a session's ivfpq scans count their
-- lists, pages, codes and re-ranked rows and time their phases
-- (arrw.ivfpq_profile()); off, nothing is counted.
CREATE TABLE prof (id int, v vector(4));
INSERT INTO prof
SELECT i, ARRAY[sin(i), cos(i * 0.7), sin(i * 1.3), cos(i * 0.37)]::real[]::vector
FROM generate_series(1, 2000) i;
CREATE INDEX prof_v ON prof USING ivfpq (v) WITH (lists = 4, m = 2);
SET enable_seqscan = off;

SELECT arrw.ivfpq_profile_reset();
SELECT count(*) FROM (SELECT id FROM prof ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 10) s;
SELECT arrw.ivfpq_profile()->>'scans' AS scans_while_off;

SET ivfpq.profile = on;
SET ivfpq.probes = 4;
SELECT count(*) FROM (SELECT id FROM prof ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 10) s;
SELECT p->>'scans' AS scans, p->>'lists' AS lists, p->>'candidates' AS codes,
       (p->>'reranked')::int >= 10 AS reranked_enough, p->>'returned' AS returned,
       (p->>'codes_s')::float8 > 0 AS timed,
       (SELECT count(*) FROM jsonb_object_keys(p)) AS fields
FROM arrw.ivfpq_profile() p;
SELECT arrw.ivfpq_profile_reset();
SELECT arrw.ivfpq_profile()->>'lists' AS lists_after_reset;
-- open_scans: scan states this backend has not freed. The executor does not
-- end the scans of a query that fails; their states go with the query's
-- memory (a memory context callback) instead of staying for the session.
SELECT arrw.ivfpq_profile()->>'open_scans' AS open_scans;
SELECT id FROM prof ORDER BY v <-> '[1,2,3]' LIMIT 1;
SELECT id FROM prof ORDER BY v <-> '[1,2,3,4,5]' LIMIT 1;
BEGIN;
SELECT count(*) FROM (SELECT id FROM prof ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5) s;
SELECT id FROM prof ORDER BY v <-> '[1,2]' LIMIT 1;
ROLLBACK;
SELECT arrw.ivfpq_profile()->>'open_scans' AS open_scans_after_errors;
-- The counters are the current role's: after SET ROLE (or SET SESSION
-- AUTHORIZATION) a role that may not read the table sees none of its scans,
-- and the counting role's own are gone with the change.
CREATE ROLE prof_other;
SELECT count(*) FROM (SELECT id FROM prof ORDER BY v <-> '[1,2,3,4]' LIMIT 3) s;
SELECT (arrw.ivfpq_profile()->>'scans')::int > 0 AS counted;
SET ROLE prof_other;
SELECT arrw.ivfpq_profile()->>'scans' AS scans_seen_by_another_role;
RESET ROLE;
SELECT arrw.ivfpq_profile()->>'scans' AS scans_after_the_change;
-- Nor does a SECURITY DEFINER function's scan, run with its owner's rights,
-- count for the role calling it.
CREATE FUNCTION prof_definer() RETURNS bigint LANGUAGE sql SECURITY DEFINER
  SET enable_seqscan = off AS
  $$ SELECT count(*) FROM (SELECT id FROM prof ORDER BY v <-> '[1,2,3,4]' LIMIT 3) s $$;
GRANT EXECUTE ON FUNCTION prof_definer() TO prof_other;
SET ROLE prof_other;
SELECT prof_definer();
SELECT arrw.ivfpq_profile()->>'scans' AS definer_scans_seen;
RESET ROLE;
DROP FUNCTION prof_definer();
-- A role counts only scans of tables whose every row it may read: not a scan
-- under a row-level security policy, nor one through a view of a table it may
-- not read (the view's owner's rights): their counts cover hidden rows.
ALTER TABLE prof ENABLE ROW LEVEL SECURITY;
CREATE POLICY prof_few ON prof FOR SELECT USING (id <= 10);
GRANT SELECT ON prof TO prof_other;
CREATE VIEW prof_view AS SELECT id, v FROM prof WHERE id % 100 = 0;
CREATE TABLE prof_private AS SELECT * FROM prof;
CREATE INDEX ON prof_private USING ivfpq (v) WITH (lists = 4, m = 2);
CREATE VIEW prof_private_view AS SELECT id, v FROM prof_private WHERE id % 100 = 0;
GRANT SELECT ON prof_private_view TO prof_other;
SET ROLE prof_other;
SELECT arrw.ivfpq_profile_reset();
SELECT count(*) FROM (SELECT id FROM prof ORDER BY v <-> '[1,2,3,4]' LIMIT 3) s;
SELECT count(*) FROM (SELECT id FROM prof_private_view ORDER BY v <-> '[1,2,3,4]' LIMIT 3) s;
SELECT arrw.ivfpq_profile()->>'scans' AS scans_of_hidden_rows,
       arrw.ivfpq_profile()->>'candidates' AS candidates_of_hidden_rows;
RESET ROLE;
-- Nor may a SECURITY DEFINER function read the calling role's counters: its
-- owner may not read the tables they count. Inside one they all read 0.
SELECT count(*) FROM (SELECT id FROM prof_private ORDER BY v <-> '[1,2,3,4]' LIMIT 3) s;
CREATE FUNCTION prof_peek() RETURNS jsonb LANGUAGE sql SECURITY DEFINER
  AS $$ SELECT arrw.ivfpq_profile() $$;
ALTER FUNCTION prof_peek() OWNER TO prof_other;
SELECT prof_peek()->>'scans' AS scans_a_definer_sees, prof_peek()->>'candidates' AS candidates_a_definer_sees;
SELECT (arrw.ivfpq_profile()->>'scans')::int > 0 AS own_scans_still_counted;
DROP FUNCTION prof_peek();
-- A role granted SELECT on a partitioned table reads every row of its
-- partitions (which have no grants of their own): their scans count.
CREATE TABLE prof_parted (id int, v vector(4)) PARTITION BY RANGE (id);
CREATE TABLE prof_parted0 PARTITION OF prof_parted FOR VALUES FROM (0) TO (1000000);
INSERT INTO prof_parted SELECT id, v FROM prof;
CREATE INDEX ON prof_parted USING ivfpq (v) WITH (lists = 4, m = 2);
GRANT SELECT ON prof_parted TO prof_other;
SET ROLE prof_other;
SELECT arrw.ivfpq_profile_reset();
SELECT count(*) FROM (SELECT id FROM prof_parted ORDER BY v <-> '[1,2,3,4]' LIMIT 3) s;
SELECT (arrw.ivfpq_profile()->>'scans')::int > 0 AS partition_scans_counted;
RESET ROLE;
DROP TABLE prof_parted;
-- Nor a table in a schema the role may not use, whatever its grants on the
-- table: no query of the role's reaches it except through a view (hunt-63:
-- a view of three rows showed the scan's 300 candidates).
CREATE SCHEMA prof_hidden;
CREATE TABLE prof_hidden.t AS SELECT * FROM prof;
CREATE INDEX ON prof_hidden.t USING ivfpq (v) WITH (lists = 4, m = 2);
GRANT SELECT ON prof_hidden.t TO prof_other;
CREATE VIEW prof_hidden_view AS SELECT id, v FROM prof_hidden.t WHERE id % 100 = 0;
GRANT SELECT ON prof_hidden_view TO prof_other;
SET ROLE prof_other;
SELECT arrw.ivfpq_profile_reset();
SELECT count(*) FROM (SELECT id FROM prof_hidden_view ORDER BY v <-> '[1,2,3,4]' LIMIT 3) s;
SELECT arrw.ivfpq_profile()->>'scans' AS scans_without_schema_usage;
RESET ROLE;
DROP VIEW prof_hidden_view;
DROP SCHEMA prof_hidden CASCADE;
-- Each scan keeps its own decision: a permitted scan run inside a forbidden
-- one (a LATERAL loop driven by the view's scan) does not make the forbidden
-- scan's later rows count (hunt-63: `returned` was 19, the view's rows 2-10
-- counted with the inner scans' 10).
CREATE TABLE prof_mine AS SELECT * FROM prof_private;
CREATE INDEX ON prof_mine USING ivfpq (v) WITH (lists = 4, m = 2);
GRANT SELECT ON prof_mine TO prof_other;
SET ROLE prof_other;
EXPLAIN (COSTS OFF)
SELECT count(*) FROM (SELECT id, v FROM prof_private_view ORDER BY v <-> '[1,2,3,4]' LIMIT 10) a,
  LATERAL (SELECT id FROM prof_mine ORDER BY v <-> a.v LIMIT 1) b;
SELECT arrw.ivfpq_profile_reset();
SELECT count(*) FROM (SELECT id, v FROM prof_private_view ORDER BY v <-> '[1,2,3,4]' LIMIT 10) a,
  LATERAL (SELECT id FROM prof_mine ORDER BY v <-> a.v LIMIT 1) b;
SELECT p->>'scans' AS scans, p->>'returned' AS returned FROM arrw.ivfpq_profile() p;
RESET ROLE;
-- Nor when the permitted scan runs inside the forbidden scan's own filter (a
-- function in its WHERE clause, called between the forbidden scan's counts):
-- the scan under the policy counted, as `filtered`, the rows the policy hid
-- (hunt-86: 64).
CREATE FUNCTION prof_nested(int) RETURNS boolean LANGUAGE plpgsql STABLE AS
  $$ BEGIN PERFORM 1 FROM (SELECT id FROM prof_mine ORDER BY v <-> '[1,2,3,4]' LIMIT 1) m; RETURN true; END $$;
SET ROLE prof_other;
SELECT arrw.ivfpq_profile_reset();
SELECT count(*) FROM (SELECT id FROM prof WHERE prof_nested(id) ORDER BY v <-> '[1,2,3,4]' LIMIT 3) s;
SELECT p->>'filtered' AS filtered_of_hidden_rows FROM arrw.ivfpq_profile() p;
RESET ROLE;
DROP FUNCTION prof_nested(int);
DROP TABLE prof_mine;
DROP VIEW prof_view, prof_private_view;
DROP TABLE prof_private;
DROP POLICY prof_few ON prof;
ALTER TABLE prof DISABLE ROW LEVEL SECURITY;
REVOKE SELECT ON prof FROM prof_other;
DROP ROLE prof_other;
-- The session keeps one model per index: a REINDEX (here, or an
-- index_optimize job's in another session) replaces the index's model, and a
-- dropped index's model goes, rather than staying beside the new one; and a
-- query over 20 partitions' indexes finds all their models again on its next
-- execution (hunt-90: each rebuild kept one more model, up to 16, and past 16
-- indexes every execution read every model from its pages).
SELECT count(*) FROM (SELECT id FROM prof ORDER BY v <-> '[1,2,3,4]' LIMIT 3) s;
SELECT (arrw.ivfpq_profile()->>'models_cached')::int AS cached_before \gset
REINDEX TABLE prof;
SELECT count(*) FROM (SELECT id FROM prof ORDER BY v <-> '[1,2,3,4]' LIMIT 3) s;
REINDEX TABLE prof;
SELECT count(*) FROM (SELECT id FROM prof ORDER BY v <-> '[1,2,3,4]' LIMIT 3) s;
-- A concurrent rebuild makes a new index (a new OID) and drops the old one.
REINDEX TABLE CONCURRENTLY prof;
SELECT count(*) FROM (SELECT id FROM prof ORDER BY v <-> '[1,2,3,4]' LIMIT 3) s;
REINDEX TABLE CONCURRENTLY prof;
SELECT count(*) FROM (SELECT id FROM prof ORDER BY v <-> '[1,2,3,4]' LIMIT 3) s;
-- (Fewer, even: the models of indexes dropped earlier in this file go too.)
SELECT (arrw.ivfpq_profile()->>'models_cached')::int <= :cached_before AS no_model_kept_by_rebuilds;
CREATE TABLE prof_many (id int, v vector(4)) PARTITION BY HASH (id);
DO $$ BEGIN
  FOR i IN 0..19 LOOP
    EXECUTE format('CREATE TABLE prof_many_%s PARTITION OF prof_many FOR VALUES WITH (MODULUS 20, REMAINDER %s)', i, i);
  END LOOP;
END $$;
INSERT INTO prof_many SELECT id, v FROM prof;
CREATE INDEX ON prof_many USING ivfpq (v) WITH (lists = 2, m = 2);
SELECT count(*) FROM (SELECT id FROM prof_many ORDER BY v <-> '[1,2,3,4]' LIMIT 3) s;
SELECT arrw.ivfpq_profile_reset();
SELECT count(*) FROM (SELECT id FROM prof_many ORDER BY v <-> '[1,2,3,4]' LIMIT 3) s;
SELECT p->>'scans' AS scans, p->>'model_loads' AS models_read_again FROM arrw.ivfpq_profile() p;
DROP TABLE prof_many;
-- ivfpq.model_cache bounds the models a session keeps beyond the one in use
-- (0: none). Even then a scan rescanned for each outer row (two LATERAL
-- subqueries over two indexes, in turn, under a nested loop) reads each model
-- once: a scan keeps its model across rescans of the same build. Looked up
-- again per rescan, the two would evict each other and be read from their
-- pages for every outer row (hunt-93, with more indexes than the cache holds).
SHOW ivfpq.model_cache;
SET ivfpq.model_cache = 0;
CREATE TABLE prof_b AS SELECT id, v FROM prof;
CREATE INDEX ON prof_b USING ivfpq (v) WITH (lists = 2, m = 2);
SELECT arrw.ivfpq_profile_reset();
SELECT count(*), count(DISTINCT a.id) > 1 AS varied FROM generate_series(1, 10) g,
  LATERAL (SELECT id FROM prof ORDER BY v <-> ARRAY[g, 2, 3, 4]::real[]::vector LIMIT 1) a,
  LATERAL (SELECT id FROM prof_b ORDER BY v <-> ARRAY[4, 3, 2, g]::real[]::vector LIMIT 1) b;
SELECT (p->>'scans')::int >= 20 AS rescanned, p->>'model_loads' AS model_loads,
  p->>'models_cached' AS models_cached FROM arrw.ivfpq_profile() p;
SET ivfpq.model_cache = -1;
RESET ivfpq.model_cache;
-- A lowered ivfpq.model_cache applies at the next lookup, a hit too: a
-- session whose lookups all hit kept every model (hunt-141).
SELECT count(*) FROM (SELECT id FROM prof ORDER BY v <-> '[1,2,3,4]' LIMIT 1) s;
SELECT count(*) FROM (SELECT id FROM prof_b ORDER BY v <-> '[1,2,3,4]' LIMIT 1) s;
SELECT p->>'models_cached' AS models_cached FROM arrw.ivfpq_profile() p;
SET ivfpq.model_cache = 0;
SELECT count(*) FROM (SELECT id FROM prof ORDER BY v <-> '[1,2,3,4]' LIMIT 1) s;
SELECT p->>'models_cached' AS models_cached FROM arrw.ivfpq_profile() p;
RESET ivfpq.model_cache;
DROP TABLE prof_b;
RESET ivfpq.profile;
RESET ivfpq.probes;
RESET enable_seqscan;
DROP TABLE prof;
