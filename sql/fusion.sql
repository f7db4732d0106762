-- Fusion of several rankings of one table's rows: nearest-neighbour searches on
-- its vector columns (each served by that column's index) and full-text rank on
-- a tsvector or text column. See docs/multivector.md.
--
-- arrw.fused_search_sql builds the query, arrw.fused_search runs it. Both are
-- SECURITY INVOKER (the default): the query runs with the caller's privileges and
-- row-level security, and `filter` is the caller's own SQL. search_path is pinned
-- here, and the query built does not depend on the search_path it runs with
-- (callers run it themselves, with paths that may hold other roles' schemas): an
-- operator or function named without its schema is looked up through the path,
-- where one that matches the argument types better than pg_catalog's wins (a
-- `/(float8, bigint)` beats pg_catalog's `/(float8, float8)` for `1::float8 / r`).
-- So every operator is written OPERATOR(schema.op), every function and type
-- pg_catalog.name (the columns' own schemas for the vector types and their
-- operators), and every literal has a type; the query's only unqualified names
-- are its own aliases and the caller's filter.

-- How many rows an input reads: its "depth", else max(10 k, 100). Only called
-- on inputs fused_search_sql has checked (k and any "depth" in range).
CREATE FUNCTION arrw._fusion_depth(inp jsonb, k integer) RETURNS integer
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce((inp->>'depth')::integer, greatest(10 * k, 100)) $$;

-- A row's id as fused_search returns it (text): a built-in type's by its cast
-- (_fusion_id_cast), any other's by its output function (_fusion_id_out; see
-- fused_search_sql). With extra_float_digits = 1, so that a float key's text
-- casts back to the same value whatever the caller's setting (hunt-88: at 0,
-- 1/3 came back as 0.333333333333333, which matches no row), and DateStyle,
-- IntervalStyle, TimeZone, bytea_output and quote_all_identifiers pinned as
-- the watch keys pin them (sql/cdc.sql), so that a date, timestamptz or
-- interval key casts back to itself (hunt-104: under German DateStyle
-- 2024-01-02 came back as 02.01.2024, read back as 1 February). Set here, on the
-- k rows returned, and not on the whole query, where the caller's filter keeps
-- the caller's settings (hunt-92).
CREATE FUNCTION arrw._fusion_id_cast(id anyelement) RETURNS text
LANGUAGE sql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
SET datestyle = 'ISO, MDY'
SET intervalstyle = 'postgres'
SET timezone = 'UTC'
SET bytea_output = 'hex'
SET quote_all_identifiers = off
AS $$ SELECT id::pg_catalog.text $$;
CREATE FUNCTION arrw._fusion_id_out(id anyelement) RETURNS text
LANGUAGE sql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
SET datestyle = 'ISO, MDY'
SET intervalstyle = 'postgres'
SET timezone = 'UTC'
SET bytea_output = 'hex'
SET quote_all_identifiers = off
AS $$ SELECT pg_catalog.format('%s', id) $$;

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
-- Its literals ('^\s*$') mean what they say whatever the caller's
-- standard_conforming_strings (off, the filter "s" was taken for a blank one).
SET standard_conforming_strings = on
AS $$
DECLARE
	inp jsonb;
	i integer := 0;
	n integer;
	col name;
	cols text[] := '{}';
	typ oid;
	coltyp oid;
	base oid;
	typname_ text;
	typschema text;
	typfmt text;
	colnum int2;
	op text;
	depth_text text;
	badkey text;
	depth integer;
	weight float8;
	q text;
	cfg text;
	dist text;
	doc text;
	tsq text;
	ranked text;
	score text;
	parts text[] := '{}';
	key text;
	hashes text;
	selects text[] := '{}';
	tblname text;
	where_ text := '';
	id_type oid;
	id_text text;
	dims integer;
	declared integer;
	multi boolean;
BEGIN
	IF tbl IS NULL OR id_column IS NULL THEN
		RAISE EXCEPTION 'the table and its id column must not be NULL' USING ERRCODE = '22004';
	END IF;
	-- A NULL argument is 22004, as a NULL table or id column is (hunt-153).
	IF inputs IS NULL OR k IS NULL OR method IS NULL OR rrf_k IS NULL THEN
		RAISE EXCEPTION '% must not be NULL',
			CASE WHEN inputs IS NULL THEN 'inputs' WHEN k IS NULL THEN 'k'
			     WHEN method IS NULL THEN 'method' ELSE 'rrf_k' END
			USING ERRCODE = '22004';
	END IF;
	IF k < 1 OR k > 100000 THEN
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
	-- The query has a WITH query per input under one UNION ALL, whose
	-- planning takes memory and time that grow with the square of the inputs
	-- (250: 79 MB, 2,000: 1.7 GB and 26 s, past work_mem and any statement
	-- timeout; hunt-140).
	IF jsonb_array_length(inputs) > 128 THEN
		RAISE EXCEPTION 'fusion takes at most 128 inputs, not %', jsonb_array_length(inputs)
			USING ERRCODE = '54000',
			      HINT = 'Fuse fewer inputs per call, or several calls'' results in SQL.';
	END IF;
	-- An OID that names nothing said "column ... of 99999999 does not exist".
	IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = tbl) THEN
		RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid USING ERRCODE = '42P01';
	END IF;
	SELECT a.atttypid INTO id_type FROM pg_attribute a
	 WHERE a.attrelid = tbl AND a.attname = id_column AND a.attnum > 0 AND NOT a.attisdropped;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'column "%" of % does not exist', id_column, tbl USING ERRCODE = '42703';
	END IF;
	-- The id as text: by a built-in type's cast to text (only superusers can
	-- add casts between built-in types), else by the type's output function:
	-- a cast to text of another type could be its owner's function, run with
	-- the caller's rights (format's %s never takes a cast).
	id_text := CASE WHEN id_type < 16384 THEN 'arrw._fusion_id_cast(f.id)'
	                ELSE 'arrw._fusion_id_out(f.id)' END;
	-- The table by its schema too: a temporary table's bare name would be
	-- looked up through the path.
	SELECT format('%I.%I', n.nspname, c.relname) INTO tblname
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
	-- The filter goes on lines of its own, so that a "-- comment" at its end
	-- stops at its line rather than swallowing the rest of the query. An empty
	-- (or blank) filter is no filter.
	IF filter IS NOT NULL AND filter !~ '^\s*$' THEN
		-- One expression, checked alone: the query puts it in parentheses
		-- after each input's own conditions, and a filter that closed them
		-- ('true) OR (true') made every row pass those too, ranking rows
		-- whose vector is NULL and text that matches nothing (hunt-153).
		-- Alone, as a select list, unbalanced parentheses do not parse.
		-- Nothing runs: LIMIT 0 reads no row.
		BEGIN
			EXECUTE format(E'SELECT\n%s\nFROM %s t LIMIT 0', filter, tblname);
		EXCEPTION WHEN syntax_error THEN
			RAISE EXCEPTION 'filter is not one SQL expression: %', SQLERRM
				USING ERRCODE = '42601',
				      HINT = 'The filter is a boolean expression on the table''s columns (alias t), as in a WHERE clause.';
		END;
		where_ := format(E' AND (\n%s\n)', filter);
	END IF;
	FOR inp IN SELECT value FROM jsonb_array_elements(inputs) LOOP
		i := i + 1;
		IF jsonb_typeof(inp) <> 'object' OR NOT inp ? 'column' OR NOT inp ? 'query' THEN
			RAISE EXCEPTION 'input % must be an object with "column" and "query"', i USING ERRCODE = '22023';
		END IF;
		-- A misspelt key ("wieght", "confg") would rank by the default it
		-- meant to change, without a word.
		SELECT min(input_keys.input_key) INTO badkey FROM jsonb_object_keys(inp) AS input_keys(input_key)
		 WHERE input_keys.input_key <> ALL (ARRAY['column', 'query', 'op', 'weight', 'depth', 'config']);
		IF badkey IS NOT NULL THEN
			RAISE EXCEPTION 'input % has an unknown key "%"', i, badkey USING ERRCODE = '22023',
				HINT = 'An input''s keys are column, query, op, weight, depth and config.';
		END IF;
		IF jsonb_typeof(inp->'query') = 'null' OR jsonb_typeof(inp->'column') = 'null' THEN
			RAISE EXCEPTION 'input % has a null "column" or "query"', i USING ERRCODE = '22004';
		END IF;
		col := inp->>'column';
		q := inp->>'query';
		-- A weight of true or {"a": 1} failed its cast with a bare 22P02
		-- that named neither the input nor the key.
		IF jsonb_typeof(inp->'weight') NOT IN ('number', 'string', 'null') THEN
			RAISE EXCEPTION 'input % has weight %, a weight must be a number', i, inp->'weight'
				USING ERRCODE = '22023';
		END IF;
		-- A string that is no number ("abc") or a number past float8's
		-- range (1e400, 1e-400) failed its cast with a bare error too.
		BEGIN
			weight := coalesce((inp->>'weight')::float8, 1.0);
		EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
			RAISE EXCEPTION 'input % has weight %, weights must be numbers between 0 and 1e300',
				i, left((inp->'weight')::text, 40) USING ERRCODE = '22023';
		END;
		-- At most 1e300: the fused score sums weight * score over at most a
		-- few inputs, and weights near float8's limit overflowed that sum
		-- (22003, the whole generated query as its context).
		IF weight < 0 OR weight = 'NaN'::float8 OR weight > 1e300 THEN
			RAISE EXCEPTION 'input % has weight %, weights must be between 0 and 1e300', i, weight
				USING ERRCODE = '22023';
		END IF;
		-- A weight of -0 passes the test above and made every score of its
		-- input -0; adding 0 turns it into 0.
		weight := weight + 0.0;
		-- "depth" is checked as text before it is cast: a value beyond integer
		-- gets this error, not an overflow.
		depth_text := inp->>'depth';
		IF depth_text IS NOT NULL AND depth_text !~ '^[0-9]{1,7}$' THEN
			RAISE EXCEPTION 'input % has depth %, it must be between k (%) and 1000000', i, depth_text, k
				USING ERRCODE = '22023';
		END IF;
		depth := arrw._fusion_depth(inp, k);
		IF depth < k OR depth > 1000000 THEN
			RAISE EXCEPTION 'input % has depth %, it must be between k (%) and 1000000', i, depth, k
				USING ERRCODE = '22023';
		END IF;
		SELECT a.atttypid, t.typname, n.nspname, format_type(a.atttypid, NULL), a.attnum
		  INTO typ, typname_, typschema, typfmt, colnum
		  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace n ON n.oid = t.typnamespace
		 WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'column "%" of % does not exist', col, tbl USING ERRCODE = '42703';
		END IF;
		-- A domain's column is its base type's (to any depth), as for its
		-- ivfpq index and the change feed: it was refused (42804; hunt-98).
		-- The query's literal is cast to the base type, which the column's
		-- values coerce to.
		coltyp := typ;
		-- The dimensions the column declares: its own typmod, or else the
		-- outermost of its domains' (a column of a domain over vector(3) has
		-- none of its own; hunt-145).
		SELECT CASE WHEN a.atttypmod > 0 THEN a.atttypmod END INTO declared
		  FROM pg_attribute a WHERE a.attrelid = tbl AND a.attnum = colnum;
		LOOP
			SELECT t.typbasetype, CASE WHEN t.typtypmod > 0 THEN t.typtypmod END INTO base, dims
			  FROM pg_type t WHERE t.oid = typ AND t.typtype = 'd';
			EXIT WHEN NOT FOUND;
			declared := coalesce(declared, dims);
			typ := base;
			SELECT t.typname, n.nspname INTO typname_, typschema
			  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = typ;
		END LOOP;
		cols := cols || col::text;
		-- Input i is WITH query i<i> (EXPLAIN labels its plan "CTE i<i>"), of
		-- three levels: c, the input's candidates (the table's rows under the
		-- filter: the only level that sees the table's columns, all read
		-- through alias t, so no column name can clash with the query's own
		-- names); v, their ranks r (and what the weighted score needs); and
		-- each candidate's id, rank and score s.
		-- A vector type is arrw's own or pgvector's, known by what created it
		-- (a member of either extension), not by its name: any role can make a
		-- type called vector, with its own <=>, in its own schema, and the
		-- query would run that operator with the caller's rights.
		-- A vector[] column of arrw's vector is a MaxSim input (`@#`, served
		-- by a vector_maxsim_ops index): its query is an array of vectors.
		-- Its element type is told by what created it, as below.
		multi := false;
		IF typname_ = '_vector' THEN
			SELECT t.typname, n.nspname, true INTO typname_, typschema, multi
			  FROM pg_type a JOIN pg_type t ON t.oid = a.typelem
			  JOIN pg_namespace n ON n.oid = t.typnamespace
			 WHERE a.oid = typ AND t.typname = 'vector' AND EXISTS (
				SELECT 1 FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
				 WHERE d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = t.oid
				   AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
				   AND e.extname = 'arrw');
			multi := coalesce(multi, false);
		END IF;
		IF multi THEN
			IF inp->>'config' IS NOT NULL THEN
				RAISE EXCEPTION 'input % is on vector[] column "%": "config" applies to text inputs only', i, col
					USING ERRCODE = '22023';
			END IF;
			IF coalesce(inp->>'op', '@#') <> '@#' THEN
				RAISE EXCEPTION 'input % has operator %, a vector[] input is ranked by @# (MaxSim)', i, inp->>'op'
					USING ERRCODE = '22023';
			END IF;
			-- The query read here (NULL or empty elements, mixed dimensions,
			-- too many vectors: an error naming the input), by its MaxSim
			-- against its own first vector, which checks the whole array at
			-- a cost linear in it (against itself, 158 ms for 2,000 384-d
			-- vectors).
			-- Its vectors' dimensions are checked against the column's
			-- declared ones here too: from inside the generated query the
			-- error named no input (hunt-156).
			BEGIN
				EXECUTE format('SELECT CASE WHEN %1$I.maxsim(x, COALESCE('
				               'x[pg_catalog.array_lower(x, 1):pg_catalog.array_lower(x, 1)], x)) IS NOT NULL '
				               'THEN %1$I.vector_dims(x[pg_catalog.array_lower(x, 1)]) END '
				               'FROM (SELECT %2$L::%1$I.vector[] AS x) s', typschema, q) INTO dims;
			EXCEPTION WHEN data_exception OR syntax_error_or_access_rule_violation OR program_limit_exceeded THEN
				RAISE EXCEPTION 'input %: %', i, SQLERRM USING ERRCODE = SQLSTATE;
			END;
			IF declared IS NOT NULL AND dims IS DISTINCT FROM declared THEN
				RAISE EXCEPTION 'input % has query vectors of % dimensions, column "%" has %', i, dims, col, declared
					USING ERRCODE = '22000';
			END IF;
			dist := format('%s OPERATOR(%I.@#) %L::%I.vector[]',
			               CASE WHEN typ OPERATOR(pg_catalog.=) coltyp THEN format('t.%I', col)
			                    ELSE format('(t.%I)::%I.vector[]', col, typschema) END,
			               typschema, q, typschema);
		END IF;
		IF multi OR typname_ IN ('vector', 'halfvec') AND EXISTS (
			SELECT 1 FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
			 WHERE d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = typ
			   AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
			   AND e.extname IN ('arrw', 'vector')) THEN
		  IF NOT multi THEN
			-- Without "op", the ordering operator of the column's own index
			-- (an ivfpq one first, then any other, oldest first: a valid,
			-- non-partial index whose first key is the column), so that the
			-- input is served by it; with no such index, cosine. Before, it
			-- was always <=>: an input on a column indexed for L2 ranked by
			-- cosine, through a sequential scan and sort.
			-- "config" is the text inputs': on a vector input it changed
			-- nothing, without a word (hunt-140).
			IF inp->>'config' IS NOT NULL THEN
				RAISE EXCEPTION 'input % is on vector column "%": "config" applies to text inputs only', i, col
					USING ERRCODE = '22023';
			END IF;
			-- The query vector read here, so that a bad one is an error
			-- naming its input, not one from inside the whole generated
			-- query (its text, kilobytes, as the error's context; hunt-140);
			-- and of the column's declared dimensions, when it has them.
			BEGIN
				EXECUTE format('SELECT %I.vector_dims(%L::%I.%I)', typschema, q, typschema, typname_) INTO dims;
			EXCEPTION WHEN data_exception OR syntax_error_or_access_rule_violation OR program_limit_exceeded THEN
				RAISE EXCEPTION 'input %: %', i, SQLERRM USING ERRCODE = SQLSTATE;
			END;
			IF declared IS NOT NULL AND dims IS DISTINCT FROM declared THEN
				RAISE EXCEPTION 'input % has a query of % dimensions, column "%" has %', i, dims, col, declared
					USING ERRCODE = '22000';
			END IF;
			op := inp->>'op';
			IF op IS NULL THEN
				SELECT o.oprname INTO op
				  FROM pg_catalog.pg_index x
				  JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
				  JOIN pg_catalog.pg_am am ON am.oid = ic.relam
				  JOIN pg_catalog.pg_opclass oc ON oc.oid = x.indclass[0]
				  JOIN pg_catalog.pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amoppurpose = 'o'
				                            AND ao.amoplefttype = typ AND ao.amoprighttype = typ
				  JOIN pg_catalog.pg_operator o ON o.oid = ao.amopopr
				 WHERE x.indrelid = tbl AND x.indkey[0] = colnum AND x.indisvalid AND x.indpred IS NULL
				   AND o.oprname IN ('<->', '<#>', '<=>', '<+>')
				 ORDER BY am.amname = 'ivfpq' DESC, x.indexrelid
				 LIMIT 1;
				op := coalesce(op, '<=>');
			END IF;
			IF op NOT IN ('<->', '<#>', '<=>', '<+>') THEN
				RAISE EXCEPTION 'input % has operator %, expected <->, <#>, <=> or <+>', i, op
					USING ERRCODE = '22023';
			END IF;
			-- A domain column cast to the base type as well: on it the
			-- operator's exact match would be one declared for the domain,
			-- which any role that can create in the type's schema may add (a
			-- superuser's call ran it; hunt-110). A cast from a domain to its
			-- base type is a relabel, which an index still matches.
			dist := format('%s OPERATOR(%I.%s) %L::%I.%I',
			               CASE WHEN typ OPERATOR(pg_catalog.=) coltyp THEN format('t.%I', col)
			                    ELSE format('(t.%I)::%I.%I', col, typschema, typname_) END,
			               typschema, op, q, typschema, typname_);
		  END IF;
			-- Distance d, rank by d and then id (rows at one distance, such as rows
			-- sharing a vector, get ranks that do not depend on the plan). A row
			-- whose vector is NULL has no distance and no rank (an index scan does
			-- not return it, a sequential scan would sort it last). Weighted
			-- fusion scores 1 - (d - lo) / (hi - lo), lo and hi the least and
			-- greatest finite d: a NaN distance (cosine of a zero vector) or an
			-- infinite one would make every row's score NaN; they score 0
			-- (-Infinity, nearer than any, 1).
			ranked := format(
				E'SELECT c.id, c.d, pg_catalog.row_number() OVER (ORDER BY c.d, c.id) AS r%s\n' ||
				E'    FROM (SELECT t.%I AS id, %s AS d\n' ||
				E'      FROM %s t\n' ||
				E'      WHERE t.%I IS NOT NULL%s\n' ||
				E'      ORDER BY %s\n' ||
				E'      LIMIT %s) c\n' ||
				-- Rows are fused by id: a NULL id is no row (NULL ids were
				-- added up as one). Left out here, after the depth cut, so
				-- the cut stays the index's ORDER BY ... LIMIT.
				-- (num_nonnulls: a composite id with a NULL field is a row,
				-- though IS NOT NULL calls it not; a NULL id is not.)
				E'    WHERE pg_catalog.num_nonnulls(c.id) OPERATOR(pg_catalog.=) 1',
				CASE WHEN method = 'weighted' THEN
					E',\n      pg_catalog.min(c.d) FILTER (WHERE c.d OPERATOR(pg_catalog.>) ''-Infinity''::pg_catalog.float8' ||
					' AND c.d OPERATOR(pg_catalog.<) ''Infinity''::pg_catalog.float8) OVER () AS lo,' ||
					E'\n      pg_catalog.max(c.d) FILTER (WHERE c.d OPERATOR(pg_catalog.>) ''-Infinity''::pg_catalog.float8' ||
					' AND c.d OPERATOR(pg_catalog.<) ''Infinity''::pg_catalog.float8) OVER () AS hi'
				ELSE '' END,
				id_column, dist, tblname, col, where_, dist, depth);
			score := 'CASE WHEN v.d OPERATOR(pg_catalog.=) ''-Infinity''::pg_catalog.float8 THEN 1::pg_catalog.float8'
				' WHEN NOT (v.d OPERATOR(pg_catalog.<) ''Infinity''::pg_catalog.float8) THEN 0::pg_catalog.float8'
				' WHEN v.hi OPERATOR(pg_catalog.>) v.lo THEN (1::pg_catalog.float8 OPERATOR(pg_catalog.-)'
				' ((v.d OPERATOR(pg_catalog.-) v.lo) OPERATOR(pg_catalog./) (v.hi OPERATOR(pg_catalog.-) v.lo)))'
				' ELSE 1::pg_catalog.float8 END';
		ELSIF typ IN ('pg_catalog.tsvector'::regtype, 'pg_catalog.text'::regtype, 'pg_catalog.varchar'::regtype) THEN
			-- "op" is the vector inputs': on a text input it changed nothing,
			-- without a word (hunt-140).
			IF inp->>'op' IS NOT NULL THEN
				RAISE EXCEPTION 'input % is on text column "%": "op" applies to vector inputs only', i, col
					USING ERRCODE = '22023';
			END IF;
			-- The configuration by its qualified name: a bare 'english' would be
			-- looked up through the path.
			-- A name that does not parse or names nothing is an error naming
			-- its input, as a bad query vector is (hunt-148).
			BEGIN
				SELECT format('%I.%I', cn.nspname, c.cfgname) INTO cfg
				  FROM pg_ts_config c JOIN pg_namespace cn ON cn.oid = c.cfgnamespace
				 WHERE c.oid = coalesce(inp->>'config', 'english')::regconfig;
			EXCEPTION WHEN syntax_error_or_access_rule_violation OR feature_not_supported OR undefined_object THEN
				RAISE EXCEPTION 'input %: %', i, SQLERRM USING ERRCODE = SQLSTATE;
			END;
			-- regconfig's input takes an OID (and '-' for none) without looking
			-- it up: one that names nothing matched no row, silently.
			IF cfg IS NULL THEN
				RAISE EXCEPTION 'input %: text search configuration "%" does not exist', i, inp->>'config'
					USING ERRCODE = '42704';
			END IF;
			doc := CASE WHEN typname_ = 'tsvector' THEN format('t.%I', col)
			            ELSE format('pg_catalog.to_tsvector(%L::pg_catalog.regconfig, t.%I)', cfg, col) END;
			tsq := format('pg_catalog.websearch_to_tsquery(%L::pg_catalog.regconfig, %L::pg_catalog.text)', cfg, q);
			-- Full-text: rows matching websearch_to_tsquery(config, query) (a NULL
			-- document matches nothing), ranked by ts_rank, then id; weighted
			-- fusion scores rank / best rank.
			ranked := format(
				E'SELECT c.id, c.d, pg_catalog.row_number() OVER (ORDER BY c.d DESC, c.id) AS r%s\n' ||
				E'    FROM (SELECT t.%I AS id, pg_catalog.ts_rank(%s, %s) AS d\n' ||
				E'      FROM %s t\n' ||
				E'      WHERE %s OPERATOR(pg_catalog.@@) %s%s\n' ||
				E'      ORDER BY 2 DESC, 1\n' ||
				E'      LIMIT %s) c\n' ||
				-- Rows are fused by id: a NULL id is no row (NULL ids were
				-- added up as one). Left out here, after the depth cut, so
				-- the cut stays the index's ORDER BY ... LIMIT.
				-- (num_nonnulls: a composite id with a NULL field is a row,
				-- though IS NOT NULL calls it not; a NULL id is not.)
				E'    WHERE pg_catalog.num_nonnulls(c.id) OPERATOR(pg_catalog.=) 1',
				CASE WHEN method = 'weighted' THEN E',\n      pg_catalog.max(c.d) OVER () AS hi' ELSE '' END,
				id_column, doc, tsq, tblname, doc, tsq, where_, depth);
			score := 'CASE WHEN v.hi OPERATOR(pg_catalog.>) 0::pg_catalog.float4'
				' THEN (v.d OPERATOR(pg_catalog./) v.hi) ELSE 0::pg_catalog.float4 END';
		ELSE
			RAISE EXCEPTION 'column "%" is of type %, fusion takes vector, halfvec, vector[], tsvector or text columns',
				col, typfmt USING ERRCODE = '42804';
		END IF;
		score := CASE method
			WHEN 'rrf' THEN format(
				'(%L::pg_catalog.float8 OPERATOR(pg_catalog./) (%s::pg_catalog.int8 OPERATOR(pg_catalog.+) v.r)::pg_catalog.float8)',
				weight, rrf_k)
			ELSE format('(%L::pg_catalog.float8 OPERATOR(pg_catalog.*) %s)', weight, score) END;
		parts := parts || format(E'i%s AS MATERIALIZED (SELECT v.id, v.r, %s AS s\n  FROM (%s) v)', i, score, ranked);
	END LOOP;
	-- ranks is keyed by column. A later input on a column an earlier one used
	-- is keyed column#N, N its position in inputs, with more #s before N for
	-- as long as that is the name of a column some input uses (a column may be
	-- called "e#3"): plain keys are distinct columns, the others are no input's
	-- column and end in distinct positions, so no input's rank is lost.
	FOR n IN 1 .. i LOOP
		key := cols[n];
		IF cols[n] = ANY (cols[1:n - 1]) THEN
			hashes := '#';
			LOOP
				key := cols[n] || hashes || n;
				EXIT WHEN NOT key = ANY (cols);
				hashes := hashes || '#';
			END LOOP;
		END IF;
		selects := selects || format('  SELECT %s AS n, %L::pg_catalog.text AS key, i%s.id, i%s.r, i%s.s FROM i%s',
			n, key, n, n, n, n);
	END LOOP;
	-- MATERIALIZED: each input is planned on its own (EXPLAIN shows its plan
	-- under its name). Then one row per input and candidate, summed per id in
	-- input order (the order of a float sum sets its last bits); ranks is built
	-- by an aggregate, which takes any number of inputs (a function takes at
	-- most 100 arguments).
	-- The ids become text after the LIMIT: k calls of the helper.
	RETURN format(
		E'WITH %s\n' ||
		E'SELECT %s AS id, f.score, f.ranks FROM (\n' ||
		E'SELECT u.id,\n' ||
		E'  pg_catalog.sum(u.s ORDER BY u.n, u.r DESC) AS score,\n' ||
		E'  pg_catalog.jsonb_object_agg(u.key, u.r ORDER BY u.n, u.r DESC) AS ranks\n' ||
		E'FROM (\n%s\n) u\n' ||
		E'GROUP BY u.id\n' ||
		E'ORDER BY 2 DESC, u.id\n' ||
		E'LIMIT %s) f\n' ||
		E'ORDER BY f.score DESC, f.id',
		array_to_string(parts, E',\n'), id_text, array_to_string(selects, E'\n  UNION ALL\n'), k);
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
-- The generated query's cost (deep inputs, many of them) passes the JIT
-- thresholds, and LLVM compiling its hundreds of expressions does not look
-- at interrupts: a 1 s statement_timeout fired after 20-33 s (hunt-140).
SET jit = off
AS $$
DECLARE
	query text;
	deepest integer;
	scaled boolean := false;
BEGIN
	-- Built first: that checks every argument, so the depths below are in range.
	query := arrw.fused_search_sql(tbl, id_column, inputs, k, method, filter, rrf_k);
	-- Each vector input reads its best `depth` rows, far deeper than the LIMIT
	-- 10 an index's default probes are tuned for, and a fused rank depends on
	-- all of them: unless the caller set ivfpq.probes or ivfpq.probes_scale,
	-- the inputs' scans probe sqrt(depth / 25) times their index's default
	-- lists (2x for the default depth 100), for this query only. Whether the
	-- caller set one is told by its source, not its value: SET
	-- ivfpq.probes_scale = 1 asks for 1. (Before arrw's library is loaded in
	-- this backend a setting exists only if someone set it, as a placeholder
	-- pg_settings does not show; set_config leaves one, which the library
	-- takes over when the scan loads it.)
	IF NOT EXISTS (
		SELECT 1 FROM unnest(ARRAY['ivfpq.probes', 'ivfpq.probes_scale']) s(name)
		  LEFT JOIN pg_settings p ON p.name = s.name
		 WHERE coalesce(p.source <> 'default', current_setting(s.name, true) <> '')) THEN
		SELECT max(arrw._fusion_depth(v, k)) INTO deepest FROM jsonb_array_elements(inputs) v;
		IF deepest > 25 THEN
			PERFORM set_config('ivfpq.probes_scale', least(sqrt(deepest / 25.0), 100)::text, true);
			scaled := true;
		END IF;
	END IF;
	-- An error of the generated query (a column the caller may not read,
	-- its filter's own) carried that query, the query vectors written out in
	-- it, as its CONTEXT: ~25 kB for one 384-d input (hunt-153). It is raised
	-- again as it was, without it; arrw.fused_search_sql shows the query.
	BEGIN
		RETURN QUERY EXECUTE query;
	EXCEPTION WHEN OTHERS THEN
		DECLARE
			st text; msg text; det text; hin text;
		BEGIN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
				det = PG_EXCEPTION_DETAIL, hin = PG_EXCEPTION_HINT;
			RAISE EXCEPTION USING ERRCODE = st, MESSAGE = msg,
				DETAIL = coalesce(nullif(det, ''), 'Raised by the query arrw.fused_search ran.'),
				HINT = coalesce(nullif(hin, ''), 'arrw.fused_search_sql, given the same arguments, returns that query.');
		END;
	END;
	-- Back to the default, source and all (a NULL value resets): set to '1',
	-- it would read as the caller's own setting to a later call in this
	-- transaction.
	IF scaled THEN
		PERFORM set_config('ivfpq.probes_scale', NULL, true);
	END IF;
END
$$;
COMMENT ON FUNCTION arrw.fused_search(regclass, name, jsonb, integer, text, text, integer) IS
	'top k rows of a table by a fusion (reciprocal rank or weighted) of nearest-neighbour searches on its vector columns and full-text rank on text columns';
