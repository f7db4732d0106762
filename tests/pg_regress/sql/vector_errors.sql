-- Every error path of vector, twice: first with VERBOSITY sqlstate so the
-- expected output pins each SQLSTATE, then with the default verbosity so it
-- pins each message (and DETAIL where there is one).

\set VERBOSITY sqlstate

SELECT '[1,2,3'::vector;
SELECT '[1,2,3]9'::vector;
SELECT '1,2,3'::vector;
SELECT ''::vector;
SELECT '[]'::vector;
SELECT '[1,]'::vector;
SELECT '[1,,3]'::vector;
SELECT '[hello]'::vector;
SELECT '[NaN]'::vector;
SELECT '[Infinity]'::vector;
SELECT '[-Infinity]'::vector;
SELECT '[1e39]'::vector;
SELECT '[-1e39]'::vector;
SELECT ('[' || repeat('1,', 16000) || '1]')::vector;
SELECT '[1,2,3]'::vector(2);
SELECT '[1,2,3]'::vector(3, 2);
SELECT '[1,2,3]'::vector(0);
SELECT '[1,2,3]'::vector(16001);
SELECT '[1,2,3]'::vector::vector(2);
SELECT '[1,2]'::vector <-> '[1,2,3]';
SELECT '[1,2]'::vector <#> '[1,2,3]';
SELECT '[1,2]'::vector <=> '[1,2,3]';
SELECT '[1,2]'::vector <+> '[1,2,3]';
SELECT '[1,2]'::vector + '[1,2,3]';
SELECT '[1,2]'::vector - '[1,2,3]';
SELECT '[1,2]'::vector * '[1,2,3]';
SELECT '[3e38]'::vector + '[3e38]';
SELECT '[-3e38]'::vector - '[3e38]';
SELECT '[1e37]'::vector * '[1e37]';
SELECT '[1e-37]'::vector * '[1e-37]';
SELECT array_fill(0, ARRAY[16000])::vector || '[1]';
SELECT subvector('[1,2,3]'::vector, 1, 0);
SELECT subvector('[1,2,3]'::vector, 4, 1);
SELECT subvector('[1,2,3]'::vector, -1, 2);
SELECT '{{1,2}}'::real[]::vector;
SELECT '{1,NULL}'::real[]::vector;
SELECT '{}'::real[]::vector;
SELECT '{NaN}'::real[]::vector;
SELECT '{Infinity}'::double precision[]::vector;
SELECT '{4e38}'::double precision[]::vector;
SELECT '{1e39}'::numeric[]::vector;
SELECT '{NaN}'::numeric[]::vector;
SELECT '{1,2,3}'::integer[]::vector(2);
SELECT array_fill(1, ARRAY[16001])::vector;
SELECT avg(v) FROM unnest(ARRAY['[1,2]'::vector, '[3]']) v;
SELECT sum(v) FROM unnest(ARRAY['[1,2]'::vector, '[3]']) v;
SELECT sum(v) FROM unnest(ARRAY['[3e38]'::vector, '[3e38]']) v;
SELECT vector_avg('{}');
SELECT vector_accum('{1,1}', '[1,2]');
SELECT vector_combine('{1,1}', '{1,1,1}');

\set VERBOSITY default

SELECT '[1,2,3'::vector;
SELECT '[1,2,3]9'::vector;
SELECT '1,2,3'::vector;
SELECT ''::vector;
SELECT '[]'::vector;
SELECT '[1,]'::vector;
SELECT '[1,,3]'::vector;
SELECT '[hello]'::vector;
SELECT '[NaN]'::vector;
SELECT '[Infinity]'::vector;
SELECT '[-Infinity]'::vector;
SELECT '[1e39]'::vector;
SELECT '[-1e39]'::vector;
SELECT ('[' || repeat('1,', 16000) || '1]')::vector;
SELECT '[1,2,3]'::vector(2);
SELECT '[1,2,3]'::vector(3, 2);
SELECT '[1,2,3]'::vector(0);
SELECT '[1,2,3]'::vector(16001);
SELECT '[1,2,3]'::vector::vector(2);
SELECT '[1,2]'::vector <-> '[1,2,3]';
SELECT '[1,2]'::vector <#> '[1,2,3]';
SELECT '[1,2]'::vector <=> '[1,2,3]';
SELECT '[1,2]'::vector <+> '[1,2,3]';
SELECT '[1,2]'::vector + '[1,2,3]';
SELECT '[1,2]'::vector - '[1,2,3]';
SELECT '[1,2]'::vector * '[1,2,3]';
SELECT '[3e38]'::vector + '[3e38]';
SELECT '[-3e38]'::vector - '[3e38]';
SELECT '[1e37]'::vector * '[1e37]';
SELECT '[1e-37]'::vector * '[1e-37]';
SELECT array_fill(0, ARRAY[16000])::vector || '[1]';
SELECT subvector('[1,2,3]'::vector, 1, 0);
SELECT subvector('[1,2,3]'::vector, 4, 1);
SELECT subvector('[1,2,3]'::vector, -1, 2);
SELECT '{{1,2}}'::real[]::vector;
SELECT '{1,NULL}'::real[]::vector;
SELECT '{}'::real[]::vector;
SELECT '{NaN}'::real[]::vector;
SELECT '{Infinity}'::double precision[]::vector;
SELECT '{4e38}'::double precision[]::vector;
SELECT '{1e39}'::numeric[]::vector;
SELECT '{NaN}'::numeric[]::vector;
SELECT '{1,2,3}'::integer[]::vector(2);
SELECT array_fill(1, ARRAY[16001])::vector;
SELECT avg(v) FROM unnest(ARRAY['[1,2]'::vector, '[3]']) v;
SELECT sum(v) FROM unnest(ARRAY['[1,2]'::vector, '[3]']) v;
SELECT sum(v) FROM unnest(ARRAY['[3e38]'::vector, '[3e38]']) v;
SELECT vector_avg('{}');
SELECT vector_accum('{1,1}', '[1,2]');
SELECT vector_combine('{1,1}', '{1,1,1}');

-- COPY reports errors with the row and column as CONTEXT
CREATE TABLE vector_errors_t (v vector(2));
\set VERBOSITY sqlstate
COPY vector_errors_t FROM STDIN;
[1,2,3]
\.
COPY vector_errors_t FROM STDIN;
[1,x]
\.
\set VERBOSITY default
COPY vector_errors_t FROM STDIN;
[1,2,3]
\.
COPY vector_errors_t FROM STDIN;
[1,x]
\.
DROP TABLE vector_errors_t;
