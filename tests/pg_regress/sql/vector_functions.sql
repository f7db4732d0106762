-- Functions on vector: l2_distance, inner_product, cosine_distance,
-- l1_distance, vector_dims, vector_norm, l2_normalize, subvector, and the
-- index support functions that are callable from SQL.

-- l2_distance
SELECT l2_distance('[0,0]'::vector, '[3,4]');
SELECT l2_distance('[0,0]'::vector, '[0,1]');
SELECT l2_distance('[1,2]'::vector, '[3]');
SELECT l2_distance('[3e38]'::vector, '[-3e38]');
SELECT l2_distance('[1,1,1,1,1,1,1,1,1]'::vector, '[1,1,1,1,1,1,1,4,5]');
SELECT l2_distance('[1.5,2.5]'::vector, '[1.5,2.5]');
SELECT l2_distance(array_fill(1, ARRAY[16000])::vector, array_fill(0, ARRAY[16000])::vector);
SELECT vector_l2_squared_distance('[0,0]'::vector, '[3,4]');
SELECT vector_l2_squared_distance('[1,2]'::vector, '[3]');

-- inner_product
SELECT inner_product('[1,2]'::vector, '[3,4]');
SELECT inner_product('[1,2]'::vector, '[3]');
SELECT inner_product('[3e38]'::vector, '[3e38]');
SELECT inner_product('[1,1,1,1,1,1,1,1,1]'::vector, '[1,2,3,4,5,6,7,8,9]');
SELECT inner_product('[1,-1]'::vector, '[1,1]');
SELECT inner_product(array_fill(2, ARRAY[16000])::vector, array_fill(3, ARRAY[16000])::vector);
SELECT vector_negative_inner_product('[1,2]'::vector, '[3,4]');
SELECT vector_negative_inner_product('[1,2]'::vector, '[3]');

-- cosine_distance
SELECT cosine_distance('[1,2]'::vector, '[2,4]');
SELECT cosine_distance('[1,2]'::vector, '[0,0]');
SELECT cosine_distance('[0,0]'::vector, '[0,0]');
SELECT cosine_distance('[1,1]'::vector, '[1,1]');
SELECT cosine_distance('[1,0]'::vector, '[0,2]');
SELECT cosine_distance('[1,1]'::vector, '[-1,-1]');
SELECT cosine_distance('[1,2]'::vector, '[3]');
SELECT cosine_distance('[1,1]'::vector, '[1.1,1.1]');
SELECT cosine_distance('[1,1]'::vector, '[-1.1,-1.1]');
SELECT cosine_distance('[3e38]'::vector, '[3e38]');
SELECT cosine_distance('[1,2,3,4,5,6,7,8,9]'::vector, '[1,2,3,4,5,6,7,8,9]');
SELECT cosine_distance('[1,2,3,4,5,6,7,8,9]'::vector, '[-1,-2,-3,-4,-5,-6,-7,-8,-9]');
SELECT cosine_distance('[3,4]'::vector, '[4,3]');
SELECT cosine_distance('[1e-30,0]'::vector, '[1e-30,0]');

-- vector_spherical_distance (assumes unit vectors)
SELECT vector_spherical_distance('[1,0]'::vector, '[0,1]');
SELECT vector_spherical_distance('[1,0]'::vector, '[-1,0]');
SELECT vector_spherical_distance('[1,0]'::vector, '[1,0]');
SELECT vector_spherical_distance('[2,0]'::vector, '[2,0]');
SELECT vector_spherical_distance('[1,0]'::vector, '[1]');

-- l1_distance
SELECT l1_distance('[0,0]'::vector, '[3,4]');
SELECT l1_distance('[0,0]'::vector, '[0,1]');
SELECT l1_distance('[1,2]'::vector, '[3]');
SELECT l1_distance('[3e38]'::vector, '[-3e38]');
SELECT l1_distance('[1,2,3,4,5,6,7,8,9]'::vector, '[1,2,3,4,5,6,7,8,9]');
SELECT l1_distance('[1,2,3,4,5,6,7,8,9]'::vector, '[0,3,2,5,4,7,6,9,8]');
SELECT l1_distance(array_fill(1, ARRAY[16000])::vector, array_fill(-1, ARRAY[16000])::vector);

-- vector_dims
SELECT vector_dims('[1,2,3]'::vector);
SELECT vector_dims('[1]'::vector);
SELECT vector_dims(array_fill(0, ARRAY[16000])::vector);
SELECT vector_dims(NULL::vector);

-- vector_norm
SELECT round(vector_norm('[1,1]')::numeric, 5);
SELECT vector_norm('[3,4]');
SELECT vector_norm('[0,1]');
SELECT vector_norm('[3e37,4e37]')::real;
SELECT vector_norm('[3e38,3e38]')::real;
SELECT vector_norm('[0,0]');
SELECT vector_norm('[-0]');
SELECT vector_norm('[2]');
SELECT vector_norm('[-2]');
SELECT vector_norm('[1e-45]');
SELECT vector_norm(array_fill(1, ARRAY[16000])::vector);

-- l2_normalize
SELECT l2_normalize('[3,4]'::vector);
SELECT l2_normalize('[3,0]'::vector);
SELECT l2_normalize('[0,0.1]'::vector);
SELECT l2_normalize('[0,0]'::vector);
SELECT l2_normalize('[-0,0]'::vector);
SELECT l2_normalize('[3e38]'::vector);
SELECT l2_normalize('[3e38,3e38]'::vector);
SELECT l2_normalize('[-5]'::vector);
SELECT l2_normalize('[1,1,1,1]'::vector);
SELECT l2_normalize('[1e-45]'::vector);
SELECT l2_normalize('[1e-45,1e-45]'::vector);
SELECT vector_norm(l2_normalize('[1,2,3]'::vector))::real;

-- subvector: 1-based like substring
SELECT subvector('[1,2,3,4,5]'::vector, 1, 3);
SELECT subvector('[1,2,3,4,5]'::vector, 3, 2);
SELECT subvector('[1,2,3,4,5]'::vector, 1, 5);
SELECT subvector('[1,2,3,4,5]'::vector, 5, 1);
-- a start before 1 is clamped, and the count still runs from the given start
SELECT subvector('[1,2,3,4,5]'::vector, 0, 3);
SELECT subvector('[1,2,3,4,5]'::vector, -1, 3);
SELECT subvector('[1,2,3,4,5]'::vector, -1, 2);
SELECT subvector('[1,2,3,4,5]'::vector, 0, 1);
-- a count past the end is clamped
SELECT subvector('[1,2,3,4,5]'::vector, 3, 9);
SELECT subvector('[1,2,3,4,5]'::vector, -10, 100);
-- a count below 1
SELECT subvector('[1,2,3,4,5]'::vector, 1, 0);
SELECT subvector('[1,2,3,4,5]'::vector, 3, -1);
SELECT subvector('[1,2,3,4,5]'::vector, 3, -2147483648);
-- a start past the end
SELECT subvector('[1,2,3,4,5]'::vector, 6, 1);
SELECT subvector('[1,2,3,4,5]'::vector, 2147483647, 10);
-- int overflow of start + count
SELECT subvector('[1,2,3,4,5]'::vector, 3, 2147483647);
SELECT subvector('[1,2,3,4,5]'::vector, 2147483647, 2147483647);
SELECT subvector('[1,2,3,4,5]'::vector, -2147483644, 2147483647);
SELECT subvector('[1,2,3,4,5]'::vector, -2147483648, 2147483647);
SELECT subvector('[1,2,3,4,5]'::vector, -2147483648, 1);
SELECT subvector(array_fill(7, ARRAY[16000])::vector, 16000, 1);
SELECT vector_dims(subvector(array_fill(7, ARRAY[16000])::vector, 2, 16000));

-- NULL in, NULL out (all functions are strict)
SELECT l2_distance(NULL::vector, '[1]'::vector) IS NULL, inner_product('[1]'::vector, NULL::vector) IS NULL,
       cosine_distance(NULL::vector, NULL::vector) IS NULL, l1_distance(NULL::vector, '[1]'::vector) IS NULL,
       vector_norm(NULL::vector) IS NULL, l2_normalize(NULL::vector) IS NULL,
       subvector('[1]'::vector, NULL, 1) IS NULL, subvector(NULL::vector, 1, 1) IS NULL;

-- function catalog properties
SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args,
       p.prorettype::regtype AS returns, p.provolatile, p.proisstrict, p.proparallel
FROM pg_proc p
WHERE p.proname IN ('l2_distance', 'inner_product', 'cosine_distance', 'l1_distance',
                    'vector_dims', 'vector_norm', 'l2_normalize', 'subvector',
                    'vector_add', 'vector_sub', 'vector_mul', 'vector_concat',
                    'vector_cmp', 'vector_lt', 'vector_le', 'vector_eq', 'vector_ne',
                    'vector_ge', 'vector_gt', 'vector_l2_squared_distance',
                    'vector_negative_inner_product', 'vector_spherical_distance',
                    'vector_accum', 'vector_avg', 'vector_combine', 'vector',
                    'array_to_vector', 'vector_to_float4', 'vector_in', 'vector_out',
                    'vector_typmod_in', 'vector_recv', 'vector_send')
  AND (pg_get_function_identity_arguments(p.oid) LIKE '%vector%'
       OR p.prorettype = 'vector'::regtype
       OR p.proname IN ('vector_accum', 'vector_avg', 'vector_combine', 'vector_typmod_in'))
ORDER BY 1, 2;

-- binary_quantize(vector) quantizes the float4 values themselves (it once went
-- through the implicit cast to halfvec: 1e-9 rounded to 0 and lost its bit,
-- and 70000 raised halfvec's range error)
SELECT binary_quantize('[1e-9,-1e-9]'::vector), binary_quantize('[70000,-1,0,3]'::vector);
SELECT binary_quantize('[0,0.1,-0.2,-0.3,0.4,0.5,0.6,-0.7,0.8,-0.9,1]'::vector),
       length(binary_quantize('[1,2,3,-4,5,6,-7,8,1]'::vector));
SELECT 'binary_quantize(vector)'::regprocedure;

-- Hamming and Jaccard distances of bit strings (pgvector's <~> and <%>)
SELECT hamming_distance(B'1100', B'1010'), B'1100' <~> B'1010', B'1100' <~> B'1100';
SELECT jaccard_distance(B'1100', B'1010'), B'1100' <%> B'1010', B'1100' <%> B'1100';
-- no shared bit, or no bit set at all: 1, as pgvector
SELECT B'1000' <%> B'0100', B'0000' <%> B'0000', B''::bit varying <~> B''::bit varying;
-- past 64 bits (the word-at-a-time part) and a varbit
SELECT binary_quantize(array_fill(1, ARRAY[70])::vector) <~> binary_quantize(array_fill(-1, ARRAY[70])::vector),
       binary_quantize(array_fill(1, ARRAY[70])::vector) <%> (B'1' || repeat('0', 69)::varbit);
SELECT hamming_distance(B'101', B'1010');
SELECT jaccard_distance(B'101', B'1010');
SELECT hamming_distance(NULL, B'1') IS NULL, jaccard_distance(B'1', NULL) IS NULL;
