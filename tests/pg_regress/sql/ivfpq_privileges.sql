-- arrw.ivfpq_info and arrw.ivfpq_check report row counts and list sizes: they
-- answer only to users who may SELECT from the index's table (42501, naming
-- the table, otherwise), and the SQL one runs with a fixed search_path.

CREATE TABLE ivp (id int, v vector(2));
INSERT INTO ivp SELECT i, ARRAY[i % 7, i % 3] FROM generate_series(1, 50) i;
CREATE INDEX ivp_idx ON ivp USING ivfpq (v) WITH (lists = 2, m = 1);
CREATE ROLE regress_ivfpq_reader;

SET ROLE regress_ivfpq_reader;
\set VERBOSITY sqlstate
SELECT rows FROM arrw.ivfpq_info('ivp_idx');
SELECT arrw._ivfpq_info_json('ivp_idx') IS NOT NULL;
SELECT arrw.ivfpq_check('ivp_idx');
\set VERBOSITY default
SELECT arrw.ivfpq_check('ivp_idx');
RESET ROLE;

-- With SELECT on the table (and nothing else) both answer.
GRANT SELECT ON ivp TO regress_ivfpq_reader;
SET ROLE regress_ivfpq_reader;
SELECT lists, rows FROM arrw.ivfpq_info('ivp_idx');
SELECT arrw.ivfpq_check('ivp_idx');
RESET ROLE;

-- SELECT on one column is not SELECT on the table.
REVOKE SELECT ON ivp FROM regress_ivfpq_reader;
GRANT SELECT (id) ON ivp TO regress_ivfpq_reader;
SET ROLE regress_ivfpq_reader;
SELECT rows FROM arrw.ivfpq_info('ivp_idx');
RESET ROLE;

-- SELECT under row-level security that applies to the reader is not all the
-- rows the counts cover: refused too (the owner still answers).
GRANT SELECT ON ivp TO regress_ivfpq_reader;
ALTER TABLE ivp ENABLE ROW LEVEL SECURITY;
CREATE POLICY ivp_few ON ivp FOR SELECT TO regress_ivfpq_reader USING (id <= 5);
SET ROLE regress_ivfpq_reader;
\set VERBOSITY sqlstate
SELECT rows FROM arrw.ivfpq_info('ivp_idx');
SELECT arrw.ivfpq_check('ivp_idx');
\set VERBOSITY default
RESET ROLE;
SELECT rows FROM arrw.ivfpq_info('ivp_idx');
DROP POLICY ivp_few ON ivp;
ALTER TABLE ivp DISABLE ROW LEVEL SECURITY;
REVOKE SELECT ON ivp FROM regress_ivfpq_reader;

-- SELECT on the table is not enough without USAGE on its schema: no query of
-- the role's reaches the table, and the index's OID is no way around it
-- (hunt-63: ivfpq_info gave the exact row count).
CREATE SCHEMA ivp_hidden;
CREATE TABLE ivp_hidden.t AS SELECT * FROM ivp;
CREATE INDEX ivp_hidden_idx ON ivp_hidden.t USING ivfpq (v) WITH (lists = 2, m = 1);
GRANT SELECT ON ivp_hidden.t TO regress_ivfpq_reader;
SELECT 'ivp_hidden.ivp_hidden_idx'::regclass::oid AS hidden_idx \gset
SET ROLE regress_ivfpq_reader;
\set VERBOSITY sqlstate
SELECT count(*) FROM ivp_hidden.t;
SELECT rows FROM arrw.ivfpq_info(:hidden_idx::regclass);
SELECT arrw.ivfpq_check(:hidden_idx::regclass);
SELECT arrw.ivfpq_default_probes(:hidden_idx::regclass);
\set VERBOSITY default
RESET ROLE;
DROP SCHEMA ivp_hidden CASCADE;

-- Every SQL-language arrw function that reports on a relation pins search_path.
SELECT p.oid::regprocedure, p.proconfig
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'arrw' AND p.proname LIKE 'ivfpq%' AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'sql')
ORDER BY 1::text;

-- Arguments that are not an ivfpq index: another relation (42809), an OID
-- that names nothing, such as a dropped index's (42P01, not an internal error).
\set VERBOSITY sqlstate
SELECT arrw.ivfpq_check('ivp');
SELECT arrw.ivfpq_check(4000000000::oid::regclass);
SELECT arrw.ivfpq_info(4000000000::oid::regclass);
SELECT arrw.ivfpq_default_probes(4000000000::oid::regclass);
\set VERBOSITY default
-- The other relation is named, as an index of another kind is (it was
-- "relation with OID n").
SELECT arrw.ivfpq_check('ivp');
-- The ivfpq index of a partitioned table has no pages: it is one, but the
-- error says where its entries are (it said "is not an ivfpq index").
CREATE TABLE ivp_parted (id int, v vector(3)) PARTITION BY RANGE (id);
CREATE TABLE ivp_parted0 PARTITION OF ivp_parted FOR VALUES FROM (0) TO (100);
CREATE INDEX ivp_parted_v ON ivp_parted USING ivfpq (v) WITH (lists = 1, m = 1);
SELECT arrw.ivfpq_check('ivp_parted_v');
SELECT arrw.ivfpq_info('ivp_parted_v');
DROP TABLE ivp_parted;

DROP TABLE ivp;
DROP ROLE regress_ivfpq_reader;
