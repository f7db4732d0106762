-- ivfpq index scans: which plans use the index, exact answers with
-- probes = lists for all three operator classes, iterative scans under a
-- filter, probes/rerank settings versus index options, and results after
-- INSERT, DELETE + VACUUM and REINDEX.
--
-- Data: four well separated blobs of 100 points each in 4 dimensions
-- (blob = id % 4, centred near 100 * e_blob; offsets are small integers), so
-- the k-means lists are the blobs. The query vectors are chosen so that the
-- exact answers are unambiguous: consecutive distances of the top 9 rows differ
-- by more than 1e-4 (no ties, no float rounding near-ties).

CREATE TABLE ivs (id int PRIMARY KEY, blob int, v vector(4));
INSERT INTO ivs SELECT i, i % 4,
  ARRAY[CASE WHEN i % 4 = 0 THEN 100 ELSE 0 END + (i / 4) % 10,
        CASE WHEN i % 4 = 1 THEN 100 ELSE 0 END + (i / 4) / 10,
        CASE WHEN i % 4 = 2 THEN 100 ELSE 0 END + (i / 4) * 7 % 3,
        CASE WHEN i % 4 = 3 THEN 100 ELSE 0 END]
FROM generate_series(0, 399) i;
ANALYZE ivs;
CREATE INDEX ivs_l2 ON ivs USING ivfpq (v vector_l2_ops) WITH (lists = 4, m = 2, nbits = 4);

-- Index scans from here on (the planner's own choice is ivfpq_plans.sql's
-- subject; at 400 rows it prefers a sequential scan).
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM ivs ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 5;

-- Exact answers: all lists probed, every candidate re-ranked. Each query is
-- compared with the same query run by a sequential scan.
SET ivfpq.probes = 4;
SET ivfpq.rerank = 1000;
SELECT id, blob, round((v <-> '[100.31,0.62,0.23,0.07]')::numeric, 3) AS dist
FROM ivs ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 5;
SELECT id, blob, round((v <-> '[3.71,4.43,1.17,97.05]')::numeric, 3) AS dist
FROM ivs ORDER BY v <-> '[3.71,4.43,1.17,97.05]' LIMIT 5;
-- A query between the blobs.
SELECT id, blob, round((v <-> '[50.33,50.61,0.27,0.09]')::numeric, 3) AS dist
FROM ivs ORDER BY v <-> '[50.33,50.61,0.27,0.09]' LIMIT 4;
-- A prepared statement (the query vector is a parameter).
PREPARE knn(vector, int) AS SELECT id FROM ivs ORDER BY v <-> $1 LIMIT $2;
EXECUTE knn('[0.41,105.33,0.93,0.17]', 3);
DEALLOCATE knn;
-- The same answers as a sequential scan, for a few queries per blob.
CREATE TABLE ivs_q (qid int, q vector(4));
INSERT INTO ivs_q SELECT k, ARRAY[CASE WHEN k % 4 = 0 THEN 101.3 ELSE 0.3 END + k % 7 + 0.173 * k,
                                   CASE WHEN k % 4 = 1 THEN 99.1 ELSE 1.1 END + k % 5 + 0.059 * k,
                                   CASE WHEN k % 4 = 2 THEN 100.6 ELSE 0.6 END + 0.031 * k,
                                   CASE WHEN k % 4 = 3 THEN 98.2 ELSE 0.2 END + 0.017 * k]
FROM generate_series(1, 12) k;
CREATE TEMP TABLE idx_answers AS
SELECT qid, ARRAY(SELECT id FROM ivs ORDER BY v <-> q LIMIT 7) AS ids FROM ivs_q;
EXPLAIN (COSTS OFF) SELECT qid, ARRAY(SELECT id FROM ivs ORDER BY v <-> q LIMIT 7) FROM ivs_q;
SET enable_indexscan = off;
SET enable_seqscan = on;
SELECT count(*) AS queries,
       count(*) FILTER (WHERE ids = ARRAY(SELECT id FROM ivs ORDER BY v <-> q LIMIT 7)) AS same
FROM idx_answers JOIN ivs_q USING (qid);
RESET enable_indexscan;
SET enable_seqscan = off;
DROP TABLE idx_answers;

-- Inner product and cosine operator classes.
CREATE INDEX ivs_ip ON ivs USING ivfpq (v vector_ip_ops) WITH (lists = 4, m = 4, nbits = 8);
CREATE INDEX ivs_cos ON ivs USING ivfpq (v vector_cosine_ops) WITH (lists = 4, m = 1, nbits = 8);
EXPLAIN (COSTS OFF) SELECT id FROM ivs ORDER BY v <#> '[1,0.31,0.057,0.0011]' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM ivs ORDER BY v <=> '[1,0.31,0.057,0.0011]' LIMIT 5;
SELECT id, round((v <#> '[1,0.31,0.057,0.0011]')::numeric, 3) AS neg_ip
FROM ivs ORDER BY v <#> '[1,0.31,0.057,0.0011]' LIMIT 5;
SELECT id, round((v <=> '[0.3,0.5,1,0.1]')::numeric, 6) AS cos_dist
FROM ivs ORDER BY v <=> '[0.3,0.5,1,0.1]' LIMIT 5;
SET enable_indexscan = off;
SET enable_seqscan = on;
EXPLAIN (COSTS OFF) SELECT id FROM ivs ORDER BY v <#> '[1,0.31,0.057,0.0011]' LIMIT 5;
SELECT id, round((v <#> '[1,0.31,0.057,0.0011]')::numeric, 3) AS neg_ip
FROM ivs ORDER BY v <#> '[1,0.31,0.057,0.0011]' LIMIT 5;
SELECT id, round((v <=> '[0.3,0.5,1,0.1]')::numeric, 6) AS cos_dist
FROM ivs ORDER BY v <=> '[0.3,0.5,1,0.1]' LIMIT 5;
RESET enable_indexscan;
SET enable_seqscan = off;
DROP INDEX ivs_ip, ivs_cos;
RESET ivfpq.probes;
RESET ivfpq.rerank;

-- A query of the wrong dimension. A NULL query vector: as a constant the
-- planner folds the distance to NULL (no ivfpq scan, any 3 rows); as a
-- parameter of a generic plan (or a subquery's value) every row is at a NULL
-- distance, and the index scan returns every row it holds, once each, in no
-- particular order, as a sequential scan does (it returned none before).
SELECT id FROM ivs ORDER BY v <-> '[1,2,3]' LIMIT 1;
EXPLAIN (COSTS OFF) SELECT id FROM ivs ORDER BY v <-> NULL LIMIT 3;
SELECT count(*) FROM (SELECT id FROM ivs ORDER BY v <-> NULL LIMIT 3) s;
SET plan_cache_mode = force_generic_plan;
PREPARE knn_null(vector) AS SELECT id FROM ivs ORDER BY v <-> $1 LIMIT 3;
EXPLAIN (COSTS OFF) EXECUTE knn_null(NULL);
EXECUTE knn_null('[100.31,0.62,0.23,0.07]');
DEALLOCATE knn_null;
PREPARE knn_null_all(vector) AS
  SELECT count(*) AS rows, count(DISTINCT id) AS distinct_rows FROM (SELECT id FROM ivs ORDER BY v <-> $1) s;
EXECUTE knn_null_all(NULL);
SELECT count(*) AS not_null_rows FROM ivs WHERE v IS NOT NULL;
DEALLOCATE knn_null_all;
RESET plan_cache_mode;
-- Many copies of a few vectors, every list, a candidate pool that holds a
-- few thousand (work_mem 64kB), a cosine index and an index built empty.
CREATE TABLE ivnull (id int, v vector(3));
INSERT INTO ivnull SELECT i, ARRAY[i % 13, i % 7, 1]::real[]::vector FROM generate_series(1, 5000) i;
INSERT INTO ivnull SELECT 10000 + i, '[1,1,1]' FROM generate_series(1, 15000) i;
INSERT INTO ivnull VALUES (-1, NULL);
CREATE INDEX ivnull_l2 ON ivnull USING ivfpq (v) WITH (lists = 8);
SET work_mem = '64kB';
SELECT count(*), count(DISTINCT id) FROM (SELECT id FROM ivnull ORDER BY v <-> (SELECT NULL::vector)) s;
RESET work_mem;
SELECT count(*) FROM (SELECT id FROM ivnull ORDER BY v <-> (SELECT NULL::vector) LIMIT 5) s;
DROP INDEX ivnull_l2;
CREATE INDEX ivnull_cos ON ivnull USING ivfpq (v vector_cosine_ops) WITH (lists = 4);
SELECT count(*), count(DISTINCT id) FROM (SELECT id FROM ivnull ORDER BY v <=> (SELECT NULL::vector)) s;
TRUNCATE ivnull;
INSERT INTO ivnull SELECT i, ARRAY[i, 1, 2]::real[]::vector FROM generate_series(1, 50) i;
SELECT count(*), count(DISTINCT id) FROM (SELECT id FROM ivnull ORDER BY v <=> (SELECT NULL::vector)) s;
DROP TABLE ivnull;

-- Iterative scans: one list probed per round, and a filter that only rows of
-- another list pass. With iterative scans the LIMIT is met by probing further
-- lists (up to ivfpq.max_probes); without, only the first list's rows are seen
-- and none passes the filter.
SET ivfpq.probes = 1;
EXPLAIN (COSTS OFF)
SELECT id FROM ivs WHERE blob = 3 ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 5;
SELECT id, round((v <-> '[100.31,0.62,0.23,0.07]')::numeric, 3) AS dist
FROM ivs WHERE blob = 3 ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 5;
SET ivfpq.max_probes = 1;
SELECT count(*) FROM (SELECT id FROM ivs WHERE blob = 3
  ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 5) s;
SET ivfpq.max_probes = 4;
SELECT count(*) FROM (SELECT id FROM ivs WHERE blob = 3
  ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 5) s;
RESET ivfpq.max_probes;
SET ivfpq.iterative_scan = off;
SELECT count(*) FROM (SELECT id FROM ivs WHERE blob = 3
  ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 5) s;
-- A filter the first list satisfies only in part (20 of its rows; 20 more in
-- blob 2).
SELECT count(*) FROM (SELECT id FROM ivs WHERE id % 10 = 0
  ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 30) s;
RESET ivfpq.iterative_scan;
SELECT count(*) FROM (SELECT id FROM ivs WHERE id % 10 = 0
  ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 30) s;
RESET ivfpq.probes;

-- probes: the setting when non-zero, else the index's option, else what the
-- build measured for the index's data (arrw_core::calibrate: here 1, since
-- each blob is its own list and holds its rows' nearest rows), else 20 (more
-- from 1,000 lists on).
-- Counted as the rows one round of probing returns (iterative scans off, a
-- LIMIT above the table size, sequential scans off so the index is used):
-- 100 rows per list.
SELECT j->>'default_probes' AS default_probes, j->>'probes_measured' AS measured
FROM (SELECT arrw._ivfpq_info_json('ivs_l2')::json AS j) s;
SET ivfpq.iterative_scan = off;
SELECT count(*) FROM (SELECT id FROM ivs ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 1000) s;
SET ivfpq.probes = 2;
SELECT count(*) FROM (SELECT id FROM ivs ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 1000) s;
SET ivfpq.probes = 1;
SELECT count(*) FROM (SELECT id FROM ivs ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 1000) s;
DROP INDEX ivs_l2;
CREATE INDEX ivs_l2 ON ivs USING ivfpq (v) WITH (lists = 4, m = 2, nbits = 4, probes = 3);
SELECT count(*) FROM (SELECT id FROM ivs ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 1000) s;
SET ivfpq.probes = 0;
SELECT count(*) FROM (SELECT id FROM ivs ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 1000) s;
RESET ivfpq.probes;
SELECT count(*) FROM (SELECT id FROM ivs ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 1000) s;
-- ALTER INDEX ... SET (probes = ...) takes effect at once.
ALTER INDEX ivs_l2 SET (probes = 2);
SELECT count(*) FROM (SELECT id FROM ivs ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 1000) s;
ALTER INDEX ivs_l2 RESET (probes);
SELECT count(*) FROM (SELECT id FROM ivs ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 1000) s;
RESET ivfpq.iterative_scan;

-- rerank: the setting when >= 0, else the index's option, else 100; 0 returns
-- candidates in estimated order without reading the table. Observable with a
-- zero vector under cosine distance: its exact distance is NaN, which sorts
-- last (as in a sequential scan); its estimated distance is an ordinary number
-- (here it comes 4th). With rerank = 1 or 3 the candidates are re-ranked in
-- batches, and the rows still come out in exact order across batches, the zero
-- vector last.
CREATE TABLE ivr (id int, v vector(2));
INSERT INTO ivr VALUES (1, '[1,0]'), (2, '[1,1]'), (3, '[0,1]'), (4, '[-1,1]'),
  (5, '[-1,0]'), (6, '[-1,-1]'), (7, '[0,-1]'), (8, '[1,-1]'), (9, '[0,0]');
CREATE INDEX ivr_cos ON ivr USING ivfpq (v vector_cosine_ops) WITH (lists = 1, m = 1, nbits = 4);
SELECT array_agg(id) FROM (SELECT id FROM ivr ORDER BY v <=> '[1,0.1]' LIMIT 9) s;
SET ivfpq.rerank = 0;
SELECT array_agg(id) FROM (SELECT id FROM ivr ORDER BY v <=> '[1,0.1]' LIMIT 9) s;
SET ivfpq.rerank = 1;
SELECT array_agg(id) FROM (SELECT id FROM ivr ORDER BY v <=> '[1,0.1]' LIMIT 9) s;
DROP INDEX ivr_cos;
CREATE INDEX ivr_cos ON ivr USING ivfpq (v vector_cosine_ops) WITH (lists = 1, m = 1, nbits = 4, rerank = 0);
RESET ivfpq.rerank;
SELECT array_agg(id) FROM (SELECT id FROM ivr ORDER BY v <=> '[1,0.1]' LIMIT 9) s;
SET ivfpq.rerank = -1;
SELECT array_agg(id) FROM (SELECT id FROM ivr ORDER BY v <=> '[1,0.1]' LIMIT 9) s;
SET ivfpq.rerank = 3;
SELECT array_agg(id) FROM (SELECT id FROM ivr ORDER BY v <=> '[1,0.1]' LIMIT 9) s;
RESET ivfpq.rerank;
SET enable_indexscan = off;
SET enable_seqscan = on;
SELECT array_agg(id) FROM (SELECT id FROM ivr ORDER BY v <=> '[1,0.1]') s;
RESET enable_indexscan;
SET enable_seqscan = off;
DROP TABLE ivr;

-- Deep scans: the candidate pool keeps a few thousand candidates and drops
-- the rest; a scan that hands those out offers the probed lists' codes again
-- (counted as re-offers). A filter passing 1 row in 40, every list probed and
-- batches of 10 read thousands of candidates deep: the rows are those of an
-- exact scan, in its order, none twice.
CREATE TABLE deep (id int, v vector(8));
INSERT INTO deep SELECT i, (SELECT array_agg(sin(i * 0.37 + j * 1.3 + (i % 7) * j)::real)
  FROM generate_series(1, 8) j)::vector FROM generate_series(1, 6000) i;
CREATE INDEX deep_v ON deep USING ivfpq (v vector_l2_ops) WITH (lists = 8, m = 8);
SET enable_indexscan = off;
SET enable_seqscan = on;
CREATE TEMP TABLE deep_exact AS
  SELECT row_number() OVER () AS rn, id FROM (SELECT id FROM deep WHERE id % 40 = 0
  ORDER BY v <-> '[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8]' LIMIT 120) s;
RESET enable_indexscan;
SET enable_seqscan = off;
SET ivfpq.probes = 8;
SET ivfpq.rerank = 10;
SET ivfpq.profile = on;
SELECT arrw.ivfpq_profile_reset();
CREATE TEMP TABLE deep_index AS
  SELECT row_number() OVER () AS rn, id FROM (SELECT id FROM deep WHERE id % 40 = 0
  ORDER BY v <-> '[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8]' LIMIT 120) s;
SET ivfpq.profile = off;
SELECT (SELECT count(*) FROM deep_index) AS rows,
       (SELECT count(DISTINCT id) FROM deep_index) AS distinct_rows,
       (SELECT count(*) FROM deep_index i JOIN deep_exact e USING (rn) WHERE i.id <> e.id) AS out_of_order,
       (p->>'reoffers')::int > 0 AS reoffered,
       (p->>'candidates')::int > 6000 AS read_lists_again
FROM arrw.ivfpq_profile() p;
RESET ivfpq.probes;
RESET ivfpq.rerank;
DROP TABLE deep, deep_exact, deep_index;

-- Settings: ranges.
SET ivfpq.probes = -1;
SET ivfpq.rerank = -2;
SET ivfpq.max_probes = -1;
SHOW ivfpq.probes;
SHOW ivfpq.rerank;
SHOW ivfpq.iterative_scan;
SHOW ivfpq.max_probes;

-- Changes after the build: new rows (more than a page's worth in one list),
-- deleted rows, VACUUM, then more rows reusing the freed space.
SET ivfpq.probes = 4;
SET ivfpq.rerank = 100000;
INSERT INTO ivs SELECT 1000 + i, 0, ARRAY[100.25 + (i % 40) * 0.001, 0.5 + (i / 40) * 0.001, 0.25, 0]
FROM generate_series(0, 1999) i;
SELECT id, round((v <-> '[100.31,0.62,0.23,0.07]')::numeric, 4) AS dist
FROM ivs ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 3;
SELECT count(*) AS index_rows, count(DISTINCT id) AS distinct_ids
FROM (SELECT id FROM ivs ORDER BY v <-> '[0,0,0,0]' LIMIT 100000) s;
DELETE FROM ivs WHERE id >= 1000 AND id % 2 = 0;
DELETE FROM ivs WHERE id < 400 AND id % 8 = 0;
SELECT id, round((v <-> '[100.31,0.62,0.23,0.07]')::numeric, 4) AS dist
FROM ivs ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 3;
VACUUM ivs;
SELECT id, round((v <-> '[100.31,0.62,0.23,0.07]')::numeric, 4) AS dist
FROM ivs ORDER BY v <-> '[100.31,0.62,0.23,0.07]' LIMIT 3;
SELECT count(*) AS index_rows, count(DISTINCT id) AS distinct_ids
FROM (SELECT id FROM ivs ORDER BY v <-> '[0,0,0,0]' LIMIT 100000) s;
INSERT INTO ivs SELECT 5000 + i, 1, ARRAY[0.4, 100.1 + i * 0.01, 0.3, 0.2]
FROM generate_series(0, 99) i;
SELECT count(*) AS index_rows, count(DISTINCT id) AS distinct_ids
FROM (SELECT id FROM ivs ORDER BY v <-> '[0,0,0,0]' LIMIT 100000) s;
SELECT count(*) FROM ivs;
SELECT arrw.ivfpq_check('ivs_l2');
-- ivfpq_check compares every entry's TID with every other's through a sort
-- held to work_mem: at 64kB its runs go to a temporary file.
CREATE TABLE ivs_many AS SELECT i AS id, ARRAY[i % 97, i % 89]::real[]::vector(2) AS v
FROM generate_series(1, 6000) i;
CREATE INDEX ivs_many_v ON ivs_many USING ivfpq (v) WITH (lists = 3, m = 1);
SET work_mem = '64kB';
SELECT arrw.ivfpq_check('ivs_l2'), arrw.ivfpq_check('ivs_many_v');
-- Past temp_file_limit it is PostgreSQL's ERROR (53400): the file is left to
-- the abort to close (closing it while the ERROR unwound flushed it, failed
-- again, and aborted the whole server; hunt-145).
SET temp_file_limit = '8kB';
SELECT arrw.ivfpq_check('ivs_many_v');
RESET temp_file_limit;
SELECT arrw.ivfpq_check('ivs_many_v');
RESET work_mem;
DROP TABLE ivs_many;
SELECT id FROM ivs ORDER BY v <-> '[0.4,100.1,0.3,0.2]' LIMIT 3;
-- Every row is found by a query for its own vector.
SELECT count(*) AS rows,
       count(*) FILTER (WHERE (SELECT i.id FROM ivs i ORDER BY i.v <-> o.v LIMIT 1) = o.id) AS found
FROM ivs o WHERE o.id % 10 = 3;
-- VACUUM FULL rewrites the table and rebuilds the index.
DELETE FROM ivs WHERE id >= 5000;
VACUUM FULL ivs;
SELECT count(*) AS index_rows, count(DISTINCT id) AS distinct_ids
FROM (SELECT id FROM ivs ORDER BY v <-> '[0,0,0,0]' LIMIT 100000) s;

-- REINDEX (plain and concurrent) and CREATE INDEX CONCURRENTLY give the same
-- exact answers.
SELECT id FROM ivs ORDER BY v <-> '[3.71,4.43,1.17,97.05]' LIMIT 5;
REINDEX INDEX ivs_l2;
SELECT id FROM ivs ORDER BY v <-> '[3.71,4.43,1.17,97.05]' LIMIT 5;
REINDEX INDEX CONCURRENTLY ivs_l2;
SELECT id FROM ivs ORDER BY v <-> '[3.71,4.43,1.17,97.05]' LIMIT 5;
DROP INDEX ivs_l2;
CREATE INDEX CONCURRENTLY ivs_l2 ON ivs USING ivfpq (v) WITH (lists = 4, m = 2, nbits = 4);
SELECT id FROM ivs ORDER BY v <-> '[3.71,4.43,1.17,97.05]' LIMIT 5;
SELECT count(*) AS index_rows, count(DISTINCT id) AS distinct_ids
FROM (SELECT id FROM ivs ORDER BY v <-> '[0,0,0,0]' LIMIT 100000) s;
-- TRUNCATE leaves an empty (untrained) index that keeps working.
TRUNCATE ivs;
INSERT INTO ivs VALUES (1, 0, '[1,1,1,1]'), (2, 0, '[2,2,2,2]');
SELECT id FROM ivs ORDER BY v <-> '[2,2,2,2.5]' LIMIT 5;
RESET enable_seqscan;
RESET ivfpq.probes;
RESET ivfpq.rerank;

DROP TABLE ivs, ivs_q;

-- Coarse codes: rows on a line, 4 dimensions, one list (inner product puts
-- every row in the list whose centroid points along the line), 16 or 256
-- levels per sub-quantizer over a range of 6,000: hundreds of rows share each
-- estimate. A re-rank batch takes every row of its last estimate, so the rows
-- still come in exact order across batches of 10 (a batch that split a group
-- of equal estimates had learnt too small a margin: 5971, 5978, ... came
-- first).
CREATE TABLE line (id int, v vector(4));
INSERT INTO line SELECT i, ARRAY[1, i, 2, 3]::real[]::vector FROM generate_series(1, 6000) i;
CREATE FUNCTION line_exact(k int) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE a int[]; b int[];
BEGIN
  SET LOCAL enable_seqscan = off;
  SELECT array_agg(id) INTO a FROM (SELECT id FROM line ORDER BY v <#> '[1,2,3,4]' LIMIT k) s;
  SET LOCAL enable_seqscan = on; SET LOCAL enable_indexscan = off;
  SELECT array_agg(id) INTO b FROM (SELECT id FROM line ORDER BY v <#> '[1,2,3,4]', id DESC LIMIT k) s;
  IF a IS DISTINCT FROM b THEN RAISE NOTICE 'index % exact %', a, b; END IF;
  RETURN a IS NOT DISTINCT FROM b;
END $$;
SET ivfpq.rerank = 10;
CREATE INDEX line_ip ON line USING ivfpq (v vector_ip_ops) WITH (lists = 1, m = 2, nbits = 4);
SELECT line_exact(8) AS m2_nbits4, line_exact(200) AS m2_nbits4_deep;
DROP INDEX line_ip;
CREATE INDEX line_ip ON line USING ivfpq (v vector_ip_ops) WITH (lists = 1, m = 4, nbits = 8);
SELECT line_exact(8) AS m4_nbits8, line_exact(200) AS m4_nbits8_deep;
DROP INDEX line_ip;
CREATE INDEX line_ip ON line USING ivfpq (v vector_ip_ops);
SELECT line_exact(8) AS defaults;
RESET ivfpq.rerank;
DROP TABLE line;
DROP FUNCTION line_exact(int);

-- The measured default has two depths: a scan probes `default_probes` lists
-- for its first 10 rows and `deep_probes` once it is past them (with
-- iterative scans off, nothing beyond). 3,000 scattered 8-d rows in 30 lists,
-- where the 100 nearest rows of a row spread over more lists than its 10
-- nearest.
CREATE TABLE ivdeep (id int PRIMARY KEY, v vector(8));
INSERT INTO ivdeep SELECT i, ARRAY(SELECT sin(i * j * 0.731 + j) * 10 FROM generate_series(1, 8) j)::vector
FROM generate_series(1, 3000) i;
CREATE INDEX ivdeep_idx ON ivdeep USING ivfpq (v vector_l2_ops) WITH (lists = 30, m = 4);
CREATE TEMP TABLE ivdeep_info AS
SELECT (j->>'default_probes')::int AS p, (j->>'deep_probes')::int AS deep, (j->>'probes_measured')::bool AS measured
FROM (SELECT arrw._ivfpq_info_json('ivdeep_idx')::json AS j) s;
SELECT measured, deep > p AS deeper FROM ivdeep_info;
SET enable_seqscan = off;
SET ivfpq.iterative_scan = off;
SET ivfpq.profile = on;
SELECT arrw.ivfpq_profile_reset();
SELECT count(*) FROM (SELECT id FROM ivdeep ORDER BY v <-> '[1,2,3,4,5,6,7,8]' LIMIT 5) s;
SELECT (arrw.ivfpq_profile()->>'lists')::int = p AS shallow_scan_probes_the_default FROM ivdeep_info;
SELECT arrw.ivfpq_profile_reset();
SELECT count(*) FROM (SELECT id FROM ivdeep ORDER BY v <-> '[1,2,3,4,5,6,7,8]' LIMIT 200) s;
SELECT (arrw.ivfpq_profile()->>'lists')::int = deep AS deep_scan_probes_the_deep_default FROM ivdeep_info;
-- A probes setting is taken for every depth.
SET ivfpq.probes = 2;
SELECT arrw.ivfpq_profile_reset();
SELECT count(*) FROM (SELECT id FROM ivdeep ORDER BY v <-> '[1,2,3,4,5,6,7,8]' LIMIT 200) s;
SELECT arrw.ivfpq_profile()->>'lists' AS lists_with_probes_2;
RESET ivfpq.probes;
RESET ivfpq.profile;
RESET ivfpq.iterative_scan;
RESET enable_seqscan;
DROP TABLE ivdeep;

-- Cosine distances a few float8 steps apart within one float4 come in the
-- operator's order (the tie was kept as a float4 difference, which could not
-- tell them apart: 7620 came before 7695).
CREATE TABLE cos_tie (id int, v vector(6));
CREATE INDEX cos_tie_v ON cos_tie USING ivfpq (v vector_cosine_ops);
INSERT INTO cos_tie VALUES (7620, '[-2,2,2,-2,0,0]'), (7695, '[-2,2,0,-1,0,0]');
SET enable_seqscan = off;
SELECT id, v <=> '[-2,1,1,0,1,1]' AS d FROM cos_tie ORDER BY v <=> '[-2,1,1,0,1,1]' LIMIT 2;
REINDEX INDEX cos_tie_v;
SELECT id, v <=> '[-2,1,1,0,1,1]' AS d FROM cos_tie ORDER BY v <=> '[-2,1,1,0,1,1]' LIMIT 2;
RESET enable_seqscan;
DROP TABLE cos_tie;

-- ivfpq.max_probes bounds what an iterative scan adds past its probes, never
-- the probes themselves (max_probes 2 cut probes 10 to 2 lists).
CREATE TABLE mp (id int, v vector(4));
INSERT INTO mp SELECT i, ARRAY[i % 97, i % 89, i % 83, i % 79]::real[]::vector FROM generate_series(1, 3000) i;
CREATE INDEX mp_v ON mp USING ivfpq (v) WITH (lists = 20);
SET enable_seqscan = off; SET ivfpq.probes = 10; SET ivfpq.max_probes = 2; SET ivfpq.profile = on;
SELECT arrw.ivfpq_profile_reset();
SELECT count(*) FROM (SELECT id FROM mp ORDER BY v <-> '[1,2,3,4]' LIMIT 5) s;
SELECT (p->>'lists')::int >= 10 AS probes_kept FROM arrw.ivfpq_profile() p;
RESET ALL;
DROP TABLE mp;
