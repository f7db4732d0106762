-- ivfpq index creation: option checks, operator classes and types, and the
-- edge cases of the build (empty table, fewer rows than lists, NULLs, mixed
-- dimensions). pgvector has no ivfpq; the messages pinned here are arrw's own.

CREATE TABLE ivb (id int PRIMARY KEY, v vector(4));
INSERT INTO ivb SELECT i, ARRAY[i % 5, i / 5, i % 3, 1] FROM generate_series(1, 40) i;

-- Option values: reloption bounds, then arrw's own checks at build time.
\set VERBOSITY sqlstate
CREATE INDEX ON ivb USING ivfpq (v) WITH (m = 3);
CREATE INDEX ON ivb USING ivfpq (v) WITH (m = 8);
CREATE INDEX ON ivb USING ivfpq (v) WITH (m = -1);
CREATE INDEX ON ivb USING ivfpq (v) WITH (nbits = 5);
CREATE INDEX ON ivb USING ivfpq (v) WITH (nbits = 2);
CREATE INDEX ON ivb USING ivfpq (v) WITH (nbits = 16);
CREATE INDEX ON ivb USING ivfpq (v) WITH (lists = -1);
CREATE INDEX ON ivb USING ivfpq (v) WITH (lists = 32769);
CREATE INDEX ON ivb USING ivfpq (v) WITH (probes = -1);
CREATE INDEX ON ivb USING ivfpq (v) WITH (rerank = -2);
CREATE INDEX ON ivb USING ivfpq (v) WITH (rerank = 100001);
CREATE INDEX ON ivb USING ivfpq (v) WITH (lists = 'many');
CREATE INDEX ON ivb USING ivfpq (v) WITH (colour = 1);
\set VERBOSITY default
CREATE INDEX ON ivb USING ivfpq (v) WITH (m = 3);
CREATE INDEX ON ivb USING ivfpq (v) WITH (m = 8);
CREATE INDEX ON ivb USING ivfpq (v) WITH (m = -1);
CREATE INDEX ON ivb USING ivfpq (v) WITH (nbits = 5);
CREATE INDEX ON ivb USING ivfpq (v) WITH (nbits = 2);
CREATE INDEX ON ivb USING ivfpq (v) WITH (nbits = 16);
CREATE INDEX ON ivb USING ivfpq (v) WITH (lists = -1);
CREATE INDEX ON ivb USING ivfpq (v) WITH (lists = 32769);
CREATE INDEX ON ivb USING ivfpq (v) WITH (probes = -1);
CREATE INDEX ON ivb USING ivfpq (v) WITH (rerank = -2);
CREATE INDEX ON ivb USING ivfpq (v) WITH (rerank = 100001);
CREATE INDEX ON ivb USING ivfpq (v) WITH (lists = 'many');
CREATE INDEX ON ivb USING ivfpq (v) WITH (colour = 1);
-- nbits is also checked by ALTER INDEX ... SET.
CREATE INDEX ivb_ok ON ivb USING ivfpq (v) WITH (lists = 2, m = 2, nbits = 4);
ALTER INDEX ivb_ok SET (nbits = 6);
ALTER INDEX ivb_ok SET (lists = 40000);
ALTER INDEX ivb_ok SET (refine = 3);
CREATE INDEX ON ivb USING ivfpq (v) WITH (refine = 9);
SELECT reloptions FROM pg_class WHERE relname = 'ivb_ok';
DROP INDEX ivb_ok;

-- Every accepted option spelled out, and the boundary values.
CREATE INDEX ivb_all ON ivb USING ivfpq (v)
  WITH (lists = 2, m = 4, nbits = 8, probes = 2, rerank = 10);
SELECT reloptions FROM pg_class WHERE relname = 'ivb_all';
DROP INDEX ivb_all;
CREATE INDEX ivb_min ON ivb USING ivfpq (v) WITH (lists = 1, m = 1, nbits = 4, rerank = 0);
DROP INDEX ivb_min;
CREATE INDEX ivb_auto ON ivb USING ivfpq (v) WITH (lists = 0, m = 0, nbits = 0, probes = 0, rerank = -1);
DROP INDEX ivb_auto;

-- Types, operator classes and index features ivfpq does not have.
\set VERBOSITY sqlstate
CREATE INDEX ON ivb USING ivfpq (id);
CREATE INDEX ON ivb USING ivfpq (v vector_l1_ops);
CREATE INDEX ON ivb USING ivfpq (v int4_ops);
CREATE INDEX ON ivb USING ivfpq (v, v);
CREATE INDEX ON ivb USING ivfpq (v) INCLUDE (id);
CREATE UNIQUE INDEX ON ivb USING ivfpq (v);
CREATE INDEX ON ivb USING ivfpq (v DESC);
CREATE INDEX ON ivb USING ivfpq ((v::text));
\set VERBOSITY default
CREATE INDEX ON ivb USING ivfpq (id);
CREATE INDEX ON ivb USING ivfpq (v vector_l1_ops);
CREATE INDEX ON ivb USING ivfpq (v int4_ops);
CREATE INDEX ON ivb USING ivfpq (v, v);
CREATE INDEX ON ivb USING ivfpq (v) INCLUDE (id);
CREATE UNIQUE INDEX ON ivb USING ivfpq (v);
CREATE INDEX ON ivb USING ivfpq (v DESC);
CREATE INDEX ON ivb USING ivfpq ((v::text));

-- The operator classes and their catalog entries.
SELECT opc.opcname, opc.opcdefault, amop.amopopr::regoperator, amop.amoppurpose,
       amproc.amproc::regproc
FROM pg_opclass opc
JOIN pg_am am ON am.oid = opc.opcmethod
JOIN pg_amop amop ON amop.amopfamily = opc.opcfamily
JOIN pg_amproc amproc ON amproc.amprocfamily = opc.opcfamily
WHERE am.amname = 'ivfpq'
ORDER BY opc.opcname;
SELECT amname, amtype FROM pg_am WHERE amname = 'ivfpq';
SELECT pg_indexam_has_property(oid, 'can_order') AS can_order,
       pg_indexam_has_property(oid, 'can_unique') AS can_unique,
       pg_indexam_has_property(oid, 'can_multi_col') AS can_multi_col,
       pg_indexam_has_property(oid, 'can_include') AS can_include
FROM pg_am WHERE amname = 'ivfpq';

-- Fewer rows than lists: the index gets one list per row (NOTICE), and still
-- answers exactly.
CREATE TABLE ivb_small (id int, v vector(2));
INSERT INTO ivb_small SELECT i, ARRAY[i, 0] FROM generate_series(1, 5) i;
CREATE INDEX ivb_small_idx ON ivb_small USING ivfpq (v) WITH (lists = 100, m = 1);
SET enable_seqscan = off;
SET ivfpq.probes = 100;
SELECT id FROM ivb_small ORDER BY v <-> '[2.2,0]' LIMIT 5;
SELECT lists, rows, trained FROM arrw.ivfpq_info('ivb_small_idx');
RESET ivfpq.probes;
RESET enable_seqscan;
DROP TABLE ivb_small;

-- An empty table: NOTICE, then the index re-ranks every row it holds until it
-- is rebuilt, so answers are exact with any probes.
CREATE TABLE ivb_empty (id int, v vector(3));
CREATE INDEX ivb_empty_idx ON ivb_empty USING ivfpq (v) WITH (lists = 8, m = 3);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM ivb_empty ORDER BY v <-> '[1,1,1]' LIMIT 3;
SELECT id FROM ivb_empty ORDER BY v <-> '[1,1,1]' LIMIT 3;
SELECT lists, rows, trained FROM arrw.ivfpq_info('ivb_empty_idx');
INSERT INTO ivb_empty SELECT i, ARRAY[i, 2 * i, 0] FROM generate_series(1, 50) i;
SET ivfpq.probes = 1;
SELECT id FROM ivb_empty ORDER BY v <-> '[10.2,20.3,1]' LIMIT 3;
SELECT id FROM ivb_empty ORDER BY v <#> '[1,1,1]' LIMIT 3;
SELECT count(*) FROM (SELECT id FROM ivb_empty ORDER BY v <-> '[0,0,0]' LIMIT 1000) s;
-- Every row, however many: more rows than work_mem holds candidates for
-- (64kB / 16 bytes = 4096).
INSERT INTO ivb_empty SELECT i, ARRAY[i, 2 * i, 0] FROM generate_series(51, 5000) i;
SET work_mem = '64kB';
SELECT count(*) FROM (SELECT id FROM ivb_empty ORDER BY v <-> '[0,0,0]' LIMIT 10000) s;
SELECT id FROM ivb_empty ORDER BY v <-> '[5000,10000,0]' LIMIT 3;
RESET work_mem;
-- Rebuilt with data, it is trained: lists = 8 now.
SELECT lists, rows, trained FROM arrw.ivfpq_info('ivb_empty_idx');
REINDEX INDEX ivb_empty_idx;
SELECT lists, rows, trained FROM arrw.ivfpq_info('ivb_empty_idx');
SET ivfpq.probes = 8;
SET ivfpq.rerank = 100000;
SELECT id FROM ivb_empty ORDER BY v <-> '[10.2,20.3,1]' LIMIT 3;
RESET ivfpq.rerank;
RESET ivfpq.probes;
RESET enable_seqscan;
DROP TABLE ivb_empty;

-- A column without a declared dimension: the first row fixes it; a build over
-- rows of different dimensions fails.
CREATE TABLE ivb_free (id int, v vector);
INSERT INTO ivb_free VALUES (1, '[1,2,3]'), (2, '[4,5,6]'), (3, '[7,8,9]');
CREATE INDEX ivb_free_idx ON ivb_free USING ivfpq (v) WITH (lists = 1, m = 3);
INSERT INTO ivb_free VALUES (4, '[1,2]');
SET enable_seqscan = off;
SELECT id FROM ivb_free ORDER BY v <-> '[1,2]' LIMIT 1;
SELECT id FROM ivb_free ORDER BY v <-> '[1,2,3]' LIMIT 1;
RESET enable_seqscan;
DROP INDEX ivb_free_idx;
INSERT INTO ivb_free VALUES (4, '[1,2]');
CREATE INDEX ivb_free_idx ON ivb_free USING ivfpq (v) WITH (lists = 1);
DROP TABLE ivb_free;

-- An empty table with no declared dimension: the first row inserted fixes it,
-- as a build's first row does (rows of mixed dimensions made the index's scans
-- fail on rows a filter would drop, and its REINDEX fail), and the (untrained)
-- index serves the rows exactly. A row inserted by a transaction that rolled
-- back still fixed it.
CREATE TABLE ivb_free_empty (id int, v vector);
CREATE INDEX ivb_free_empty_idx ON ivb_free_empty USING ivfpq (v);
INSERT INTO ivb_free_empty VALUES (1, '[1,2,3]'), (2, '[4,5,6]'), (3, '[7,8,9]');
INSERT INTO ivb_free_empty VALUES (4, '[1,2]');
INSERT INTO ivb_free_empty VALUES (4, '[1,2,3,4]');
SET enable_seqscan = off;
SELECT id FROM ivb_free_empty ORDER BY v <-> '[4,5,7]' LIMIT 2;
SELECT id FROM ivb_free_empty WHERE id > 5 ORDER BY v <-> '[4,5]' LIMIT 2;
RESET enable_seqscan;
SELECT arrw.ivfpq_check('ivb_free_empty_idx');
REINDEX INDEX ivb_free_empty_idx;
TRUNCATE ivb_free_empty;
BEGIN;
INSERT INTO ivb_free_empty VALUES (5, '[1,2]');
ROLLBACK;
INSERT INTO ivb_free_empty VALUES (6, '[1,2,3]');
INSERT INTO ivb_free_empty VALUES (6, '[1,2]');
DROP TABLE ivb_free_empty;
-- A declared dimension dropped by ALTER COLUMN (no rebuild: the index keeps
-- its pages) still holds: the first row recorded it.
CREATE TABLE ivb_alt (id int, v vector(3));
CREATE INDEX ivb_alt_idx ON ivb_alt USING ivfpq (v);
INSERT INTO ivb_alt VALUES (1, '[1,2,3]');
ALTER TABLE ivb_alt ALTER COLUMN v TYPE vector;
INSERT INTO ivb_alt VALUES (2, '[1,2]');
INSERT INTO ivb_alt VALUES (3, '[3,2,1]');
REINDEX INDEX ivb_alt_idx;
DROP TABLE ivb_alt;
-- The same for the elements of a vector[] column (vector_maxsim_ops).
CREATE TABLE ivb_free_multi (id int, v vector[]);
CREATE INDEX ivb_free_multi_idx ON ivb_free_multi USING ivfpq (v vector_maxsim_ops);
INSERT INTO ivb_free_multi VALUES (1, ARRAY['[1,2,3]', '[3,2,1]']::vector[]);
INSERT INTO ivb_free_multi VALUES (2, ARRAY['[1,2,3]', '[1,2]']::vector[]);
SET enable_seqscan = off;
SELECT id FROM ivb_free_multi ORDER BY v @# ARRAY['[1,2]']::vector[] LIMIT 1;
SELECT id FROM ivb_free_multi ORDER BY v @# ARRAY['[1,1,1]']::vector[] LIMIT 1;
RESET enable_seqscan;
DROP TABLE ivb_free_multi;

-- NULL vectors are not indexed; a table of only NULLs builds like an empty one.
CREATE TABLE ivb_nulls (id int, v vector(2));
INSERT INTO ivb_nulls SELECT i, NULL FROM generate_series(1, 10) i;
CREATE INDEX ivb_nulls_idx ON ivb_nulls USING ivfpq (v) WITH (lists = 2, m = 1);
INSERT INTO ivb_nulls VALUES (11, '[1,1]'), (12, NULL), (13, '[2,2]');
SET enable_seqscan = off;
SELECT id FROM ivb_nulls ORDER BY v <-> '[0,0]' LIMIT 10;
RESET enable_seqscan;
DROP TABLE ivb_nulls;

-- Expression and partial indexes.
CREATE TABLE ivb_expr (id int, v vector(2));
INSERT INTO ivb_expr SELECT i, ARRAY[i, 100 - i] FROM generate_series(1, 99) i;
CREATE INDEX ivb_expr_idx ON ivb_expr USING ivfpq (l2_normalize(v) vector_ip_ops)
  WITH (lists = 3, m = 1);
CREATE INDEX ivb_part_idx ON ivb_expr USING ivfpq (v) WITH (lists = 2, m = 1)
  WHERE id > 50;
SET enable_seqscan = off;
SET ivfpq.probes = 3;
EXPLAIN (COSTS OFF)
SELECT id FROM ivb_expr ORDER BY l2_normalize(v) <#> '[1,0]' LIMIT 3;
SELECT id FROM ivb_expr ORDER BY l2_normalize(v) <#> '[1,0]' LIMIT 3;
EXPLAIN (COSTS OFF)
SELECT id FROM ivb_expr WHERE id > 50 ORDER BY v <-> '[10,90]' LIMIT 3;
SELECT id FROM ivb_expr WHERE id > 50 ORDER BY v <-> '[10,90]' LIMIT 3;
RESET ivfpq.probes;
RESET enable_seqscan;
DROP TABLE ivb_expr;

-- VACUUM keeps the index's row count in pg_class: a VACUUM with nothing to
-- delete leaves it alone (it must not become 0), one that deletes counts the
-- entries left.
CREATE TABLE ivb_stats (id int, v vector(2)) WITH (autovacuum_enabled = off);
INSERT INTO ivb_stats SELECT i, ARRAY[i, i % 10] FROM generate_series(1, 500) i;
CREATE INDEX ivb_stats_idx ON ivb_stats USING ivfpq (v) WITH (lists = 2, m = 1);
SELECT reltuples FROM pg_class WHERE relname = 'ivb_stats_idx';
VACUUM ivb_stats;
SELECT reltuples FROM pg_class WHERE relname = 'ivb_stats_idx';
DELETE FROM ivb_stats WHERE id % 5 = 0;
VACUUM ivb_stats;
SELECT reltuples FROM pg_class WHERE relname = 'ivb_stats_idx';
VACUUM ivb_stats;
SELECT reltuples FROM pg_class WHERE relname = 'ivb_stats_idx';
DROP TABLE ivb_stats;
-- The same when the dead rows do not fit in maintenance_work_mem and VACUUM
-- scans the index in several passes (324000 dead TIDs, 1MB holds ~174000):
-- each pass counts what is left, the passes are not summed.
CREATE TABLE ivb_passes (id int, v vector(1)) WITH (autovacuum_enabled = off);
INSERT INTO ivb_passes SELECT i, ARRAY[i % 1000] FROM generate_series(1, 360000) i;
CREATE INDEX ivb_passes_idx ON ivb_passes USING ivfpq (v) WITH (lists = 2, m = 1, nbits = 4);
DELETE FROM ivb_passes WHERE id % 10 <> 0;
SET maintenance_work_mem = '1MB';
VACUUM ivb_passes;
RESET maintenance_work_mem;
SELECT reltuples FROM pg_class WHERE relname = 'ivb_passes_idx';
SELECT rows FROM arrw.ivfpq_info('ivb_passes_idx');
DROP TABLE ivb_passes;

-- Temporary tables (local buffers, no WAL).
CREATE TEMP TABLE ivb_temp (id int, v vector(2));
INSERT INTO ivb_temp SELECT i, ARRAY[i, 0] FROM generate_series(1, 300) i;
CREATE INDEX ivb_temp_idx ON ivb_temp USING ivfpq (v) WITH (lists = 3, m = 1);
INSERT INTO ivb_temp SELECT i, ARRAY[i, 0] FROM generate_series(301, 2000) i;
DELETE FROM ivb_temp WHERE id % 2 = 0;
VACUUM ivb_temp;
SET enable_seqscan = off;
SET ivfpq.probes = 3;
SET ivfpq.rerank = 100000;
SELECT id FROM ivb_temp ORDER BY v <-> '[1500.2,0]' LIMIT 3;
SELECT arrw.ivfpq_check('ivb_temp_idx');
RESET ivfpq.rerank;
RESET ivfpq.probes;
RESET enable_seqscan;
DROP TABLE ivb_temp;

DROP TABLE ivb;

-- Components near the float4 limit (finite, admitted by the type) make every
-- squared distance overflow (inf - inf = NaN). The build, inserts and scans
-- still work (such rows rank as NaN does); the build's k-means once took a
-- padding row for a list when every score was NaN: an internal error.
CREATE TABLE huge (id int, v vector(8));
INSERT INTO huge SELECT i, (SELECT array_agg((((i * 7 + j * 3) % 5) - 2) * 1.5e38) FROM generate_series(1, 8) j)::real[]::vector FROM generate_series(1, 300) i;
CREATE INDEX huge_v ON huge USING ivfpq (v) WITH (lists = 4);
INSERT INTO huge SELECT i, (SELECT array_agg((((i * 11 + j) % 5) - 2) * 1.5e38) FROM generate_series(1, 8) j)::real[]::vector FROM generate_series(301, 320) i;
SELECT arrw.ivfpq_check('huge_v');
SET enable_seqscan = off;
SELECT count(*) FROM (SELECT id FROM huge ORDER BY v <-> (SELECT v FROM huge WHERE id = 3) LIMIT 5) s;
RESET enable_seqscan;
DROP TABLE huge;

-- A refine code must fit an index page beside its row's TID: refine = 8 past
-- about 8,140 dimensions is refused before the table is read (it once built an
-- index that every reader then called corrupted).
CREATE TABLE wide (id int, v vector(8170));
\set VERBOSITY sqlstate
CREATE INDEX wide_v ON wide USING ivfpq (v) WITH (refine = 8);
\set VERBOSITY default
CREATE INDEX wide_v ON wide USING ivfpq (v) WITH (refine = 8);
CREATE INDEX wide_v ON wide USING ivfpq (v) WITH (refine = 4);
DROP TABLE wide;

-- The memory needed is that of the lists the table can have: lists = 32768 on
-- 1,000 rows builds 1,000 lists within the default maintenance_work_mem (it
-- asked for 397 MB before the table was read, then, counting 291 rows a heap
-- page, 265 MB: a 128-d row takes ~540 bytes).
CREATE TABLE few (id int, v vector(128));
INSERT INTO few SELECT i, (SELECT array_agg(((i * 31 + j) % 17)::real) FROM generate_series(1, 128) j) FROM generate_series(1, 1000) i;
SET maintenance_work_mem = '64MB';
CREATE INDEX few_v ON few USING ivfpq (v) WITH (lists = 32768);
SELECT lists FROM arrw.ivfpq_info('few_v');
RESET maintenance_work_mem;
DROP TABLE few;
-- A vector(600) goes out of line (~157 rows a page): a budget the model of
-- the lists such a table can have does not fit fails before the table is read
-- (the DETAIL counts the lists the table's size allows, not its 2,000 rows).
-- Counted at 2 bytes an element, it was taken for 5 rows a page, and the
-- build read and detoasted the table first (hunt-68).
CREATE TABLE wide_few (id int, v vector(600));
INSERT INTO wide_few SELECT i, array_fill((i % 7)::real, ARRAY[600])::vector FROM generate_series(1, 2000) i;
SET maintenance_work_mem = '2MB';
CREATE INDEX wide_few_v ON wide_few USING ivfpq (v) WITH (lists = 32768);
RESET maintenance_work_mem;
DROP TABLE wide_few;

-- Values near ±3e38 on both sides of one dimension: the refine code's range
-- was wider than a float4 holds, and the build wrote a model that every later
-- read (INSERT, scans, ivfpq_check) called corrupt; REINDEX made it again.
CREATE TABLE ivb_huge (id int, v vector(2));
INSERT INTO ivb_huge VALUES (1,'[3e38,0]'), (2,'[-3e38,0]'), (3,'[1,1]'), (4,'[0.5,0.25]'), (5,'[-1,2]');
CREATE INDEX ivb_huge_v ON ivb_huge USING ivfpq (v) WITH (refine = 4);
SELECT arrw.ivfpq_check('ivb_huge_v');
INSERT INTO ivb_huge VALUES (6,'[0,0]');
SET enable_seqscan = off;
SELECT id FROM ivb_huge ORDER BY v <-> '[0,0]' LIMIT 4;
RESET enable_seqscan;
DROP INDEX ivb_huge_v;
CREATE INDEX ivb_huge_c ON ivb_huge USING ivfpq (v vector_cosine_ops) WITH (refine = 8);
INSERT INTO ivb_huge VALUES (7,'[2,1]');
SELECT arrw.ivfpq_check('ivb_huge_c');
DROP TABLE ivb_huge;

-- A prime dimension count has no divisor near the usual m: the default is
-- m = 1, which the build says (it was silent).
CREATE TABLE ivb_prime (id int, v vector(257));
INSERT INTO ivb_prime SELECT i, (SELECT array_agg(random()::real) FROM generate_series(1, 257) WHERE i > 0)::vector
FROM generate_series(1, 200) i;
CREATE INDEX ivb_prime_v ON ivb_prime USING ivfpq (v) WITH (lists = 2);
SELECT m FROM arrw.ivfpq_info('ivb_prime_v');
DROP TABLE ivb_prime;
-- Above 2,048 dimensions a prime count has no code that fits at all (m = 2053
-- would be 2,053 bytes): the hint says to pad, not to pass what was passed.
CREATE TABLE ivb_prime (id int, v vector(2053));
INSERT INTO ivb_prime SELECT i, (SELECT array_agg(random()::real) FROM generate_series(1, 2053) WHERE i > 0)::vector
FROM generate_series(1, 20) i;
CREATE INDEX ivb_prime_v ON ivb_prime USING ivfpq (v) WITH (lists = 2, nbits = 8);
DROP TABLE ivb_prime;

-- An index built on an empty table holds a query to the column's declared
-- dimension at once (it was raised only by the first row compared, and not at
-- all on an empty table).
CREATE TABLE ivb_decl (id int, v vector(3));
CREATE INDEX ivb_decl_v ON ivb_decl USING ivfpq (v);
SET enable_seqscan = off;
SELECT id FROM ivb_decl ORDER BY v <-> '[1,2]' LIMIT 5;
RESET enable_seqscan;
DROP TABLE ivb_decl;

-- Options that do not fit the index's dimensions are refused when they change
-- without a build (ALTER INDEX ... SET, the first row of an index built from
-- no rows), not at the next REINDEX, pg_restore or pg_upgrade.
CREATE TABLE optfit (id int, v vector(4));
INSERT INTO optfit SELECT i, ARRAY[i, i % 7, i % 5, 1]::real[]::vector FROM generate_series(1, 200) i;
CREATE INDEX optfit_v ON optfit USING ivfpq (v) WITH (lists = 2);
ALTER INDEX optfit_v SET (m = 3);
ALTER TABLE optfit_v SET (m = 3);
ALTER INDEX optfit_v SET (refine = 8, nbits = 8, m = 2);
SELECT reloptions FROM pg_class WHERE relname = 'optfit_v';
ALTER INDEX optfit_v RESET (m);
REINDEX INDEX optfit_v;
CREATE TABLE optfit_any (id int, v vector);
CREATE INDEX optfit_any_v ON optfit_any USING ivfpq (v) WITH (m = 3);
INSERT INTO optfit_any VALUES (1, '[1,2,3,4]');
INSERT INTO optfit_any VALUES (1, '[1,2,3,4,5,6]');
INSERT INTO optfit_any VALUES (2, '[1,2,3]');
REINDEX INDEX optfit_any_v;
ALTER INDEX optfit_any_v SET (m = 4);
DROP TABLE optfit, optfit_any;
-- A domain over vector(n) declares n too (its column's own typmod is -1, the
-- domain's is n): an empty table's index took m = 3 at CREATE and ALTER INDEX
-- and then refused every row.
CREATE DOMAIN optfit_d4 AS vector(4);
CREATE DOMAIN optfit_dd4 AS optfit_d4;
CREATE TABLE optfit_dom (id int, v optfit_d4, w optfit_dd4);
CREATE INDEX optfit_dom_v ON optfit_dom USING ivfpq (v) WITH (m = 3);
CREATE INDEX optfit_dom_w ON optfit_dom USING ivfpq (w) WITH (m = 3);
CREATE INDEX optfit_dom_v ON optfit_dom USING ivfpq (v) WITH (m = 2);
ALTER INDEX optfit_dom_v SET (m = 3);
SET enable_seqscan = off;
SELECT id FROM optfit_dom ORDER BY v <-> '[1,2]' LIMIT 5;
RESET enable_seqscan;
INSERT INTO optfit_dom VALUES (1, '[1,2,3,4]', '[1,2,3,4]');
SELECT dim FROM arrw.ivfpq_info('optfit_dom_v');
DROP TABLE optfit_dom;
DROP DOMAIN optfit_dd4, optfit_d4;
-- arrw.ivfpq_info of an index built from no rows reports the dimensions its
-- rows are held to and the m its build will use: the placeholder model's 1
-- and 1 before, also once a row had fixed the dimensions.
CREATE TABLE info_m (id int, v vector);
CREATE INDEX info_m_v ON info_m USING ivfpq (v) WITH (m = 3);
INSERT INTO info_m VALUES (1, '[1,2,3,4,5,6,7,8,9]');
SELECT dim, m, nbits, code_bytes, trained FROM arrw.ivfpq_info('info_m_v');
DROP TABLE info_m;

-- An index never built (a failed CREATE INDEX CONCURRENTLY leaves an empty
-- file) takes its options fixed, then REINDEX: the check read its missing
-- meta page (XX002) and refused every ALTER.
CREATE TABLE optfit_inv (id int, v vector);
INSERT INTO optfit_inv SELECT i, ARRAY[i, i % 7, i % 5, 1]::real[]::vector FROM generate_series(1, 300) i;
CREATE INDEX CONCURRENTLY optfit_inv_v ON optfit_inv USING ivfpq (v) WITH (m = 3);
ALTER INDEX optfit_inv_v SET (m = 2);
REINDEX INDEX optfit_inv_v;
SELECT indisvalid FROM pg_index WHERE indexrelid = 'optfit_inv_v'::regclass;
DROP TABLE optfit_inv;

-- The megabytes a build too big for maintenance_work_mem asks for are enough:
-- a larger budget samples more rows and keeps more stand-in queries, which
-- the first message left out (an undeclared dimension: 1MB asked for 39 MB,
-- and 39 MB for 40).
SELECT setseed(0.2);
CREATE TABLE ivb_ask AS SELECT g AS id,
  (SELECT array_agg(random()::real) FROM generate_series(1, 96) WHERE g > 0)::vector AS v
FROM generate_series(1, 6000) g;
CREATE FUNCTION ivb_hints() RETURNS int LANGUAGE plpgsql AS $$
DECLARE h text; tries int := 0;
BEGIN
  PERFORM set_config('maintenance_work_mem', '1MB', true);
  LOOP
    BEGIN
      CREATE INDEX ivb_ask_v ON ivb_ask USING ivfpq (v) WITH (lists = 3000);
      RETURN tries;
    EXCEPTION WHEN program_limit_exceeded THEN
      GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
      tries := tries + 1;
      IF tries > 3 THEN RETURN tries; END IF;
      PERFORM set_config('maintenance_work_mem', substring(h FROM '''(\d+MB)'''), true);
    END;
  END LOOP;
END $$;
SET client_min_messages = warning;
SELECT ivb_hints() AS errors_before_the_build;
RESET client_min_messages;
DROP TABLE ivb_ask;
DROP FUNCTION ivb_hints();
-- A temporary table ON COMMIT DELETE ROWS is emptied, and its indexes rebuilt,
-- at every commit of a transaction that used it: no NOTICE about an empty
-- table then (it came at every commit, even of a plain SELECT).
CREATE TEMP TABLE ivb_tmp (id int, v vector(3)) ON COMMIT DELETE ROWS;
BEGIN;
INSERT INTO ivb_tmp SELECT i, ARRAY[i, i % 7, i % 5]::real[]::vector FROM generate_series(1, 300) i;
CREATE INDEX ivb_tmp_v ON ivb_tmp USING ivfpq (v) WITH (lists = 3, m = 1);
SELECT count(*) FROM ivb_tmp;
COMMIT;
BEGIN;
SELECT count(*) FROM ivb_tmp;
COMMIT;
INSERT INTO ivb_tmp VALUES (1, '[1,2,3]');
SELECT count(*) FROM ivb_tmp;
-- Nor at the commits VACUUM makes inside its statement (a portal is active
-- then), of this table or of any other temporary one.
CREATE TEMP TABLE ivb_tmp2 (x int);
INSERT INTO ivb_tmp2 VALUES (1);
VACUUM ivb_tmp2;
VACUUM ivb_tmp;
DROP TABLE ivb_tmp, ivb_tmp2;
