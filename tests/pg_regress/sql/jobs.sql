-- Background jobs: errors of the SQL functions' arguments, and wait_job's
-- timeout. Jobs at work (workers, cancel, crashes, roles) are tested in
-- tests/jobs.rs.

CREATE TABLE jobs_t (id int, body text);

-- wait_job's timeout: a negative one is an error before anything else is
-- looked at; a timeout too long for the clock waits like NULL (no limit).
\set VERBOSITY sqlstate
SELECT arrw.wait_job(NULL);
SELECT arrw.wait_job(0, '-1 second');
SELECT arrw.wait_job(0, '1 day -25 hours');
SELECT arrw.wait_job(0, '-2 months 59 days');
SELECT arrw.wait_job(0, '1 second');
-- encoding names are checked at submit, as COPY would check them.
SELECT arrw.submit_job('bulk_import', '{"table": "jobs_t", "path": "/x", "encoding": "klingon"}');
SELECT arrw.submit_job('bulk_export', '{"query": "SELECT 1", "path": "/x", "encoding": "utf-9"}');
SELECT arrw.submit_job('bulk_import', '{"table": "jobs_t", "path": "/x", "encoding": ""}');
\set VERBOSITY default
SELECT arrw.wait_job(NULL);
SELECT arrw.wait_job(0, '-1 second');
SELECT arrw.wait_job(0, '1 day -25 hours');
SELECT arrw.wait_job(0, '-2 months 59 days');
SELECT arrw.wait_job(0, '1 second');
SELECT arrw.submit_job('bulk_import', '{"table": "jobs_t", "path": "/x", "encoding": "klingon"}');
SELECT arrw.submit_job('bulk_export', '{"query": "SELECT 1", "path": "/x", "encoding": "utf-9"}');
SELECT arrw.submit_job('bulk_import', '{"table": "jobs_t", "path": "/x", "encoding": ""}');
-- Accepted spellings of encodings.
SELECT arrw.cancel_job(arrw.submit_job('bulk_import', '{"table": "jobs_t", "path": "/x", "encoding": "Shift_JIS"}'));
SELECT arrw.cancel_job(arrw.submit_job('bulk_export', '{"query": "SELECT 1", "path": "/x", "encoding": "latin1"}'));

-- Timeouts whose microseconds do not fit in 64 bits wait (the job cannot end:
-- it waits for an advisory lock this session holds), until the statement
-- timeout.
INSERT INTO jobs_t VALUES (1, 'a');
SELECT pg_advisory_lock(4242);
SELECT arrw.submit_job('batch_update', '{"table": "jobs_t", "set": "body = body || pg_advisory_xact_lock(4242)::text || ''b''"}') AS wait_id \gset
SET statement_timeout = '1s';
SELECT arrw.wait_job(:wait_id, '200000000 days');
SELECT arrw.wait_job(:wait_id, '2147483647 months');
SELECT arrw.wait_job(:wait_id, '2147483647 months 2147483647 days 2562047788 hours');
RESET statement_timeout;
SELECT pg_advisory_unlock(4242);
SELECT arrw.wait_job(:wait_id, '5 minutes');
SELECT body FROM jobs_t;

DROP TABLE jobs_t;
