-- How vector is stored: the type's catalog entry, datum sizes, the exact bytes
-- of a stored tuple (with pageinspect), TOAST behaviour, and direct calls of the
-- I/O functions. The byte-level checks assume a little-endian machine.

SELECT typname, typlen, typbyval, typalign, typstorage, typcategory, typispreferred,
       typinput, typoutput, typreceive, typsend, typmodin, typmodout, typanalyze,
       typelem, typarray <> 0 AS has_array, typdelim, typcollation
FROM pg_type WHERE typname = 'vector';
SELECT typname, typlen, typalign, typstorage, typelem::regtype
FROM pg_type WHERE oid = 'vector[]'::regtype;
SELECT amname, opcname, opcdefault
FROM pg_opclass c JOIN pg_am a ON a.oid = c.opcmethod
WHERE opcintype = 'vector'::regtype AND amname IN ('btree', 'hash')
ORDER BY 1, 2;

-- datum sizes: a 4-byte varlena header, int16 dim, int16 unused, float4s
SELECT pg_column_size('[1]'::vector), pg_column_size('[1,2,3]'::vector),
       pg_column_size(array_fill(0, ARRAY[16000])::vector);

-- stored tuples use a 1-byte header when small
CREATE TABLE vector_storage_t (v vector);
INSERT INTO vector_storage_t VALUES ('[1,2,3]'), ('[-0,1e-45,-3.4028235e38]'), ('[0.1]');
SELECT v, pg_column_size(v) FROM vector_storage_t ORDER BY v;

-- the bytes on the page, byte for byte
CREATE EXTENSION pageinspect;
SELECT lp, t_data FROM heap_page_items(get_raw_page('vector_storage_t', 0)) ORDER BY lp;
DROP EXTENSION pageinspect;

-- large vectors are moved out of line uncompressed (STORAGE external)
CREATE TABLE vector_storage_big (id int, v vector);
INSERT INTO vector_storage_big VALUES (1, array_fill(0, ARRAY[16000])::vector),
  (2, array_fill(1.5::real, ARRAY[2000])::vector);
SELECT id, pg_column_size(v), vector_dims(v), vector_norm(v) FROM vector_storage_big ORDER BY id;
SELECT attstorage FROM pg_attribute WHERE attrelid = 'vector_storage_big'::regclass AND attname = 'v';
-- with compression allowed, a compressible vector is compressed, and reads
-- back the same
ALTER TABLE vector_storage_big ALTER COLUMN v SET STORAGE extended;
INSERT INTO vector_storage_big VALUES (3, array_fill(0, ARRAY[16000])::vector),
  (4, array_fill(7, ARRAY[1000])::vector || '[1]'::vector);
SELECT id, pg_column_size(v) < 4008 AS compressed, vector_dims(v), vector_norm(v)::real,
       v = (SELECT v FROM vector_storage_big WHERE id = 1) AS same_as_1
FROM vector_storage_big ORDER BY id;
-- every function reads compressed and out-of-line values
SELECT a.id, b.id, a.v <-> b.v, a.v <#> b.v, a.v <+> b.v, vector_cmp(a.v, b.v),
       vector_dims(a.v + b.v), subvector(a.v, 1, 2) || subvector(b.v, 1, 2)
FROM vector_storage_big a JOIN vector_storage_big b ON vector_dims(a.v) = vector_dims(b.v)
ORDER BY 1, 2;
SELECT id, subvector(v, 996, 6), (v::real[])[1001] FROM vector_storage_big WHERE id = 4;
SELECT id, avg(v) = v AS avg_is_self, sum(v) = v AS sum_is_self
FROM vector_storage_big GROUP BY id, v ORDER BY id;
-- inline compressed (STORAGE main)
CREATE TABLE vector_storage_main (v vector);
ALTER TABLE vector_storage_main ALTER COLUMN v SET STORAGE main;
INSERT INTO vector_storage_main VALUES (array_fill(2, ARRAY[1500])::vector);
SELECT pg_column_size(v) < 6008 AS compressed, vector_dims(v), vector_norm(v)::real FROM vector_storage_main;
DROP TABLE vector_storage_t, vector_storage_big, vector_storage_main;

-- the I/O functions called directly
SELECT vector_in('[1,2,3]', 'vector'::regtype, -1);
SELECT vector_in('[1,2,3]', 'vector'::regtype, 3);
SELECT vector_in('[1,2,3]', 'vector'::regtype, 2);
SELECT vector_in(' [ 4 ] ', 0, -1);
SELECT vector_out('[1.5,-0]');
SELECT vector_typmod_in('{3}');
SELECT vector_typmod_in('{16000}');
SELECT vector_typmod_in('{0}');
SELECT vector_typmod_in('{16001}');
SELECT vector_typmod_in('{1,2}');
SELECT vector_typmod_in('{}');
SELECT vector_typmod_in('{-5}');
SELECT vector_typmod_in('{abc}');
SELECT vector_typmod_in('{NULL}');
SELECT vector_typmod_in('{{1}}');
