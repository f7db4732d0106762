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

-- Every function of the change channels pins its search_path (the list of
-- unpinned ones stays empty) and which of them run with their owner's rights.
SELECT p.oid::regprocedure AS function, p.prosecdef AS security_definer,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute,
       p.proconfig
  FROM pg_proc p
 WHERE p.pronamespace = 'arrw'::regnamespace
   AND p.proname IN ('emit_event', 'job_channel', 'notify_changes', 'watch', 'unwatch',
                     '_watch_check', '_watch_channel', '_watch_keys', '_watch_drop')
 ORDER BY p.proname;

DROP ROLE cdc_regress_nobody;
