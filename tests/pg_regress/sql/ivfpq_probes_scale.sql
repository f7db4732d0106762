-- ivfpq.probes_scale multiplies the probes a scan takes from its index (the
-- index's `probes` option or the default for its lists); ivfpq.probes, when
-- set, wins. arrw.fused_search raises it for its inputs, which read `depth`
-- rows each, unless the caller set either setting, and puts it back after.
-- Lists probed are counted by ivfpq.profile; iterative scan is off so that a
-- scan probes exactly its probes.
CREATE TABLE ps (id int PRIMARY KEY, v vector(4));
INSERT INTO ps
SELECT i, ARRAY[sin(i), cos(i * 0.7), sin(i * 1.3), cos(i * 0.37)]::real[]::vector
FROM generate_series(1, 4000) i;
CREATE INDEX ps_v ON ps USING ivfpq (v) WITH (lists = 16, m = 2, probes = 2);
SET enable_seqscan = off;
SET ivfpq.iterative_scan = off;
SET ivfpq.profile = on;
CREATE FUNCTION lists_probed(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM arrw.ivfpq_profile_reset();
	EXECUTE q;
	RETURN arrw.ivfpq_profile()->>'lists';
END $$;

SHOW ivfpq.probes_scale;
SELECT lists_probed($$SELECT id FROM ps ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5$$) AS index_probes;
SET ivfpq.probes_scale = 2;
SELECT lists_probed($$SELECT id FROM ps ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5$$) AS twice;
SET ivfpq.probes_scale = 0.01;
SELECT lists_probed($$SELECT id FROM ps ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5$$) AS at_least_one;
SET ivfpq.probes_scale = 100;
SELECT lists_probed($$SELECT id FROM ps ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5$$) AS at_most_all;
SET ivfpq.probes = 3;
SELECT lists_probed($$SELECT id FROM ps ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5$$) AS probes_wins;
RESET ivfpq.probes;
RESET ivfpq.probes_scale;
\set VERBOSITY sqlstate
SET ivfpq.probes_scale = 0;
SET ivfpq.probes_scale = 101;
SET ivfpq.probes_scale = 'NaN';
\set VERBOSITY default
SET ivfpq.probes_scale = 0;

-- fused_search: depth 100 (k 10) probes 2x the index's lists, depth 400 4x;
-- the setting is 1 again afterwards.
SELECT lists_probed($$SELECT * FROM arrw.fused_search('ps', 'id',
	'[{"column": "v", "query": "[0.1,0.2,0.3,0.4]", "op": "<->"}]')$$) AS fused_depth_100;
SHOW ivfpq.probes_scale;
SELECT lists_probed($$SELECT * FROM arrw.fused_search('ps', 'id',
	'[{"column": "v", "query": "[0.1,0.2,0.3,0.4]", "op": "<->", "depth": 400}]')$$) AS fused_depth_400;
SHOW ivfpq.probes_scale;
-- Inside a transaction too, and after a failed call.
BEGIN;
SELECT count(*) FROM arrw.fused_search('ps', 'id',
	'[{"column": "v", "query": "[0.1,0.2,0.3,0.4]", "op": "<->"}]');
SHOW ivfpq.probes_scale;
SAVEPOINT s;
-- (A filter that fails as the query runs, after the setting was made.)
SELECT count(*) FROM arrw.fused_search('ps', 'id',
	'[{"column": "v", "query": "[0.1,0.2,0.3,0.4]", "op": "<->"}]', filter => 'id / 0 = 1');
ROLLBACK TO s;
SHOW ivfpq.probes_scale;
COMMIT;
-- The caller's own settings are kept.
SET ivfpq.probes_scale = 1.5;
SELECT lists_probed($$SELECT * FROM arrw.fused_search('ps', 'id',
	'[{"column": "v", "query": "[0.1,0.2,0.3,0.4]", "op": "<->"}]')$$) AS caller_scale;
SHOW ivfpq.probes_scale;
RESET ivfpq.probes_scale;
SET ivfpq.probes = 1;
SELECT lists_probed($$SELECT * FROM arrw.fused_search('ps', 'id',
	'[{"column": "v", "query": "[0.1,0.2,0.3,0.4]", "op": "<->"}]')$$) AS caller_probes;
RESET ivfpq.probes;

RESET ivfpq.profile;
RESET ivfpq.iterative_scan;
RESET enable_seqscan;
DROP FUNCTION lists_probed(text);
DROP TABLE ps;
