-- vector(n) is enforced on every path a value can take into a typed slot.
-- (COPY is covered in vector_copy.)

CREATE TABLE vector_typmod_t (id int, v vector(3));

-- literal into a column
INSERT INTO vector_typmod_t VALUES (1, '[1,2,3]');
INSERT INTO vector_typmod_t VALUES (2, '[1,2]');
INSERT INTO vector_typmod_t VALUES (2, '[1,2,3,4]');

-- an untyped vector expression into a column (assignment cast vector -> vector(3))
INSERT INTO vector_typmod_t VALUES (2, '[1,2]'::vector || '[3]'::vector);
INSERT INTO vector_typmod_t VALUES (3, '[1,2]'::vector || '[3,4]'::vector);
INSERT INTO vector_typmod_t VALUES (3, '[1,2,3,4]'::vector);

-- a parameter of a prepared statement
PREPARE vector_typmod_ins(vector) AS INSERT INTO vector_typmod_t VALUES (3, $1);
EXECUTE vector_typmod_ins('[7,8,9]');
EXECUTE vector_typmod_ins('[7,8]');
DEALLOCATE vector_typmod_ins;

-- INSERT ... SELECT
CREATE TABLE vector_typmod_src (v vector);
INSERT INTO vector_typmod_src VALUES ('[4,5,6]'), ('[4,5]');
INSERT INTO vector_typmod_t SELECT 4, v FROM vector_typmod_src WHERE vector_dims(v) = 3;
INSERT INTO vector_typmod_t SELECT 5, v FROM vector_typmod_src;
INSERT INTO vector_typmod_t SELECT 5, v FROM vector_typmod_src WHERE vector_dims(v) = 2;

-- UPDATE
UPDATE vector_typmod_t SET v = '[0,0,0]' WHERE id = 1;
UPDATE vector_typmod_t SET v = '[0,0]' WHERE id = 1;
UPDATE vector_typmod_t SET v = v || '[1]'::vector WHERE id = 1;
UPDATE vector_typmod_t SET v = subvector(v || '[1]'::vector, 2, 3) WHERE id = 1;

-- INSERT ... ON CONFLICT DO UPDATE
CREATE UNIQUE INDEX ON vector_typmod_t (id);
INSERT INTO vector_typmod_t VALUES (1, '[9,9,9]') ON CONFLICT (id) DO UPDATE SET v = '[1,1]';
INSERT INTO vector_typmod_t VALUES (1, '[9,9,9]') ON CONFLICT (id) DO UPDATE SET v = excluded.v;

-- casts from arrays into a vector(3) column (assignment casts)
INSERT INTO vector_typmod_t VALUES (6, ARRAY[1,2,3]);
INSERT INTO vector_typmod_t VALUES (7, ARRAY[1,2]);
INSERT INTO vector_typmod_t VALUES (7, ARRAY[1.5,2.5,3.5]::real[]);
INSERT INTO vector_typmod_t VALUES (8, ARRAY[1.5,2.5]::real[]);
INSERT INTO vector_typmod_t VALUES (8, ARRAY[1,2,3]::float8[]);
INSERT INTO vector_typmod_t VALUES (9, ARRAY[1,2,3,4]::float8[]);
INSERT INTO vector_typmod_t VALUES (9, ARRAY[0.5,1.5,2.5]::numeric[]);
INSERT INTO vector_typmod_t VALUES (10, ARRAY[1]::numeric[]);
UPDATE vector_typmod_t SET v = ARRAY[3,2,1] WHERE id = 6;
UPDATE vector_typmod_t SET v = ARRAY[3,2] WHERE id = 6;

SELECT * FROM vector_typmod_t ORDER BY id;

-- explicit casts
SELECT '[1,2,3]'::vector::vector(3);
SELECT '[1,2,3]'::vector::vector(2);
SELECT CAST('[1,2]' AS vector(2));
SELECT CAST('[1,2]' AS vector(3));
SELECT ARRAY[1,2,3]::vector(3);
SELECT ARRAY[1,2,3]::vector(2);
SELECT ARRAY[1,2,3]::real[]::vector(4);
SELECT ARRAY[1,2,3]::float8[]::vector(4);
SELECT ARRAY[1,2,3]::numeric[]::vector(4);
SELECT array_to_vector(ARRAY[1,2,3], 3, true);
SELECT array_to_vector(ARRAY[1,2,3], 2, true);
SELECT array_to_vector(ARRAY[1,2,3], -1, false);
SELECT vector('[1,2,3]'::vector, 3, true);
SELECT vector('[1,2,3]'::vector, 4, true);
SELECT vector('[1,2,3]'::vector, -1, false);

-- a cast to vector(3) in a view gives the view's column that typmod
CREATE VIEW vector_typmod_v AS SELECT v::vector(3) AS v FROM vector_typmod_t;
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'vector_typmod_v'::regclass AND attname = 'v';
DROP VIEW vector_typmod_v;

-- a typed array column
CREATE TABLE vector_typmod_arr (vs vector(2)[]);
INSERT INTO vector_typmod_arr VALUES ('{"[1,2]","[3,4]"}');
INSERT INTO vector_typmod_arr VALUES ('{"[1,2]","[3,4,5]"}');
INSERT INTO vector_typmod_arr VALUES (ARRAY['[5,6]'::vector, '[7,8]'::vector]);
INSERT INTO vector_typmod_arr VALUES (ARRAY['[5,6]'::vector, '[7]'::vector]);
SELECT * FROM vector_typmod_arr;

-- ALTER COLUMN TYPE re-checks existing rows
CREATE TABLE vector_typmod_alter (v vector);
INSERT INTO vector_typmod_alter VALUES ('[1,2]'), ('[3,4]');
ALTER TABLE vector_typmod_alter ALTER COLUMN v TYPE vector(3);
ALTER TABLE vector_typmod_alter ALTER COLUMN v TYPE vector(2);
INSERT INTO vector_typmod_alter VALUES ('[5,6,7]');
ALTER TABLE vector_typmod_alter ALTER COLUMN v TYPE vector;
INSERT INTO vector_typmod_alter VALUES ('[5,6,7]');
SELECT * FROM vector_typmod_alter ORDER BY v;

-- a domain over vector(2)
CREATE DOMAIN vector_typmod_d AS vector(2);
SELECT '[1,2]'::vector_typmod_d;
SELECT '[1,2,3]'::vector_typmod_d;
DROP DOMAIN vector_typmod_d;

DROP TABLE vector_typmod_t, vector_typmod_src, vector_typmod_arr, vector_typmod_alter;
