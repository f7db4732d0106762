-- COPY of vector columns: text and CSV from STDIN (with typmod enforcement),
-- COPY TO STDOUT, binary COPY round trips, and the binary receive function fed
-- crafted messages. Binary files are written by the server into its data
-- directory (COPY TO needs an absolute path, COPY FROM reads relative to it).

CREATE PROCEDURE vector_copy_write(query text) LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('COPY (%s) TO %L WITH (FORMAT binary)', query,
                 current_setting('data_directory') || '/arrw_regress_vector_copy.bin');
END $$;

CREATE TABLE vector_copy_t (id int, v vector(3));

-- text format
COPY vector_copy_t FROM STDIN;
1	[1,2,3]
2	[ -1.5 , 2e-3 ,3.4028235e38 ]
3	\N
\.

-- wrong dimensions for vector(3): the whole COPY fails
COPY vector_copy_t FROM STDIN;
4	[1,2,3]
5	[1,2]
\.
COPY vector_copy_t FROM STDIN;
6	[1,2,3,4]
\.

-- malformed and non-finite values
COPY vector_copy_t FROM STDIN;
7	[1,2,3
\.
COPY vector_copy_t FROM STDIN;
7	[NaN,2,3]
\.
COPY vector_copy_t FROM STDIN;
7	[1,2,1e39]
\.
COPY vector_copy_t FROM STDIN;
7	[]
\.

-- CSV format (elements are separated by commas, so the field is quoted)
COPY vector_copy_t FROM STDIN WITH (FORMAT csv);
8,"[4,5,6]"
9,"[0.1,0.2,0.3]"
10,
\.
COPY vector_copy_t FROM STDIN WITH (FORMAT csv);
11,"[4,5]"
\.
COPY vector_copy_t FROM STDIN WITH (FORMAT csv);
11,[4,5,6]
\.

-- an explicit column list, into a column without a typmod
CREATE TABLE vector_copy_any (v vector);
COPY vector_copy_any (v) FROM STDIN;
[1]
[1,2]
[1,2,3,4,5,6,7,8,9,10]
\.

SELECT * FROM vector_copy_t ORDER BY id;
SELECT * FROM vector_copy_any ORDER BY v;

-- COPY TO STDOUT
COPY vector_copy_t TO STDOUT;
COPY (SELECT * FROM vector_copy_t ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER);

-- the binary send function
SELECT vector_send('[1,2,3]');
SELECT vector_send('[-0,1e-45,-3.4028235e38]');
SELECT vector_send('[0.1]');

-- binary COPY round trip
CALL vector_copy_write('SELECT * FROM vector_copy_t');
CREATE TABLE vector_copy_t2 (id int, v vector(3));
COPY vector_copy_t2 FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
SELECT count(*) FROM vector_copy_t a JOIN vector_copy_t2 b USING (id)
WHERE a.v = b.v AND a.v::text = b.v::text;
SELECT count(*) FROM vector_copy_t2 WHERE v IS NULL;
-- binary COPY into a vector(2) column enforces the typmod
CREATE TABLE vector_copy_t3 (id int, v vector(2));
COPY vector_copy_t3 FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
CALL vector_copy_write('SELECT * FROM vector_copy_any');
CREATE TABLE vector_copy_any2 (v vector);
COPY vector_copy_any2 FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
SELECT * FROM vector_copy_any2 ORDER BY v;

-- the binary receive function fed crafted messages: a bytea column written
-- with binary COPY has the same field layout, so its bytes are read back as a
-- vector field
CREATE TABLE vector_copy_recv (v vector);
CREATE TABLE vector_copy_recv3 (v vector(3));
-- valid: 3 dimensions
CALL vector_copy_write($q$SELECT '\x000300003f8000004000000040400000'::bytea$q$);
COPY vector_copy_recv FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
COPY vector_copy_recv3 FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
-- valid: negative zero and the smallest subnormal are kept bit for bit
CALL vector_copy_write($q$SELECT '\x000200008000000000000001'::bytea$q$);
COPY vector_copy_recv FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
-- 2 dimensions into vector(3)
COPY vector_copy_recv3 FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
-- 0 dimensions
CALL vector_copy_write($q$SELECT '\x00000000'::bytea$q$);
COPY vector_copy_recv FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
-- -1 dimensions
CALL vector_copy_write($q$SELECT '\xffff00003f800000'::bytea$q$);
COPY vector_copy_recv FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
-- 16001 dimensions (the check comes before the data is read)
CALL vector_copy_write($q$SELECT '\x3e8100003f800000'::bytea$q$);
COPY vector_copy_recv FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
-- unused must be 0
CALL vector_copy_write($q$SELECT '\x000100013f800000'::bytea$q$);
COPY vector_copy_recv FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
CALL vector_copy_write($q$SELECT '\x0001ffff3f800000'::bytea$q$);
COPY vector_copy_recv FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
-- the typmod is checked before unused, and dimensions before both
CALL vector_copy_write($q$SELECT '\x000100013f800000'::bytea$q$);
COPY vector_copy_recv3 FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
CALL vector_copy_write($q$SELECT '\x00000001'::bytea$q$);
COPY vector_copy_recv3 FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
-- NaN and infinities
CALL vector_copy_write($q$SELECT '\x000200003f8000007fc00000'::bytea$q$);
COPY vector_copy_recv FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
CALL vector_copy_write($q$SELECT '\x000100007f800000'::bytea$q$);
COPY vector_copy_recv FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
CALL vector_copy_write($q$SELECT '\x00010000ff800000'::bytea$q$);
COPY vector_copy_recv FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
-- truncated messages
CALL vector_copy_write($q$SELECT '\x0001'::bytea$q$);
COPY vector_copy_recv FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
CALL vector_copy_write($q$SELECT '\x000200003f800000'::bytea$q$);
COPY vector_copy_recv FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
CALL vector_copy_write($q$SELECT '\x000200003f8000'::bytea$q$);
COPY vector_copy_recv FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
-- a NaN is reported even when the message is also truncated after it
CALL vector_copy_write($q$SELECT '\x000300007fc00000'::bytea$q$);
COPY vector_copy_recv FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
-- trailing bytes after the vector
CALL vector_copy_write($q$SELECT '\x000100003f80000000'::bytea$q$);
COPY vector_copy_recv FROM 'arrw_regress_vector_copy.bin' WITH (FORMAT binary);
SELECT v, vector_send(v) FROM vector_copy_recv ORDER BY v;
SELECT * FROM vector_copy_recv3;

DROP TABLE vector_copy_t, vector_copy_t2, vector_copy_t3, vector_copy_any, vector_copy_any2,
  vector_copy_recv, vector_copy_recv3;
DROP PROCEDURE vector_copy_write(text);
