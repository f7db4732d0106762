-- Background jobs: arrw.jobs, arrw.submit_job, ... (see src/jobs/ and docs/jobs.md).

GRANT USAGE ON SCHEMA arrw TO PUBLIC;

-- The queue of this database. Written only by arrw's functions and workers; each
-- role reads its own rows (row-level security), superusers all of them.
CREATE TABLE arrw.job (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	kind text NOT NULL CHECK (kind IN ('index_rebuild', 'index_optimize', 'bulk_import',
	                                   'bulk_export', 'batch_delete', 'batch_update')),
	args jsonb NOT NULL,
	state text NOT NULL DEFAULT 'queued'
		CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
	progress double precision NOT NULL DEFAULT 0,
	attempts integer NOT NULL DEFAULT 0,
	max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 100),
	error text,
	worker_pid integer,
	owner regrole NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	started_at timestamptz,
	finished_at timestamptz,
	-- What the job produced (rows imported, index statistics, ...).
	result jsonb,
	-- Internal: the submitter's search_path, the resume point, the retry time and
	-- a pending cancellation.
	search_path text NOT NULL DEFAULT '',
	checkpoint jsonb,
	run_after timestamptz NOT NULL DEFAULT now(),
	cancel_requested boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE arrw.job IS 'Background jobs of this database (use the view arrw.jobs)';
CREATE INDEX job_queue_idx ON arrw.job (run_after, id) WHERE state = 'queued';
CREATE INDEX job_running_idx ON arrw.job (id) WHERE state = 'running';

ALTER TABLE arrw.job ENABLE ROW LEVEL SECURITY;
-- A role sees the jobs of the roles whose privileges it has (its own, and those of
-- roles it is a member of), as pg_stat_activity does.
CREATE POLICY job_visible_to_owner ON arrw.job FOR SELECT
	USING (CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) owner)
	            THEN pg_catalog.pg_has_role(owner, 'USAGE') ELSE false END);
REVOKE ALL ON arrw.job FROM PUBLIC;
GRANT SELECT ON arrw.job TO PUBLIC;

CREATE VIEW arrw.jobs WITH (security_invoker = true) AS
	SELECT id, kind, args, state, progress, attempts, max_attempts, error, worker_pid, owner,
	       created_at, started_at, finished_at, result
	FROM arrw.job;
COMMENT ON VIEW arrw.jobs IS 'Background jobs: one row per job the current role may see';
GRANT SELECT ON arrw.jobs TO PUBLIC;

CREATE FUNCTION arrw.submit_job(kind text, args jsonb DEFAULT '{}', max_attempts integer DEFAULT 3)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'arrw_submit_job' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION arrw.submit_job(text, jsonb, integer) IS
	'Queue a background job (index_rebuild, index_optimize, bulk_import, bulk_export, batch_delete, batch_update); returns its id';

CREATE FUNCTION arrw.cancel_job(id bigint) RETURNS boolean
	AS 'MODULE_PATHNAME', 'arrw_cancel_job' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION arrw.cancel_job(bigint) IS
	'Cancel a queued or running job; true if it was queued or running';

CREATE FUNCTION arrw.wait_job(id bigint, timeout interval DEFAULT NULL) RETURNS text
	AS 'MODULE_PATHNAME', 'arrw_wait_job' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION arrw.wait_job(bigint, interval) IS
	'Wait until a job ends (or the timeout passes) and return its state';
