-- Which plan a filtered nearest-neighbour query gets. The index scan returns rows
-- in exact distance order whatever the filter, but a filter that rejects nearly
-- every row makes it read many candidates per row returned: its cost grows as
-- LIMIT / selectivity. A very selective filter is then cheaper to apply first
-- (B-tree or bitmap scan on the filter column, then an exact sort of the few
-- rows), a loose one is cheaper through the ivfpq index.

CREATE TABLE fp (id int, tenth int, thousandth int, v vector(4));
INSERT INTO fp
SELECT i, i % 10, i % 1000,
       ARRAY[sin(i), cos(i * 0.7), sin(i * 1.3), cos(i * 0.37)]::real[]::vector
FROM generate_series(1, 50000) i;
CREATE INDEX fp_tenth ON fp (tenth);
CREATE INDEX fp_thousandth ON fp (thousandth);
CREATE INDEX fp_v ON fp USING ivfpq (v) WITH (lists = 50, m = 2);
ANALYZE fp;

-- 10% of the rows pass: the ivfpq index, filtering as rows come.
EXPLAIN (COSTS OFF)
SELECT id FROM fp WHERE tenth = 3 ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 10;
-- 0.1% pass: filter first, then sort the 50 rows exactly.
EXPLAIN (COSTS OFF)
SELECT id FROM fp WHERE thousandth = 7 ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 10;
-- No filter: the index.
EXPLAIN (COSTS OFF)
SELECT id FROM fp ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 10;

-- Both plans return the same rows (the exact filtered top 10).
SET ivfpq.iterative_scan = on;
SET ivfpq.probes = 50;
SELECT array_agg(id) = (SELECT array_agg(id) FROM (
         SELECT id FROM fp WHERE tenth = 3 ORDER BY v <-> '[0.1,0.2,0.3,0.4]', id LIMIT 10) e)
       AS index_rows_are_exact
FROM (SELECT id FROM fp WHERE tenth = 3 ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 10) s;
SELECT array_agg(id) AS filtered_first
FROM (SELECT id FROM fp WHERE thousandth = 7 ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 10) s;

DROP TABLE fp;
