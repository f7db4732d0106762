-- arrw.fused_search: one ranking from several (nearest neighbours on vector
-- columns, full-text rank on a text column), by reciprocal rank fusion or a
-- weighted sum of normalized scores.
CREATE TABLE fdocs (id int PRIMARY KEY, title vector(2), body vector(3), txt text);
INSERT INTO fdocs VALUES
  (1, '[1,0]', '[0,0,1]', 'postgres vector index'),
  (2, '[0.9,0.1]', '[1,0,0]', 'cooking with garlic'),
  (3, '[0,1]', '[0,0.9,0.1]', 'postgres replication and backups'),
  (4, '[0.7,0.7]', '[0.1,0,0.9]', 'vector databases compared'),
  (5, '[-1,0]', '[0,1,0]', 'gardening in spring');

-- Each input alone ranks like its own ORDER BY.
SELECT id, round(score::numeric, 4) AS score, ranks
FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "op": "<->"}]', k => 3);
-- Two vector columns of different dimensions and a full-text query, RRF.
SELECT id, round(score::numeric, 4) AS score, ranks
FROM arrw.fused_search('fdocs', 'id',
  '[{"column": "title", "query": "[1,0]"},
    {"column": "body", "query": "[0,0,1]", "weight": 2},
    {"column": "txt", "query": "postgres vector"}]', k => 4);
-- Weighted sum of normalized scores, with a filter.
SELECT id, round(score::numeric, 4) AS score
FROM arrw.fused_search('fdocs', 'id',
  '[{"column": "title", "query": "[1,0]"}, {"column": "txt", "query": "postgres"}]',
  k => 3, method => 'weighted', filter => 'id <> 1');
-- The SQL it runs, for EXPLAIN.
SELECT arrw.fused_search_sql('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]', k => 2) LIKE 'WITH i1 AS%' AS sql_ok;

-- Rows at one distance (here: sharing a vector) and of one text rank get their
-- ranks in the order of their ids, whatever order the plan reads them in (the
-- rows are stored in descending id order), so rrf does not depend on the plan.
CREATE TABLE fties (id int PRIMARY KEY, v vector(2), txt text);
INSERT INTO fties SELECT i, '[1,1]', 'garlic bread' FROM generate_series(6, 1, -1) i;
INSERT INTO fties VALUES (7, '[0,1]', 'garlic soup');
SELECT id, round(score::numeric, 5) AS score, ranks
FROM arrw.fused_search('fties', 'id',
  '[{"column": "v", "query": "[1,1]", "op": "<->"}, {"column": "txt", "query": "garlic"}]', k => 7);
DROP TABLE fties;

-- A NaN distance (cosine of a zero vector) or an infinite one does not set the
-- weighted scale: it scores 0, and every other row keeps its score.
CREATE TABLE fnan (id int PRIMARY KEY, e vector(2));
INSERT INTO fnan VALUES (1, '[1,0]'), (2, '[0.9,0.1]'), (3, '[0,1]'), (4, '[0,0]'), (5, '[-1,0]');
SELECT id, round(score::numeric, 4) AS score
FROM arrw.fused_search('fnan', 'id', '[{"column": "e", "query": "[1,0]"}]', k => 5, method => 'weighted');
-- Two inputs on one column: each keeps its rank (the second keyed e#2).
SELECT id, ranks
FROM arrw.fused_search('fnan', 'id',
  '[{"column": "e", "query": "[1,0]", "op": "<->", "depth": 2},
    {"column": "e", "query": "[-1,0]", "op": "<->", "depth": 2}]', k => 2);
-- Weights go into the query exactly, whatever extra_float_digits says.
SET extra_float_digits = -15;
SELECT arrw.fused_search_sql('fnan', 'id', '[{"column": "e", "query": "[1,0]", "weight": 0.44}]',
  method => 'weighted') LIKE '%''0.44''::pg_catalog.float8%' AS weight_exact;
RESET extra_float_digits;
-- A weight of -0 is a weight of 0: its scores print as 0, not -0.
SELECT id, score::text AS score
FROM arrw.fused_search('fnan', 'id', '[{"column": "e", "query": "[1,0]", "weight": "-0"}]',
  k => 2, method => 'weighted');
DROP TABLE fnan;

-- The query fused_search_sql returns means the same whatever search_path runs
-- it: every operator, function and type in it is schema-qualified, every
-- literal typed. Here a schema ahead of pg_catalog on the path shadows each
-- one the query could name unqualified (a better-matching operator would win
-- even behind pg_catalog), and a table of the path shadows a temporary table.
CREATE FUNCTION fusion_run(query text) RETURNS TABLE (id text, score float8, ranks jsonb)
LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY EXECUTE query; END $$;
CREATE SCHEMA fusion_evil;
DO $$
DECLARE
	sig text[];
BEGIN
	-- operator, left type, right type, result type
	FOREACH sig SLICE 1 IN ARRAY ARRAY[
		['=', 'float8', 'float8', 'bool'], ['<', 'float8', 'float8', 'bool'],
		['>', 'float8', 'float8', 'bool'], ['-', 'float8', 'float8', 'float8'],
		['/', 'float8', 'float8', 'float8'], ['*', 'float8', 'float8', 'float8'],
		['/', 'float8', 'int8', 'float8'], ['*', 'float8', 'float4', 'float8'],
		['+', 'int8', 'int8', 'int8'], ['+', 'int4', 'int8', 'int8'],
		['>', 'float4', 'float4', 'bool'], ['/', 'float4', 'float4', 'float4'],
		['@@', 'tsvector', 'tsquery', 'bool']] LOOP
		EXECUTE format('CREATE FUNCTION fusion_evil.op_%s_%s_%s(pg_catalog.%I, pg_catalog.%I) RETURNS pg_catalog.%I '
			'LANGUAGE plpgsql AS $f$ BEGIN RAISE EXCEPTION ''search_path hijacked''; END $f$',
			md5(sig[1]), sig[2], sig[3], sig[2], sig[3], sig[4]);
		EXECUTE format('CREATE OPERATOR fusion_evil.%s (LEFTARG = pg_catalog.%I, RIGHTARG = pg_catalog.%I, '
			'FUNCTION = fusion_evil.op_%s_%s_%s)', sig[1], sig[2], sig[3], md5(sig[1]), sig[2], sig[3]);
	END LOOP;
END $$;
CREATE FUNCTION fusion_evil.row_number() RETURNS int8 LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'search_path hijacked'; END $$;
CREATE FUNCTION fusion_evil.ts_rank(tsvector, tsquery) RETURNS float4 LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'search_path hijacked'; END $$;
CREATE FUNCTION fusion_evil.to_tsvector(regconfig, text) RETURNS tsvector LANGUAGE plpgsql IMMUTABLE AS
  $$ BEGIN RAISE EXCEPTION 'search_path hijacked'; END $$;
CREATE FUNCTION fusion_evil.websearch_to_tsquery(regconfig, text) RETURNS tsquery LANGUAGE plpgsql IMMUTABLE AS
  $$ BEGIN RAISE EXCEPTION 'search_path hijacked'; END $$;
CREATE FUNCTION fusion_evil.agg_f8(float8, float8) RETURNS float8 LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'search_path hijacked'; END $$;
CREATE FUNCTION fusion_evil.agg_f4(float4, float4) RETURNS float4 LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'search_path hijacked'; END $$;
CREATE FUNCTION fusion_evil.agg_obj(jsonb, text, int8) RETURNS jsonb LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'search_path hijacked'; END $$;
CREATE AGGREGATE fusion_evil.sum(float8) (SFUNC = fusion_evil.agg_f8, STYPE = float8);
CREATE AGGREGATE fusion_evil.min(float8) (SFUNC = fusion_evil.agg_f8, STYPE = float8);
CREATE AGGREGATE fusion_evil.max(float8) (SFUNC = fusion_evil.agg_f8, STYPE = float8);
CREATE AGGREGATE fusion_evil.max(float4) (SFUNC = fusion_evil.agg_f4, STYPE = float4);
CREATE AGGREGATE fusion_evil.jsonb_object_agg(text, int8) (SFUNC = fusion_evil.agg_obj, STYPE = jsonb);
-- A configuration that indexes no word, and shell types.
CREATE TEXT SEARCH CONFIGURATION fusion_evil.english (PARSER = pg_catalog."default");
CREATE TYPE fusion_evil.text;
CREATE TYPE fusion_evil.float8;
CREATE TYPE fusion_evil.float4;
CREATE TYPE fusion_evil.int8;
CREATE TYPE fusion_evil.regconfig;
CREATE TABLE fpath (id int PRIMARY KEY, v vector(2), txt text, vc varchar, tsv tsvector);
INSERT INTO fpath VALUES (1, '[9,9]', 'nothing here', 'nothing here', 'nothing');
CREATE TEMP TABLE fpath (id int PRIMARY KEY, v vector(2), txt text, vc varchar, tsv tsvector);
INSERT INTO fpath VALUES
  (1, '[1,0]', 'postgres vector index', 'garlic bread', to_tsvector('english', 'postgres garlic')),
  (2, '[0,1]', 'cooking with garlic', 'postgres replication', to_tsvector('english', 'garlic')),
  (3, '[1,1]', 'postgres vector', 'postgres', NULL);
SET search_path = fusion_evil, pg_catalog, public, pg_temp;
SELECT * FROM fusion_run(arrw.fused_search_sql('pg_temp.fpath', 'id',
  '[{"column": "v", "query": "[1,0]"}, {"column": "txt", "query": "postgres vector"},
    {"column": "vc", "query": "postgres", "weight": 0.5}, {"column": "tsv", "query": "garlic"}]', k => 3));
SELECT * FROM fusion_run(arrw.fused_search_sql('pg_temp.fpath', 'id',
  '[{"column": "v", "query": "[1,0]"}, {"column": "txt", "query": "postgres vector"},
    {"column": "vc", "query": "postgres", "weight": 0.5}, {"column": "tsv", "query": "garlic"}]', k => 3,
  method => 'weighted'));
RESET search_path;
DROP TABLE pg_temp.fpath;
DROP TABLE public.fpath;
DROP FUNCTION fusion_run(text);
SET client_min_messages = warning;
DROP SCHEMA fusion_evil CASCADE;
RESET client_min_messages;

-- Columns named like the query's own names (its aliases and output columns),
-- a vector column named t and a text column named q, read by the filter by
-- their bare names; the id column may be one of them too.
CREATE TABLE falias (id int PRIMARY KEY, t vector(2), v vector(2), c text, u tsvector,
  n int, key text, r int, s int, d int, lo int, hi int, q text, i1 int, ids int, id_ int,
  score int, ranks int);
INSERT INTO falias SELECT i, ARRAY[i, 1]::real[]::vector, ARRAY[1, i]::real[]::vector,
  'postgres vector ' || i, to_tsvector('english', 'garlic ' || i),
  i, 'k', 10 + i, i, i, i, i, 'q' || i, i, i, i, i, i
FROM generate_series(1, 4) i;
SELECT id, round(score::numeric, 4) AS score, ranks
FROM arrw.fused_search('falias', 'id',
  '[{"column": "t", "query": "[1,0]"}, {"column": "v", "query": "[1,0]"},
    {"column": "c", "query": "postgres"}, {"column": "u", "query": "garlic"},
    {"column": "q", "query": "q2"}]', k => 3,
  filter => 'n + r + s + d + lo + hi + i1 + ids + id_ + score + ranks > 0 AND key = ''k''');
SELECT id, round(score::numeric, 4) AS score, ranks
FROM arrw.fused_search('falias', 'r',
  '[{"column": "t", "query": "[1,0]"}, {"column": "c", "query": "postgres"}]', k => 2,
  method => 'weighted', filter => 'q <> ''q1''');
DROP TABLE falias;

-- A row whose vector is NULL has no distance and no rank, whether the plan
-- scans the table (and would sort it last) or the index (which does not
-- return it).
CREATE TABLE fnull (id int PRIMARY KEY, e vector(2));
INSERT INTO fnull VALUES (1, '[1,0]'), (2, NULL), (3, '[0,1]');
SELECT id, ranks FROM arrw.fused_search('fnull', 'id', '[{"column": "e", "query": "[1,0]"}]', k => 5);
CREATE INDEX ON fnull USING ivfpq (e vector_cosine_ops);
SET enable_seqscan = off;
SELECT id, ranks FROM arrw.fused_search('fnull', 'id', '[{"column": "e", "query": "[1,0]"}]', k => 5);
RESET enable_seqscan;

-- ivfpq.probes_scale: fused_search raises it unless the caller set it, at any
-- value, 1 too (the filter sees the setting the inputs run with), and puts
-- the default back, so that a second call in one transaction raises it again.
SET ivfpq.probes_scale = 1;
SELECT count(*) AS raised FROM arrw.fused_search('fnull', 'id', '[{"column": "e", "query": "[1,0]"}]',
  filter => 'pg_catalog.current_setting(''ivfpq.probes_scale'')::pg_catalog.float8 > 1');
RESET ivfpq.probes_scale;
BEGIN;
SELECT count(*) AS raised FROM arrw.fused_search('fnull', 'id', '[{"column": "e", "query": "[1,0]"}]',
  filter => 'pg_catalog.current_setting(''ivfpq.probes_scale'')::pg_catalog.float8 > 1');
SELECT setting, source FROM pg_settings WHERE name = 'ivfpq.probes_scale';
SELECT count(*) AS raised FROM arrw.fused_search('fnull', 'id', '[{"column": "e", "query": "[1,0]"}]',
  filter => 'pg_catalog.current_setting(''ivfpq.probes_scale'')::pg_catalog.float8 > 1');
COMMIT;

-- The filter sits on lines of its own: a trailing -- comment ends there. An
-- empty or blank filter is no filter.
SELECT id FROM arrw.fused_search('fnull', 'id', '[{"column": "e", "query": "[1,0]"}]',
  filter => 'id <> 3 -- not 3');
SELECT id FROM arrw.fused_search('fnull', 'id', '[{"column": "e", "query": "[1,0]"}]', filter => '');
SELECT id FROM arrw.fused_search('fnull', 'id', '[{"column": "e", "query": "[1,0]"}]', filter => E' \n ');
DROP TABLE fnull;

-- Up to 128 inputs (ranks is not built by a function call, which takes at
-- most 100 arguments); past that 54000 at once: planning the query's WITH
-- query per input took memory and time growing with their square (2,000
-- inputs: 1.7 GB, 26 s; hunt-140).
CREATE TABLE fmany (id int PRIMARY KEY, e vector(2));
INSERT INTO fmany VALUES (1, '[1,0]'), (2, '[0,1]');
SELECT id, round(score::numeric, 4) AS score, (SELECT count(*) FROM jsonb_object_keys(ranks)) AS inputs
FROM arrw.fused_search('fmany', 'id',
  (SELECT jsonb_agg(jsonb_build_object('column', 'e', 'query', '[1,0]')) FROM generate_series(1, 128)));
\set VERBOSITY terse
SELECT count(*) FROM arrw.fused_search('fmany', 'id',
  (SELECT jsonb_agg(jsonb_build_object('column', 'e', 'query', '[1,0]')) FROM generate_series(1, 129)));
\set VERBOSITY default
DROP TABLE fmany;
-- JIT stays off for the generated query: LLVM compiling its expressions does
-- not look at interrupts, and a 1 s statement_timeout fired after 20-33 s.
SELECT proname, proconfig @> '{jit=off}' AS jit_off FROM pg_proc
WHERE proname = 'fused_search' AND pronamespace = 'arrw'::regnamespace;

-- ranks keys stay unique when a column is named like another input's key
-- (column#N): the later input on e at position 3 is keyed e##3.
CREATE TABLE fkeys (id int PRIMARY KEY, e vector(2), "e#3" vector(2));
INSERT INTO fkeys VALUES (1, '[1,0]', '[0,1]'), (2, '[0,1]', '[1,0]');
SELECT id, ranks FROM arrw.fused_search('fkeys', 'id',
  '[{"column": "e", "query": "[1,0]"}, {"column": "e#3", "query": "[1,0]"}, {"column": "e", "query": "[0,1]"}]',
  k => 2);
DROP TABLE fkeys;

-- Errors.
\set VERBOSITY sqlstate
SELECT * FROM arrw.fused_search(NULL, 'id', '[{"column": "title", "query": "[1,0]"}]');
SELECT * FROM arrw.fused_search('fdocs', NULL, '[{"column": "title", "query": "[1,0]"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": null}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": null, "query": "[1,0]"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[]');
SELECT * FROM arrw.fused_search('fdocs', 'nope', '[{"column": "title", "query": "[1,0]"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "nope", "query": "[1,0]"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "id", "query": "1"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]', method => 'max');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "weight": -1}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "op": ";drop"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0,0]"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]', k => 0);
-- NULL arguments are 22004 all (k, method, inputs, rrf_k were 22023).
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]', k => NULL);
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]', method => NULL);
SELECT * FROM arrw.fused_search('fdocs', 'id', NULL);
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]', rrf_k => NULL);
-- A filter that closes the parentheses it is put in is not one expression
-- (it made every input's own conditions pass: hunt-153); unbalanced the
-- other way, too.
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]', filter => 'true) OR (true');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]', filter => '(true');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]', filter => 'true; SELECT 1');
-- k and depth are checked before anything is computed from them.
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]', k => 300000000);
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "depth": 3000000000}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "depth": 100.5}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "depth": 5}]');
SELECT arrw.fused_search_sql('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "depth": 3000000000}]');
-- A filter is an expression: an unterminated comment in it is a syntax error.
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]', filter => 'true /* x');
\set VERBOSITY default
-- A key an input does not have is an error (a misspelt "weight" or "config"
-- ranked by the default it meant to change), and a text search configuration
-- named by an OID that names nothing (regconfig takes any number, and '-')
-- is one too (it matched no row).
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "wieght": 5}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "txt", "query": "vector", "config": "5"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "txt", "query": "vector", "config": "-"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}, {"column": "txt", "query": "vector", "config": "nope"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "txt", "query": "vector", "config": ""}]');
-- So is a key of the other kind of input: "op" on a text input, "config" on a
-- vector input (each changed nothing; hunt-140).
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "txt", "query": "vector", "op": "<->"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "config": "simple"}]');
-- A query vector that is no vector, or not of the column's dimensions, is an
-- error naming its input (it came from inside the generated query, with the
-- query's text, kilobytes, as its context).
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "txt", "query": "x"}, {"column": "title", "query": "[1,x]"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}, {"column": "body", "query": "[1,0]"}]');
-- The same for a column of a domain over vector(3), whose dimensions are the
-- domain's (it has none of its own), and for a query past 16,000 dimensions
-- (54000). A null "config" or "op" is no key, as for the other keys.
CREATE DOMAIN fvec3 AS vector(3);
CREATE TABLE fdom (id int PRIMARY KEY, e fvec3);
INSERT INTO fdom VALUES (1, '[1,0,0]');
\set VERBOSITY terse
SELECT * FROM arrw.fused_search('fdom', 'id', '[{"column": "e", "query": "[1,0]"}]');
SELECT * FROM arrw.fused_search('fdom', 'id',
  jsonb_build_array(jsonb_build_object('column', 'e', 'query', (SELECT '[' || string_agg('1', ',') || ']' FROM generate_series(1, 16001)))));
\set VERBOSITY default
SELECT id FROM arrw.fused_search('fdom', 'id', '[{"column": "e", "query": "[1,0,0]", "config": null}]');
SELECT id FROM arrw.fused_search('fdocs', 'id', '[{"column": "txt", "query": "vector", "op": null}]');
DROP TABLE fdom;
DROP DOMAIN fvec3;
-- A weight that is not a number names its input (it was a bare 22P02), and
-- a table OID that names nothing is 42P01 (it was 42703, "column "id" of
-- 99999999 does not exist").
\set VERBOSITY terse
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "weight": true}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "weight": {"a": 1}}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "weight": "abc"}]');
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "weight": 1e400}]');
SELECT * FROM arrw.fused_search(99999999::oid::regclass, 'id', '[{"column": "title", "query": "[1,0]"}]');
SELECT * FROM arrw.fused_search(0::oid::regclass, 'id', '[{"column": "title", "query": "[1,0]"}]');
\set VERBOSITY default
-- A filter is not blank under standard_conforming_strings = off either: the
-- test for a blank one ('^\s*$') then read '^s*$' and took the filter "s" for
-- blank, returning every row.
-- (A session of its own: PL/pgSQL keeps the plans of a session's first call.)
ALTER TABLE fdocs ADD COLUMN s boolean DEFAULT false;
\setenv PGDATABASE :DBNAME
\! PGOPTIONS='-c standard_conforming_strings=off' psql -X -q -At -c "SELECT count(*) FROM arrw.fused_search('fdocs', 'id', '[{\"column\": \"title\", \"query\": \"[1,0]\"}]', filter => 's')"
ALTER TABLE fdocs DROP COLUMN s;
-- Weights near float8's limit overflowed the fused sum (22003, with the whole
-- generated query as context): at most 1e300.
\set VERBOSITY sqlstate
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "weight": 1e308},
  {"column": "body", "query": "[0,0,1]", "weight": 1e308}]', method => 'weighted');
SELECT count(*) FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]", "weight": 1e300},
  {"column": "body", "query": "[0,0,1]", "weight": 1e300}]', method => 'weighted');
\set VERBOSITY default

-- The caller's privileges and row-level security apply.
CREATE ROLE fusion_reader;
GRANT USAGE ON SCHEMA arrw TO fusion_reader;
SET ROLE fusion_reader;
\set VERBOSITY sqlstate
SELECT * FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]');
\set VERBOSITY default
RESET ROLE;
GRANT SELECT ON fdocs TO fusion_reader;
ALTER TABLE fdocs ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_even ON fdocs FOR SELECT TO fusion_reader USING (id % 2 = 0);
SET ROLE fusion_reader;
SELECT id FROM arrw.fused_search('fdocs', 'id', '[{"column": "title", "query": "[1,0]"}]', k => 5);
RESET ROLE;
DROP TABLE fdocs;
REVOKE USAGE ON SCHEMA arrw FROM fusion_reader;
DROP ROLE fusion_reader;

-- Rows with a NULL id are left out (fused by id, three of them came back as
-- one row with their scores added, ahead of the true nearest row).
CREATE TABLE fu_nid (id int, v vector(2), body text);
INSERT INTO fu_nid VALUES (1, '[1,0]', 'alpha'), (NULL, '[1,0.1]', 'alpha'), (NULL, '[1,0.2]', 'alpha'),
  (NULL, '[1,0.3]', 'alpha'), (2, '[0,1]', 'beta');
SELECT id, round(score::numeric, 4) AS score FROM arrw.fused_search('fu_nid', 'id',
  '[{"column": "v", "query": "[1,0]", "op": "<->"}, {"column": "body", "query": "alpha"}]', 5);
DROP TABLE fu_nid;

-- Only arrw's (or pgvector's) vector types are vector inputs, known by their
-- extension, not by name: a type any role may call "vector", with its own
-- <=>, ran that operator with the caller's rights. And ids are written by
-- their type's output function: a cast to text of the id type's owner ran
-- with the caller's rights too.
CREATE SCHEMA fu_own;
CREATE TYPE fu_own.vector AS (x float8);
CREATE FUNCTION fu_own.dist(fu_own.vector, fu_own.vector) RETURNS float8 LANGUAGE plpgsql AS
  $$ BEGIN RAISE NOTICE 'the table owner''s operator ran'; RETURN 0; END $$;
CREATE OPERATOR fu_own.<=> (LEFTARG = fu_own.vector, RIGHTARG = fu_own.vector, PROCEDURE = fu_own.dist);
CREATE TABLE fu_own.items (id int, emb fu_own.vector);
INSERT INTO fu_own.items VALUES (1, ROW(1.5));
SELECT * FROM arrw.fused_search('fu_own.items', 'id', '[{"column": "emb", "query": "(1.5)"}]');
CREATE TYPE fu_own.k AS ENUM ('a', 'b');
CREATE FUNCTION fu_own.k_text(fu_own.k) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN RAISE NOTICE 'the id type owner''s cast ran'; RETURN 'x'; END $$;
CREATE CAST (fu_own.k AS text) WITH FUNCTION fu_own.k_text(fu_own.k);
CREATE TABLE fu_own.keyed (id fu_own.k, emb vector(2));
INSERT INTO fu_own.keyed VALUES ('a', '[1,2]'), ('b', '[2,3]');
SELECT id FROM arrw.fused_search('fu_own.keyed', 'id', '[{"column": "emb", "query": "[1,2]", "op": "<->"}]');
-- Built-in id types keep their cast to text (a char(5) id comes back
-- unpadded, a boolean as true).
CREATE TABLE fu_own.ch (id char(5), flag boolean, emb vector(2));
INSERT INTO fu_own.ch VALUES ('ab', true, '[1,2]');
SELECT id, length(id) FROM arrw.fused_search('fu_own.ch', 'id', '[{"column": "emb", "query": "[1,2]"}]');
SELECT id FROM arrw.fused_search('fu_own.ch', 'flag', '[{"column": "emb", "query": "[1,2]"}]');
-- A composite id with a NULL field is a row (IS NOT NULL called it not).
CREATE TYPE fu_own.pair AS (a int, b text);
CREATE TABLE fu_own.cp (id fu_own.pair, v vector(2));
INSERT INTO fu_own.cp VALUES ((1,'x'), '[1,0]'), ((2,NULL), '[1,0.1]'), ((NULL,NULL), '[1,0.2]'), (NULL, '[1,0.3]');
SELECT id FROM arrw.fused_search('fu_own.cp', 'id', '[{"column": "v", "query": "[1,0]", "op": "<->"}]');
DROP SCHEMA fu_own CASCADE;

-- An input without "op" ranks by the operator of the column's own index (an
-- ivfpq one first), so that the index serves it; with none, by <=>. Before,
-- always <=>: an input on a column indexed for L2 ranked by cosine, through a
-- sequential scan and sort.
CREATE TABLE fu_op (id int, l2 vector(2), ip vector(2), plain vector(2), part vector(2));
CREATE INDEX ON fu_op USING ivfpq (l2 vector_l2_ops);
CREATE INDEX ON fu_op USING ivfpq (ip vector_ip_ops);
CREATE INDEX ON fu_op USING ivfpq (part vector_ip_ops) WHERE id > 0;
SELECT c, substring(arrw.fused_search_sql('fu_op', 'id',
         jsonb_build_array(jsonb_build_object('column', c, 'query', '[1,0]')))
       FROM 'OPERATOR\(\w+\.(<.>)\)') AS op
FROM unnest(ARRAY['l2', 'ip', 'plain', 'part']) c;
-- An "op" of the caller's wins over the index's.
SELECT substring(arrw.fused_search_sql('fu_op', 'id', '[{"column": "l2", "query": "[1,0]", "op": "<#>"}]')
       FROM 'OPERATOR\(\w+\.(<.>)\)') AS op;
DROP TABLE fu_op;

-- An id comes back as text that casts back to the same key whatever the
-- session's extra_float_digits (hunt-88: at 0, 1/3 came back as
-- 0.333333333333333, and a join back matched 6 of 20 rows), and the filter
-- keeps the session's setting (hunt-92: a filter comparing a float's text
-- matched another row inside fused_search than in the caller's own query).
CREATE TABLE fu_float (id float8, tag text, v vector(2));
INSERT INTO fu_float SELECT g / 3.0, NULL, ARRAY[g, 1]::real[]::vector FROM generate_series(1, 20) g;
UPDATE fu_float SET tag = CASE WHEN id < 0.5 THEN '0.3' WHEN id < 0.9 THEN '0.30000000000000004' END;
SET extra_float_digits = 0;
SELECT count(*) AS returned, count(t.id) AS joined_back
FROM arrw.fused_search('fu_float', 'id', '[{"column": "v", "query": "[1,1]", "op": "<->"}]', k => 20) f
LEFT JOIN fu_float t ON t.id = f.id::float8;
SELECT t.tag AS filtered_tag
FROM arrw.fused_search('fu_float', 'id', '[{"column": "v", "query": "[1,1]", "op": "<->"}]', k => 20,
                       filter => 'tag = (0.1::float8 + 0.2::float8)::text') f
JOIN fu_float t ON t.id = f.id::float8;
RESET extra_float_digits;
DROP TABLE fu_float;
-- So do date, timestamptz and interval keys whatever DateStyle, IntervalStyle
-- and TimeZone say (hunt-104: under German DateStyle 2024-01-02 came back as
-- 02.01.2024, which casts back as 1 February; under Postgres DateStyle a
-- timestamptz came back with a zone abbreviation read back as another zone).
CREATE TABLE fu_time (d date, ts timestamptz, iv interval, v vector(2));
INSERT INTO fu_time SELECT DATE '2024-01-01' + g, TIMESTAMPTZ '2024-01-01 00:00+00' + g * INTERVAL '1 day 1 hour',
  g * INTERVAL '1 day 2 hours 3 minutes', ARRAY[g, 1]::real[]::vector FROM generate_series(1, 20) g;
SET datestyle = 'German, MDY';
SET intervalstyle = 'sql_standard';
SET timezone = 'Asia/Kolkata';
SELECT count(*) AS returned, count(t.d) AS joined_back
FROM arrw.fused_search('fu_time', 'd', '[{"column": "v", "query": "[1,1]", "op": "<->"}]', k => 20) f
LEFT JOIN fu_time t ON t.d = f.id::date;
SET datestyle = 'Postgres, MDY';
SELECT count(*) AS returned, count(t.ts) AS joined_back
FROM arrw.fused_search('fu_time', 'ts', '[{"column": "v", "query": "[1,1]", "op": "<->"}]', k => 20) f
LEFT JOIN fu_time t ON t.ts = f.id::timestamptz;
SELECT count(*) AS returned, count(t.iv) AS joined_back
FROM arrw.fused_search('fu_time', 'iv', '[{"column": "v", "query": "[1,1]", "op": "<->"}]', k => 20) f
LEFT JOIN fu_time t ON t.iv = f.id::interval;
RESET datestyle;
RESET intervalstyle;
RESET timezone;
DROP TABLE fu_time;
-- Columns of a domain over vector or text fuse as their base type (hunt-98:
-- 42804 "fusion takes vector, halfvec, tsvector or text columns"), ranked by
-- the column's own ivfpq index.
CREATE DOMAIN fu_vec AS vector(2);
CREATE DOMAIN fu_vec2 AS fu_vec CHECK (VALUE IS NOT NULL);
CREATE DOMAIN fu_txt AS text;
CREATE TABLE fu_dom (id int, v fu_vec2, body fu_txt);
INSERT INTO fu_dom SELECT g, ARRAY[g, 1]::real[]::vector, CASE WHEN g % 3 = 0 THEN 'red apple' ELSE 'green pear' END
  FROM generate_series(1, 30) g;
CREATE INDEX ON fu_dom USING ivfpq (v vector_l2_ops) WITH (lists = 2, m = 2);
SELECT id FROM arrw.fused_search('fu_dom', 'id',
  '[{"column": "v", "query": "[3,1]"}, {"column": "body", "query": "apple"}]', k => 4);
SELECT substring(arrw.fused_search_sql('fu_dom', 'id', '[{"column": "v", "query": "[3,1]"}]')
       FROM 'OPERATOR\(\w+\.(<.>)\)') AS op;
DROP TABLE fu_dom;
DROP DOMAIN fu_vec2, fu_vec, fu_txt;
-- On a domain column the operator is arrw's, cast to the base type: an
-- operator another role declared for the domain (mvec, vector) was the exact
-- match, and ran with the caller's rights (hunt-110).
CREATE DOMAIN fu_mvec AS vector;
CREATE TABLE fu_called (who text);
CREATE FUNCTION fu_mal(fu_mvec, vector) RETURNS float8 LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO fu_called VALUES (current_user); RETURN 0; END $$;
CREATE OPERATOR <-> (LEFTARG = fu_mvec, RIGHTARG = vector, FUNCTION = fu_mal);
CREATE TABLE fu_mt (id int, e fu_mvec);
INSERT INTO fu_mt VALUES (1, '[1,2,3]'), (2, '[3,2,1]');
SELECT id FROM arrw.fused_search('fu_mt', 'id', '[{"column": "e", "query": "[1,2,3]", "op": "<->"}]');
SELECT count(*) AS calls FROM fu_called;
DROP TABLE fu_mt, fu_called;
DROP OPERATOR <-> (fu_mvec, vector);
DROP FUNCTION fu_mal(fu_mvec, vector);
DROP DOMAIN fu_mvec;

-- An error of the generated query (here: a table the caller may not read) is
-- raised without that query as its CONTEXT, which wrote the query vector out
-- three times (~25 kB for one 384-d input; hunt-153).
CREATE TABLE fu_priv (id int, emb vector(3));
INSERT INTO fu_priv VALUES (1, '[1,2,3]');
CREATE ROLE fu_noread;
GRANT USAGE ON SCHEMA arrw TO fu_noread;
SET ROLE fu_noread;
\set VERBOSITY default
SELECT * FROM arrw.fused_search('fu_priv', 'id', '[{"column": "emb", "query": "[0.123456,0.123456,0.123456]"}]');
\set VERBOSITY sqlstate
SELECT * FROM arrw.fused_search('fu_priv', 'id', '[{"column": "emb", "query": "[1,2,3]"}]');
\set VERBOSITY default
RESET ROLE;
REVOKE USAGE ON SCHEMA arrw FROM fu_noread;
DROP ROLE fu_noread;
DROP TABLE fu_priv;

-- A vector[] column is a MaxSim input (@#), served by its vector_maxsim_ops
-- index, fused with full text as any vector input is (it was refused, 42804:
-- hunt-153). The index and a sequential scan give the same fusion.
CREATE TABLE fu_mdoc (id int PRIMARY KEY, chunks vector(2)[], body text);
INSERT INTO fu_mdoc SELECT g, ARRAY[ARRAY[cos(g), sin(g)]::real[]::vector, ARRAY[cos(2*g), sin(2*g)]::real[]::vector],
  CASE WHEN g % 4 = 0 THEN 'red apple' ELSE 'green pear' END FROM generate_series(1, 200) g;
CREATE INDEX fu_mdoc_chunks ON fu_mdoc USING ivfpq (chunks vector_maxsim_ops) WITH (lists = 4, m = 2);
SELECT id, round(score::numeric, 5) AS score, ranks FROM arrw.fused_search('fu_mdoc', 'id',
  '[{"column": "chunks", "query": "{\"[1,0]\",\"[0,1]\"}"}, {"column": "body", "query": "apple"}]', k => 5);
SET enable_indexscan = off;
SET enable_bitmapscan = off;
SELECT id, round(score::numeric, 5) AS score, ranks FROM arrw.fused_search('fu_mdoc', 'id',
  '[{"column": "chunks", "query": "{\"[1,0]\",\"[0,1]\"}"}, {"column": "body", "query": "apple"}]', k => 5);
RESET enable_indexscan;
RESET enable_bitmapscan;
SELECT id, round(score::numeric, 5) AS score FROM arrw.fused_search('fu_mdoc', 'id',
  '[{"column": "chunks", "query": "{\"[1,0]\",\"[0,1]\"}"}]', k => 3, method => 'weighted');
SELECT id FROM fu_mdoc ORDER BY chunks @# '{"[1,0]","[0,1]"}', id LIMIT 3;
SELECT position('OPERATOR(public.@#)' IN arrw.fused_search_sql('fu_mdoc', 'id',
  '[{"column": "chunks", "query": "{\"[1,0]\",\"[0,1]\"}"}]')) > 0 AS ranked_by_maxsim;
\set VERBOSITY sqlstate
SELECT * FROM arrw.fused_search('fu_mdoc', 'id', '[{"column": "chunks", "query": "{\"[1,0]\",NULL}"}]');
SELECT * FROM arrw.fused_search('fu_mdoc', 'id', '[{"column": "chunks", "query": "{}"}]');
SELECT * FROM arrw.fused_search('fu_mdoc', 'id', '[{"column": "chunks", "query": "{\"[1,0]\",\"[0,1,2]\"}"}]');
SELECT * FROM arrw.fused_search('fu_mdoc', 'id', '[{"column": "chunks", "query": "{\"[1,0]\"}", "op": "<->"}]');
SELECT * FROM arrw.fused_search('fu_mdoc', 'id', '[{"column": "chunks", "query": "[1,0]"}]');
\set VERBOSITY default
-- Query vectors of other dimensions than the column's: an error naming the
-- input (it came from inside the generated query; hunt-156).
SELECT * FROM arrw.fused_search('fu_mdoc', 'id', '[{"column": "chunks", "query": "{\"[1,0,0]\"}"}]');
DROP TABLE fu_mdoc;
