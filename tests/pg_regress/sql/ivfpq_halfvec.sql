-- ivfpq on halfvec: the three operator classes build, insert and scan, and
-- with every list probed and every candidate re-ranked they return exactly
-- the rows (in the same order) that ivfpq on a vector column holding the same
-- values returns, and that a sequential scan returns.
--
-- Data as in ivfpq_scan.sql: four blobs of 100 points in 4 dimensions, small
-- integers (exact in half precision). The queries are exact halves too, so
-- both columns see the same numbers.

CREATE TABLE ivh (id int PRIMARY KEY, v vector(4), h halfvec(4));
INSERT INTO ivh (id, v) SELECT i,
  ARRAY[CASE WHEN i % 4 = 0 THEN 100 ELSE 0 END + (i / 4) % 10,
        CASE WHEN i % 4 = 1 THEN 100 ELSE 0 END + (i / 4) / 10,
        CASE WHEN i % 4 = 2 THEN 100 ELSE 0 END + (i / 4) * 7 % 3,
        CASE WHEN i % 4 = 3 THEN 100 ELSE 0 END]
FROM generate_series(0, 399) i;
UPDATE ivh SET h = v;
ANALYZE ivh;
SELECT count(*) FROM ivh WHERE h::vector = v;

CREATE INDEX ivh_v_l2 ON ivh USING ivfpq (v vector_l2_ops) WITH (lists = 4, m = 2, nbits = 4);
CREATE INDEX ivh_v_ip ON ivh USING ivfpq (v vector_ip_ops) WITH (lists = 4, m = 2, nbits = 4);
CREATE INDEX ivh_v_cos ON ivh USING ivfpq (v vector_cosine_ops) WITH (lists = 4, m = 2, nbits = 4);
CREATE INDEX ivh_h_l2 ON ivh USING ivfpq (h halfvec_l2_ops) WITH (lists = 4, m = 2, nbits = 4);
CREATE INDEX ivh_h_ip ON ivh USING ivfpq (h halfvec_ip_ops) WITH (lists = 4, m = 2, nbits = 4);
CREATE INDEX ivh_h_cos ON ivh USING ivfpq (h halfvec_cosine_ops) WITH (lists = 4, m = 2, nbits = 4);
-- the default class for halfvec is halfvec_l2_ops
CREATE INDEX ivh_h_default ON ivh USING ivfpq (h) WITH (lists = 4, m = 2, nbits = 4);
SELECT c.relname, i.metric, i.dim, i.rows FROM pg_class c, arrw.ivfpq_info(c.oid) i
WHERE c.relname LIKE 'ivh\_%' AND c.relkind = 'i' AND c.relam = (SELECT oid FROM pg_am WHERE amname = 'ivfpq')
ORDER BY c.relname;
DROP INDEX ivh_h_default;

SET enable_seqscan = off;
SET ivfpq.probes = 4;
SET ivfpq.rerank = 1000;
EXPLAIN (COSTS OFF) SELECT id FROM ivh ORDER BY h <-> '[100.25,0.625,0.25,0.0625]' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM ivh ORDER BY h <#> '[100.25,0.625,0.25,0.0625]' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM ivh ORDER BY h <=> '[100.25,0.625,0.25,0.0625]' LIMIT 5;

-- one query per class and column: the halfvec index's ids equal the vector
-- index's, and its distances (in order) equal a sequential scan's (the data has
-- ties, so ids alone can differ from a sequential scan's where distances tie)
CREATE TEMP TABLE q (qid int, q text);
INSERT INTO q VALUES (1, '[100.25,0.625,0.25,0.0625]'), (2, '[3.5,101.75,1.125,0.5]'),
  (3, '[0.75,2.25,98.5,1.5]'), (4, '[4.125,7.5,0.375,99.25]');
CREATE FUNCTION ivh_top(col text, op text, q text, k int) RETURNS int[]
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE r int[];
BEGIN
  EXECUTE format('SELECT array_agg(id) FROM (SELECT id FROM ivh ORDER BY %I %s %L::%s LIMIT %s) s',
                 col, op, q, CASE col WHEN 'h' THEN 'halfvec' ELSE 'vector' END, k) INTO r;
  RETURN r;
END $$;
-- Distances are rounded to 12 digits: the index's re-rank computes cosine
-- distances that can differ from the operator's in the last bits, which
-- reorders rows whose distances tie exactly in real arithmetic (as on vector).
CREATE FUNCTION ivh_dist(op text, q text, k int) RETURNS numeric[]
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE r numeric[];
BEGIN
  EXECUTE format('SELECT array_agg(round(d::numeric, 12)) FROM (SELECT h %s %L::halfvec AS d FROM ivh ORDER BY h %s %L::halfvec LIMIT %s) s',
                 op, q, op, q, k) INTO r;
  RETURN r;
END $$;
SELECT qid, op, ivh_top('h', op, q, 10) AS halfvec_index,
       ivh_top('h', op, q, 10) = ivh_top('v', op, q, 10) AS same_as_vector_index
FROM q, (VALUES ('<->'), ('<#>'), ('<=>')) o(op) ORDER BY qid, op;
SET enable_indexscan = off;
SET enable_seqscan = on;
CREATE TEMP TABLE seq AS SELECT qid, op, ivh_dist(op, q, 10) AS d FROM q, (VALUES ('<->'), ('<#>'), ('<=>')) o(op);
RESET enable_indexscan;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT h <=> '[1,2,3,4]' FROM ivh ORDER BY h <=> '[1,2,3,4]' LIMIT 10;
SELECT count(*) AS agree_with_seqscan FROM seq JOIN q USING (qid) WHERE d = ivh_dist(op, q, 10);

-- rows inserted after the build go through aminsert and are found
INSERT INTO ivh VALUES (1000, '[100.25,0.625,0.25,0.0625]', '[100.25,0.625,0.25,0.0625]'),
                       (1001, '[3.5,101.75,1.125,0.5]', '[3.5,101.75,1.125,0.5]');
SELECT id FROM ivh ORDER BY h <-> '[100.25,0.625,0.25,0.0625]' LIMIT 3;
SELECT id FROM ivh ORDER BY h <=> '[3.5,101.75,1.125,0.5]' LIMIT 1;
SELECT ivh_top('h', '<->', '[3.5,101.75,1.125,0.5]', 10) = ivh_top('v', '<->', '[3.5,101.75,1.125,0.5]', 10) AS same_after_insert;

-- a query of the wrong dimension, and a NULL
SELECT id FROM ivh ORDER BY h <-> '[1,2,3]' LIMIT 1;
INSERT INTO ivh VALUES (1002, NULL, NULL);
SELECT count(*) FROM (SELECT id FROM ivh ORDER BY h <-> '[1,2,3,4]' LIMIT 500) s;

-- VACUUM and REINDEX keep the answers
DELETE FROM ivh WHERE id IN (1000, 1001);
VACUUM ivh;
REINDEX TABLE ivh;
SELECT ivh_top('h', '<#>', '[4.125,7.5,0.375,99.25]', 10) = ivh_top('v', '<#>', '[4.125,7.5,0.375,99.25]', 10) AS same_after_reindex;
SELECT arrw.ivfpq_check('ivh_h_l2'), arrw.ivfpq_check('ivh_h_cos');

-- beyond pgvector's 4,000-dimension index limit for halfvec
CREATE TABLE ivh_wide (id int, h halfvec(4096));
INSERT INTO ivh_wide SELECT i, array_fill((i % 7)::real, ARRAY[4096])::halfvec FROM generate_series(1, 300) i;
CREATE INDEX ON ivh_wide USING ivfpq (h halfvec_l2_ops) WITH (lists = 2, m = 64);
SET plan_cache_mode = force_generic_plan;
PREPARE wide(halfvec) AS SELECT id FROM ivh_wide ORDER BY h <-> $1 LIMIT 3;
EXPLAIN (COSTS OFF) EXECUTE wide(array_fill(3::real, ARRAY[4096]));
RESET plan_cache_mode;
SELECT id % 7 AS k FROM ivh_wide ORDER BY h <-> array_fill(3::real, ARRAY[4096])::halfvec LIMIT 3;
DROP TABLE ivh_wide;

-- Out-of-line halfvecs (1,536 dimensions, 3 kB each): the executor's ORDER BY
-- values reuse the scan's sums (src/handed.rs), the same float8 as computed
-- anew in a later statement.
CREATE TABLE ivh_toast (id int, h halfvec(1536));
INSERT INTO ivh_toast SELECT i,
  (SELECT array_agg(((i * 31 + d * 7) % 97)::real / 8 - 6) FROM generate_series(1, 1536) d)::halfvec
FROM generate_series(1, 80) i;
CREATE INDEX ivh_toast_cos ON ivh_toast USING ivfpq (h halfvec_cosine_ops) WITH (lists = 2, m = 48);
CREATE INDEX ivh_toast_l2 ON ivh_toast USING ivfpq (h halfvec_l2_ops) WITH (lists = 2, m = 48);
SET ivfpq.profile = on;
SELECT arrw.ivfpq_profile_reset();
CREATE TEMP TABLE ivh_od AS
  SELECT 'cos' AS op, id, d FROM (SELECT id, h <=> (SELECT h FROM ivh_toast WHERE id = 5) AS d
    FROM ivh_toast ORDER BY h <=> (SELECT h FROM ivh_toast WHERE id = 5) LIMIT 10) s
  UNION ALL
  SELECT 'l2', id, d FROM (SELECT id, h <-> (SELECT h FROM ivh_toast WHERE id = 5) AS d
    FROM ivh_toast ORDER BY h <-> (SELECT h FROM ivh_toast WHERE id = 5) LIMIT 10) s;
SELECT arrw.ivfpq_profile()->>'orderby_reuses' AS reused;
SELECT op, count(*) AS rows,
       count(*) FILTER (WHERE d = CASE op WHEN 'cos' THEN t.h <=> q.h ELSE t.h <-> q.h END) AS same_float8
FROM ivh_od JOIN ivh_toast t USING (id), (SELECT h FROM ivh_toast WHERE id = 5) q
GROUP BY op ORDER BY op;
RESET ivfpq.profile;
DROP TABLE ivh_toast;
DROP FUNCTION ivh_top, ivh_dist;
DROP TABLE ivh;
-- quote_all_identifiers quotes the key's type name ("halfvec"): the build's
-- early memory check took it for 4-byte elements and refused a build that
-- fits (needs at least 65 MB; hunt-104).
CREATE TABLE hv_q (id int, v halfvec(600));
INSERT INTO hv_q SELECT i, (SELECT array_agg(sin(i * 7 + j)::real) FROM generate_series(1, 600) j)::halfvec(600)
  FROM generate_series(1, 600) i;
SET maintenance_work_mem = '24MB';
SET quote_all_identifiers = on;
CREATE INDEX hv_q_i ON hv_q USING ivfpq (v) WITH (lists = 2000);
RESET quote_all_identifiers;
RESET maintenance_work_mem;
SELECT count(*) FROM arrw.ivfpq_info('hv_q_i');
DROP TABLE hv_q;
