-- arrw.fused_search: one ranking from several (nearest neighbours on vector
-- columns, full-text rank on a text column), by reciprocal rank fusion or a
-- weighted sum of normalized scores.
CREATE TABLE fdocs (id int PRIMARY KEY, title vector(2), body vector(3), txt text);
INSERT INTO fdocs VALUES
  (1, '[1,0]', '[0,0,1]', 'postgres vector index'),
  (2, '[0.9,0.1]', '[1,0,0]', 'cooking with garlic'),
  (3, '[0,1]', '[0,0.9,0.1]', 'postgres replication and backups'),
  (4, '[0.7,0.7]', '[0.1,0,0.9]', 'vector databases compared'),
  (5, '[-1,0]', '[0,1,0]', 'gardening in spring');

-- Each input alone ranks like its own ORDER BY.
SELECT id, round(score::numeric, 4) AS score, ranks
FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "op": "<->"}]', k => 3);
-- Two vector columns of different dimensions and a full-text query, RRF.
SELECT id, round(score::numeric, 4) AS score, ranks
FROM arrw.fused_search('fdocs', 'id',
  '[{"column": "title", "query": "[1,0]"},
    {"column": "body", "query": "[0,0,1]", "weight": 2},
    {"column": "txt", "query": "postgres vector"}]', k => 4);
-- Weighted sum of normalized scores, with a filter.
SELECT id, round(score::numeric, 4) AS score
FROM arrw.fused_search('fdocs', 'id',
  '[{"column": "title", "query": "[1,0]"}, {"column": "txt", "query": "postgres"}]',
  k => 3, method => 'weighted', filter => 'id <> 1');
-- The SQL it runs, for EXPLAIN.
SELECT arrw.fused_search_sql('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]', k => 2) LIKE 'WITH i1 AS%' AS sql_ok;

-- Rows at one distance (here: sharing a vector) and of one text rank get their
-- ranks in the order of their ids, whatever order the plan reads them in (the
-- rows are stored in descending id order), so rrf does not depend on the plan.
CREATE TABLE fties (id int PRIMARY KEY, v vector(2), txt text);
INSERT INTO fties SELECT i, '[1,1]', 'garlic bread' FROM generate_series(6, 1, -1) i;
INSERT INTO fties VALUES (7, '[0,1]', 'garlic soup');
SELECT id, round(score::numeric, 5) AS score, ranks
FROM arrw.fused_search('fties', 'id',
  '[{"column": "v", "query": "[1,1]", "op": "<->"}, {"column": "txt", "query": "garlic"}]', k => 7);
DROP TABLE fties;

-- A NaN distance (cosine of a zero vector) or an infinite one does not set the
-- weighted scale: it scores 0, and every other row keeps its score.
CREATE TABLE fnan (id int PRIMARY KEY, e vector(2));
INSERT INTO fnan VALUES (1, '[1,0]'), (2, '[0.9,0.1]'), (3, '[0,1]'), (4, '[0,0]'), (5, '[-1,0]');
SELECT id, round(score::numeric, 4) AS score
FROM arrw.fused_search('fnan', 'id', '[{"column": "e", "query": "[1,0]"}]', k => 5, method => 'weighted');
-- Two inputs on one column: each keeps its rank (the second keyed e#2).
SELECT id, ranks
FROM arrw.fused_search('fnan', 'id',
  '[{"column": "e", "query": "[1,0]", "op": "<->", "depth": 2},
    {"column": "e", "query": "[-1,0]", "op": "<->", "depth": 2}]', k => 2);
-- Weights go into the query exactly, whatever extra_float_digits says.
SET extra_float_digits = -15;
SELECT arrw.fused_search_sql('fnan', 'id', '[{"column": "e", "query": "[1,0]", "weight": 0.44}]',
  method => 'weighted') LIKE '%0.44::float8%' AS weight_exact;
RESET extra_float_digits;
DROP TABLE fnan;

-- Errors.
\set VERBOSITY sqlstate
SELECT * FROM arrw.fused_search(NULL, 'id', '[{"column": "title", "query": "[1,0]"}]');
SELECT * FROM arrw.fused_search('fdocs', NULL, '[{"column": "title", "query": "[1,0]"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": null}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": null, "query": "[1,0]"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[]');
SELECT * FROM arrw.fused_search('fdocs', 'nope', '[{"column": "title", "query": "[1,0]"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "nope", "query": "[1,0]"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "id", "query": "1"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]', method => 'max');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "weight": -1}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "op": ";drop"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0,0]"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]', k => 0);
\set VERBOSITY default

-- The caller's privileges and row-level security apply.
CREATE ROLE fusion_reader;
GRANT USAGE ON SCHEMA arrw TO fusion_reader;
SET ROLE fusion_reader;
\set VERBOSITY sqlstate
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]');
\set VERBOSITY default
RESET ROLE;
GRANT SELECT ON fdocs TO fusion_reader;
ALTER TABLE fdocs ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_even ON fdocs FOR SELECT TO fusion_reader USING (id % 2 = 0);
SET ROLE fusion_reader;
SELECT id FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]', k => 5);
RESET ROLE;
DROP TABLE fdocs;
REVOKE USAGE ON SCHEMA arrw FROM fusion_reader;
DROP ROLE fusion_reader;
