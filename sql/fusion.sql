-- Fusion of several rankings of one table's rows: nearest-neighbour searches on
-- its vector columns (each served by that column's index) and full-text rank on
-- a tsvector or text column. See docs/multivector.md.
--
-- arrw.fused_search_sql builds the query, arrw.fused_search runs it. Both are
-- SECURITY INVOKER (the default): the query runs with the caller's privileges and
-- row-level security, and `filter` is the caller's own SQL. search_path is pinned,
-- so operators and types are resolved through the columns' own schemas.

-- How many rows an input reads: its "depth", else max(10 k, 100).
CREATE FUNCTION arrw._fusion_depth(inp jsonb, k integer) RETURNS integer
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce((inp->>'depth')::integer, greatest(10 * k, 100)) $$;

CREATE FUNCTION arrw.fused_search_sql(
	tbl regclass, id_column name, inputs jsonb,
	k integer DEFAULT 10, method text DEFAULT 'rrf', filter text DEFAULT NULL,
	rrf_k integer DEFAULT 60
) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
-- Weights are written into the query as text: shortest exact form, whatever
-- the caller's extra_float_digits.
SET extra_float_digits = 1
AS $$
DECLARE
	inp jsonb;
	i integer := 0;
	col name;
	typ oid;
	typname_ text;
	typschema text;
	typfmt text;
	op text;
	depth integer;
	weight float8;
	q text;
	cfg text;
	parts text[] := '{}';
	scores text[] := '{}';
	ranks text[] := '{}';
	keys text[] := '{}';
	key text;
	idexpr text;
	where_ text := '';
BEGIN
	IF tbl IS NULL OR id_column IS NULL THEN
		RAISE EXCEPTION 'the table and its id column must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF k IS NULL OR k < 1 OR k > 100000 THEN
		RAISE EXCEPTION 'k must be between 1 and 100000, not %', k USING ERRCODE = '22023';
	END IF;
	IF method IS NULL OR method NOT IN ('rrf', 'weighted') THEN
		RAISE EXCEPTION 'method must be ''rrf'' or ''weighted'', not %', coalesce(quote_literal(method), 'NULL')
			USING ERRCODE = '22023';
	END IF;
	IF rrf_k IS NULL OR rrf_k < 0 THEN
		RAISE EXCEPTION 'rrf_k must be at least 0' USING ERRCODE = '22023';
	END IF;
	IF inputs IS NULL OR jsonb_typeof(inputs) <> 'array' OR jsonb_array_length(inputs) = 0 THEN
		RAISE EXCEPTION 'inputs must be a non-empty JSON array of {"column": ..., "query": ...} objects'
			USING ERRCODE = '22023';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = tbl AND attname = id_column
	               AND attnum > 0 AND NOT attisdropped) THEN
		RAISE EXCEPTION 'column "%" of % does not exist', id_column, tbl USING ERRCODE = '42703';
	END IF;
	IF filter IS NOT NULL THEN
		where_ := format(' WHERE (%s)', filter);
	END IF;
	idexpr := format('t.%I', id_column);
	FOR inp IN SELECT value FROM jsonb_array_elements(inputs) LOOP
		i := i + 1;
		IF jsonb_typeof(inp) <> 'object' OR NOT inp ? 'column' OR NOT inp ? 'query' THEN
			RAISE EXCEPTION 'input % must be an object with "column" and "query"', i USING ERRCODE = '22023';
		END IF;
		IF jsonb_typeof(inp->'query') = 'null' OR jsonb_typeof(inp->'column') = 'null' THEN
			RAISE EXCEPTION 'input % has a null "column" or "query"', i USING ERRCODE = '22004';
		END IF;
		col := inp->>'column';
		q := inp->>'query';
		weight := coalesce((inp->>'weight')::float8, 1.0);
		IF weight < 0 OR weight = 'NaN'::float8 OR weight = 'Infinity'::float8 THEN
			RAISE EXCEPTION 'input % has weight %, weights must be finite and at least 0', i, weight
				USING ERRCODE = '22023';
		END IF;
		depth := arrw._fusion_depth(inp, k);
		IF depth < k OR depth > 1000000 THEN
			RAISE EXCEPTION 'input % has depth %, it must be between k (%) and 1000000', i, depth, k
				USING ERRCODE = '22023';
		END IF;
		SELECT a.atttypid, t.typname, n.nspname, format_type(a.atttypid, NULL)
		  INTO typ, typname_, typschema, typfmt
		  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace n ON n.oid = t.typnamespace
		 WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'column "%" of % does not exist', col, tbl USING ERRCODE = '42703';
		END IF;
		IF typname_ IN ('vector', 'halfvec') THEN
			op := coalesce(inp->>'op', '<=>');
			IF op NOT IN ('<->', '<#>', '<=>', '<+>') THEN
				RAISE EXCEPTION 'input % has operator %, expected <->, <#>, <=> or <+>', i, op
					USING ERRCODE = '22023';
			END IF;
			-- Distance d, rank by d and then id (rows at one distance, such as rows
			-- sharing a vector, get ranks that do not depend on the plan); weighted
			-- fusion scores 1 - (d - lo) / (hi - lo), lo and hi the least and
			-- greatest finite d: a NaN distance (cosine of a zero vector) or an
			-- infinite one would make every row's score NaN; they score 0
			-- (-Infinity, nearer than any, 1).
			parts := parts || format(
				'i%s AS (SELECT id, r, CASE WHEN d = ''-Infinity'' THEN 1 '
				'WHEN NOT d < ''Infinity'' THEN 0 WHEN hi > lo THEN 1 - (d - lo) / (hi - lo) '
				'WHEN d IS NOT NULL THEN 1 ELSE 0 END AS s '
				'FROM (SELECT t.id_ AS id, d, row_number() OVER (ORDER BY d, t.id_) AS r, '
				'min(d) FILTER (WHERE d > ''-Infinity'' AND d < ''Infinity'') OVER () AS lo, '
				'max(d) FILTER (WHERE d > ''-Infinity'' AND d < ''Infinity'') OVER () AS hi '
				'FROM (SELECT %s AS id_, t.%I OPERATOR(%I.%s) %L::%s AS d FROM %s t%s '
				'ORDER BY t.%I OPERATOR(%I.%s) %L::%s LIMIT %s) t) t)',
				i, idexpr, col, typschema, op, q, typfmt, tbl, where_,
				col, typschema, op, q, typfmt, depth);
		ELSIF typname_ IN ('tsvector', 'text', 'varchar') THEN
			cfg := coalesce(inp->>'config', 'english');
			-- Full-text: rows matching websearch_to_tsquery(config, query), ranked
			-- by ts_rank, then id; weighted fusion scores rank / best rank.
			parts := parts || format(
				'i%s AS (SELECT %s AS id, row_number() OVER (ORDER BY d DESC, t.id_) AS r, '
				'CASE WHEN max(d) OVER () > 0 THEN d / max(d) OVER () ELSE 0 END AS s '
				'FROM (SELECT %s AS id_, ts_rank(%s, q) AS d FROM %s t, '
				'websearch_to_tsquery(%L::regconfig, %L) q WHERE %s @@ q%s '
				'ORDER BY 2 DESC, 1 LIMIT %s) t)',
				i, 't.id_', idexpr,
				CASE WHEN typname_ = 'tsvector' THEN format('t.%I', col)
				     ELSE format('to_tsvector(%L::regconfig, t.%I)', cfg, col) END,
				tbl, cfg, q,
				CASE WHEN typname_ = 'tsvector' THEN format('t.%I', col)
				     ELSE format('to_tsvector(%L::regconfig, t.%I)', cfg, col) END,
				CASE WHEN filter IS NULL THEN '' ELSE format(' AND (%s)', filter) END,
				depth);
		ELSE
			RAISE EXCEPTION 'column "%" is of type %, fusion takes vector, halfvec, tsvector or text columns',
				col, typfmt USING ERRCODE = '42804';
		END IF;
		scores := scores || CASE method
			WHEN 'rrf' THEN format('coalesce(%s::float8 / (%s + i%s.r), 0)', weight, rrf_k, i)
			ELSE format('coalesce(%s::float8 * i%s.s, 0)', weight, i) END;
		-- ranks is keyed by column; a column that an earlier input already
		-- used is keyed column#position, so no input's rank is lost.
		key := CASE WHEN col = ANY (keys) THEN format('%s#%s', col, i) ELSE col END;
		keys := keys || key;
		ranks := ranks || format('%L, i%s.r', key, i);
	END LOOP;
	RETURN format(
		'WITH %s, ids AS (SELECT id FROM (%s) u GROUP BY id) '
		'SELECT ids.id::text AS id, (%s)::float8 AS score, jsonb_strip_nulls(jsonb_build_object(%s)) AS ranks '
		'FROM ids %s ORDER BY score DESC, ids.id LIMIT %s',
		array_to_string(parts, ', '),
		(SELECT string_agg(format('SELECT id FROM i%s', n), ' UNION ALL ') FROM generate_series(1, i) n),
		array_to_string(scores, ' + '),
		array_to_string(ranks, ', '),
		(SELECT string_agg(format('LEFT JOIN i%s ON i%s.id = ids.id', n, n), ' ') FROM generate_series(1, i) n),
		k);
END
$$;
COMMENT ON FUNCTION arrw.fused_search_sql(regclass, name, jsonb, integer, text, text, integer) IS
	'the SQL arrw.fused_search runs (EXPLAIN it to see each input''s plan)';

CREATE FUNCTION arrw.fused_search(
	tbl regclass, id_column name, inputs jsonb,
	k integer DEFAULT 10, method text DEFAULT 'rrf', filter text DEFAULT NULL,
	rrf_k integer DEFAULT 60
) RETURNS TABLE (id text, score float8, ranks jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	deepest integer;
	scaled boolean := false;
BEGIN
	-- Each vector input reads its best `depth` rows, far deeper than the LIMIT
	-- 10 an index's default probes are tuned for, and a fused rank depends on
	-- all of them: unless the caller set ivfpq.probes or ivfpq.probes_scale,
	-- the inputs' scans probe sqrt(depth / 25) times their index's default
	-- lists (2x for the default depth 100), for this query only.
	-- (Before arrw's library is loaded in this backend the settings do not
	-- exist yet: NULL counts as unset, and set_config leaves a placeholder the
	-- library takes over when the scan loads it.)
	IF coalesce(current_setting('ivfpq.probes', true), '0') = '0'
	   AND coalesce(current_setting('ivfpq.probes_scale', true), '1') = '1' THEN
		SELECT max(arrw._fusion_depth(v, k)) INTO deepest
		  FROM jsonb_array_elements(CASE WHEN jsonb_typeof(inputs) = 'array' THEN inputs ELSE '[]' END) v;
		IF deepest > 25 THEN
			PERFORM set_config('ivfpq.probes_scale', least(sqrt(deepest / 25.0), 100)::text, true);
			scaled := true;
		END IF;
	END IF;
	RETURN QUERY EXECUTE arrw.fused_search_sql(tbl, id_column, inputs, k, method, filter, rrf_k);
	IF scaled THEN
		PERFORM set_config('ivfpq.probes_scale', '1', true);
	END IF;
END
$$;
COMMENT ON FUNCTION arrw.fused_search(regclass, name, jsonb, integer, text, text, integer) IS
	'top k rows of a table by a fusion (reciprocal rank or weighted) of nearest-neighbour searches on its vector columns and full-text rank on text columns';
