-- The cost of one INSERT does not grow with the list it goes to.
--
-- An insert confirms that the list's insert page is on the list's chain (a row
-- put on a page no chain reaches would never be found). It walks from the last
-- insert page this backend confirmed, not from the list's head: counted here
-- as the buffers one single-row INSERT touches after 100,000 rows went into
-- the same list (an index built on an empty table has one list; 4-d rows
-- without codes, ~1,350 entries a page, so the chain is ~75 pages long).

CREATE TABLE ins (id int, v vector(4));
CREATE INDEX ins_v ON ins USING ivfpq (v vector_l2_ops);
INSERT INTO ins SELECT i, ARRAY[i % 97, i % 89, i % 83, i % 79]::real[]::vector
FROM generate_series(1, 100000) i;
SELECT lists FROM arrw.ivfpq_info('ins_v');

-- Buffers touched by a single-row INSERT (table and index), from EXPLAIN.
CREATE FUNCTION insert_buffers(tbl text) RETURNS int LANGUAGE plpgsql AS $$
DECLARE j json;
BEGIN
  EXECUTE format('EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, FORMAT JSON) INSERT INTO %I VALUES (0, ''[1,2,3,4]'')', tbl) INTO j;
  RETURN (j->0->'Plan'->>'Shared Hit Blocks')::int + (j->0->'Plan'->>'Shared Read Blocks')::int
       + (j->0->'Plan'->>'Local Hit Blocks')::int;
END $$;
SELECT insert_buffers('ins') < 20 AS few_buffers;
-- A new session has not confirmed any page yet: its first insert walks the
-- chain once, the next ones do not.
\c
SELECT insert_buffers('ins') > 50 AS first_insert_walks;
SELECT insert_buffers('ins') < 20 AS then_few_buffers;

-- A trained index whose lists grew far beyond the rows it was built on.
CREATE TABLE ins2 (id int, v vector(4));
INSERT INTO ins2 SELECT i, ARRAY[i % 7, i % 5, i % 3, i % 2]::real[]::vector FROM generate_series(1, 500) i;
CREATE INDEX ins2_v ON ins2 USING ivfpq (v vector_l2_ops) WITH (lists = 1, m = 4, nbits = 8);
INSERT INTO ins2 SELECT i, ARRAY[i % 7, i % 5, i % 3, i % 2]::real[]::vector FROM generate_series(501, 100500) i;
SELECT insert_buffers('ins2') < 20 AS trained_few_buffers;

-- After VACUUM moves the insert page back to a page with room, inserts
-- still land on the chain (the walk falls back to the head).
DELETE FROM ins2 WHERE id <= 600;
VACUUM ins2;
SELECT insert_buffers('ins2') >= 0 AS inserted;
SELECT count(*) FROM ins2 WHERE id = 0;
SELECT arrw.ivfpq_check('ins2_v');
SET enable_seqscan = off;
SET ivfpq.rerank = 100000;
SELECT count(*) FROM (SELECT id FROM ins2 ORDER BY v <-> '[1,2,3,4]' LIMIT 200000) s;
SELECT count(*) FROM ins2;
RESET ALL;

-- Inserts that filled the page VACUUM moved the insert page back to, and
-- walked on to later pages, point the directory at the page they wrote to:
-- left behind, every later insert walked every full page from there to the
-- list's end (hunt-65: 2,000 inserts 36 -> 1,563 ms after a VACUUM).
DELETE FROM ins;
VACUUM ins;
INSERT INTO ins SELECT i, ARRAY[i % 97, i % 89, i % 83, i % 79]::real[]::vector
FROM generate_series(1, 40000) i;
SELECT insert_buffers('ins') < 20 AS few_buffers_after_vacuum;
SELECT arrw.ivfpq_check('ins_v');

DROP TABLE ins, ins2;
DROP FUNCTION insert_buffers(text);
