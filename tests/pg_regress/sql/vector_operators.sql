-- Operators on vector: distances (<-> <#> <=> <+>), element-wise arithmetic
-- (+ - *), concatenation (||), comparisons, ORDER BY and the btree opclass.

-- distance operators
SELECT '[0,0]'::vector <-> '[3,4]';
SELECT '[1,2,3]'::vector <-> '[1,2,3]';
SELECT '[1,1,1,1,1,1,1,1,1]'::vector <-> '[1,1,1,1,1,1,1,4,5]';
SELECT '[1,2]'::vector <#> '[3,4]';
SELECT '[1,2]'::vector <#> '[-3,-4]';
SELECT '[1,2]'::vector <=> '[2,4]';
SELECT '[1,0]'::vector <=> '[0,2]';
SELECT '[1,1]'::vector <=> '[-1,-1]';
SELECT '[0,0]'::vector <+> '[3,4]';
SELECT '[1,2,3,4,5,6,7,8,9]'::vector <+> '[0,3,2,5,4,7,6,9,8]';
-- the same with untyped literals on the right (resolved through the operator)
SELECT '[0,0]'::vector <-> '[3,4]', '[0,0]' <-> '[3,4]'::vector;
-- dimension mismatches
SELECT '[1,2]'::vector <-> '[3]';
SELECT '[1,2]'::vector <#> '[3]';
SELECT '[1,2]'::vector <=> '[3]';
SELECT '[1,2]'::vector <+> '[3]';
-- zero vectors: cosine distance is NaN, the others are defined
SELECT '[0,0]'::vector <=> '[0,0]', '[1,2]'::vector <=> '[0,0]', '[0,0]'::vector <=> '[1,2]';
SELECT '[0,0]'::vector <-> '[0,0]', '[0,0]'::vector <#> '[0,0]', '[0,0]'::vector <+> '[0,0]';

-- arithmetic
SELECT '[1,2,3]'::vector + '[4,5,6]';
SELECT '[1,2,3]'::vector - '[4,5,6]';
SELECT '[1,2,3]'::vector * '[4,5,6]';
SELECT '[0.1,0.2]'::vector + '[0.2,0.1]';
SELECT '[1,-0]'::vector * '[-0,-0]';
SELECT '[1,2]'::vector + '[3]';
SELECT '[1,2]'::vector - '[3]';
SELECT '[1,2]'::vector * '[3]';
-- overflow to infinity is an error
SELECT '[3e38]'::vector + '[3e38]';
SELECT '[1,-3e38]'::vector + '[1,-3e38]';
SELECT '[-3e38]'::vector - '[3e38]';
SELECT '[1e37]'::vector * '[1e37]';
SELECT '[1,-1e20]'::vector * '[1,1e20]';
SELECT '[3.4028235e38]'::vector + '[2e31]';
-- a large sum that still rounds to a finite float4 is fine
SELECT '[3.4028235e38]'::vector + '[1e30]';
-- underflow to zero of a product of non-zero elements is an error
SELECT '[1e-37]'::vector * '[1e-37]';
SELECT '[1,-1e-30]'::vector * '[1,1e-30]';
-- but a subnormal product is not zero, and a zero operand is fine
SELECT '[1e-30]'::vector * '[1e-10]';
SELECT '[0,1e-37]'::vector * '[1e-37,0]';
-- sums and differences never underflow
SELECT '[1e-45]'::vector - '[1e-45]';

-- concatenation
SELECT '[1,2,3]'::vector || '[4,5]';
SELECT '[1]'::vector || '[2]' || '[3]';
SELECT vector_dims(array_fill(0, ARRAY[15999])::vector || '[1]');
SELECT array_fill(0, ARRAY[16000])::vector || '[1]';
SELECT ('[1,2]'::vector || '[3]')::vector(3);

-- comparisons: element by element, then the shorter vector first
SELECT '[1,2,3]'::vector < '[1,2,3]';
SELECT '[1,2,3]'::vector < '[1,2]';
SELECT '[1,2]'::vector < '[1,2,3]';
SELECT '[1,2,3]'::vector <= '[1,2,3]';
SELECT '[1,2,3]'::vector <= '[1,2]';
SELECT '[1,2,3]'::vector = '[1,2,3]';
SELECT '[1,2,3]'::vector = '[1,2]';
SELECT '[1,2,3]'::vector <> '[1,2,3]';
SELECT '[1,2,3]'::vector != '[1,2]';
SELECT '[1,2,3]'::vector >= '[1,2,3]';
SELECT '[1,2,3]'::vector >= '[1,2]';
SELECT '[1,2,3]'::vector > '[1,2,3]';
SELECT '[1,2,3]'::vector > '[1,2]';
SELECT '[2]'::vector > '[1,2,3]';
SELECT '[0]'::vector = '[-0]', '[0]'::vector < '[-0]', '[-0]'::vector < '[0]';
SELECT '[1e-45]'::vector > '[0]', '[-1e-45]'::vector < '[-0]';

-- vector_cmp
SELECT vector_cmp('[1,2,3]', '[1,2,3]');
SELECT vector_cmp('[1,2,3]', '[0,0,0]');
SELECT vector_cmp('[0,0,0]', '[1,2,3]');
SELECT vector_cmp('[1,2]', '[1,2,3]');
SELECT vector_cmp('[1,2,3]', '[1,2]');
SELECT vector_cmp('[1,2]', '[2,3,4]');
SELECT vector_cmp('[2,3]', '[1,2,3]');
SELECT vector_cmp('[-0]', '[0]');

-- ORDER BY, DISTINCT, GROUP BY and a btree index
CREATE TABLE vector_ops_t (id int, v vector);
INSERT INTO vector_ops_t VALUES
  (1, '[1,2,3]'), (2, '[1,2]'), (3, '[0,5]'), (4, '[1,2,3]'), (5, '[-1,0,0,0]'),
  (6, NULL), (7, '[1,2,3,0]'), (8, '[2]'), (9, '[-0,5]'), (10, '[1,1.5,100]');
SELECT v FROM vector_ops_t ORDER BY v, id;
SELECT v FROM vector_ops_t ORDER BY v DESC NULLS LAST, id;
SELECT DISTINCT v FROM vector_ops_t ORDER BY v;
SELECT v, count(*) FROM vector_ops_t GROUP BY v ORDER BY v;
SELECT id FROM vector_ops_t WHERE v = '[1,2,3]' ORDER BY id;
SELECT id FROM vector_ops_t WHERE v < '[1,2]' ORDER BY id;
SELECT id FROM vector_ops_t WHERE v BETWEEN '[1]' AND '[1,2,3]' ORDER BY id;
-- nearest neighbours by each distance, exact search
SELECT id, v <-> '[1,2,3]' AS d FROM vector_ops_t WHERE vector_dims(v) = 3 ORDER BY v <-> '[1,2,3]', id;
SELECT id, v <+> '[0,4]' AS d FROM vector_ops_t WHERE vector_dims(v) = 2 ORDER BY v <+> '[0,4]', id;
SELECT id, v <#> '[1,1]' AS d FROM vector_ops_t WHERE vector_dims(v) = 2 ORDER BY v <#> '[1,1]', id;

CREATE INDEX vector_ops_t_v_idx ON vector_ops_t (v);
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM vector_ops_t WHERE v = '[1,2,3]';
SELECT id FROM vector_ops_t WHERE v = '[1,2,3]' ORDER BY id;
SELECT id FROM vector_ops_t WHERE v > '[1,2]' ORDER BY id;
SELECT id FROM vector_ops_t WHERE v <= '[0,5]' ORDER BY id;
SELECT v FROM vector_ops_t ORDER BY v;
SELECT v FROM vector_ops_t ORDER BY v DESC;
RESET enable_seqscan;
RESET enable_bitmapscan;
-- a unique index uses the same equality
CREATE TABLE vector_ops_u (v vector(2) UNIQUE);
INSERT INTO vector_ops_u VALUES ('[1,2]'), ('[2,1]');
INSERT INTO vector_ops_u VALUES ('[1.0,2.0]');
INSERT INTO vector_ops_u VALUES ('[0,0]');
INSERT INTO vector_ops_u VALUES ('[-0,-0]');
SELECT * FROM vector_ops_u ORDER BY v;
-- merge join on vector equality
SET enable_hashjoin = off;
SET enable_nestloop = off;
SELECT a.id, b.id FROM vector_ops_t a JOIN vector_ops_t b ON a.v = b.v WHERE a.id < b.id ORDER BY 1, 2;
RESET enable_hashjoin;
RESET enable_nestloop;
-- smallest and largest in btree order
SELECT (SELECT v FROM vector_ops_t WHERE v IS NOT NULL ORDER BY v LIMIT 1) AS min,
       (SELECT v FROM vector_ops_t WHERE v IS NOT NULL ORDER BY v DESC LIMIT 1) AS max;

DROP TABLE vector_ops_t, vector_ops_u;

-- operator catalog properties that the planner relies on
SELECT oprname, oprcom::regoperator AS commutator, oprnegate::regoperator AS negator,
       oprrest, oprjoin, oprresult::regtype
FROM pg_operator
WHERE oprleft = 'vector'::regtype AND oprright = 'vector'::regtype
ORDER BY oprname;
