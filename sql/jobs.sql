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
	-- Internal: the submitter's search_path, the resume point and the retry time.
	search_path text NOT NULL DEFAULT '',
	checkpoint jsonb,
	run_after timestamptz NOT NULL DEFAULT now(),
	-- The SQLSTATE of error (NULL when error is not an SQL error's message:
	-- the worker was lost on the job's last attempt).
	error_sqlstate text
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

-- Cancellation requests (arrw.cancel_job). Kept apart from arrw.job so that a
-- request never locks the job's row: the worker updating that row would wait
-- for the requesting transaction to end. No foreign key, for the same reason.
-- announced_kind: the job's kind when this request cancelled a queued job and
-- arrw.cancel_job announced it ("cancelled"), else NULL. The change feed's
-- plugin reads it to recognise that announcement as arrw's ("origin":"arrw"):
-- only arrw (and superusers) can write this table.
CREATE TABLE arrw.job_cancel (
	job_id bigint NOT NULL,
	requested_at timestamptz NOT NULL DEFAULT now(),
	announced_kind text
);
COMMENT ON TABLE arrw.job_cancel IS 'Requests to cancel background jobs (internal; see arrw.jobs)';
CREATE INDEX job_cancel_job_idx ON arrw.job_cancel (job_id);
ALTER TABLE arrw.job_cancel ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_cancel_visible_with_job ON arrw.job_cancel FOR SELECT
	USING (EXISTS (SELECT 1 FROM arrw.job j WHERE j.id OPERATOR(pg_catalog.=) job_id));
REVOKE ALL ON arrw.job_cancel FROM PUBLIC;
GRANT SELECT ON arrw.job_cancel TO PUBLIC;

-- A queued job with a cancellation request is cancelled (a worker records it in
-- arrw.job later); a running one stays running until its worker stops.
CREATE VIEW arrw.jobs WITH (security_invoker = true) AS
	SELECT j.id, j.kind, j.args,
	       CASE WHEN j.state OPERATOR(pg_catalog.=) 'queued' AND c.requested_at IS NOT NULL
	            THEN 'cancelled' ELSE j.state END AS state,
	       j.progress, j.attempts, j.max_attempts, j.error, j.worker_pid, j.owner,
	       j.created_at, j.started_at,
	       CASE WHEN j.state OPERATOR(pg_catalog.=) 'queued' AND c.requested_at IS NOT NULL
	            THEN c.requested_at ELSE j.finished_at END AS finished_at,
	       j.result, j.error_sqlstate
	FROM arrw.job j
	LEFT JOIN LATERAL (SELECT pg_catalog.min(x.requested_at) AS requested_at FROM arrw.job_cancel x
	                   WHERE x.job_id OPERATOR(pg_catalog.=) j.id) c ON true
	-- The policy's rule again, for roles that bypass row-level security
	-- (BYPASSRLS): through this view (and so arrw.cancel_job) they too see only
	-- the jobs of roles whose privileges they have.
	-- A job whose owner was dropped: superusers only.
	WHERE CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) j.owner)
	           THEN pg_catalog.pg_has_role(j.owner, 'USAGE')
	           ELSE (SELECT r.rolsuper FROM pg_catalog.pg_roles r
	                 WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) END;
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
