-- Text input and output of vector: syntax, whitespace, signs, exponents,
-- shortest round-trip float4 output, dimension limits, and the typmod syntax.

-- plain input
SELECT '[1,2,3]'::vector;
SELECT '[-1,-2,-3]'::vector;
SELECT '[1.,2.,3.]'::vector;
SELECT '[.5,-.5,+.5]'::vector;
SELECT '[+1,+2,-0]'::vector;
SELECT '[0,-0,0.0,-0.0]'::vector;
SELECT '[1.23456]'::vector;

-- whitespace: spaces, tabs, newlines, CR, vertical tab and form feed are all
-- allowed around the brackets and around every element
SELECT ' [ 1,  2 ,    3  ] '::vector;
SELECT E'\t[\t1\t,\n2\n,\r3\r]\t'::vector;
SELECT (chr(11) || chr(12) || '[' || chr(11) || '1,' || chr(12) || '2' || chr(11) || ']' || chr(12) || chr(11))::vector;
SELECT E'[1\n]\n'::vector;

-- exponents and notation
SELECT '[1e3,1E3,1e+3,1e-3,1.5e2,-2.5E-2]'::vector;
SELECT '[1.5e38,-1.5e38]'::vector;
SELECT '[1.5e+38,-1.5e+38]'::vector;
SELECT '[1.5e-38,-1.5e-38]'::vector;
SELECT '[00001,0001.5000,1e0003]'::vector;
SELECT '[3.4028234e38,-3.4028234e38]'::vector;
SELECT '[3.40282356e38]'::vector;

-- underflow to zero is accepted (as a signed zero), unlike float4in, which
-- rejects it; subnormals are kept
SELECT '[1e-46,1]'::vector;
SELECT '[-1e-46,1]'::vector;
SELECT '[1e-40,1.4e-45,-1.4e-45]'::vector;
SELECT '[1.17549435e-38,1.1754942e-38]'::vector;

-- output: the shortest decimal that reads back as the same float4, plain
-- notation for exponents -4..5 and scientific otherwise
SELECT '[0.1,0.2,0.3,1.1,2.2,3.3]'::vector;
SELECT '[0.6666666666666666,3.14159265358979,2.718281828459045]'::vector;
SELECT '[123456,1234567,12345678,123456789]'::vector;
SELECT '[100000,1000000,999999,9999999]'::vector;
SELECT '[0.0001,0.00001,0.00012345,0.000012345]'::vector;
SELECT '[16777216,16777217,16777218,16777219]'::vector;
SELECT '[1e10,1e20,1e30,1e38]'::vector;
SELECT '[1e-10,1e-20,1e-30,1e-38]'::vector;
SELECT '[3.4028235e38,-3.4028235e38]'::vector;
SELECT '[1.1754944e-38,1e-45,7e-45]'::vector;
SELECT '[0.1000000001,0.99999999,1.00000001]'::vector;
SELECT '[33554432,33554436,2.5,0.125]'::vector;
SELECT '[9.999999e-5,9.9999999e-5,99999.99,999999.9]'::vector;

-- output ignores extra_float_digits (pgvector always prints the shortest form)
SET extra_float_digits = 3;
SELECT '[0.1,1.1,3.14159265358979]'::vector;
SET extra_float_digits = 0;
SELECT '[0.1,1.1,3.14159265358979]'::vector;
SET extra_float_digits = -15;
SELECT '[0.1,1.1,3.14159265358979]'::vector;
RESET extra_float_digits;

-- output agrees with PostgreSQL's own float4 output, and text round-trips are
-- exact, over a spread of values across the whole float4 range
SELECT count(*) AS mismatches
FROM (SELECT ((i % 9973 + 1) * 0.7071067811865476 * 10.0::float8 ^ (i % 72 - 40))::real AS x
      FROM generate_series(1, 20000) i) s
WHERE ARRAY[x]::vector::text <> '[' || x::text || ']'
   OR (ARRAY[x]::vector::text)::vector <> ARRAY[x]::vector;
SELECT count(*) AS mismatches
FROM (SELECT (1.0001::float8 ^ i)::real AS x FROM generate_series(-20000, 20000) i) s
WHERE ARRAY[x]::vector::text <> '[' || x::text || ']'
   OR (ARRAY[x]::vector::text)::vector <> ARRAY[x]::vector;
SELECT count(*) AS mismatches
FROM (SELECT (i * 1.401298464324817e-45::float8)::real AS x FROM generate_series(1, 5000) i) s
WHERE ARRAY[x]::vector::text <> '[' || x::text || ']'
   OR (ARRAY[x]::vector::text)::vector <> ARRAY[x]::vector;

-- type modifier syntax
SELECT '[1,2,3]'::vector(3);
SELECT '[1,2,3]'::vector(2);
SELECT '[1,2,3]'::vector(4);
SELECT '[1,2,3]'::vector(3, 2);
SELECT '[1,2,3]'::vector('a');
SELECT '[1,2,3]'::vector(0);
SELECT '[1,2,3]'::vector(-1);
SELECT '[1]'::vector(16000);
SELECT '[1,2,3]'::vector(16001);
SELECT format_type('vector'::regtype, 3), format_type('vector'::regtype, -1);
CREATE TABLE vector_input_typmod (a vector, b vector(3), c vector(16000));
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'vector_input_typmod'::regclass AND attnum > 0 ORDER BY attnum;
DROP TABLE vector_input_typmod;

-- arrays of vectors
SELECT unnest('{"[1,2,3]", "[4,5,6]"}'::vector[]);
SELECT '{"[1,2,3]","[4.5,-6]"}'::vector[];
SELECT '{"[1,2,3]"}'::vector(3)[];
SELECT '{"[1,2,3]"}'::vector(2)[];

-- the largest vector: 16000 dimensions, from text and back
SELECT vector_dims(('[' || repeat('1,', 15999) || '1]')::vector);
SELECT length(('[' || repeat('1.5,', 15999) || '1.5]')::vector::text);
SELECT ('[' || repeat('-1.2345678e-20,', 15999) || '1]')::vector::text
     = '[' || repeat('-1.2345678e-20,', 15999) || '1]';
SELECT vector_dims(('[' || repeat('1,', 15999) || '1]')::vector(16000));

-- dimension limits
SELECT ('[' || repeat('1,', 16000) || '1]')::vector;
SELECT ('[' || repeat('1,', 16000) || 'x]')::vector;
SELECT ('[' || repeat('1,', 16000))::vector;
SELECT '[]'::vector;
SELECT '[ ]'::vector;
SELECT E'[\t\n]'::vector;

-- NaN and infinity are rejected, in every spelling strtof knows
SELECT '[NaN,1]'::vector;
SELECT '[nan]'::vector;
SELECT '[1,-NaN]'::vector;
SELECT '[Infinity,1]'::vector;
SELECT '[-Infinity,1]'::vector;
SELECT '[inf]'::vector;
SELECT '[-inf]'::vector;
SELECT '[+Infinity]'::vector;
SELECT '[infinity]'::vector;
SELECT '[INF]'::vector;
SELECT '[nan(123)]'::vector;

-- hexadecimal floats (strtof syntax)
SELECT '[0x10]'::vector;
SELECT '[0x1p-2,-0X1.8P1]'::vector;

-- out of range
SELECT '[4e38,1]'::vector;
SELECT '[-4e38,1]'::vector;
SELECT '[1e39]'::vector;
SELECT '[1,-1e39]'::vector;
SELECT '[3.4028236e38]'::vector;
SELECT '[1e400]'::vector;
SELECT '[1e-400]'::vector;
SELECT '[ -1e39 ]'::vector;
SELECT ('[' || repeat('9', 50) || ']')::vector;
SELECT ('[0.' || repeat('0', 60) || '1]')::vector;
SELECT ('[' || repeat('9', 30) || ']')::vector;

-- malformed input
SELECT '[1,2,3'::vector;
SELECT '[1,2,3]9'::vector;
SELECT '[1,2,3] 9'::vector;
SELECT '[1,2,3]]'::vector;
SELECT '[1,2,3],'::vector;
SELECT '1,2,3'::vector;
SELECT '(1,2,3)'::vector;
SELECT '{1,2,3}'::vector;
SELECT ''::vector;
SELECT ' '::vector;
SELECT '['::vector;
SELECT '[ '::vector;
SELECT '[,'::vector;
SELECT '[,]'::vector;
SELECT '[1,]'::vector;
SELECT '[1, ]'::vector;
SELECT '[,1]'::vector;
SELECT '[1a]'::vector;
SELECT '[1,,3]'::vector;
SELECT '[1, ,3]'::vector;
SELECT '[1 2 3]'::vector;
SELECT '[1;2;3]'::vector;
SELECT '[hello,1]'::vector;
SELECT '[1e]'::vector;
SELECT '[1e+]'::vector;
SELECT '[--1]'::vector;
SELECT '[+-1]'::vector;
SELECT '[.]'::vector;
SELECT '[-]'::vector;
SELECT '[1.2.3]'::vector;
SELECT '[1,2,3'::vector(3);
SELECT '[1,2]x'::vector(3);
