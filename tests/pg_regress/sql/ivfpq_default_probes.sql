-- arrw.ivfpq_default_probes(index): the lists a scan probes when no setting
-- says otherwise, where that number comes from, and the deeper number a scan
-- goes on to past its first 10 rows (measured indexes only). The same rule
-- as the scan's (arrw_core::ivf::index_probes), so a scan with
-- ivfpq.iterative_scan off probes exactly that many lists for a LIMIT 5.
CREATE TABLE dp (id int PRIMARY KEY, v vector(4));
INSERT INTO dp
SELECT i, ARRAY[sin(i), cos(i * 0.7), sin(i * 1.3), cos(i * 0.37)]::real[]::vector
FROM generate_series(1, 4000) i;
CREATE INDEX dp_v ON dp USING ivfpq (v) WITH (lists = 16, m = 2);
SET enable_seqscan = off;
SET ivfpq.iterative_scan = off;
SET ivfpq.profile = on;
CREATE FUNCTION lists_probed(q text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
	PERFORM arrw.ivfpq_profile_reset();
	EXECUTE q;
	RETURN (arrw.ivfpq_profile()->>'lists')::int;
END $$;

-- Measured at build: a first and a deeper number.
SELECT source, probes BETWEEN 1 AND 16 AS probes_ok, deep_probes >= probes AS deeper
FROM arrw.ivfpq_default_probes('dp_v');
SELECT lists_probed($$SELECT id FROM dp ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5$$)
	= (SELECT probes FROM arrw.ivfpq_default_probes('dp_v')) AS scan_agrees;
-- A LIMIT right above the scan tells it how many rows the plan takes: past 10
-- (count plus offset) it probes its deep default from its first row, where
-- it would otherwise start at the first and go deeper after 10 rows. A
-- cursor's first row shows which (iterative scan off: exactly those lists).
CREATE FUNCTION lists_at_first_row(q text) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
	c refcursor := 'c';
BEGIN
	OPEN c FOR EXECUTE q;
	PERFORM arrw.ivfpq_profile_reset();
	MOVE FORWARD 1 IN c;
	CLOSE c;
	RETURN (arrw.ivfpq_profile()->>'lists')::int;
END $$;
SELECT lists_at_first_row($$SELECT id FROM dp ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5$$)
	= (SELECT probes FROM arrw.ivfpq_default_probes('dp_v')) AS limit_5_first;
SELECT lists_at_first_row($$SELECT id FROM dp ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 50$$)
	= (SELECT deep_probes FROM arrw.ivfpq_default_probes('dp_v')) AS limit_50_deep;
SELECT lists_at_first_row($$SELECT id FROM dp ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5 OFFSET 20$$)
	= (SELECT deep_probes FROM arrw.ivfpq_default_probes('dp_v')) AS offset_counts;
-- A count only known when the plan runs (a subquery) is taken as no LIMIT:
-- the scan holds its first 100 rows and starts at the deep default.
SELECT lists_at_first_row($$SELECT id FROM dp ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT (SELECT 50)$$)
	= (SELECT deep_probes FROM arrw.ivfpq_default_probes('dp_v')) AS subquery_deep;
-- A statement's parameter counts (a plpgsql variable is one), in a generic
-- plan (the int4 parameter cast to int8) as in a custom one (a constant).
CREATE FUNCTION lists_at_limit(n int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
	c refcursor := 'c';
BEGIN
	OPEN c FOR SELECT id FROM dp ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT n;
	PERFORM arrw.ivfpq_profile_reset();
	MOVE FORWARD 1 IN c;
	CLOSE c;
	RETURN (arrw.ivfpq_profile()->>'lists')::int;
END $$;
SET plan_cache_mode = force_generic_plan;
SELECT lists_at_limit(50) = (SELECT deep_probes FROM arrw.ivfpq_default_probes('dp_v')) AS param_deep,
	lists_at_limit(3) = (SELECT probes FROM arrw.ivfpq_default_probes('dp_v')) AS param_first;
SET plan_cache_mode = force_custom_plan;
SELECT lists_at_limit(50) = (SELECT deep_probes FROM arrw.ivfpq_default_probes('dp_v')) AS custom_deep;
RESET plan_cache_mode;
-- A LIMIT 50 answer comes nearest first, as the exact order of its rows.
SELECT array_agg(id) = array_agg(id ORDER BY d, id) AS nearest_first
FROM (SELECT id, v <-> '[0.1,0.2,0.3,0.4]' AS d FROM dp
      ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 50) s;

-- The index's option wins, for every depth; a setting is not the index's.
ALTER INDEX dp_v SET (probes = 3);
SELECT * FROM arrw.ivfpq_default_probes('dp_v');
SET ivfpq.probes = 5;
SELECT * FROM arrw.ivfpq_default_probes('dp_v');
RESET ivfpq.probes;
ALTER INDEX dp_v RESET (probes);
SELECT source FROM arrw.ivfpq_default_probes('dp_v');
-- Built on an empty table: untrained, its scans rank every row exactly (no
-- probes), until a REINDEX.
CREATE TABLE dp_empty (v vector(4));
CREATE INDEX dp_empty_v ON dp_empty USING ivfpq (v);
SELECT * FROM arrw.ivfpq_default_probes('dp_empty_v');

-- Errors: not an ivfpq index; a role that may not read the table.
\set VERBOSITY sqlstate
SELECT * FROM arrw.ivfpq_default_probes('dp_pkey');
CREATE ROLE dp_reader;
GRANT USAGE ON SCHEMA arrw TO dp_reader;
SET ROLE dp_reader;
SELECT * FROM arrw.ivfpq_default_probes('dp_v');
RESET ROLE;
GRANT SELECT ON dp TO dp_reader;
SET ROLE dp_reader;
SELECT source FROM arrw.ivfpq_default_probes('dp_v');
RESET ROLE;
\set VERBOSITY default

REVOKE ALL ON dp FROM dp_reader;
REVOKE ALL ON SCHEMA arrw FROM dp_reader;
DROP ROLE dp_reader;
RESET ivfpq.profile;
RESET ivfpq.iterative_scan;
RESET enable_seqscan;
DROP FUNCTION lists_probed(text);
DROP FUNCTION lists_at_first_row(text);
DROP FUNCTION lists_at_limit(int);
DROP TABLE dp, dp_empty;
