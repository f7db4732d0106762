-- Re-ranking reads rows from the table a batch of pages at a time
-- (src/ivfpq/fetch.rs): the row version visible to the scan's snapshot, the
-- indexed column wherever it sits in the row. Every query here probes all
-- lists and re-ranks every candidate, so its rows must equal an exact sort by
-- a sequential scan (`same` = `queries`).

SET enable_seqscan = off;
SET ivfpq.probes = 8;
SET ivfpq.rerank = 100000;

-- 3,000 rows of 48 dimensions: ~40 rows a page, so one re-rank batch spans far
-- more pages than fetch.rs pins at once (32). The indexed column is not the
-- first, and a dropped column lies before it.
CREATE TABLE fe (id int PRIMARY KEY, gone int, note text, v vector(48));
INSERT INTO fe SELECT i, i, 'row ' || i,
  (SELECT array_agg(((i * 37 + d * 11) % 101)::real / 10 + (d % 5)
                    + CASE WHEN d = 1 THEN i::real / 3001 ELSE 0 END)
   FROM generate_series(1, 48) d)::vector
FROM generate_series(1, 3000) i;
ALTER TABLE fe DROP COLUMN gone;
CREATE INDEX fe_v ON fe USING ivfpq (v vector_l2_ops) WITH (lists = 8, m = 8);
CREATE TABLE fe_q (qid int, q vector(48));
INSERT INTO fe_q SELECT k,
  (SELECT array_agg(((k * 53 + d * 7) % 97)::real / 10 + (d % 5) + 0.013 * k) FROM generate_series(1, 48) d)::vector
FROM generate_series(1, 6) k;

-- Compares the index scan's top `k` rows with a sequential scan's, per query.
CREATE FUNCTION fe_same(k int) RETURNS TABLE (queries bigint, same bigint)
LANGUAGE plpgsql AS $$
BEGIN
  CREATE TEMP TABLE fe_idx AS
    SELECT qid, ARRAY(SELECT id FROM fe ORDER BY v <-> q LIMIT k) AS ids FROM fe_q;
  PERFORM set_config('enable_indexscan', 'off', true), set_config('enable_seqscan', 'on', true);
  RETURN QUERY SELECT count(*),
    count(*) FILTER (WHERE ids = ARRAY(SELECT id FROM fe ORDER BY v <-> q, id LIMIT k))
  FROM fe_idx JOIN fe_q USING (qid);
  PERFORM set_config('enable_indexscan', 'on', true), set_config('enable_seqscan', 'off', true);
  DROP TABLE fe_idx;
END $$;

EXPLAIN (COSTS OFF) SELECT id FROM fe ORDER BY v <-> (SELECT q FROM fe_q WHERE qid = 1) LIMIT 5;
SELECT * FROM fe_same(50);

-- HOT updates (the vector is unchanged, the index entry points at the chain's
-- root): each row still comes once, at its distance.
UPDATE fe SET note = 'updated' WHERE id % 3 = 0;
UPDATE fe SET note = 'again' WHERE id % 6 = 0;
SELECT * FROM fe_same(50);
-- Vectors changed: the old entries point at dead versions and drop out; the
-- new ones are found.
UPDATE fe SET v = v + (SELECT array_agg(0.5::real) FROM generate_series(1, 48))::vector
WHERE id % 7 = 0;
SELECT * FROM fe_same(50);
-- Deleted rows (not yet vacuumed) are not returned.
DELETE FROM fe WHERE id % 5 = 0;
SELECT * FROM fe_same(50);
SELECT count(*) AS deleted_returned FROM fe_q,
  LATERAL (SELECT id FROM fe ORDER BY v <-> q LIMIT 200) r WHERE r.id % 5 = 0;

-- The transaction's own view: rows it deleted are gone for it, rows another
-- (rolled back) transaction inserted never appear.
BEGIN;
DELETE FROM fe WHERE id % 2 = 0;
SELECT * FROM fe_same(50);
SELECT count(*) AS even_returned FROM fe_q,
  LATERAL (SELECT id FROM fe ORDER BY v <-> q LIMIT 100) r WHERE r.id % 2 = 0;
ROLLBACK;
BEGIN;
INSERT INTO fe SELECT 100000 + qid, 'ghost', q FROM fe_q;
ROLLBACK;
SELECT count(*) AS ghosts FROM fe_q, LATERAL (SELECT id FROM fe ORDER BY v <-> q LIMIT 5) r
WHERE r.id >= 100000;
SELECT * FROM fe_same(50);

-- A column added with a default after the rows were written: old rows do not
-- store it (the default comes from the catalog), new rows do.
ALTER TABLE fe ADD COLUMN w vector(48)
  DEFAULT array_fill(1::real, ARRAY[48])::vector;
INSERT INTO fe (id, note, v, w) SELECT 200000 + qid, 'w', q, q FROM fe_q;
CREATE INDEX fe_w ON fe USING ivfpq (w vector_l2_ops) WITH (lists = 2, m = 8);
SET ivfpq.probes = 2;
SELECT id FROM fe ORDER BY w <-> (SELECT q FROM fe_q WHERE qid = 3) LIMIT 1;
-- Every row comes back (a key read as NULL would drop the old rows).
SELECT count(*) = (SELECT count(*) FROM fe) AS all_rows
FROM (SELECT id FROM fe ORDER BY w <-> (SELECT q FROM fe_q WHERE qid = 3) LIMIT 100000) r;
SET ivfpq.probes = 8;
DROP INDEX fe_w;

-- A temporary table (local buffers, never in the recent-buffer table).
CREATE TEMP TABLE fe_tmp AS SELECT id, v FROM fe WHERE id <= 600;
CREATE INDEX ON fe_tmp USING ivfpq (v vector_l2_ops) WITH (lists = 2, m = 8);
SET ivfpq.probes = 2;
CREATE TEMP TABLE fe_tmp_idx AS
  SELECT qid, ARRAY(SELECT id FROM fe_tmp ORDER BY v <-> q LIMIT 20) AS ids FROM fe_q;
SET enable_indexscan = off;
SET enable_seqscan = on;
SELECT count(*) AS queries,
       count(*) FILTER (WHERE ids = ARRAY(SELECT id FROM fe_tmp ORDER BY v <-> q, id LIMIT 20)) AS same
FROM fe_tmp_idx JOIN fe_q USING (qid);
RESET enable_indexscan;
SET enable_seqscan = off;
SET ivfpq.probes = 8;
DROP TABLE fe_tmp, fe_tmp_idx;

-- Vectors stored out of line (TOAST): 600 dimensions.
CREATE TABLE fe_wide (id int, v vector(600));
INSERT INTO fe_wide SELECT i,
  (SELECT array_agg(((i * 13 + d) % 29)::real + CASE WHEN d = 1 THEN i::real / 1000 ELSE 0 END)
   FROM generate_series(1, 600) d)::vector
FROM generate_series(1, 120) i;
CREATE INDEX ON fe_wide USING ivfpq (v vector_l2_ops) WITH (lists = 3, m = 20);
-- An expression index reads its key through the executor (the row-at-a-time
-- path): the same answers.
CREATE INDEX fe_expr ON fe_wide USING ivfpq ((l2_normalize(v)) vector_l2_ops) WITH (lists = 3, m = 20);
EXPLAIN (COSTS OFF) SELECT id FROM fe_wide ORDER BY v <-> (SELECT v FROM fe_wide WHERE id = 7) LIMIT 4;
EXPLAIN (COSTS OFF) SELECT id FROM fe_wide ORDER BY l2_normalize(v) <-> l2_normalize((SELECT v FROM fe_wide WHERE id = 7)) LIMIT 4;
CREATE TEMP TABLE fe_w AS SELECT
  ARRAY(SELECT id FROM fe_wide ORDER BY v <-> (SELECT v FROM fe_wide WHERE id = 7) LIMIT 20) AS plain,
  ARRAY(SELECT id FROM fe_wide
        ORDER BY l2_normalize(v) <-> l2_normalize((SELECT v FROM fe_wide WHERE id = 7)) LIMIT 20) AS expr;
SELECT plain[1:4] FROM fe_w;
SET enable_indexscan = off;
SET enable_seqscan = on;
SELECT plain = ARRAY(SELECT id FROM fe_wide ORDER BY v <-> (SELECT v FROM fe_wide WHERE id = 7), id LIMIT 20)
         AS wide_same,
       expr = ARRAY(SELECT id FROM fe_wide
                    ORDER BY l2_normalize(v) <-> l2_normalize((SELECT v FROM fe_wide WHERE id = 7)), id LIMIT 20)
         AS expr_same
FROM fe_w;
RESET enable_indexscan;
SET enable_seqscan = off;
-- The plain index reads its out-of-line keys through the scan's own TOAST
-- index scan (src/ivfpq/toast.rs): counted as toast_reads.
SET ivfpq.profile = on;
SELECT arrw.ivfpq_profile_reset();
SELECT count(*) FROM (SELECT id FROM fe_wide ORDER BY v <-> (SELECT v FROM fe_wide WHERE id = 7) LIMIT 20) s;
SELECT (arrw.ivfpq_profile()->>'toast_reads')::int >= 20 AS read_out_of_line;
-- The executor evaluates the ORDER BY expression of each row the scan
-- returns (the scan's Output in EXPLAIN VERBOSE); for an out-of-line row it
-- takes the sums the scan computed (src/handed.rs) instead of reading the row
-- again. The same float8 as computing it anew (in later statements, which
-- cannot reuse them), for each operator and its index.
CREATE INDEX fe_wide_cos ON fe_wide USING ivfpq (v vector_cosine_ops) WITH (lists = 3, m = 20);
CREATE INDEX fe_wide_ip ON fe_wide USING ivfpq (v vector_ip_ops) WITH (lists = 3, m = 20);
CREATE TEMP TABLE fe_q7 AS SELECT v AS q FROM fe_wide WHERE id = 7;
SELECT arrw.ivfpq_profile_reset();
CREATE TEMP TABLE fe_od AS
  SELECT 'l2' AS op, id, d FROM (SELECT id, v <-> (SELECT q FROM fe_q7) AS d FROM fe_wide
                                 ORDER BY v <-> (SELECT q FROM fe_q7) LIMIT 15) s
  UNION ALL
  SELECT 'cos', id, d FROM (SELECT id, v <=> (SELECT q FROM fe_q7) AS d FROM fe_wide
                            ORDER BY v <=> (SELECT q FROM fe_q7) LIMIT 15) s
  UNION ALL
  SELECT 'ip', id, d FROM (SELECT id, v <#> (SELECT q FROM fe_q7) AS d FROM fe_wide
                           ORDER BY v <#> (SELECT q FROM fe_q7) LIMIT 15) s;
SELECT arrw.ivfpq_profile()->>'orderby_reuses' AS reused;
SELECT op, count(*) AS rows,
       count(*) FILTER (WHERE d = CASE op WHEN 'l2' THEN w.v <-> q WHEN 'cos' THEN w.v <=> q
                                          ELSE w.v <#> q END) AS same_float8
FROM fe_od JOIN fe_wide w USING (id), fe_q7 GROUP BY op ORDER BY op;
SELECT arrw.ivfpq_profile()->>'orderby_reuses' AS still_reused;
DROP INDEX fe_wide_cos, fe_wide_ip;
-- Compressed values (storage extended; every third element varies, the rest
-- repeat; 5.7 kB each, out of line) stay with pg_detoast_datum: the same
-- answers as an exact sort, and none read by the reader.
CREATE TABLE fe_zip (id int, v vector(3000));
ALTER TABLE fe_zip ALTER COLUMN v SET STORAGE extended;
INSERT INTO fe_zip SELECT i, (SELECT array_agg(CASE WHEN d % 3 = 0
    THEN ((i * 7919 + d * 104729) % 1000003)::real ELSE ((i * 13 + d) % 29)::real END)
  FROM generate_series(1, 3000) d)::vector
FROM generate_series(1, 60) i;
SELECT count(*) FILTER (WHERE pg_column_compression(v) IS NOT NULL AND pg_column_size(v) > 2500)
  AS compressed_out_of_line FROM fe_zip;
CREATE INDEX fe_zip_idx ON fe_zip USING ivfpq (v vector_l2_ops) WITH (lists = 2, m = 10);
SELECT arrw.ivfpq_profile_reset();
CREATE TEMP TABLE fe_z AS SELECT ARRAY(SELECT id FROM fe_zip
  ORDER BY v <-> (SELECT v FROM fe_zip WHERE id = 9) LIMIT 12) AS ids;
SELECT (arrw.ivfpq_profile()->>'toast_reads')::int AS zip_toast_reads;
RESET ivfpq.profile;
SET enable_indexscan = off;
SET enable_seqscan = on;
SELECT ids = ARRAY(SELECT id FROM fe_zip
  ORDER BY v <-> (SELECT v FROM fe_zip WHERE id = 9), id LIMIT 12) AS zip_same
FROM fe_z;
RESET enable_indexscan;
SET enable_seqscan = off;
DROP TABLE fe_zip;
DROP TABLE fe_wide;
DROP FUNCTION fe_same(int);
DROP TABLE fe, fe_q;
