-- ivfpq operator classes for pgvector's `vector` and `halfvec`, so that
--   CREATE INDEX ON items USING ivfpq (embedding vector_l2_ops);
-- works on a pgvector column, with the same `ORDER BY embedding <-> $1 LIMIT k`
-- queries and no data moved.
--
-- Why no code is needed: ivfpq never calls an operator class's functions. It
-- takes the metric from the name of support function 1 (pgvector names its
-- distance functions as arrw does), and it reads every datum (table rows and
-- the ORDER BY argument) as the varlena pgvector and arrw share: int16 dim,
-- int16 unused, then float4[dim] (vector) or IEEE half[dim] (halfvec). tests/pgvector.rs compares the answers with an arrw
-- column holding the same data.
--
-- The classes are created in this extension's schema (the one CREATE EXTENSION
-- chooses; pgvector's own schema is the natural one) and name pgvector's type,
-- operators and functions by pgvector's schema, which PostgreSQL 15 scripts can
-- only learn from the catalog: hence the dynamic SQL.

\echo Use "CREATE EXTENSION arrw_pgvector" to load this file. \quit

DO $script$
DECLARE
	vec text;
	arrw_schema text;
	cls record;
BEGIN
	SELECT quote_ident(n.nspname) INTO vec
	FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
	WHERE e.extname = 'vector';
	SELECT quote_ident(n.nspname) INTO arrw_schema
	FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
	WHERE e.extname = 'arrw';
	IF vec = arrw_schema THEN
		-- Cannot happen (two types named vector in one schema), but the classes
		-- below would then be arrw's own.
		RAISE EXCEPTION 'pgvector and arrw are in the same schema %', vec
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	-- The layout ivfpq relies on: variable-length, int-aligned types.
	FOR cls IN SELECT * FROM (VALUES ('vector'), ('halfvec')) AS t(typ) LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type
		               WHERE oid = pg_catalog.to_regtype(vec || '.' || cls.typ)
		                 AND typlen = -1 AND typalign = 'i') THEN
			RAISE EXCEPTION 'pgvector''s type %.% is not the varlena ivfpq reads', vec, cls.typ
				USING ERRCODE = 'feature_not_supported';
		END IF;
	END LOOP;
	FOR cls IN SELECT * FROM (VALUES
		('vector', 'vector_l2_ops', 'DEFAULT', '<->', 'vector_l2_squared_distance'),
		('vector', 'vector_ip_ops', '', '<#>', 'vector_negative_inner_product'),
		('vector', 'vector_cosine_ops', '', '<=>', 'cosine_distance'),
		('halfvec', 'halfvec_l2_ops', 'DEFAULT', '<->', 'halfvec_l2_squared_distance'),
		('halfvec', 'halfvec_ip_ops', '', '<#>', 'halfvec_negative_inner_product'),
		('halfvec', 'halfvec_cosine_ops', '', '<=>', 'cosine_distance')) AS c(typ, name, dflt, op, fn)
	LOOP
		EXECUTE format(
			'CREATE OPERATOR CLASS @extschema@.%I %s FOR TYPE %s.%I USING ivfpq AS '
			'OPERATOR 1 %s.%s (%s.%I, %s.%I) FOR ORDER BY pg_catalog.float_ops, '
			'FUNCTION 1 %s.%I(%s.%I, %s.%I)',
			cls.name, cls.dflt, vec, cls.typ, vec, cls.op, vec, cls.typ, vec, cls.typ,
			vec, cls.fn, vec, cls.typ, vec, cls.typ);
		EXECUTE format('COMMENT ON OPERATOR CLASS @extschema@.%I USING ivfpq IS %L', cls.name,
			'ivfpq on pgvector''s ' || cls.typ || ', ' || cls.op || ' (arrw_pgvector)');
	END LOOP;
END
$script$;
