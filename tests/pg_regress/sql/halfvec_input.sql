-- Text and binary input/output of halfvec and its type modifier: values are
-- rounded to half precision (nearest, ties to even) and printed as the float4
-- they widen to; errors and SQLSTATEs are pgvector's (halfvec wording).
\set VERBOSITY default

SELECT '[1,2,3]'::halfvec;
SELECT '[-1,-2.5,+3e2]'::halfvec;
SELECT ' [ 1 , 2 ] '::halfvec;
SELECT E'\t[\t1\t,\n2\n]\n'::halfvec;
SELECT '[0,-0]'::halfvec;
-- rounding to half precision
SELECT '[0.1,0.2,1.23456789,3.14159265]'::halfvec;
SELECT '[65504,-65504,65519]'::halfvec;
SELECT '[0.00006103515625,0.000000059604645,1e-10]'::halfvec;
SELECT '[2049,2051,4097]'::halfvec;

-- range: beyond 65504 (after rounding) is out of range, as in pgvector
SELECT '[65520]'::halfvec;
SELECT '[-1e5]'::halfvec;
SELECT '[1e39]'::halfvec;
SELECT '[NaN]'::halfvec;
SELECT '[Infinity]'::halfvec;
SELECT '[-inf]'::halfvec;

-- syntax errors
SELECT ''::halfvec;
SELECT '1,2'::halfvec;
SELECT '[1,2'::halfvec;
SELECT '[1,,2]'::halfvec;
SELECT '[1,2]x'::halfvec;
SELECT '[a]'::halfvec;
SELECT '[]'::halfvec;
SELECT '[ ]'::halfvec;

-- dimensions: 16,000 at most
SELECT vector_dims(('[' || array_to_string(array_fill(1, ARRAY[16000]), ',') || ']')::halfvec);
SELECT ('[' || array_to_string(array_fill(1, ARRAY[16001]), ',') || ']')::halfvec;

-- typmod
SELECT '[1,2,3]'::halfvec(3);
SELECT '[1,2]'::halfvec(3);
SELECT '[1,2,3]'::halfvec(0);
SELECT '[1,2,3]'::halfvec(16001);
SELECT '[1,2,3]'::halfvec(3, 2);
CREATE TABLE hv_typmod (v halfvec(3));
INSERT INTO hv_typmod VALUES ('[1,2,3]');
INSERT INTO hv_typmod VALUES ('[1,2]');
INSERT INTO hv_typmod SELECT '[4,5]'::halfvec;
SELECT * FROM hv_typmod;
DROP TABLE hv_typmod;
SELECT format_type('halfvec'::regtype, 5);

-- binary: int16 dim, int16 unused, then big-endian halves
SELECT halfvec_send('[1,-2,0.5]');
SELECT halfvec_send('[65504]');
CREATE TABLE hv_copy (id int, v halfvec);
INSERT INTO hv_copy VALUES (1, '[1,2.5,-3]'), (2, '[0.099975586,65504,-0]');
COPY hv_copy TO '/tmp/hv_copy.bin' WITH (FORMAT binary);
CREATE TABLE hv_copy2 (id int, v halfvec(3));
COPY hv_copy2 FROM '/tmp/hv_copy.bin' WITH (FORMAT binary);
SELECT * FROM hv_copy2 ORDER BY id;
SELECT count(*) FROM hv_copy a JOIN hv_copy2 b USING (id) WHERE a.v = b.v;
DROP TABLE hv_copy, hv_copy2;

-- storage: half the bytes of vector
SELECT pg_column_size('[1,2,3,4]'::halfvec), pg_column_size('[1,2,3,4]'::vector);
