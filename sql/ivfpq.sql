-- The ivfpq index access method and its operator classes. The class names are
-- pgvector's, so moving an index from ivfflat is a change of `USING`.

CREATE FUNCTION ivfpqhandler(internal) RETURNS index_am_handler
	AS 'MODULE_PATHNAME', 'arrw_ivfpq_handler' LANGUAGE C;

CREATE ACCESS METHOD ivfpq TYPE INDEX HANDLER ivfpqhandler;
COMMENT ON ACCESS METHOD ivfpq IS 'IVF-PQ index: k-means inverted lists, product-quantized codes, exact re-ranking';

-- Support function 1 names the distance the index orders by.
CREATE OPERATOR CLASS vector_l2_ops
	DEFAULT FOR TYPE vector USING ivfpq AS
	OPERATOR 1 <-> (vector, vector) FOR ORDER BY float_ops,
	FUNCTION 1 vector_l2_squared_distance(vector, vector);

CREATE OPERATOR CLASS vector_ip_ops
	FOR TYPE vector USING ivfpq AS
	OPERATOR 1 <#> (vector, vector) FOR ORDER BY float_ops,
	FUNCTION 1 vector_negative_inner_product(vector, vector);

CREATE OPERATOR CLASS vector_cosine_ops
	FOR TYPE vector USING ivfpq AS
	OPERATOR 1 <=> (vector, vector) FOR ORDER BY float_ops,
	FUNCTION 1 cosine_distance(vector, vector);

-- Introspection and checking. Both answer only to users who may SELECT from
-- the index's table (ERROR 42501 otherwise): row counts and list sizes are
-- facts about the table's rows.

CREATE FUNCTION arrw._ivfpq_info_json(regclass) RETURNS text
	AS 'MODULE_PATHNAME', 'arrw_ivfpq_info_json' LANGUAGE C STABLE STRICT;

CREATE FUNCTION arrw.ivfpq_info(index regclass,
	OUT lists integer, OUT rows bigint, OUT rows_min bigint, OUT rows_avg float8,
	OUT rows_max bigint, OUT code_bytes integer, OUT pages bigint, OUT built_rows bigint,
	OUT rows_since_build bigint, OUT dim integer, OUT m integer, OUT nbits integer,
	OUT metric text, OUT trained boolean)
	LANGUAGE sql STABLE STRICT
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT (j->>'lists')::int, (j->>'rows')::bigint, (j->>'rows_min')::bigint,
	       (j->>'rows_avg')::float8, (j->>'rows_max')::bigint, (j->>'code_bytes')::int,
	       (j->>'pages')::bigint, (j->>'built_rows')::bigint, (j->>'rows_since_build')::bigint,
	       (j->>'dim')::int, (j->>'m')::int, (j->>'nbits')::int, j->>'metric', (j->>'trained')::bool
	FROM (SELECT arrw._ivfpq_info_json(index)::jsonb AS j) s
$$;
COMMENT ON FUNCTION arrw.ivfpq_info(regclass) IS 'lists, rows per list, code size, pages and rows inserted since the build of an ivfpq index';

-- What a scan probes unless ivfpq.probes says otherwise (before ivfpq.probes_scale).
CREATE FUNCTION arrw.ivfpq_default_probes(index regclass,
	OUT probes integer, OUT deep_probes integer, OUT source text)
	LANGUAGE sql STABLE STRICT
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT nullif((j->>'index_probes')::int, 0), nullif((j->>'index_deep_probes')::int, 0), j->>'probes_source'
	FROM (SELECT arrw._ivfpq_info_json(index)::jsonb AS j) s
$$;
COMMENT ON FUNCTION arrw.ivfpq_default_probes(regclass) IS 'lists an ivfpq index''s scans probe when no setting says otherwise (deep_probes: past their first 10 rows; NULL when they do not go deeper) and where that comes from: its probes option, its build''s measurement, the fixed default, or untrained (built on an empty table: every row is ranked exactly, NULL probes)';

CREATE FUNCTION arrw.ivfpq_check(index regclass) RETURNS boolean
	AS 'MODULE_PATHNAME', 'arrw_ivfpq_check' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION arrw.ivfpq_check(regclass) IS 'walks every page of an ivfpq index and raises an ERROR on any broken invariant';

-- Scan profiling (SET ivfpq.profile = on): this backend's own counters of
-- where its ivfpq scans spent their time; bench/profile reads them.
CREATE FUNCTION arrw._ivfpq_profile_json() RETURNS text
	AS 'MODULE_PATHNAME', 'arrw_ivfpq_profile' LANGUAGE C VOLATILE;
CREATE FUNCTION arrw.ivfpq_profile() RETURNS jsonb
	LANGUAGE sql VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS $$ SELECT arrw._ivfpq_profile_json()::jsonb $$;
COMMENT ON FUNCTION arrw.ivfpq_profile() IS 'seconds per phase and event counts of this backend''s ivfpq scans run with ivfpq.profile = on';
CREATE FUNCTION arrw.ivfpq_profile_reset() RETURNS void
	AS 'MODULE_PATHNAME', 'arrw_ivfpq_profile_reset' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION arrw.ivfpq_profile_reset() IS 'clears this backend''s ivfpq scan profile';
