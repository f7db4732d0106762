-- Which plans the planner picks with an ivfpq index, at default settings: the
-- index is for ORDER BY distance LIMIT k. A query that wants every row in
-- distance order (no LIMIT) must not get an approximate index scan: that
-- returns rows out of order, and with ivfpq.iterative_scan off only the rows
-- of the probed lists. A WHERE clause, or another distance operator, never
-- uses the index.

CREATE TABLE ivp (id int, v vector(4));
INSERT INTO ivp SELECT i, ARRAY[i % 97, i % 89, i % 83, i % 79]
FROM generate_series(1, 10000) i;
CREATE INDEX ivp_idx ON ivp USING ivfpq (v) WITH (lists = 20, m = 2);
ANALYZE ivp;

EXPLAIN (COSTS OFF) SELECT id FROM ivp ORDER BY v <-> '[1,2,3,4]' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM ivp ORDER BY v <-> '[1,2,3,4]' LIMIT 100;
EXPLAIN (COSTS OFF) SELECT id FROM ivp WHERE id > 10 ORDER BY v <-> '[1,2,3,4]' LIMIT 5;
EXPLAIN (COSTS OFF)
SELECT q.id, (SELECT array_agg(id) FROM (SELECT p.id FROM ivp p ORDER BY p.v <-> q.v LIMIT 3) s)
FROM ivp q WHERE q.id < 3;
EXPLAIN (COSTS OFF) SELECT id FROM ivp ORDER BY v <-> '[1,2,3,4]';
EXPLAIN (COSTS OFF) SELECT id FROM ivp ORDER BY v <-> '[1,2,3,4]' OFFSET 10;
EXPLAIN (COSTS OFF) SELECT id FROM ivp ORDER BY v <#> '[1,2,3,4]' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM ivp ORDER BY v <=> '[1,2,3,4]' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM ivp ORDER BY v <+> '[1,2,3,4]' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM ivp ORDER BY v LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM ivp WHERE v = '[1,2,3,4]';
EXPLAIN (COSTS OFF) SELECT id FROM ivp WHERE v <-> '[1,2,3,4]' < 1;
EXPLAIN (COSTS OFF) SELECT count(*) FROM ivp;
-- Not even with sequential scans disabled.
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM ivp WHERE v = '[1,2,3,4]';
EXPLAIN (COSTS OFF) SELECT id FROM ivp WHERE v <-> '[1,2,3,4]' < 1;
EXPLAIN (COSTS OFF) SELECT id FROM ivp ORDER BY v <#> '[1,2,3,4]' LIMIT 5;
RESET enable_seqscan;

-- Whatever the plan, a query without LIMIT returns every row, in order.
CREATE TEMP TABLE ivp_all AS
SELECT row_number() OVER () AS rn, d
FROM (SELECT v <-> '[1,2,3,4]' AS d FROM ivp ORDER BY v <-> '[1,2,3,4]') s;
SELECT count(*) AS rows, count(*) FILTER (WHERE d < prev) AS out_of_order
FROM (SELECT d, lag(d) OVER (ORDER BY rn) AS prev FROM ivp_all) s;
SET ivfpq.iterative_scan = off;
SELECT count(*) FROM (SELECT id FROM ivp ORDER BY v <-> '[1,2,3,4]') s;
RESET ivfpq.iterative_scan;

DROP TABLE ivp, ivp_all;

-- Wide vectors with a refine code: most of the index is fine pages, which a
-- probe does not read, and the table's vectors are out of line (TOAST), which
-- a Seq Scan's cost does not see: a LIMIT query still takes the index.
CREATE TABLE ivp_wide (id int PRIMARY KEY, v vector(1536));
ALTER TABLE ivp_wide ALTER COLUMN v SET STORAGE external;
INSERT INTO ivp_wide
SELECT i, (SELECT array_agg(sin(i * 0.37 + j * 0.11 + (i % 7) * j * 0.01))::vector
           FROM generate_series(1, 1536) j)
FROM generate_series(1, 2000) i;
CREATE INDEX ivp_wide_v ON ivp_wide USING ivfpq (v vector_cosine_ops) WITH (lists = 4, refine = 4);
ANALYZE ivp_wide;
EXPLAIN (COSTS OFF)
SELECT id FROM ivp_wide ORDER BY v <=> (SELECT v FROM ivp_wide WHERE id = 7) LIMIT 10;
SET ivfpq.probes = 2;
EXPLAIN (COSTS OFF)
SELECT id FROM ivp_wide ORDER BY v <=> (SELECT v FROM ivp_wide WHERE id = 7) LIMIT 10;
RESET ivfpq.probes;
DROP TABLE ivp_wide;
