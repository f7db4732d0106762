-- halfvec functions, operators, casts and aggregates, beside the same values
-- as vector: every distance over halfvecs equals the one over the widened
-- vectors (the same kernels run on the exact float4 values).
\set VERBOSITY default

-- distances
SELECT '[1,2,3]'::halfvec <-> '[3,2,1]' AS l2, l2_distance('[1,2,3]'::halfvec, '[3,2,1]');
SELECT '[1,2,3]'::halfvec <#> '[3,2,1]' AS neg_ip, inner_product('[1,2,3]'::halfvec, '[3,2,1]');
SELECT '[1,2,3]'::halfvec <=> '[3,2,1]' AS cosine, cosine_distance('[1,2,3]'::halfvec, '[3,2,1]');
SELECT '[1,2,3]'::halfvec <+> '[3,2,1]' AS l1, l1_distance('[1,2,3]'::halfvec, '[3,2,1]');
SELECT cosine_distance('[0,0]'::halfvec, '[1,1]');
SELECT cosine_distance('[1,1]'::halfvec, '[-1,-1]'), cosine_distance('[1,2]'::halfvec, '[2,4]');
SELECT '[1,2]'::halfvec <-> '[1,2,3]';
SELECT '[1,2]'::halfvec <#> '[1,2,3]';
SELECT l1_distance('[1,2]'::halfvec, '[1]');
SELECT h.a <-> h.b = h.a::vector <-> h.b::vector AS l2_same,
       h.a <#> h.b = h.a::vector <#> h.b::vector AS ip_same,
       h.a <=> h.b = h.a::vector <=> h.b::vector AS cos_same,
       h.a <+> h.b = h.a::vector <+> h.b::vector AS l1_same
FROM (SELECT '[0.1,0.2,0.3,-4.5,1000]'::halfvec AS a, '[7,-0.25,3.3,2,0.001]'::halfvec AS b) h;
SELECT halfvec_l2_squared_distance('[1,2]', '[3,4]'), halfvec_negative_inner_product('[1,2]', '[3,4]'),
       round(halfvec_spherical_distance('[1,0]', '[0,1]')::numeric, 6);

-- functions
SELECT vector_dims('[1,2,3]'::halfvec);
SELECT l2_norm('[3,4]'::halfvec), l2_norm('[0,0]'::halfvec);
SELECT l2_normalize('[3,4]'::halfvec), l2_normalize('[0,0]'::halfvec);
SELECT subvector('[1,2,3,4,5]'::halfvec, 2, 3);
SELECT subvector('[1,2,3,4,5]'::halfvec, 0, 2), subvector('[1,2,3,4,5]'::halfvec, 4, 10);
SELECT subvector('[1,2,3]'::halfvec, 4, 1);
SELECT subvector('[1,2,3]'::halfvec, 1, 0);
SELECT subvector('[1,2,3]'::halfvec, -5, 3);
SELECT binary_quantize('[1,0,-1]'::halfvec), binary_quantize('[0,0.1,-0.2,-0.3,0.4,0.5,0.6,-0.7,0.8,-0.9,1]'::halfvec);
SELECT binary_quantize('[1,2,3,-4,5,6,-7,8]'::halfvec), length(binary_quantize('[1,2,3,-4,5,6,-7,8,1]'::halfvec));

-- arithmetic, rounded to half with pgvector's overflow and underflow errors
SELECT '[1,2,3]'::halfvec + '[4,5,6]', '[1,2,3]'::halfvec - '[4,5,6]', '[1,2,3]'::halfvec * '[4,5,6]';
SELECT '[0.1]'::halfvec + '[0.2]';
SELECT '[65504]'::halfvec + '[65504]';
SELECT '[-65504]'::halfvec - '[65504]';
SELECT '[256]'::halfvec * '[256]';
SELECT '[1e-7]'::halfvec * '[1e-7]';
SELECT '[1,2]'::halfvec + '[1]';
SELECT '[1,2]'::halfvec || '[3]', vector_dims(('[' || array_to_string(array_fill(1, ARRAY[8000]), ',') || ']')::halfvec || ('[' || array_to_string(array_fill(1, ARRAY[8000]), ',') || ']')::halfvec);
SELECT ('[' || array_to_string(array_fill(1, ARRAY[8000]), ',') || ']')::halfvec || ('[' || array_to_string(array_fill(1, ARRAY[8001]), ',') || ']')::halfvec;

-- comparison and btree
SELECT '[1,2]'::halfvec < '[1,3]', '[1,2]'::halfvec <= '[1,2]', '[1,2]'::halfvec = '[1,2]',
       '[1,2]'::halfvec <> '[1,2,0]', '[2]'::halfvec > '[1,9]', '[1,2]'::halfvec >= '[1,2,3]';
SELECT '[0]'::halfvec = '[-0]', '[0.1]'::halfvec = '[0.09998]';
SELECT halfvec_cmp('[1,2]', '[1,2,3]'), halfvec_cmp('[2]', '[1,2,3]'), halfvec_cmp('[1]', '[1]');
CREATE TABLE hv_sort (v halfvec);
INSERT INTO hv_sort VALUES ('[3]'), ('[1,2]'), ('[1]'), ('[1,1]'), ('[-1,5]');
CREATE INDEX ON hv_sort (v);
SET enable_seqscan = off;
SELECT v FROM hv_sort ORDER BY v;
SELECT v FROM hv_sort WHERE v = '[1,2]';
RESET enable_seqscan;
DROP TABLE hv_sort;

-- casts
SELECT '[1.5,2,3]'::halfvec::vector, '[0.1,2]'::vector::halfvec;
SELECT '[70000]'::vector::halfvec;
SELECT '[1,2,3]'::halfvec::vector(2);
SELECT '[1,2,3]'::vector::halfvec(2);
SELECT '[1,2,3]'::halfvec::real[];
SELECT ARRAY[1,2,3]::halfvec, ARRAY[1.5,2.5]::real[]::halfvec, ARRAY[0.1,0.2]::float8[]::halfvec, ARRAY[1.25,2]::numeric[]::halfvec;
SELECT ARRAY[1,2,3]::halfvec(2);
SELECT ARRAY[100000]::halfvec;
SELECT ARRAY[1,NULL]::halfvec;
SELECT ARRAY[[1,2],[3,4]]::halfvec;
SELECT '{}'::real[]::halfvec;
SELECT ARRAY['NaN']::real[]::halfvec;
SELECT ARRAY['Infinity']::real[]::halfvec;
SELECT ARRAY[1e39]::numeric[]::halfvec;
CREATE TABLE hv_assign (h halfvec(2), v vector(2));
INSERT INTO hv_assign VALUES ('[1,2]'::vector, '[3,4]'::halfvec);
INSERT INTO hv_assign VALUES (ARRAY[5,6], ARRAY[7,8]);
SELECT * FROM hv_assign;
DROP TABLE hv_assign;

-- aggregates
SELECT avg(v), sum(v) FROM (VALUES ('[1,2]'::halfvec), ('[3,5]'), ('[0.5,0.25]')) t(v);
SELECT avg(v), sum(v) FROM (SELECT '[1]'::halfvec AS v WHERE false) t;
SELECT avg(v) FROM (VALUES ('[1,2]'::halfvec), ('[3]')) t(v);
SELECT sum(v) FROM (VALUES ('[60000]'::halfvec), ('[60000]')) t(v);
SELECT avg(v) FROM (VALUES ('[60000]'::halfvec), ('[65504]')) t(v);
