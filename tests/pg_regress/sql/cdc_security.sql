-- Who may write what into arrw's change channels (docs/security.md).

-- Reserved event kinds are refused for every caller (this one is a superuser).
\set VERBOSITY sqlstate
SELECT arrw.emit_event('job', '{"id": 1, "state": "succeeded"}');
SELECT arrw.emit_event('Job');
SELECT arrw.emit_event(' job ');
SELECT arrw.emit_event(E'\tjob');
SELECT arrw.emit_event(E'job\n');
SELECT arrw.emit_event(E'\r arrw.done');
SELECT arrw.emit_event('arrw.index_build');
SELECT arrw.emit_event('ARRW');
SELECT arrw.emit_event('');
SELECT arrw.emit_event(NULL);
-- The vertical tab counts as white space; the letter v does not (E'\v' is the
-- letter v in PostgreSQL: 'vjob' was refused and a job between vertical tabs
-- accepted).
SELECT arrw.emit_event(E'\x0bjob\x0b');
SELECT arrw.emit_event(E' \x0b\f arrw.x');
SELECT pg_typeof(arrw.emit_event('vjob'));
SELECT pg_typeof(arrw.emit_event('jobvvv'));
SELECT pg_typeof(arrw.emit_event('varrw_stats'));
\set VERBOSITY default
SELECT arrw.emit_event('job', '{"id": 1, "state": "succeeded"}');
SELECT arrw.emit_event('arrw.index_build');
-- Other kinds are accepted (whether an LSN comes back depends on wal_level).
SELECT pg_typeof(arrw.emit_event('jobs'));
SELECT pg_typeof(arrw.emit_event('my.job'));

-- The job channel's name is a secret: neither the table nor the function is
-- PUBLIC's.
SELECT has_table_privilege('public', 'arrw.secret', 'SELECT') AS public_reads_secret,
       has_function_privilege('public', 'arrw.job_channel()', 'EXECUTE') AS public_runs_job_channel;
SELECT arrw.job_channel() ~ '^arrw_jobs_[0-9a-f]{32}$' AS well_formed;
CREATE ROLE cdc_regress_nobody;
SET ROLE cdc_regress_nobody;
\set VERBOSITY sqlstate
SELECT arrw.job_channel();
SELECT value FROM arrw.secret;
\set VERBOSITY default
RESET ROLE;

-- Watches carry keys only by the owner's opt-in.
CREATE TABLE cdc_sec (email text PRIMARY KEY);
SELECT arrw.watch('cdc_sec');
SELECT "table", channel, keys FROM arrw.watches WHERE "table" = 'cdc_sec'::regclass;
SELECT arrw.watch('cdc_sec', 'cdc_sec_events', include_keys => true);
SELECT "table", channel, keys FROM arrw.watches WHERE "table" = 'cdc_sec'::regclass;
-- Every role reads the list (the same facts as pg_trigger), not only superusers.
SET ROLE cdc_regress_nobody;
SELECT "table", channel, keys FROM arrw.watches WHERE "table" = 'cdc_sec'::regclass;
RESET ROLE;
SELECT arrw.watch('cdc_sec', include_keys => NULL);
SELECT arrw.unwatch('cdc_sec');
DROP TABLE cdc_sec;

-- A key is rendered only by code of PostgreSQL and arrw: never by a cast to
-- json a type's owner created (to_jsonb calls one), which would run as
-- whoever writes the table (here a superuser).
CREATE ROLE cdc_regress_mallory;
CREATE SCHEMA cdc_mal AUTHORIZATION cdc_regress_mallory;
SET ROLE cdc_regress_mallory;
CREATE TYPE cdc_mal.color AS ENUM ('red', 'blue');
CREATE TYPE cdc_mal.pair AS (c cdc_mal.color, n int8);
CREATE DOMAIN cdc_mal.dcolor AS cdc_mal.color;
CREATE TABLE cdc_mal.loot (who name, su boolean);
GRANT INSERT ON cdc_mal.loot TO PUBLIC;
GRANT USAGE ON SCHEMA cdc_mal TO PUBLIC;
CREATE FUNCTION cdc_mal.color_json(cdc_mal.color) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO cdc_mal.loot VALUES (current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user));
  RAISE NOTICE 'mallory''s cast runs as %', current_user;
  RETURN to_json($1::text);
END $$;
CREATE CAST (cdc_mal.color AS json) WITH FUNCTION cdc_mal.color_json(cdc_mal.color);
CREATE FUNCTION cdc_mal.color_text(cdc_mal.color) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO cdc_mal.loot VALUES (current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user));
  RAISE NOTICE 'mallory''s text cast runs as %', current_user;
  RETURN 'x';
END $$;
CREATE CAST (cdc_mal.color AS text) WITH FUNCTION cdc_mal.color_text(cdc_mal.color);
RESET ROLE;
CREATE TABLE cdc_paint (c cdc_mal.color PRIMARY KEY);
CREATE TABLE cdc_paints (c cdc_mal.color[] PRIMARY KEY);
CREATE TABLE cdc_pairs (p cdc_mal.pair PRIMARY KEY);
CREATE TABLE cdc_dpaint (c cdc_mal.dcolor PRIMARY KEY, n numeric);
SELECT arrw.watch('cdc_paint', 'cdc_paint_chan', include_keys => true);
SELECT arrw.watch('cdc_paints', 'cdc_paint_chan', include_keys => true);
SELECT arrw.watch('cdc_pairs', 'cdc_paint_chan', include_keys => true);
SELECT arrw.watch('cdc_dpaint', 'cdc_paint_chan', include_keys => true);
INSERT INTO cdc_paint VALUES ('red');
UPDATE cdc_paint SET c = 'blue';
DELETE FROM cdc_paint;
INSERT INTO cdc_paints VALUES (ARRAY['red', 'blue']::cdc_mal.color[]);
INSERT INTO cdc_pairs VALUES (ROW('red', 9007199254740993)::cdc_mal.pair);
INSERT INTO cdc_dpaint VALUES ('blue', 1);
SELECT count(*) AS casts_run FROM cdc_mal.loot;
-- How each key column type is rendered (the expression arrw.notify_changes
-- evaluates per row), and the key values it gives. Built-in scalars keep
-- to_jsonb (numbers, booleans, strings); int8 and numeric, arrays (an int8
-- inside one was a JSON number), composites, enums and arrw's types are their
-- text, as in the slot feed.
CREATE TYPE cdc_range AS RANGE (subtype = int8);
CREATE FUNCTION pg_temp.key_of(typ regtype, val text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	e text := arrw._watch_key_expr('r.v', typ);
	k jsonb;
BEGIN
	IF e IS NULL THEN
		RETURN NULL;
	END IF;
	EXECUTE format('SELECT %s FROM (SELECT %L::%s AS v) AS r', e, val, typ) INTO k;
	RETURN k;
END $$;
SELECT t AS type, pg_temp.key_of(t::regtype, v) AS key
  FROM (VALUES ('int4', '7'), ('int2', '-3'), ('bool', 'true'), ('text', 'a"b'),
               ('float8', '0.5'), ('uuid', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
               ('date', '2024-01-02'), ('int8', '9007199254740993'), ('numeric', '1.50'),
               ('int8[]', '{9007199254740993}'), ('int4[]', '{1,2}'), ('text[]', '{a,"b c"}'),
               ('numeric[]', '{1.5}'), ('int4range', '[1,5)'), ('cdc_range', '[9007199254740993,9007199254740994)'),
               ('cdc_mal.color', 'red'), ('cdc_mal.color[]', '{red,blue}'), ('cdc_mal.dcolor', 'blue'),
               ('cdc_mal.pair', '(red,9007199254740993)'), ('vector', '[1,2,3]'), ('halfvec[]', '{"[1,2]"}'),
               ('bytea', '\x41ff'), ('oid', '42')) AS x(t, v);
-- bytea in hex and oid as a number, as the slot feed sends them: the text of
-- a bytea followed the writer's bytea_output, an oid was a string.
SET bytea_output = 'escape';
SELECT pg_temp.key_of('bytea', '\x41ff') AS bytea_key_under_escape_output;
RESET bytea_output;
-- The same in a payload, end to end (psql prints notifications with the
-- sender's PID, hence a second session, as the same role, and sed).
CREATE TABLE cdc_k8 (k int8[], c cdc_mal.color, PRIMARY KEY (k, c));
SELECT arrw.watch('cdc_k8', 'cdc_k8_chan', include_keys => true);
\setenv PGDATABASE :DBNAME
\! psql -X -q -c 'LISTEN cdc_k8_chan' -c "INSERT INTO cdc_k8 VALUES (ARRAY[9007199254740993], 'red')" | sed 's/PID [0-9]*/PID N/'
SELECT count(*) AS casts_run FROM cdc_mal.loot;
DROP TABLE cdc_k8;
-- Keys do not depend on the writer's session settings: at extra_float_digits
-- -15, 1/3, 0.1 + 0.2 and 0.3 were all sent as 0.3 (three rows, one key), and
-- a date inside an array followed the writer's DateStyle (01-02-2024).
CREATE TABLE cdc_kf (k float8, d date[], PRIMARY KEY (k, d));
SELECT arrw.watch('cdc_kf', 'cdc_kf_chan', include_keys => true);
\! PGOPTIONS='-c extra_float_digits=-15 -c datestyle=SQL,DMY' psql -X -q -c 'LISTEN cdc_kf_chan' -c "INSERT INTO cdc_kf VALUES (1::float8 / 3, '{2024-01-02}'), (0.1::float8 + 0.2, '{2024-01-02}'), (0.3, '{2024-01-02}')" | sed 's/PID [0-9]*/PID N/'
DROP TABLE cdc_kf;
-- And standard_conforming_strings: with it off, a bytea key went out as
-- "x0102" (the literal '\x' lost its backslash), and arrw.watches, which
-- reads the triggers' arguments with a '\x00' literal, failed with 22021.
CREATE TABLE cdc_kb (k bytea PRIMARY KEY);
SELECT arrw.watch('cdc_kb', 'cdc_kb_chan', include_keys => true);
\! PGOPTIONS='-c standard_conforming_strings=off' psql -X -q -c 'LISTEN cdc_kb_chan' -c "INSERT INTO cdc_kb VALUES (decode('0102', 'hex'))" | sed 's/PID [0-9]*/PID N/'
SET standard_conforming_strings = off;
SELECT "table", channel, keys FROM arrw.watches WHERE "table" = 'cdc_kb'::regclass;
RESET standard_conforming_strings;
DROP TABLE cdc_kb;
-- A timestamptz key followed the writer's TimeZone (-07:00 here: pg_regress's PGTZ),
-- a bytea inside an array its bytea_output: UTC and hex whatever they are.
CREATE TABLE cdc_kt (t timestamptz, b bytea[], PRIMARY KEY (t, b));
SELECT arrw.watch('cdc_kt', 'cdc_kt_chan', include_keys => true);
\! PGOPTIONS='-c TimeZone=Asia/Kathmandu -c bytea_output=escape' psql -X -q -c 'LISTEN cdc_kt_chan' -c "INSERT INTO cdc_kt VALUES ('2024-06-01 00:00:00+00', ARRAY[decode('0102', 'hex')])" | sed 's/PID [0-9]*/PID N/'
DROP TABLE cdc_kt;
-- A base type whose output function is neither PostgreSQL's nor arrw's would
-- run its creator's code: such keys are left out (no "keys" in the payload).
CREATE TYPE cdc_opaque;
CREATE FUNCTION cdc_opaque_in(cstring) RETURNS cdc_opaque LANGUAGE internal IMMUTABLE STRICT AS 'textin';
CREATE FUNCTION cdc_opaque_out(cdc_opaque) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT AS 'textout';
CREATE TYPE cdc_opaque (INPUT = cdc_opaque_in, OUTPUT = cdc_opaque_out, LIKE = text);
CREATE TYPE cdc_opaque_pair AS (a int, b cdc_opaque);
CREATE DOMAIN cdc_opaque_d AS cdc_opaque[];
SELECT t AS type, arrw._watch_key_expr('r.v', t::regtype) AS expr
  FROM unnest(ARRAY['int4', 'int8', 'cdc_opaque', 'cdc_opaque[]', 'cdc_opaque_pair',
                    'cdc_opaque_d', 'cdc_mal.pair[]']) AS t;
DROP TYPE cdc_opaque CASCADE;
DROP TYPE cdc_opaque_pair;
DROP TABLE cdc_paint, cdc_paints, cdc_pairs, cdc_dpaint;
DROP TYPE cdc_range;
DROP SCHEMA cdc_mal CASCADE;
DROP ROLE cdc_regress_mallory;

-- Every function of the change channels pins its search_path (the list of
-- unpinned ones stays empty) and which of them run with their owner's rights.
SELECT p.oid::regprocedure AS function, p.prosecdef AS security_definer,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute,
       p.proconfig
  FROM pg_proc p
 WHERE p.pronamespace = 'arrw'::regnamespace
   AND p.proname IN ('emit_event', 'job_channel', 'notify_changes', 'watch', 'unwatch',
                     '_watch_check', '_watch_channel', '_watch_keys', '_watch_drop', '_watch_key_expr')
 ORDER BY p.proname;

DROP ROLE cdc_regress_nobody;

-- A channel name is read as PostgreSQL's scanner reads an identifier: any
-- non-ASCII character counts as a letter, whatever the database's LC_CTYPE
-- ('ch€' was refused, and 'café' only under a UTF-8 LC_CTYPE).
CREATE TABLE cdc_chan1 (id int PRIMARY KEY);
CREATE TABLE cdc_chan2 (id int PRIMARY KEY);
SELECT arrw.watch('cdc_chan1', 'ch€');
SELECT arrw.watch('cdc_chan2', 'café_2$');
\set VERBOSITY sqlstate
SELECT arrw.watch('cdc_chan1', '1abc');
SELECT arrw.watch('cdc_chan1', 'a-b');
SELECT arrw.watch('cdc_chan1', '');
\set VERBOSITY default
DROP TABLE cdc_chan1, cdc_chan2;
