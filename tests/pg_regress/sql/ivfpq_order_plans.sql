-- Rows of an ivfpq scan come nearest first whatever stands between the scan
-- and the LIMIT that takes them (partitions merged, FOR UPDATE, a
-- set-returning function, a join, a semi-join), and with no LIMIT at all
-- (a cursor). Each count is of queries whose rows came with one after a
-- farther one. Before, only a LIMIT right above the scan held the rows it
-- would take until all were settled: on these tables 23 of 50 partitioned
-- answers, 7 to 9 of 50 of FOR UPDATE, SRF and join answers, and 19 of 100
-- cursor reads had a row out of order.
SELECT setseed(0.5);
CREATE FUNCTION op_rv16() RETURNS vector LANGUAGE sql VOLATILE AS
  $$ SELECT array_agg(random())::real[]::vector FROM generate_series(1, 16) $$;
CREATE FUNCTION op_unordered(a float8[]) RETURNS boolean LANGUAGE sql AS
  $$ SELECT EXISTS (SELECT 1 FROM generate_subscripts(a, 1) i WHERE i > 1 AND a[i] < a[i - 1]) $$;
CREATE TABLE op_t (id serial PRIMARY KEY, c int, v vector(16));
INSERT INTO op_t (c, v) SELECT g % 100, op_rv16() FROM generate_series(1, 10000) g;
CREATE INDEX ON op_t USING ivfpq (v) WITH (lists = 20);
CREATE TABLE op_cat (id int PRIMARY KEY, name text);
INSERT INTO op_cat SELECT g, 'c' || g FROM generate_series(0, 99) g;
CREATE TABLE op_allowed (c int); INSERT INTO op_allowed SELECT generate_series(0, 9);
CREATE TABLE op_pt (id int, c int, v vector(16)) PARTITION BY RANGE (c);
CREATE TABLE op_pt0 PARTITION OF op_pt FOR VALUES FROM (0) TO (50);
CREATE TABLE op_pt1 PARTITION OF op_pt FOR VALUES FROM (50) TO (100);
INSERT INTO op_pt SELECT g, g % 100, op_rv16() FROM generate_series(1, 20000) g;
CREATE INDEX ON op_pt USING ivfpq (v) WITH (lists = 20);
CREATE TABLE op_q AS SELECT i, op_rv16()::text AS q FROM generate_series(1, 50) i;
ANALYZE op_t; ANALYZE op_cat; ANALYZE op_allowed; ANALYZE op_pt;
SET enable_seqscan = off;
CREATE FUNCTION op_count(tmpl text) RETURNS int LANGUAGE plpgsql AS $$
DECLARE q text; a float8[]; bad int := 0;
BEGIN
  FOR q IN SELECT op_q.q FROM op_q ORDER BY i LOOP
    EXECUTE format(tmpl, q) INTO a;
    bad := bad + op_unordered(a)::int;
  END LOOP;
  RETURN bad;
END $$;
EXPLAIN (COSTS OFF) SELECT id FROM op_pt ORDER BY v <-> '[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]' LIMIT 100;
SELECT op_count('SELECT array_agg(d) FROM (SELECT v <-> %1$L AS d FROM op_pt ORDER BY v <-> %1$L LIMIT 100) s')
       AS partitions_unordered;
SELECT op_count('SELECT array_agg(d) FROM (SELECT v <-> %1$L AS d FROM op_t ORDER BY v <-> %1$L LIMIT 100 FOR UPDATE) s')
       AS for_update_unordered;
SELECT op_count('SELECT array_agg(d) FROM (SELECT v <-> %1$L AS d, generate_series(1, 2) FROM op_t
                 ORDER BY v <-> %1$L LIMIT 100) s') AS srf_unordered;
EXPLAIN (COSTS OFF) SELECT op_t.id, op_cat.name FROM op_t JOIN op_cat ON op_cat.id = op_t.c
  ORDER BY op_t.v <-> '[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]' LIMIT 100;
SELECT op_count('SELECT array_agg(d) FROM (SELECT v <-> %1$L AS d, op_cat.name FROM op_t
                 JOIN op_cat ON op_cat.id = op_t.c ORDER BY v <-> %1$L LIMIT 100) s') AS join_unordered;
EXPLAIN (COSTS OFF) SELECT id FROM op_t WHERE c IN (SELECT c FROM op_allowed)
  ORDER BY v <-> '[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]' LIMIT 100;
SELECT op_count('SELECT array_agg(d) FROM (SELECT v <-> %1$L AS d FROM op_t
                 WHERE c IN (SELECT c FROM op_allowed) ORDER BY v <-> %1$L LIMIT 100) s') AS semi_join_unordered;
-- A filter the scan does not check itself holds as many rows as the planner
-- expects to pass for the LIMIT's (199 of 200 such answers were out of order).
SET ivfpq.prefilter = off;
SELECT op_count('SELECT array_agg(d) FROM (SELECT v <-> %1$L AS d FROM op_t WHERE c < 10
                 ORDER BY v <-> %1$L LIMIT 100) s') AS unchecked_filter_unordered;
RESET ivfpq.prefilter;
-- A cursor's first 100 rows.
CREATE FUNCTION op_cursor_unordered() RETURNS int LANGUAGE plpgsql AS $$
DECLARE q text; r record; prev float8; n int; bad int := 0; c refcursor;
BEGIN
  FOR q IN SELECT op_q.q FROM op_q ORDER BY i LOOP
    OPEN c FOR EXECUTE format('SELECT v <-> %1$L AS d FROM op_t ORDER BY v <-> %1$L', q);
    prev := '-infinity'; n := 0;
    LOOP
      FETCH c INTO r; EXIT WHEN NOT FOUND OR n >= 100; n := n + 1;
      IF r.d < prev THEN bad := bad + 1; EXIT; END IF;
      prev := r.d;
    END LOOP;
    CLOSE c;
  END LOOP;
  RETURN bad;
END $$;
SELECT op_cursor_unordered() AS cursor_unordered;
SET ivfpq.probes = 5;
SELECT op_cursor_unordered() AS cursor_probes_5_unordered;
RESET ivfpq.probes;
-- A filter that passes most rows under a small LIMIT: the scan goes past its
-- first 10 rows, so it starts at the deep default (the lists it added past 10
-- rows held nearer ones: 5 of 200 answers). DISTINCT ON passes rows on in
-- order (50 of 50 answers were out of order past the 100 rows held).
SELECT op_count('SELECT array_agg(d) FROM (SELECT v <-> %1$L AS d FROM op_t WHERE c %% 10 <> 0
                 ORDER BY v <-> %1$L LIMIT 10) s') AS filter_limit_10_unordered;
SELECT op_count('SELECT array_agg(d) FROM (SELECT DISTINCT ON (v <-> %1$L) v <-> %1$L AS d FROM op_t
                 ORDER BY v <-> %1$L LIMIT 1000) s') AS distinct_on_unordered;
-- A window function may read rows past the LIMIT's (lead(), a FOLLOWING
-- frame): the LIMIT is not passed through it (37 of 200 lead() answers had
-- lead(d) < d when it was).
CREATE FUNCTION op_lead_bad() RETURNS int LANGUAGE plpgsql AS $$
DECLARE q text; b boolean; bad int := 0;
BEGIN
  FOR q IN SELECT op_q.q FROM op_q ORDER BY i LOOP
    EXECUTE format('SELECT bool_or(l < d) FROM (SELECT v <-> %1$L AS d, lead(v <-> %1$L) OVER (ORDER BY v <-> %1$L) AS l
                    FROM op_t ORDER BY v <-> %1$L LIMIT 10) s', q) INTO b;
    bad := bad + b::int;
  END LOOP;
  RETURN bad;
END $$;
SELECT op_lead_bad() AS window_lead_unordered;
-- A LIMIT computed by a stable function may change before the Limit node
-- reads it: counted as unknown (a cursor opened at 2 rows and read at 60 held
-- 2 rows).
CREATE FUNCTION op_stable_limit_unordered() RETURNS int LANGUAGE plpgsql AS $$
DECLARE q text; r record; prev float8; bad int := 0; c refcursor;
BEGIN
  FOR q IN SELECT op_q.q FROM op_q ORDER BY i LOOP
    PERFORM set_config('op.lim', '2', true);
    OPEN c FOR EXECUTE format('SELECT v <-> %1$L AS d FROM op_t ORDER BY v <-> %1$L
                               LIMIT current_setting(''op.lim'')::int', q);
    PERFORM set_config('op.lim', '60', true);
    prev := '-infinity';
    LOOP
      FETCH c INTO r; EXIT WHEN NOT FOUND;
      IF r.d < prev THEN bad := bad + 1; EXIT; END IF;
      prev := r.d;
    END LOOP;
    CLOSE c;
  END LOOP;
  RETURN bad;
END $$;
SELECT op_stable_limit_unordered() AS stable_limit_unordered;
-- A LIMIT the plan computes is not computed at executor start: an InitPlan
-- that never runs raised its LIMIT's division by zero.
SET plan_cache_mode = force_generic_plan;
PREPARE op_p(int, bool) AS SELECT CASE WHEN $2 THEN
  (SELECT id FROM op_t ORDER BY v <-> '[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]' LIMIT 100 / $1) END AS never;
EXECUTE op_p(0, false);
DEALLOCATE op_p;
RESET plan_cache_mode;
-- A scan ordered by an outer row's vector is never put in a parallel worker:
-- a Parallel Append of such scans (chosen for ivfpq's cost) had a worker read
-- the parameter it is never sent, and die of a segmentation fault.
CREATE TABLE op_lq (i int, q vector(16), k int);
INSERT INTO op_lq SELECT g, op_rv16(), 11 FROM generate_series(1, 5) g;
ANALYZE op_lq;
SET ivfpq.rerank = 100000;
EXPLAIN (COSTS OFF) SELECT count(*) FROM op_lq, LATERAL (SELECT id FROM op_pt ORDER BY v <-> op_lq.q LIMIT op_lq.k) x;
SELECT count(*) FROM op_lq, LATERAL (SELECT id FROM op_pt ORDER BY v <-> op_lq.q LIMIT op_lq.k) x;
RESET ALL;
DROP FUNCTION op_cursor_unordered(), op_count(text), op_unordered(float8[]), op_rv16(), op_lead_bad(),
  op_stable_limit_unordered();
DROP TABLE op_t, op_cat, op_allowed, op_pt, op_q, op_lq;
