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
DROP TABLE dp, dp_empty;
