-- Prefiltering (src/ivfpq/prefilter.rs): an ivfpq index scan checks the
-- query's own WHERE clause on each row it reads from the table whose vector
-- is out of line (TOAST), so rows the filter rejects are never handed out
-- (nor, past the scan's first rows, read from TOAST). The rows a
-- query returns, and their order, must be those of an exact scan whatever the
-- plan shape (prepared generic plans, LATERAL rescans with a run-time query
-- vector, cursors, partitions, row-level security); volatile filters and
-- filters with subqueries are left to the executor; ivfpq.prefilter = off
-- turns it off. The scan's own counters (ivfpq.profile) show what it did:
-- `returned` rows handed out, `filtered` rows it rejected, `toast_reads`.
--
-- Data: 2,000 rows of 600 dimensions (2,408 bytes: stored out of line) from
-- a smooth deterministic function (distinct distances), category = id % 10;
-- every list is probed, so the index answers exactly and can be compared
-- with a sequential scan. Query vectors come from the same function at
-- points no row has (qv).

CREATE FUNCTION qv(x float8) RETURNS vector IMMUTABLE LANGUAGE sql AS $$
  SELECT ARRAY(SELECT round((sin(x * j * 0.013) * 10)::numeric, 2)::real
               FROM generate_series(1, 600) j)::vector
$$;
CREATE TABLE pf (id int PRIMARY KEY, category int, v vector(600));
ALTER TABLE pf ALTER COLUMN v SET STORAGE EXTERNAL;
INSERT INTO pf SELECT i, i % 10, qv(i) FROM generate_series(1, 2000) i;
CREATE INDEX pf_v ON pf USING ivfpq (v vector_l2_ops) WITH (lists = 8, m = 50);
ANALYZE pf;

-- What an exact scan returns: the ids of a query, nearest first.
CREATE FUNCTION pf_exact(cat int, q vector, k int) RETURNS int[]
LANGUAGE sql SET enable_indexscan = off SET enable_seqscan = on AS $$
  SELECT array_agg(id) FROM (
    SELECT id FROM pf WHERE category = cat ORDER BY v <-> q, id LIMIT k) s
$$;

SET enable_seqscan = off;
SET ivfpq.probes = 8;
SET ivfpq.profile = on;
PREPARE plan_of(vector) AS
  SELECT id FROM pf WHERE category = 3 ORDER BY v <-> $1 LIMIT 5;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE plan_of(qv(0.5));
RESET plan_cache_mode;

-- On (the default): five rows handed out for LIMIT 5, the others of the
-- re-ranked rows rejected in the scan; the same ids as the exact scan.
SHOW ivfpq.prefilter;
SELECT arrw.ivfpq_profile_reset();
SELECT array_agg(id) = pf_exact(3, qv(0.5), 5) AS exact
FROM (SELECT id FROM pf WHERE category = 3
      ORDER BY v <-> qv(0.5) LIMIT 5) s;
SELECT p->>'returned' AS returned, (p->>'filtered')::int > 20 AS rejected_in_scan
FROM arrw.ivfpq_profile() p;

-- Off: the executor alone filters; the scan hands out every row it orders.
SET ivfpq.prefilter = off;
SELECT arrw.ivfpq_profile_reset();
SELECT array_agg(id) = pf_exact(3, qv(0.5), 5) AS exact
FROM (SELECT id FROM pf WHERE category = 3
      ORDER BY v <-> qv(0.5) LIMIT 5) s;
SELECT (p->>'returned')::int > 20 AS returned_many, p->>'filtered' AS filtered
FROM arrw.ivfpq_profile() p;
RESET ivfpq.prefilter;

-- Every category, deeper LIMITs: the same ids as the exact scan.
SELECT c, array_agg(id) = pf_exact(c, qv(77.7), 25) AS exact
FROM generate_series(0, 9) c,
     LATERAL (SELECT id FROM pf WHERE category = c
              ORDER BY v <-> qv(77.7) LIMIT 25) s
GROUP BY c ORDER BY c;

-- A run-time query vector (the ORDER BY key changes at each rescan of the
-- inner scan) and a run-time filter value.
SELECT q.id, array_agg(s.id) = pf_exact(q.id % 10, q.v, 4) AS exact
FROM pf q,
     LATERAL (SELECT id FROM pf WHERE category = q.id % 10
              ORDER BY v <-> q.v LIMIT 4) s
WHERE q.id IN (7, 123, 1999)
GROUP BY q.id, q.v ORDER BY q.id;

-- A prepared statement under a generic plan: filter value and query are
-- parameters.
SET plan_cache_mode = force_generic_plan;
PREPARE knn(int, vector) AS
  SELECT array_agg(id) FROM (SELECT id FROM pf WHERE category = $1
                             ORDER BY v <-> $2 LIMIT 6) s;
SELECT arrw.ivfpq_profile_reset();
EXECUTE knn(4, qv(1234.5));
SELECT pf_exact(4, qv(1234.5), 6);
EXECUTE knn(9, qv(3.25));
SELECT pf_exact(9, qv(3.25), 6);
SELECT p->>'returned' AS returned FROM arrw.ivfpq_profile() p;
RESET plan_cache_mode;
DEALLOCATE knn;

-- A cursor: rows fetched in two steps, in exact order.
BEGIN;
DECLARE c CURSOR FOR SELECT id FROM pf WHERE category = 2
  ORDER BY v <-> qv(999.9);
FETCH 3 FROM c;
FETCH 3 FROM c;
COMMIT;
SELECT pf_exact(2, qv(999.9), 6);

-- EXPLAIN ANALYZE: the executor removed nothing; the scan did.
SET plan_cache_mode = force_generic_plan;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) EXECUTE plan_of(qv(0.5));
RESET plan_cache_mode;
DEALLOCATE plan_of;

-- A volatile filter is the executor's alone (it must run once per row).
SELECT arrw.ivfpq_profile_reset();
SELECT count(*) FROM (SELECT id FROM pf WHERE category = 3 AND random() >= 0
                      ORDER BY v <-> qv(0.5) LIMIT 5) s;
SELECT (p->>'returned')::int > 20 AS returned_many, p->>'filtered' AS filtered
FROM arrw.ivfpq_profile() p;
-- So is one with a subquery.
SELECT arrw.ivfpq_profile_reset();
SELECT array_agg(id) = pf_exact(3, qv(0.5), 5) AS exact
FROM (SELECT id FROM pf WHERE category = (SELECT pf.id % 10 WHERE pf.id > 0) - 0
                              AND category = 3
      ORDER BY v <-> qv(0.5) LIMIT 5) s;
SELECT p->>'filtered' AS filtered FROM arrw.ivfpq_profile() p;

-- A table whose vectors are in line (8 dimensions): its rows cost nothing more
-- to hand out, so the scan leaves the filter to the executor (checking every
-- re-ranked row in the scan cost more than it saved), except on the rows near
-- enough to be among those a LIMIT right above it takes: it checks those, so
-- that the rows it holds until the last is settled are rows the LIMIT takes
-- (ivfpq_order), and hands out only the ones that pass.
CREATE TABLE pf8 (id int PRIMARY KEY, category int, v vector(8));
INSERT INTO pf8 SELECT i, i % 10,
  ARRAY(SELECT round((sin(i * j * 0.37) * 10)::numeric, 3)::real
        FROM generate_series(1, 8) j)::vector
FROM generate_series(1, 2000) i;
CREATE INDEX ON pf8 USING ivfpq (v vector_l2_ops) WITH (lists = 8, m = 4);
ANALYZE pf8;
SELECT arrw.ivfpq_profile_reset();
SELECT count(*) FROM (SELECT id FROM pf8 WHERE category = 3
                      ORDER BY v <-> '[1,2,3,4,5,6,7,8]' LIMIT 5) s;
SELECT p->>'returned' AS returned, (p->>'filtered')::int > 20 AS rejected_in_scan
FROM arrw.ivfpq_profile() p;
-- Without a LIMIT (a cursor) the scan holds its first 100 rows, checking
-- the filter on the rows near enough to be held: rows it rejects are not
-- handed out.
SELECT arrw.ivfpq_profile_reset();
BEGIN;
DECLARE c8 CURSOR FOR SELECT id FROM pf8 WHERE category = 3
  ORDER BY v <-> '[1,2,3,4,5,6,7,8]';
MOVE FORWARD 5 IN c8;
COMMIT;
SELECT (p->>'returned')::int > 20 AS returned_many, (p->>'filtered')::int > 0 AS filtered
FROM arrw.ivfpq_profile() p;
DROP TABLE pf8;

-- Row-level security: a role that sees categories below 5 only gets the
-- nearest rows it may see, also when it asks for a category it may not see.
CREATE ROLE pf_reader;
GRANT SELECT ON pf TO pf_reader;
GRANT EXECUTE ON FUNCTION pf_exact(int, vector, int) TO pf_reader;
ALTER TABLE pf ENABLE ROW LEVEL SECURITY;
CREATE POLICY pf_low ON pf FOR SELECT TO pf_reader USING (category < 5);
SET ROLE pf_reader;
SELECT array_agg(id) = pf_exact(1, qv(42.42), 5) AS exact
FROM (SELECT id FROM pf WHERE category = 1
      ORDER BY v <-> qv(42.42) LIMIT 5) s;
SELECT count(*) AS unseen FROM (SELECT id FROM pf WHERE category = 7
      ORDER BY v <-> qv(42.42) LIMIT 5) s;
SELECT bool_and(category < 5) AS only_visible FROM (SELECT category FROM pf
      WHERE id % 3 = 0 ORDER BY v <-> qv(42.42) LIMIT 20) s;
RESET ROLE;
ALTER TABLE pf DISABLE ROW LEVEL SECURITY;

-- A partitioned table: each partition's scan filters.
CREATE TABLE pfp (id int, category int, v vector(600)) PARTITION BY RANGE (id);
CREATE TABLE pfp1 PARTITION OF pfp FOR VALUES FROM (0) TO (1000);
CREATE TABLE pfp2 PARTITION OF pfp FOR VALUES FROM (1000) TO (3000);
ALTER TABLE pfp ALTER COLUMN v SET STORAGE EXTERNAL;
INSERT INTO pfp SELECT * FROM pf;
CREATE INDEX ON pfp USING ivfpq (v vector_l2_ops) WITH (lists = 4, m = 50);
ANALYZE pfp;
SET ivfpq.probes = 4;
SELECT arrw.ivfpq_profile_reset();
SELECT array_agg(id) = pf_exact(6, qv(1500.5), 7) AS exact
FROM (SELECT id FROM pfp WHERE category = 6
      ORDER BY v <-> qv(1500.5) LIMIT 7) s;
SELECT (p->>'filtered')::int > 0 AS rejected_in_scan FROM arrw.ivfpq_profile() p;

-- Out-of-line vectors (600 dimensions, stored in the TOAST table): a
-- rejected row's vector is not read, so the scan reads far fewer values
-- from TOAST with the prefilter than without, for the same answer.
CREATE TABLE pft (id int PRIMARY KEY, category int, v vector(600));
ALTER TABLE pft ALTER COLUMN v SET STORAGE EXTERNAL;
INSERT INTO pft SELECT i, i % 10, qv(i) FROM generate_series(1, 600) i;
CREATE INDEX ON pft USING ivfpq (v vector_l2_ops) WITH (lists = 4, m = 50);
ANALYZE pft;
SET ivfpq.probes = 4;
CREATE TEMP TABLE pft_q AS SELECT v FROM pft WHERE id = 77;
CREATE TEMP TABLE pft_answers (prefilter text, ids int[], toast_reads int, filtered int);
SELECT arrw.ivfpq_profile_reset();
INSERT INTO pft_answers SELECT 'on', (SELECT array_agg(id) FROM (SELECT id FROM pft
  WHERE category = 5 ORDER BY v <-> (SELECT v FROM pft_q) LIMIT 5) s), NULL, NULL;
UPDATE pft_answers SET toast_reads = (p->>'toast_reads')::int, filtered = (p->>'filtered')::int
FROM arrw.ivfpq_profile() p WHERE prefilter = 'on';
SET ivfpq.prefilter = off;
SELECT arrw.ivfpq_profile_reset();
INSERT INTO pft_answers SELECT 'off', (SELECT array_agg(id) FROM (SELECT id FROM pft
  WHERE category = 5 ORDER BY v <-> (SELECT v FROM pft_q) LIMIT 5) s), NULL, NULL;
UPDATE pft_answers SET toast_reads = (p->>'toast_reads')::int, filtered = (p->>'filtered')::int
FROM arrw.ivfpq_profile() p WHERE prefilter = 'off';
RESET ivfpq.prefilter;
SET enable_indexscan = off;
SET enable_seqscan = on;
SELECT a.ids = b.ids AS same_ids,
       a.ids = (SELECT array_agg(id) FROM (SELECT id FROM pft WHERE category = 5
                ORDER BY v <-> (SELECT v FROM pft_q) LIMIT 5) s) AS exact,
       a.toast_reads * 3 < b.toast_reads AS fewer_toast_reads,
       a.filtered > 0 AS rejected_in_scan, b.filtered AS filtered_off
FROM pft_answers a, pft_answers b WHERE a.prefilter = 'on' AND b.prefilter = 'off';

RESET enable_indexscan;
RESET ivfpq.probes;
RESET ivfpq.profile;
RESET enable_seqscan;
DROP TABLE pft, pfp, pf CASCADE;
DROP FUNCTION pf_exact(int, vector, int);
DROP FUNCTION qv(float8);
DROP ROLE pf_reader;

-- A distance threshold beside the ORDER BY (`WHERE v <-> q < t`): once nothing
-- unexplored can be nearer than t, the scan ends, where it went on through
-- every list and re-ranked every row when fewer rows than the LIMIT pass
-- (hunt-160). Every list may be probed (so that the rows are a sequential
-- scan's, not the defaults' recall); the counts say how far it read.
CREATE TABLE dt (id int, v vector(4));
INSERT INTO dt SELECT i, ARRAY[(i * 7919) % 1000 / 10.0, (i * 104729) % 1000 / 10.0,
  (i * 31) % 97, (i * 17) % 89]::real[]::vector FROM generate_series(1, 20000) i;
CREATE INDEX dt_v ON dt USING ivfpq (v) WITH (lists = 40);
CREATE INDEX dt_c ON dt USING ivfpq (v vector_cosine_ops) WITH (lists = 40);
CREATE INDEX dt_i ON dt USING ivfpq (v vector_ip_ops) WITH (lists = 40);
ANALYZE dt;
CREATE FUNCTION dt_run(q text, out ids int[], out reranked int, out lists int) LANGUAGE plpgsql
SET ivfpq.profile = on AS $$
BEGIN
  PERFORM arrw.ivfpq_profile_reset();
  EXECUTE 'SELECT array_agg(id) FROM (' || q || ') s' INTO ids;
  SELECT (p->>'reranked')::int, (p->>'lists')::int INTO reranked, lists FROM arrw.ivfpq_profile() p;
END $$;
CREATE FUNCTION dt_exact(q text) RETURNS int[] LANGUAGE plpgsql
SET enable_indexscan = off SET enable_seqscan = on AS $$
DECLARE r int[];
BEGIN
  EXECUTE 'SELECT array_agg(id) FROM (' || q || ') s' INTO r;
  RETURN r;
END $$;
SET enable_seqscan = off;
SET ivfpq.probes = 40;
WITH q(sql) AS (VALUES
  ('SELECT id FROM dt WHERE v <-> ''[50,50,40,40]'' < 8 ORDER BY v <-> ''[50,50,40,40]'' LIMIT 50'),
  ('SELECT id FROM dt WHERE v <-> ''[50,50,40,40]'' <= 15::real ORDER BY v <-> ''[50,50,40,40]'' LIMIT 500'),
  ('SELECT id FROM dt WHERE 15 > v <-> ''[50,50,40,40]'' AND id % 2 = 0 ORDER BY v <-> ''[50,50,40,40]'' LIMIT 50'),
  ('SELECT id FROM dt WHERE v <-> ''[50,50,40,40]'' < -1 ORDER BY v <-> ''[50,50,40,40]'' LIMIT 50'),
  ('SELECT id FROM dt WHERE v <=> ''[1,2,3,4]'' < 0.01 ORDER BY v <=> ''[1,2,3,4]'' LIMIT 500'),
  ('SELECT id FROM dt WHERE v <=> ''[1,2,3,4]'' < ''-Infinity'' ORDER BY v <=> ''[1,2,3,4]'' LIMIT 50'),
  -- A similarity, and an inner product, written as the distance's linear form.
  ('SELECT id FROM dt WHERE 1 - (v <=> ''[1,2,3,4]'') >= 0.995 ORDER BY v <=> ''[1,2,3,4]'' LIMIT 500'),
  ('SELECT id FROM dt WHERE (v <#> ''[1,2,3,4]'') * -1 > 850 ORDER BY v <#> ''[1,2,3,4]'' LIMIT 500'),
  ('SELECT id FROM dt WHERE 850 < -(v <#> ''[1,2,3,4]'') ORDER BY v <#> ''[1,2,3,4]'' LIMIT 500'),
  -- float8 arithmetic that absorbs the distance keeps every row (hunt-163:
  -- taken as "distance <= 0" it ended the scan at once), and NaN below a
  -- similarity keeps none.
  ('SELECT id FROM dt WHERE (v <=> ''[1,2,3,4]'') + 1e20 <= 1e20 ORDER BY v <=> ''[1,2,3,4]'' LIMIT 1000'),
  ('SELECT id FROM dt WHERE 1e17 - (v <-> ''[50,50,40,40]'') * 10 >= 1e17 ORDER BY v <-> ''[50,50,40,40]'' LIMIT 50'),
  ('SELECT id FROM dt WHERE ''NaN'' < 1 - (v <=> ''[1,2,3,4]'') ORDER BY v <=> ''[1,2,3,4]'' LIMIT 50'))
-- (The cosine rows tie: vectors of one direction. Compared as sets.)
SELECT ARRAY(SELECT unnest(r.ids) ORDER BY 1) = ARRAY(SELECT unnest(dt_exact(q.sql)) ORDER BY 1) AS exact,
       coalesce(cardinality(r.ids), 0) AS rows, r.reranked < 2000 AS read_little
FROM q, LATERAL dt_run(q.sql) r;
-- A bound parameter of a generic plan, and NaN (every distance is below it:
-- no ceiling, all the LIMIT's rows).
SET plan_cache_mode = force_generic_plan;
PREPARE dt_p(vector, float8, int) AS
  SELECT count(*) FROM (SELECT id FROM dt WHERE v <-> $1 < $2 ORDER BY v <-> $1 LIMIT $3) s;
EXECUTE dt_p('[50,50,40,40]', 8, 50);
EXECUTE dt_p('[50,50,40,40]', 'NaN', 50);
SET ivfpq.profile = on;
SELECT arrw.ivfpq_profile_reset();
EXECUTE dt_p('[50,50,40,40]', 8, 50);
SELECT (p->>'reranked')::int < 2000 AS read_little FROM arrw.ivfpq_profile() p;
-- A NULL threshold keeps no row: the scan ends at once.
SELECT arrw.ivfpq_profile_reset();
EXECUTE dt_p('[50,50,40,40]', NULL, 50);
SELECT (p->>'reranked')::int < 2000 AS read_little FROM arrw.ivfpq_profile() p;
RESET ivfpq.profile;
DEALLOCATE dt_p;
RESET plan_cache_mode;
RESET ivfpq.probes;
RESET enable_seqscan;
DROP TABLE dt;
DROP FUNCTION dt_run(text), dt_exact(text);
