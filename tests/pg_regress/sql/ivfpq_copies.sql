-- Exact order on a table of a few vectors stored many times over: 50 distinct
-- 16-d vectors, 100 copies each. Copies share a code, so a batch of them
-- taught the re-rank margin one or two errors with no spread, and LIMIT 1
-- missed the nearest row in 18 of these 200 queries with every list probed
-- (hunt-113). A repeated error now counts once, and a margin bounds nothing
-- until it has learnt from 8 distinct errors.
CREATE TABLE cp (id int PRIMARY KEY, v vector(16));
INSERT INTO cp SELECT i, (SELECT array_agg(((hashint4((i % 50) * 100 + j) & 65535) / 65536.0)::real ORDER BY j)
                          FROM generate_series(1, 16) j)::vector
FROM generate_series(1, 5000) i;
CREATE TABLE cpq (id int PRIMARY KEY, v vector(16));
INSERT INTO cpq SELECT i, (SELECT array_agg(((hashint4(1000000 + i * 100 + j) & 65535) / 65536.0)::real ORDER BY j)
                           FROM generate_series(1, 16) j)::vector
FROM generate_series(1, 200) i;
CREATE INDEX cp_v ON cp USING ivfpq (v) WITH (lists = 20);
SET ivfpq.probes = 20;
-- Each query's LIMIT 1, 10 and 150 through the index and by a sequential
-- scan: how many answers' distances differ from the exact ones, in order.
CREATE FUNCTION cp_check() RETURNS TABLE (k int, queries bigint, differ bigint)
LANGUAGE plpgsql AS $$
DECLARE q record; lim int; a float8[]; b float8[];
BEGIN
  CREATE TEMP TABLE cpres (qid int, k int, idx_d float8[], seq_d float8[]);
  FOR q IN SELECT * FROM cpq ORDER BY id LOOP
    FOREACH lim IN ARRAY ARRAY[1, 10, 150] LOOP
      SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = on;
      SELECT array_agg(d ORDER BY n) INTO a
        FROM (SELECT v <-> q.v AS d, row_number() OVER () AS n
              FROM (SELECT v FROM cp ORDER BY v <-> q.v LIMIT lim) s) t;
      SET LOCAL enable_seqscan = on; SET LOCAL enable_indexscan = off;
      SELECT array_agg(d ORDER BY n) INTO b
        FROM (SELECT v <-> q.v AS d, row_number() OVER () AS n
              FROM (SELECT v FROM cp ORDER BY v <-> q.v LIMIT lim) s) t;
      INSERT INTO cpres VALUES (q.id, lim, a, b);
    END LOOP;
  END LOOP;
  RETURN QUERY SELECT r.k, count(*), count(*) FILTER (WHERE r.idx_d IS DISTINCT FROM r.seq_d)
    FROM cpres r GROUP BY r.k ORDER BY r.k;
  DROP TABLE cpres;
END $$;
SELECT * FROM cp_check();

-- Near-copies: each copy moved by noise of 1e-5 a dimension. They keep one
-- code, so one estimate, and errors apart by their noise: counted as distinct
-- errors, one batch of one vector's copies passed for eight, and 8 of 200
-- LIMIT 1 answers were another vector's row (hunt-117).
SELECT setseed(0.42);
UPDATE cp SET v = (SELECT array_agg((x + (random() - 0.5) * 2e-5)::real) FROM unnest(v::real[]) x)::vector;
VACUUM cp;
REINDEX INDEX cp_v;
SELECT * FROM cp_check();
RESET ivfpq.probes;
DROP FUNCTION cp_check();
DROP TABLE cp, cpq;
