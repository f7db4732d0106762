-- Aggregates avg(vector) and sum(vector), and their support functions.

-- avg
SELECT avg(v) FROM unnest(ARRAY['[1,2,3]'::vector, '[3,5,7]']) v;
SELECT avg(v) FROM unnest(ARRAY['[1,2,3]'::vector, '[3,5,7]', NULL]) v;
SELECT avg(v) FROM unnest(ARRAY['[1,2,3]'::vector]) v;
SELECT avg(v) FROM unnest(ARRAY[]::vector[]) v;
SELECT avg(v) FROM unnest(ARRAY[NULL::vector]) v;
SELECT avg(v) FROM unnest(ARRAY['[1,2]'::vector, '[3]']) v;
SELECT avg(v) FROM unnest(ARRAY['[1]'::vector, '[2]', '[3,4]']) v;
SELECT avg(v) FROM unnest(ARRAY['[3e38]'::vector, '[3e38]']) v;
SELECT avg(v) FROM unnest(ARRAY['[3e38,-3e38]'::vector, '[3e38,-3e38]', '[3e38,-3e38]']) v;
SELECT avg(v) FROM unnest(ARRAY['[1,1]'::vector, '[0,1]', '[0,1]']) v;
SELECT avg(v) FROM unnest(ARRAY['[1e-45]'::vector, '[0]']) v;
SELECT avg(v) FROM unnest(ARRAY['[0.1,0.2]'::vector, '[0.2,0.1]']) v;
SELECT avg(v) FROM unnest(ARRAY['[-0]'::vector, '[-0]']) v;
-- avg accumulates in double precision: 2^24 + 1 + 1 is exact
SELECT avg(v) FROM unnest(ARRAY['[16777216]'::vector, '[1]', '[1]']) v;
SELECT avg(v) FROM (SELECT ARRAY[n, -n, 1]::vector AS v FROM generate_series(1, 1000) n) s;
SELECT avg(v) FROM (SELECT ARRAY[n % 7, n % 3]::vector AS v FROM generate_series(1, 10000) n) s;
-- grouped
SELECT g, avg(v), sum(v), count(v)
FROM (VALUES (1, '[1,2]'::vector), (1, '[3,4]'), (2, '[5,6]'), (2, NULL), (3, NULL)) t(g, v)
GROUP BY g ORDER BY g;
-- window
SELECT n, avg(ARRAY[n, n * 2]::vector) OVER (ORDER BY n ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
FROM generate_series(1, 4) n ORDER BY n;
-- ORDER BY, DISTINCT and FILTER inside the call
SELECT avg(v ORDER BY v DESC) FROM unnest(ARRAY['[1,2]'::vector, '[3,4]']) v;
SELECT avg(DISTINCT v) FROM unnest(ARRAY['[1,2]'::vector, '[1,2]', '[4,8]']) v;
SELECT avg(v) FILTER (WHERE vector_dims(v) = 2) FROM unnest(ARRAY['[1,2]'::vector, '[3]', '[3,4]']) v;

-- sum
SELECT sum(v) FROM unnest(ARRAY['[1,2,3]'::vector, '[3,5,7]']) v;
SELECT sum(v) FROM unnest(ARRAY['[1,2,3]'::vector, '[3,5,7]', NULL]) v;
SELECT sum(v) FROM unnest(ARRAY['[1,2,3]'::vector]) v;
SELECT sum(v) FROM unnest(ARRAY[]::vector[]) v;
SELECT sum(v) FROM unnest(ARRAY[NULL::vector]) v;
SELECT sum(v) FROM unnest(ARRAY['[1,2]'::vector, '[3]']) v;
SELECT sum(v) FROM unnest(ARRAY['[3e38]'::vector, '[3e38]']) v;
SELECT sum(v) FROM unnest(ARRAY['[3e38]'::vector, '[3e38]', '[-3e38]']) v;
SELECT sum(v) FROM unnest(ARRAY['[3e38]'::vector, '[-3e38]', '[3e38]']) v;
SELECT sum(v) FROM unnest(ARRAY['[0.1,0.2]'::vector, '[0.2,0.1]', '[0.3,0.3]']) v;
SELECT sum(v) FROM (SELECT ARRAY[n, -n, 1]::vector AS v FROM generate_series(1, 1000) n) s;
-- sum accumulates in float4 (it is vector_add)
SELECT sum(v) FROM unnest(ARRAY['[16777216]'::vector, '[1]', '[1]']) v;
SELECT sum(DISTINCT v) FROM unnest(ARRAY['[1,2]'::vector, '[1,2]', '[4,8]']) v;

-- the aggregates in a table, with and without a parallel-capable plan (the
-- results must not depend on the plan)
CREATE TABLE vector_agg_t (g int, v vector(3));
INSERT INTO vector_agg_t SELECT n % 4, ARRAY[n % 5, n % 7, 1]::vector FROM generate_series(1, 20000) n;
ANALYZE vector_agg_t;
SELECT avg(v), sum(v) FROM vector_agg_t;
SELECT g, avg(v), sum(v) FROM vector_agg_t GROUP BY g ORDER BY g;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SELECT avg(v), sum(v) FROM vector_agg_t;
SELECT g, avg(v), sum(v) FROM vector_agg_t GROUP BY g ORDER BY g;
SELECT avg(v), sum(v) FROM vector_agg_t WHERE g > 100;
-- a partial aggregate whose partial states are all empty ({0}): the leader
-- combines '{0}' with '{0}' and the result is NULL (pgvector 0.8 raises
-- "vector must have at least 1 dimension" here)
EXPLAIN (COSTS OFF) SELECT avg(v) FROM vector_agg_t WHERE g + 0 > 100;
SELECT avg(v) FROM vector_agg_t WHERE g + 0 > 100;
SELECT avg(v), sum(v) FROM vector_agg_t WHERE g + 0 > 100;
SELECT avg(v) FROM vector_agg_t WHERE g + 0 > 2;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
DROP TABLE vector_agg_t;

-- aggregate catalog
SELECT a.aggfnoid::regprocedure, a.aggtransfn, a.aggfinalfn, a.aggcombinefn,
       a.aggtranstype::regtype, a.agginitval, p.proparallel
FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
WHERE a.aggfnoid IN ('avg(vector)'::regprocedure, 'sum(vector)'::regprocedure)
ORDER BY 1::text;

-- the support functions called directly
SELECT vector_avg('{2,2,4,6}');
SELECT vector_avg('{4,2,4,6}');
SELECT vector_avg('{0}');
SELECT vector_avg('{0,1,2}');
SELECT vector_avg('{1}');
SELECT vector_avg('{}');
SELECT vector_avg('{{1,2}}');
SELECT vector_avg('{1,NULL}');
SELECT vector_avg('{1,NaN}');
SELECT vector_avg('{1,Infinity}');
SELECT vector_avg('{1,1e39}');
SELECT vector_avg('{1e-39,1}');
SELECT vector_accum('{0}', '[1,2]');
SELECT vector_accum('{1,1,2}', '[3,4]');
SELECT vector_accum('{1,1,2}', '[3]');
SELECT vector_accum('{1,1e308}', '[3e38]');
SELECT vector_accum('{1,1.7976931348623157e308}', '[3.4028235e38]');
SELECT vector_accum('{}', '[1]');
SELECT vector_accum('{{0}}', '[1]');
SELECT vector_accum('{NULL}', '[1]');
-- two empty states combine to an empty state (pgvector 0.8 raises "vector must
-- have at least 1 dimension", which breaks parallel avg over no rows)
SELECT vector_combine('{0}', '{0}');
SELECT vector_combine('{0}', '{1,1,2}');
SELECT vector_combine('{1,1,2}', '{0}');
SELECT vector_combine('{1,1,2}', '{2,3,4}');
SELECT vector_combine('{1,1,2}', '{2,3}');
SELECT vector_combine('{1,1e308}', '{1,1e308}');
-- As in pgvector: a sum that overflows is an error, adding a row as merging
-- states; a state past 16,000 dimensions is refused when merged.
SELECT vector_accum('{1,Infinity}', '[1]');
SELECT vector_accum('{1,1.7e308}', '[3.4e38]');
SELECT vector_combine('{0}', (SELECT array_agg(n)::float8[] FROM generate_series(1, 16002) n)) IS NULL;
SELECT vector_combine('{}', '{0}');
SELECT vector_combine('{0}', '{NULL}');
-- A hand-made state is the caller's bad argument (22023), not an internal error.
\set VERBOSITY sqlstate
SELECT vector_accum('{}', '[1,2]');
SELECT vector_avg('{{1,2}}');
SELECT vector_combine('{0}', '{NULL}');
\set VERBOSITY default
