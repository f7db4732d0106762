-- Casts between arrays and vector: integer[], real[], double precision[] and
-- numeric[] to vector, and vector to real[].

-- integer[]
SELECT ARRAY[1,2,3]::vector;
SELECT '{1,2,3}'::integer[]::vector;
SELECT ARRAY[-2147483648, 2147483647, 16777217]::vector;
SELECT '{1,NULL,3}'::integer[]::vector;
SELECT '{}'::integer[]::vector;
SELECT '{{1,2},{3,4}}'::integer[]::vector;
SELECT '{{1}}'::integer[]::vector;
SELECT '[2:4]={1,2,3}'::integer[]::vector;

-- real[]
SELECT ARRAY[1,2,3]::float4[]::vector;
SELECT '{1,2,3}'::real[]::vector;
SELECT '{1,2,3}'::real[]::vector(3);
SELECT '{1,2,3}'::real[]::vector(2);
SELECT '{0.1,-0,1e-45,3.4028235e38}'::real[]::vector;
SELECT '{NULL}'::real[]::vector;
SELECT '{NaN}'::real[]::vector;
SELECT '{Infinity}'::real[]::vector;
SELECT '{-Infinity}'::real[]::vector;
SELECT '{1,NaN,Infinity}'::real[]::vector;
SELECT '{}'::real[]::vector;
SELECT '{{1}}'::real[]::vector;
SELECT '{{1,NULL}}'::real[]::vector;

-- double precision[]
SELECT ARRAY[1,2,3]::float8[]::vector;
SELECT '{1,2,3}'::double precision[]::vector;
SELECT '{1,2,3}'::double precision[]::vector(3);
SELECT '{1,2,3}'::double precision[]::vector(2);
SELECT '{0.1,0.30000000000000004,3.141592653589793}'::double precision[]::vector;
SELECT '{4e38,-4e38}'::double precision[]::vector;
SELECT '{1e-46,-1e-46}'::double precision[]::vector;
SELECT '{3.4028235677973366e38}'::double precision[]::vector;
SELECT '{3.4028235677973362e38}'::double precision[]::vector;
SELECT '{NaN}'::double precision[]::vector;
SELECT '{Infinity}'::double precision[]::vector;
SELECT '{1,NULL}'::double precision[]::vector;
SELECT '{}'::double precision[]::vector;
SELECT '{{1,2}}'::double precision[]::vector;

-- numeric[]
SELECT ARRAY[1.0,2.0,3.0]::vector;
SELECT ARRAY[1,2,3]::numeric[]::vector;
SELECT '{0.1,1.23456789012345678901234567890,-0.0}'::numeric[]::vector;
SELECT '{1e38,-1e38,1e-38}'::numeric[]::vector;
SELECT '{1e39}'::numeric[]::vector;
SELECT '{-1e39}'::numeric[]::vector;
SELECT '{1e-50}'::numeric[]::vector;
SELECT '{NaN}'::numeric[]::vector;
SELECT '{Infinity}'::numeric[]::vector;
SELECT '{-Infinity}'::numeric[]::vector;
-- every element is converted before any is checked, so a conversion error in
-- a later element wins over a NaN in an earlier one
SELECT '{NaN,1e39}'::numeric[]::vector;
SELECT '{1,NULL}'::numeric[]::vector;
SELECT '{}'::numeric[]::vector;
SELECT '{{1},{2}}'::numeric[]::vector;
SELECT '{1,2,3}'::numeric[]::vector(3);
SELECT '{1,2,3}'::numeric[]::vector(2);

-- dimension limits
SELECT vector_dims(array_fill(1, ARRAY[16000])::vector);
SELECT vector_dims(array_fill(1.5::real, ARRAY[16000])::vector);
SELECT vector_dims(array_fill(1.5::float8, ARRAY[16000])::vector);
SELECT vector_dims(array_fill(1.5::numeric, ARRAY[16000])::vector);
SELECT array_fill(1, ARRAY[16001])::vector;
SELECT array_fill(1.5::real, ARRAY[16001])::vector;
SELECT array_fill(1.5::float8, ARRAY[16001])::vector;
SELECT array_fill(1.5::numeric, ARRAY[16001])::vector;
SELECT array_agg(n)::vector FROM generate_series(1, 16001) n;
SELECT array_to_vector(array_agg(n), 16001, false) FROM generate_series(1, 16001) n;
-- the dimension check comes before the element checks
SELECT array_fill('NaN'::real, ARRAY[16001])::vector;
SELECT '{NULL}'::real[]::vector(2);
SELECT '{NaN}'::real[]::vector(2);

-- calling the cast functions directly
SELECT array_to_vector('{1,2}'::integer[], -1, false);
SELECT array_to_vector('{1,2}'::real[], 2, true);
SELECT array_to_vector('{1,2}'::double precision[], 3, true);
SELECT array_to_vector('{1,2}'::numeric[], -1, true);

-- vector to real[]
SELECT '[1,2,3]'::vector::real[];
SELECT '[0.1,-0,1e-45,-3.4028235e38]'::vector::real[];
SELECT '[1,2,3]'::vector::real[]::vector;
SELECT array_length(array_fill(1, ARRAY[16000])::vector::real[], 1);
SELECT ('[1,2,3]'::vector::real[])[2];
SELECT array_lower('[1,2,3]'::vector::real[], 1), array_ndims('[1,2,3]'::vector::real[]);
SELECT vector_to_float4('[4,5]'::vector, -1, false);
-- vector to other array types goes through real[]
SELECT '[1.5,2.5]'::vector::real[]::double precision[];
SELECT '[1.5,2.5]'::vector::double precision[];
SELECT '[1.5,2.5]'::vector::numeric[];
SELECT '[1.5,2.5]'::vector::integer[];

-- implicit and assignment casts
CREATE TABLE vector_casts_t (v vector, r real[]);
INSERT INTO vector_casts_t VALUES (ARRAY[1,2], '[3,4]'::vector);
INSERT INTO vector_casts_t VALUES ('{1.5,2.5}'::real[], '[3.5,4.5]'::vector);
INSERT INTO vector_casts_t VALUES ('{1.5,2.5}'::double precision[], NULL);
INSERT INTO vector_casts_t VALUES ('{1.5,2.5}'::numeric[], NULL);
SELECT * FROM vector_casts_t ORDER BY v;
-- an array is not implicitly a vector in an expression
SELECT ARRAY[1,2] <-> '[1,2]'::vector;
-- but a vector is implicitly a real[] (though not an anyarray)
CREATE FUNCTION vector_casts_len(r real[]) RETURNS int LANGUAGE sql AS 'SELECT array_length(r, 1)';
SELECT vector_casts_len('[1,2,3]'::vector);
SELECT array_length('[1,2,3]'::vector, 1);
DROP FUNCTION vector_casts_len(real[]);
DROP TABLE vector_casts_t;

-- cast catalog
SELECT castsource::regtype, casttarget::regtype, castfunc::regprocedure, castcontext, castmethod
FROM pg_cast
WHERE (castsource = 'vector'::regtype OR casttarget = 'vector'::regtype)
  AND castsource IN ('vector'::regtype, 'integer[]'::regtype, 'real[]'::regtype,
                     'double precision[]'::regtype, 'numeric[]'::regtype)
  AND casttarget IN ('vector'::regtype, 'real[]'::regtype)
ORDER BY 1::text, 2::text;
