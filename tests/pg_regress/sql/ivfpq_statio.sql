-- Index scans pin pages they found before without a buffer-mapping lookup
-- (src/ivfpq/page.rs, pin_recent). Such a pin still counts in the index's
-- statistics as a block fetched and hit, as a lookup would: the blocks the
-- table and the index count for one query add up to EXPLAIN's shared hits
-- (each scan of the 4 lists touches about a dozen index pages).
CREATE TABLE statio (id int, v vector(4));
INSERT INTO statio SELECT i, ARRAY[i % 7, i % 5, i % 3, i % 2]::real[]::vector
  FROM generate_series(1, 3000) i;
CREATE INDEX statio_v ON statio USING ivfpq (v vector_l2_ops) WITH (lists = 4, m = 4, nbits = 8);
CREATE FUNCTION scan_hits() RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  plan json;
BEGIN
  EXECUTE 'EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT id FROM statio ORDER BY v <-> ''[1,2,3,4]'' LIMIT 50' INTO plan;
  -- Execution and planning (the cost estimate reads the meta page).
  RETURN (plan -> 0 -> 'Plan' ->> 'Shared Hit Blocks')::int
       + coalesce((plan -> 0 -> 'Planning' ->> 'Shared Hit Blocks')::int, 0);
END $$;
CREATE FUNCTION blocks(OUT fetched bigint, OUT hit bigint, OUT index_fetched bigint, OUT index_hit bigint)
LANGUAGE sql AS $$
  SELECT pg_stat_get_xact_blocks_fetched('statio'::regclass) + pg_stat_get_xact_blocks_fetched('statio_v'::regclass),
         pg_stat_get_xact_blocks_hit('statio'::regclass) + pg_stat_get_xact_blocks_hit('statio_v'::regclass),
         pg_stat_get_xact_blocks_fetched('statio_v'::regclass),
         pg_stat_get_xact_blocks_hit('statio_v'::regclass)
$$;
SET enable_seqscan = off;
SET ivfpq.probes = 4;
-- Warm: shared buffers, catalog caches, the model cache, the pages remembered.
SELECT scan_hits() > 0 AS warm, scan_hits() > 0 AS warm_again;
BEGIN;
SELECT * FROM blocks() \gset b_
SELECT scan_hits() AS hits \gset
SELECT * FROM blocks() \gset a_
SELECT :a_index_fetched - :b_index_fetched > 0 AS index_counted,
       :a_index_hit - :b_index_hit = :a_index_fetched - :b_index_fetched AS index_all_hits,
       :a_fetched - :b_fetched = :hits AS fetched_match_explain,
       :a_hit - :b_hit = :hits AS hits_match_explain;
COMMIT;
RESET ALL;
DROP FUNCTION scan_hits();
DROP FUNCTION blocks();
DROP TABLE statio;
