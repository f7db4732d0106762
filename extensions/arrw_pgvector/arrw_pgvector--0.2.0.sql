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

-- The column `att` of table `rel` and of every table of its inheritance or
-- partition tree (by name: a child's number may differ), as (relid, attnum):
-- ALTER COLUMN TYPE on `rel` changes it in each, and each one's views, rules,
-- policies, triggers, publications and CHECK constraints stop it as the
-- table's own do. migrate_to_arrw() asks.
CREATE FUNCTION @extschema@.arrw_migrate_tree_columns(rel oid, att name)
RETURNS TABLE(relid oid, attnum int)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
	WITH RECURSIVE tree(relid) AS (
		SELECT rel
		UNION
		SELECT h.inhrelid FROM pg_inherits h JOIN tree ON h.inhparent = tree.relid)
	SELECT a.attrelid, a.attnum::int FROM tree
	JOIN pg_attribute a ON a.attrelid = tree.relid AND a.attname = att AND NOT a.attisdropped
$fn$;
COMMENT ON FUNCTION @extschema@.arrw_migrate_tree_columns(oid, name) IS
	'a column of a table and of every table of its inheritance or partition tree (used by migrate_to_arrw)';

-- Whether index `idx` uses one of the columns (rels[k], atts[k]): as a key or
-- included column, or in its expressions or predicate (a whole-row
-- reference uses every column). A constraint's index
-- depends on its constraint, not on the columns, so its keys are read from
-- indkey; what its expressions and predicate read is in pg_depend.
-- migrate_to_arrw() rebuilds only such indexes.
CREATE FUNCTION @extschema@.arrw_migrate_index_uses(idx oid, rels oid[], atts int[])
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
	SELECT EXISTS (SELECT 1 FROM pg_index i, unnest(i.indkey::int2[]) k(att)
	               WHERE i.indexrelid = idx
	                 AND (i.indrelid, k.att::int) IN (SELECT * FROM unnest(rels, atts)))
	    OR EXISTS (SELECT 1 FROM pg_index i JOIN pg_depend d
	                 ON d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
	                AND d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indrelid
	               WHERE i.indexrelid = idx
	                 AND (d.refobjid, d.refobjsubid) IN (SELECT * FROM unnest(rels, atts)))
	    -- A whole-row reference (`f(t)`) reads every column and leaves no
	    -- column's dependency: read from the expression trees.
	    OR EXISTS (SELECT 1 FROM pg_index i
	               WHERE i.indexrelid = idx AND i.indrelid = ANY (rels)
	                 AND (i.indexprs::text ~ ':varattno 0 ' OR i.indpred::text ~ ':varattno 0 '))
$fn$;
COMMENT ON FUNCTION @extschema@.arrw_migrate_index_uses(oid, oid[], int[]) IS
	'whether an index uses one of the given (table, column) pairs (used by migrate_to_arrw)';

-- The keys of index `idx` whose operator class is pgvector's or this
-- extension's, as (key position from 1, column number; 0 for an expression).
-- migrate_to_arrw() asks.
CREATE FUNCTION @extschema@.arrw_migrate_pgvector_keys(idx oid)
RETURNS TABLE(n int, att int)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
	SELECT k.n, i.indkey[k.n - 1]::int
	FROM pg_index i, generate_series(1, i.indnkeyatts) k(n)
	WHERE i.indexrelid = idx
	  AND EXISTS (SELECT 1 FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
	              WHERE d.classid = 'pg_opclass'::regclass AND d.objid = i.indclass[k.n - 1]
	                AND d.deptype = 'e' AND e.extname IN ('vector', 'arrw_pgvector'))
$fn$;
COMMENT ON FUNCTION @extschema@.arrw_migrate_pgvector_keys(oid) IS
	'the keys of an index under pgvector''s or arrw_pgvector''s operator classes (used by migrate_to_arrw)';

-- The road back: move every column of pgvector's types to arrw's own, in place.
--
--   SELECT * FROM migrate_to_arrw();                -- the plan, nothing changed
--   SELECT * FROM migrate_to_arrw(dry_run => false); -- do it, in this transaction
--
-- Every column (of an ordinary or partitioned table) whose type is pgvector's
-- vector, halfvec or an array of them becomes arrw's type of the same name and
-- dimensions (`ALTER TABLE ... ALTER COLUMN ... TYPE`, converted through the text
-- form the two types share, so every value is checked again on the way in).
-- Indexes on such columns are dropped and created again with the operator class
-- of the same name and access method that arrw provides (ivfpq on
-- arrw_pgvector's classes becomes ivfpq on arrw's, a btree stays a btree). An
-- index arrw cannot rebuild (pgvector's hnsw or ivfflat: those access methods
-- take only pgvector's types) stops the migration, unless
-- `drop_unsupported_indexes => true` drops it (the rows say which; build an ivfpq
-- index in its place). A view or rule that reads such a column also stops it:
-- nothing is changed unless everything can be. It runs as the caller (never
-- with more rights) and in the caller's transaction: an error anywhere undoes
-- all of it. Only tables the calling role owns itself are migrated; others are
-- skipped (reported), superusers included: ALTER COLUMN TYPE runs the table's
-- own code (CHECK constraints, index expressions, defaults) as the caller, so a
-- superuser's call would have run every role's code as superuser.
--
-- One row per action: (action, object, detail). `action` is one of
-- alter column, drop index, create index, blocked, next.
CREATE FUNCTION @extschema@.migrate_to_arrw(
	dry_run boolean DEFAULT true,
	drop_unsupported_indexes boolean DEFAULT false)
RETURNS TABLE(action text, object text, detail text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
-- Index definitions and predicates are printed (pg_get_indexdef, pg_get_expr)
-- and run again: constants print under these settings, as pg_dump pins them,
-- so they read back as the same values (hunt-104: under extra_float_digits
-- -15 a predicate's 1234.5 came back as 1000, under German DateStyle a date's
-- day and month swapped, and a zone abbreviation named another zone; under
-- array_nulls off a vector[] holding NULL failed to read back), and indexes
-- go back to the tablespace they were in, not the caller's default_tablespace.
-- TimeZone stays the caller's: ISO timestamps carry their offset, so they read
-- back alike in any zone, and the tables' own code the migration runs (CHECKs
-- a rewrite evaluates again) sees the zone it was written under (pinned to UTC,
-- a CHECK comparing a timestamptz's local date failed; hunt-106).
SET datestyle = 'ISO, MDY'
SET intervalstyle = 'postgres'
SET extra_float_digits = 3
SET array_nulls = on
SET bytea_output = 'hex'
SET standard_conforming_strings = on
SET quote_all_identifiers = off
SET default_tablespace = ''
AS $fn$
DECLARE
	vec_nsp oid;
	arrw_nsp oid;
	arrw_q text;
	col record;
	vw record;
	idx record;
	target text;
	def text;
	oc record;
	new_oc text;
	blockers int := 0;
	plan_cols text[] := '{}';
	plan_drops text[] := '{}';
	plan_creates text[] := '{}';
	plan_renames text[] := '{}';
	plan_after text[] := '{}';
	tables oid[] := '{}';
	-- Every column that changes type, in every table of its tree, as
	-- (mig_rel[k], mig_att[k]): only indexes that use one of them are rebuilt.
	mig_rel oid[] := '{}';
	mig_att int[] := '{}';
	i int;
	me oid;
BEGIN
	SELECT r.oid INTO me FROM pg_roles r WHERE r.rolname = current_user;
	SELECT e.extnamespace INTO vec_nsp FROM pg_extension e WHERE e.extname = 'vector';
	SELECT e.extnamespace INTO arrw_nsp FROM pg_extension e WHERE e.extname = 'arrw';
	arrw_q := quote_ident((SELECT nspname FROM pg_namespace WHERE oid = arrw_nsp));
	-- The new columns' type is in arrw's schema.
	IF NOT has_schema_privilege(arrw_nsp, 'USAGE') THEN
		blockers := blockers + 1;
		action := 'blocked'; object := arrw_q;
		detail := format('the caller has no USAGE on arrw''s schema %s, where the new columns'' type is: '
			'GRANT USAGE ON SCHEMA %s TO %I', arrw_q, arrw_q, current_user);
		RETURN NEXT;
	END IF;

	-- The columns: pgvector's types and their array types, in user tables (not
	-- in partitions: altering the parent alters them) and in views or
	-- materialized views (which cannot be altered: they block).
	FOR col IN
		SELECT c.oid AS relid, c.relkind, c.relowner, c.reloftype, c.reltype,
		       c.relpersistence = 't' AND c.relnamespace IS DISTINCT FROM pg_my_temp_schema() AS others_temp,
		       a.attname, a.attnum, a.atttypmod, a.attinhcount,
		       format('%s.%s', quote_ident(n.nspname), quote_ident(c.relname)) AS rel,
		       coalesce(bt.typname, t.typname) AS base, bt.oid IS NOT NULL AS is_array
		FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_type bt ON bt.oid = t.typelem AND t.typcategory = 'A'
		WHERE a.attnum > 0 AND NOT a.attisdropped
		  AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c') AND NOT c.relispartition
		  AND coalesce(bt.typnamespace, t.typnamespace) = vec_nsp
		  AND coalesce(bt.typname, t.typname) IN ('vector', 'halfvec')
		ORDER BY 1, a.attnum
	LOOP
		-- Another role's objects are that role's to migrate: reported, never
		-- changed, and they block nothing of the caller's (a view of another
		-- role that reads one of the caller's columns blocks below, as a
		-- reader of that column).
		IF col.relowner IS DISTINCT FROM me THEN
			action := 'skipped'; object := format('%s.%I', col.rel, col.attname);
			detail := format('owned by %s: migrated only by a call as that role (the change runs '
				'the table''s constraints, defaults and index expressions as the caller)',
				pg_get_userbyid(col.relowner));
			RETURN NEXT;
			CONTINUE;
		END IF;
		-- Another session's temporary table (or one a crashed session left):
		-- only that session may alter it (0A000).
		IF col.others_temp THEN
			action := 'skipped'; object := format('%s.%I', col.rel, col.attname);
			detail := 'a temporary table of another session: only that session can alter it';
			RETURN NEXT;
			CONTINUE;
		END IF;
		IF col.relkind NOT IN ('r', 'p') THEN
			blockers := blockers + 1;
			action := 'blocked'; object := format('%s.%I', col.rel, col.attname);
			detail := CASE col.relkind WHEN 'f' THEN 'a foreign table''s column: alter it by hand'
				WHEN 'c' THEN 'an attribute of a composite type: alter it by hand (ALTER TYPE ... ALTER ATTRIBUTE)'
				ELSE 'a column of a view or materialized view: drop it, migrate, create it again' END;
			RETURN NEXT;
			CONTINUE;
		END IF;
		-- A column inherited from a parent (table inheritance) changes with the
		-- parent's (ALTER TABLE recurses; altered alone it is 42P16): its table
		-- joins the migrated ones after this loop, if its parent's does.
		IF col.attinhcount > 0 THEN
			CONTINUE;
		END IF;
		-- ALTER TABLE recurses into every child and partition, and must own
		-- each: one of another role's stops the change.
		-- A child that inherits the column from more than one parent cannot
		-- have it changed by one of them.
		FOR vw IN
			WITH RECURSIVE d(relid) AS (
				SELECT h.inhrelid FROM pg_inherits h WHERE h.inhparent = col.relid
				UNION
				SELECT h.inhrelid FROM pg_inherits h JOIN d ON h.inhparent = d.relid)
			SELECT format('%s.%s', quote_ident(n.nspname), quote_ident(c.relname)) AS child,
			       pg_get_userbyid(c.relowner) AS owner, c.relowner IS DISTINCT FROM me AS others,
			       -- A parent outside this table's tree (two parents within it,
			       -- a diamond, are both reached by the one ALTER).
			       EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = c.oid
			               AND h.inhparent <> col.relid
			               AND NOT h.inhparent IN (SELECT relid FROM d)) AS many,
			       EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = c.oid
			               AND h.inhdetachpending) AS pending,
			       c.relkind = 'f' AS foreign_child,
			       c.relpersistence = 't' AND c.relnamespace IS DISTINCT FROM pg_my_temp_schema() AS others_temp
			FROM d JOIN pg_class c ON c.oid = d.relid JOIN pg_namespace n ON n.oid = c.relnamespace
			ORDER BY 1
		LOOP
			CONTINUE WHEN NOT (vw.others OR vw.many OR vw.pending OR vw.foreign_child OR vw.others_temp);
			blockers := blockers + 1;
			action := 'blocked'; object := format('%s.%I', col.rel, col.attname);
			detail := CASE WHEN vw.others
				THEN format('inherited by %s, owned by %s: ALTER TABLE changes it there too, '
					'which only its owner may do', vw.child, vw.owner)
				WHEN vw.pending
				THEN format('partition %s is being detached (DETACH PARTITION ... CONCURRENTLY did '
					'not finish): ALTER TABLE ... DETACH PARTITION %s FINALIZE, then migrate',
					vw.child, vw.child)
				WHEN vw.foreign_child
				THEN format('inherited by foreign table %s: ALTER TABLE cannot change it there; '
					'detach it (or alter it by hand), then migrate', vw.child)
				WHEN vw.others_temp
				THEN format('inherited by %s, a temporary table of another session, which only that '
					'session can alter', vw.child)
				ELSE format('inherited by %s also from a parent outside this table''s tree: '
					'ALTER TABLE cannot change it there', vw.child) END;
			RETURN NEXT;
		END LOOP;
		-- Views and rules that read the column (ALTER COLUMN TYPE refuses them),
		-- the table's own rules included.
		FOR vw IN
			SELECT DISTINCT CASE WHEN r.rulename = '_RETURN' THEN format('view %s', r.ev_class::regclass)
			                     ELSE format('rule %I on %s', r.rulename, r.ev_class::regclass) END AS v
			FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
			WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
			  AND (d.refobjid, d.refobjsubid) IN (SELECT t.relid, t.attnum
			                                      FROM @extschema@.arrw_migrate_tree_columns(col.relid, col.attname) t)
			ORDER BY 1
		LOOP
			blockers := blockers + 1;
			action := 'blocked'; object := format('%s.%I', col.rel, col.attname);
			detail := format('read by %s: drop it, migrate, create it again', vw.v);
			RETURN NEXT;
		END LOOP;
		-- A typed table's columns are its type's; ALTER TABLE refuses them.
		IF col.reloftype <> 0 THEN
			blockers := blockers + 1;
			action := 'blocked'; object := format('%s.%I', col.rel, col.attname);
			detail := format('a column of a typed table (OF %s): alter the type''s attribute, or '
				'ALTER TABLE ... NOT OF, then migrate', col.reloftype::regtype);
			RETURN NEXT;
		END IF;
		-- A column of any table or view whose type is the row type of this
		-- table or of a table of its tree, or a type built on one (an array, a
		-- domain, a range or multirange), stops ALTER COLUMN TYPE, whoever owns
		-- it (PostgreSQL's find_composite_type_dependencies).
		FOR vw IN
			WITH RECURSIVE tree(relid) AS (
				SELECT col.relid
				UNION
				SELECT h.inhrelid FROM pg_inherits h JOIN tree ON h.inhparent = tree.relid),
			types(oid) AS (
				SELECT c.reltype FROM tree JOIN pg_class c ON c.oid = tree.relid
				UNION
				SELECT u.oid FROM types,
				LATERAL (SELECT t.typarray FROM pg_type t WHERE t.oid = types.oid AND t.typarray <> 0
				         UNION ALL SELECT t.oid FROM pg_type t WHERE t.typbasetype = types.oid
				         UNION ALL SELECT r.rngtypid FROM pg_range r WHERE r.rngsubtype = types.oid
				         UNION ALL SELECT r.rngmultitypid FROM pg_range r WHERE r.rngtypid = types.oid) u(oid))
			SELECT DISTINCT format('%s.%I', a.attrelid::regclass, a.attname) AS what
			FROM pg_attribute a
			WHERE NOT a.attisdropped AND a.attnum > 0
			  AND NOT a.attrelid IN (SELECT relid FROM tree)
			  AND a.atttypid IN (SELECT oid FROM types)
			ORDER BY 1
		LOOP
			blockers := blockers + 1;
			action := 'blocked'; object := format('%s.%I', col.rel, col.attname);
			detail := format('the row type of this table (or of a table of its tree) is the type of '
				'column %s, or built into it: drop or alter it, migrate, create it again', vw.what);
			RETURN NEXT;
		END LOOP;
		-- Other objects whose definition reads the column: ALTER COLUMN TYPE
		-- refuses a policy, a trigger's WHEN or column list, a SQL-standard
		-- function body (BEGIN ATOMIC) and a generated column (0A000).
		FOR vw IN
			SELECT DISTINCT CASE d.classid
				WHEN 'pg_policy'::regclass THEN format('policy %I',
					(SELECT p.polname FROM pg_policy p WHERE p.oid = d.objid))
				WHEN 'pg_trigger'::regclass THEN format('trigger %I',
					(SELECT g.tgname FROM pg_trigger g WHERE g.oid = d.objid))
				WHEN 'pg_proc'::regclass THEN format('function %s', d.objid::regprocedure)
				WHEN 'pg_publication_rel'::regclass THEN format('publication %I (its column list or WHERE)',
					(SELECT p.pubname FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
					 WHERE pr.oid = d.objid))
				ELSE (SELECT format(CASE WHEN g.attgenerated <> '' THEN 'generated column %I'
				                         ELSE 'the default of column %I' END, g.attname)
				        FROM pg_attrdef ad JOIN pg_attribute g
				          ON g.attrelid = ad.adrelid AND g.attnum = ad.adnum
				       WHERE ad.oid = d.objid) END AS what
			FROM pg_depend d
			WHERE d.refclassid = 'pg_class'::regclass
			  AND (d.refobjid, d.refobjsubid) IN (SELECT t.relid, t.attnum
			                                      FROM @extschema@.arrw_migrate_tree_columns(col.relid, col.attname) t)
			  AND d.classid IN ('pg_policy'::regclass, 'pg_trigger'::regclass, 'pg_proc'::regclass,
			                    'pg_attrdef'::regclass, 'pg_publication_rel'::regclass)
			ORDER BY 1
		LOOP
			blockers := blockers + 1;
			action := 'blocked'; object := format('%s.%I', col.rel, col.attname);
			detail := format('used by %s: drop it, migrate, create it again', vw.what);
			RETURN NEXT;
		END LOOP;
		-- A partition key column cannot change type (0A000): a key of the
		-- table or of a sub-partition, as the column or in an expression (the
		-- column then depends internally on its table).
		IF EXISTS (SELECT 1 FROM pg_partition_tree(col.relid) t
		           JOIN pg_partitioned_table p ON p.partrelid = t.relid
		           JOIN pg_attribute a ON a.attrelid = t.relid AND a.attname = col.attname
		           WHERE a.attnum = ANY (p.partattrs::int2[])
		              OR EXISTS (SELECT 1 FROM pg_depend d
		                         WHERE d.classid = 'pg_class'::regclass AND d.objid = t.relid
		                           AND d.objsubid = a.attnum AND d.refclassid = 'pg_class'::regclass
		                           AND d.refobjid = t.relid AND d.refobjsubid = 0
		                           AND d.deptype = 'i')) THEN
			blockers := blockers + 1;
			action := 'blocked'; object := format('%s.%I', col.rel, col.attname);
			detail := 'part of the partition key: a partition key column cannot change its type';
			RETURN NEXT;
		END IF;
		-- CHECK constraints and extended statistics of the table whose
		-- expressions call pgvector's functions or operators: rebuilt for
		-- arrw's column, they would name pgvector's objects (42883).
		FOR vw IN
			SELECT DISTINCT format('%s uses pgvector''s %s',
				pg_describe_object(d.classid, d.objid, 0),
				pg_describe_object(d.refclassid, d.refobjid, 0)) AS what
			FROM pg_depend d
			JOIN pg_depend x ON x.classid = d.refclassid AND x.objid = d.refobjid AND x.deptype = 'e'
			JOIN pg_extension e ON e.oid = x.refobjid AND e.extname = 'vector'
			WHERE (d.classid = 'pg_constraint'::regclass
			       AND d.objid IN (SELECT c.oid FROM pg_constraint c
			                       JOIN @extschema@.arrw_migrate_tree_columns(col.relid, col.attname) t
			                         ON c.conrelid = t.relid AND t.attnum = ANY (c.conkey)))
			   OR (d.classid = 'pg_statistic_ext'::regclass
			       AND d.objid IN (SELECT x.oid FROM pg_statistic_ext x
			                       JOIN @extschema@.arrw_migrate_tree_columns(col.relid, col.attname) t
			                         ON x.stxrelid = t.relid))
			ORDER BY 1
		LOOP
			blockers := blockers + 1;
			action := 'blocked'; object := format('%s.%I', col.rel, col.attname);
			detail := format('%s: drop it, migrate, create it again', vw.what);
			RETURN NEXT;
		END LOOP;
		-- arrw's type must exist: arrw 0.1.0 has no halfvec (the cast to
		-- regtype below failed the whole plan with a bare 42704; hunt-116).
		IF to_regtype(format('%s.%I', arrw_q, col.base)) IS NULL THEN
			blockers := blockers + 1;
			action := 'blocked'; object := format('%s.%I', col.rel, col.attname);
			detail := format('arrw''s schema %s has no type %I (arrw %s): ALTER EXTENSION arrw UPDATE, '
				'then migrate', arrw_q, col.base,
				(SELECT e.extversion FROM pg_extension e WHERE e.extname = 'arrw'));
			RETURN NEXT;
			CONTINUE;
		END IF;
		-- The caller must be able to use arrw's type.
		IF has_schema_privilege(arrw_nsp, 'USAGE')
		   AND NOT has_type_privilege(format('%s.%I', arrw_q, col.base)::regtype, 'USAGE') THEN
			blockers := blockers + 1;
			action := 'blocked'; object := format('%s.%I', col.rel, col.attname);
			detail := format('the caller has no USAGE on arrw''s type %s.%I', arrw_q, col.base);
			RETURN NEXT;
		END IF;
		-- arrw's type of the same name, dimensions (typmod) and arrayness.
		target := format('%s.%I%s%s', arrw_q, col.base,
			CASE WHEN col.atttypmod > 0 THEN format('(%s)', col.atttypmod) ELSE '' END,
			CASE WHEN col.is_array THEN '[]' ELSE '' END);
		plan_cols := plan_cols || format('ALTER TABLE %s ALTER COLUMN %I TYPE %s USING %I::text::%s',
			col.rel, col.attname, target, col.attname, target);
		SELECT mig_rel || array_agg(t.relid), mig_att || array_agg(t.attnum) INTO mig_rel, mig_att
		FROM @extschema@.arrw_migrate_tree_columns(col.relid, col.attname) t;
		-- ALTER COLUMN TYPE gives the column its new type's storage and no
		-- compression method, in every table of the tree: what was set by
		-- hand (SET STORAGE PLAIN to keep vectors in the row, SET COMPRESSION
		-- lz4) is set again, table by table.
		plan_cols := plan_cols || ARRAY(
			SELECT format('ALTER TABLE ONLY %s ALTER COLUMN %I SET STORAGE %s', t.relid::regclass, col.attname,
			              CASE a.attstorage WHEN 'p' THEN 'PLAIN' WHEN 'm' THEN 'MAIN'
			                                WHEN 'x' THEN 'EXTENDED' ELSE 'EXTERNAL' END)
			FROM @extschema@.arrw_migrate_tree_columns(col.relid, col.attname) t
			JOIN pg_attribute a ON a.attrelid = t.relid AND a.attnum = t.attnum
			WHERE a.attstorage IS DISTINCT FROM (
			        SELECT CASE WHEN col.is_array THEN at.typstorage ELSE nt.typstorage END
			        FROM pg_type nt LEFT JOIN pg_type at ON at.oid = nt.typarray
			        WHERE nt.typnamespace = arrw_nsp AND nt.typname = col.base)
			ORDER BY t.relid);
		plan_cols := plan_cols || ARRAY(
			SELECT format('ALTER TABLE ONLY %s ALTER COLUMN %I SET COMPRESSION %s', t.relid::regclass, col.attname,
			              CASE a.attcompression WHEN 'p' THEN 'pglz' ELSE 'lz4' END)
			FROM @extschema@.arrw_migrate_tree_columns(col.relid, col.attname) t
			JOIN pg_attribute a ON a.attrelid = t.relid AND a.attnum = t.attnum
			WHERE a.attcompression <> ''
			ORDER BY t.relid);
		IF NOT col.relid = ANY (tables) THEN
			tables := tables || col.relid;
		END IF;
	END LOOP;

	-- The children (table inheritance) of the tables migrated: their inherited
	-- columns change with their parents', so their indexes are dropped and
	-- created again too (a child of another role blocked above). Partitions are
	-- the partitioned table's (pg_partition_tree, below).
	tables := tables || ARRAY(
		WITH RECURSIVE d(relid) AS (
			SELECT h.inhrelid FROM pg_inherits h WHERE h.inhparent = ANY (tables)
			UNION
			SELECT h.inhrelid FROM pg_inherits h JOIN d ON h.inhparent = d.relid)
		SELECT d.relid FROM d JOIN pg_class c ON c.oid = d.relid
		WHERE NOT c.relispartition AND NOT d.relid = ANY (tables));

	-- Columns of any other type built on pgvector's types: a domain (over
	-- vector, over a domain of it, over vector[]), an array of such a domain,
	-- a range or multirange over one of them. ALTER COLUMN TYPE cannot
	-- change what such a type is built on, so each needs its like over arrw's
	-- type. Only the domain over vector itself was found here once: a domain
	-- over a domain, over vector[], or a range over vector was neither
	-- migrated nor listed, and the plan said done (hunt-116).
	FOR col IN
		WITH RECURSIVE built(oid, root) AS (
			SELECT t.oid, t.typname FROM pg_type t
			WHERE t.typnamespace = vec_nsp AND t.typname IN ('vector', 'halfvec')
			UNION
			SELECT u.oid, built.root FROM built,
			LATERAL (SELECT t.typarray FROM pg_type t WHERE t.oid = built.oid AND t.typarray <> 0
			         UNION ALL SELECT t.oid FROM pg_type t WHERE t.typbasetype = built.oid
			         UNION ALL SELECT r.rngtypid FROM pg_range r WHERE r.rngsubtype = built.oid
			         UNION ALL SELECT r.rngmultitypid FROM pg_range r WHERE r.rngtypid = built.oid) u(oid))
		SELECT format('%s.%s', quote_ident(n.nspname), quote_ident(c.relname)) AS rel, a.attname,
		       format_type(t.oid, NULL) AS dom, c.relowner, built.root,
		       CASE WHEN t.typtype = 'd' THEN 'domain'
		            WHEN t.typtype = 'r' THEN 'range'
		            WHEN t.typtype = 'm' THEN 'multirange'
		            ELSE 'array' END AS kind
		FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_type t ON t.oid = a.atttypid
		JOIN built ON built.oid = a.atttypid
		LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
		WHERE a.attnum > 0 AND NOT a.attisdropped
		  AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c') AND NOT c.relispartition
		  -- vector, halfvec and their arrays are the columns migrated above
		  AND NOT (t.typtype = 'b' AND coalesce(et.typnamespace, t.typnamespace) = vec_nsp
		           AND coalesce(et.typname, t.typname) IN ('vector', 'halfvec'))
		ORDER BY 1, 2
	LOOP
		IF col.relowner IS DISTINCT FROM me THEN
			action := 'skipped'; object := format('%s.%I', col.rel, col.attname);
			detail := format('of %s %s over pgvector''s type, owned by %s: migrated only by that role',
				col.kind, col.dom, pg_get_userbyid(col.relowner));
			RETURN NEXT;
			CONTINUE;
		END IF;
		blockers := blockers + 1;
		action := 'blocked'; object := format('%s.%I', col.rel, col.attname);
		IF to_regtype(format('%s.%I', arrw_q, col.root)) IS NULL THEN
			-- arrw 0.1.0 has no halfvec: its like cannot be made yet.
			detail := format('of %s %s over pgvector''s %s, which arrw %s lacks: '
				'ALTER EXTENSION arrw UPDATE, create its like over arrw''s %s, '
				'alter the column to it by hand, then migrate', col.kind, col.dom, col.root,
				(SELECT e.extversion FROM pg_extension e WHERE e.extname = 'arrw'), col.root);
		ELSE
			detail := format('of %s %s over pgvector''s type: create its like over arrw''s type, '
				'alter the column to it by hand, then migrate', col.kind, col.dom);
		END IF;
		RETURN NEXT;
	END LOOP;

	-- Indexes of those tables whose expression or predicate uses pgvector's
	-- functions, operators or types (`l2_normalize(v)`, `(v::halfvec(3))`): created
	-- again as printed they would name pgvector's objects for arrw's column.
	FOR idx IN
		SELECT DISTINCT format('%s.%s', quote_ident(n.nspname), quote_ident(ic.relname)) AS name,
		       pg_describe_object(d.refclassid, d.refobjid, 0) AS what
		FROM pg_index i
		JOIN pg_class ic ON ic.oid = i.indexrelid
		JOIN pg_namespace n ON n.oid = ic.relnamespace
		JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
		                AND d.refclassid IN ('pg_proc'::regclass, 'pg_type'::regclass, 'pg_operator'::regclass)
		JOIN pg_depend x ON x.classid = d.refclassid AND x.objid = d.refobjid AND x.deptype = 'e'
		JOIN pg_extension e ON e.oid = x.refobjid AND e.extname = 'vector'
		WHERE (i.indrelid = ANY (tables)
		       OR i.indrelid IN (SELECT p.relid FROM unnest(tables) t(relid),
		                         LATERAL pg_partition_tree(t.relid) p WHERE p.relid <> t.relid))
		  -- It uses a column that changes type: the indexes of the table's
		  -- other columns (pgvector's sparsevec or bit, say) stay as they are.
		  AND @extschema@.arrw_migrate_index_uses(i.indexrelid, mig_rel, mig_att)
		ORDER BY 1, 2
	LOOP
		blockers := blockers + 1;
		action := 'blocked'; object := idx.name;
		detail := format('its expression or predicate uses pgvector''s %s: drop it, migrate, '
			'create it again with arrw''s', idx.what);
		RETURN NEXT;
	END LOOP;

	-- Indexes with an expression key under a class of pgvector's (or of this
	-- extension) whose expressions read a column that changes type (through
	-- a function of the caller's, say `emb(t)` returning `v`): the expression
	-- then yields arrw's type, which that class does not take, and neither
	-- ALTER TABLE's rebuild nor one here could make the index again.
	FOR idx IN
		SELECT DISTINCT format('%s.%s', quote_ident(n.nspname), quote_ident(ic.relname)) AS name
		FROM pg_index i
		JOIN pg_class ic ON ic.oid = i.indexrelid
		JOIN pg_namespace n ON n.oid = ic.relnamespace
		WHERE (i.indrelid = ANY (tables)
		       OR i.indrelid IN (SELECT p.relid FROM unnest(tables) t(relid),
		                         LATERAL pg_partition_tree(t.relid) p WHERE p.relid <> t.relid))
		  AND EXISTS (SELECT 1 FROM @extschema@.arrw_migrate_pgvector_keys(i.indexrelid) k
		              WHERE k.att = 0)
		  AND @extschema@.arrw_migrate_index_uses(i.indexrelid, mig_rel, mig_att)
		ORDER BY 1
	LOOP
		blockers := blockers + 1;
		action := 'blocked'; object := idx.name;
		detail := 'an expression key with pgvector''s operator class reads a column that changes '
			'type: drop it, migrate, create it again with arrw''s class';
		RETURN NEXT;
	END LOOP;

	-- Indexes of those tables (and of their partitions) whose operator classes
	-- belong to pgvector or to this extension: dropped before, created after.
	FOR idx IN
		SELECT DISTINCT i.indexrelid, i.indrelid, ic.relname,
		       format('%s.%s', quote_ident(n.nspname), quote_ident(ic.relname)) AS name,
		       -- A constraint's index (primary key, unique, exclusion) or one a
		       -- foreign key references: not dropped here. A unique index of
		       -- no constraint is created again like any other.
		       am.amname, EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
		                  AS constraint_backed,
		       i.indclass::oid[] AS classes, ic.relispartition, i.indisvalid AS valid,
		       ic.relkind = 'I' AS partitioned,
		       -- A partitioned ivfpq index whose `m` does not divide the column's
		       -- declared dimensions (ON ONLY builds nothing, so nothing refused
		       -- it): created again, every partition's build would fail.
		       ic.relkind = 'I' AND am.amname = 'ivfpq' AND EXISTS (
		           SELECT 1 FROM pg_attribute a,
		                  LATERAL (SELECT substr(o, 3)::int AS m FROM unnest(ic.reloptions) o
		                           WHERE o LIKE 'm=%') mo
		           WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
		             AND a.atttypmod > 0 AND mo.m > 0 AND a.atttypmod % mo.m <> 0) AS m_misfit,
		       -- The keys (1-based) that are columns changing type: only their
		       -- classes become arrw's.
		       ARRAY(SELECT k.n FROM generate_series(1, i.indnkeyatts) k(n)
		             WHERE (i.indrelid, i.indkey[k.n - 1]::int) IN (SELECT * FROM unnest(mig_rel, mig_att)))
		             AS mig_keys
		FROM pg_index i
		JOIN pg_class ic ON ic.oid = i.indexrelid
		JOIN pg_namespace n ON n.oid = ic.relnamespace
		JOIN pg_am am ON am.oid = ic.relam
		WHERE (i.indrelid = ANY (tables)
		       OR i.indrelid IN (SELECT p.relid FROM unnest(tables) t(relid),
		                         LATERAL pg_partition_tree(t.relid) p WHERE p.relid <> t.relid))
		  -- A key that is a column changing type has a class of pgvector's
		  -- (or of this extension): ALTER COLUMN TYPE would rebuild the index
		  -- with that class, which does not take arrw's type. Any other index
		  -- (the table's sparsevec or bit columns', one that only includes or
		  -- filters on the column) ALTER TABLE rebuilds as it was.
		  AND EXISTS (SELECT 1 FROM @extschema@.arrw_migrate_pgvector_keys(i.indexrelid) k
		              WHERE (i.indrelid, k.att) IN (SELECT * FROM unnest(mig_rel, mig_att)))
		ORDER BY 1
	LOOP
		IF idx.relispartition THEN
			-- A partition's index that belongs to its parent's partitioned index
			-- goes with it; one of its own would need the same treatment, which
			-- this function leaves to the user.
			CONTINUE WHEN EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = idx.indexrelid);
		END IF;
		IF idx.m_misfit THEN
			blockers := blockers + 1;
			action := 'blocked'; object := idx.name;
			detail := 'a partitioned index whose m option does not divide the column''s dimensions: '
				'created again it builds every partition with it, which fails; drop it, or create it '
				'again with a fitting m';
			RETURN NEXT;
			CONTINUE;
		END IF;
		IF NOT idx.valid THEN
			blockers := blockers + 1;
			action := 'blocked'; object := idx.name;
			detail := CASE WHEN idx.partitioned
				THEN 'a partitioned index not attached to an index of every partition (CREATE INDEX '
					'... ON ONLY): attach them (ALTER INDEX ... ATTACH PARTITION) or drop it, then migrate'
				ELSE 'an invalid index (a CREATE INDEX CONCURRENTLY or REINDEX that failed): '
					'drop it (or REINDEX it), then migrate' END;
			RETURN NEXT;
			CONTINUE;
		END IF;
		IF idx.constraint_backed THEN
			blockers := blockers + 1;
			action := 'blocked'; object := idx.name;
			detail := 'backs a constraint (primary key, unique or exclusion, or one a foreign key references): '
				'drop it, migrate, add it again';
			RETURN NEXT;
			CONTINUE;
		END IF;
		-- Every operator class of pgvector's (or this extension's) on a key
		-- that changes type (qualified: search_path is pg_catalog only) must
		-- have a twin in arrw's schema with the same name and access method.
		new_oc := NULL;
		FOR oc IN
			SELECT DISTINCT format('%s.%s', quote_ident(cn.nspname), quote_ident(c.opcname)) AS old,
			       c.opcname, c.opcmethod
			FROM unnest(idx.mig_keys) k(n)
			JOIN pg_opclass c ON c.oid = idx.classes[k.n - 1]
			JOIN pg_namespace cn ON cn.oid = c.opcnamespace
			JOIN pg_depend d ON d.classid = 'pg_opclass'::regclass AND d.objid = c.oid AND d.deptype = 'e'
			JOIN pg_extension e ON e.oid = d.refobjid AND e.extname IN ('vector', 'arrw_pgvector')
		LOOP
			IF NOT EXISTS (SELECT 1 FROM pg_opclass WHERE opcnamespace = arrw_nsp
			               AND opcname = oc.opcname AND opcmethod = oc.opcmethod) THEN
				new_oc := oc.opcname;
				EXIT;
			END IF;
		END LOOP;
		-- The definition, put together from its parts (not pg_get_indexdef's
		-- text with the class names replaced: that also rewrote index and
		-- column names and string constants of the predicate holding them).
		-- Every key names its operator class (arrw's twin for pgvector's and
		-- this extension's on a key that changes type, the same class for
		-- others), collation and order;
		-- a partitioned table's index is created without ONLY, so it reaches
		-- every partition again.
		SELECT format('CREATE %sINDEX %I ON %s USING %I (%s)%s%s%s%s',
		       CASE WHEN x.indisunique THEN 'UNIQUE ' ELSE '' END, ic.relname, x.indrelid::regclass,
		       am.amname,
		       (SELECT string_agg(pg_get_indexdef(x.indexrelid, k.n, false)
		               || CASE WHEN x.indcollation[k.n - 1] <> 0 THEN (SELECT format(' COLLATE %I.%I',
		                       cln.nspname, cl.collname) FROM pg_collation cl
		                       JOIN pg_namespace cln ON cln.oid = cl.collnamespace
		                       WHERE cl.oid = x.indcollation[k.n - 1]) ELSE '' END
		               || ' ' || CASE WHEN k.n = ANY (idx.mig_keys) AND EXISTS (SELECT 1 FROM pg_depend d
		                       JOIN pg_extension e ON e.oid = d.refobjid
		                       WHERE d.classid = 'pg_opclass'::regclass AND d.objid = c.oid
		                         AND d.deptype = 'e' AND e.extname IN ('vector', 'arrw_pgvector'))
		                  THEN arrw_q || '.' || quote_ident(c.opcname)
		                  ELSE format('%I.%I', cn.nspname, c.opcname) END
		               || coalesce((SELECT ' (' || string_agg(format('%I = %L',
		                       split_part(o, '=', 1), substr(o, strpos(o, '=') + 1)), ', ') || ')'
		                       FROM unnest(ia.attoptions) o), '')
		               || CASE WHEN x.indoption[k.n - 1] & 1 <> 0 THEN ' DESC' ELSE '' END
		               || CASE WHEN x.indoption[k.n - 1] & 3 = 1 THEN ' NULLS LAST'
		                       WHEN x.indoption[k.n - 1] & 3 = 2 THEN ' NULLS FIRST' ELSE '' END,
		               ', ' ORDER BY k.n)
		        FROM generate_series(1, x.indnkeyatts) k(n)
		        JOIN pg_opclass c ON c.oid = x.indclass[k.n - 1]
		        JOIN pg_namespace cn ON cn.oid = c.opcnamespace
		        JOIN pg_attribute ia ON ia.attrelid = x.indexrelid AND ia.attnum = k.n),
		       CASE WHEN x.indnatts > x.indnkeyatts THEN format(' INCLUDE (%s)',
		            (SELECT string_agg(pg_get_indexdef(x.indexrelid, k, false), ', ' ORDER BY k)
		             FROM generate_series(x.indnkeyatts + 1, x.indnatts) k)) ELSE '' END,
		       CASE WHEN x.indnullsnotdistinct THEN ' NULLS NOT DISTINCT' ELSE '' END,
		       coalesce((SELECT ' WITH (' || string_agg(format('%I = %L',
		                 split_part(o, '=', 1), substr(o, strpos(o, '=') + 1)), ', ') || ')'
		                 FROM unnest(ic.reloptions) o), ''),
		       coalesce(' WHERE ' || pg_get_expr(x.indpred, x.indrelid), ''))
		INTO def
		FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid JOIN pg_am am ON am.oid = ic.relam
		WHERE x.indexrelid = idx.indexrelid;
		IF new_oc IS NOT NULL THEN
			IF drop_unsupported_indexes THEN
				plan_drops := plan_drops || format('DROP INDEX %s', idx.name);
				action := 'drop index'; object := idx.name;
				detail := format('%s; arrw has no %s class %s: build an ivfpq index in its place',
					pg_get_indexdef(idx.indexrelid), idx.amname, new_oc);
				RETURN NEXT;
			ELSE
				blockers := blockers + 1;
				action := 'blocked'; object := idx.name;
				detail := format('%s: access method %s has no class %s for arrw''s types '
					'(drop_unsupported_indexes => true drops it; build an ivfpq index in its place)',
					pg_get_indexdef(idx.indexrelid), idx.amname, new_oc);
				RETURN NEXT;
			END IF;
			CONTINUE;
		END IF;
		plan_drops := plan_drops || format('DROP INDEX %s', idx.name);
		plan_creates := plan_creates || def;
		-- What pg_get_indexdef does not print goes with it, for the index and
		-- (of a partitioned table's index) every index of its partition tree,
		-- which CREATE INDEX makes again with generated names: names, comments,
		-- tablespaces, the tables' replica identity and CLUSTER marks. The
		-- partitions' indexes are found after the CREATE by their tables and
		-- renamed in two steps (through a name of their old OID), so that names
		-- swapped between partitions do not collide; the DO bodies are quoted
		-- as literals, whatever the names and comments hold.
		FOR oc IN
			SELECT t.relid AS old_oid, t.level, c.relname AS old_name, cn.nspname AS nsp,
			       x.indrelid AS part, x.indrelid::regclass::text AS part_name,
			       obj_description(c.oid, 'pg_class') AS note,
			       (SELECT spcname FROM pg_tablespace WHERE oid = c.reltablespace) AS ts,
			       x.indisreplident, x.indisclustered, c.relkind AS kind, c.reloptions AS opts,
			       (SELECT p.reloptions FROM pg_class p WHERE p.oid = idx.indexrelid) AS top_opts
			-- (pg_partition_tree has no row for an index of a table that is not
			-- partitioned.)
			FROM (SELECT idx.indexrelid AS relid, 0 AS level
			      UNION
			      SELECT p.relid, p.level FROM pg_partition_tree(idx.indexrelid) p WHERE p.level > 0) t
			JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace cn ON cn.oid = c.relnamespace
			JOIN pg_index x ON x.indexrelid = c.oid
			ORDER BY t.level, t.relid
		LOOP
			IF oc.ts IS NOT NULL AND NOT has_tablespace_privilege(oc.ts, 'CREATE') THEN
				blockers := blockers + 1;
				action := 'blocked'; object := format('%I.%I', oc.nsp, oc.old_name);
				detail := format('in tablespace %I, where the caller may not create: GRANT CREATE ON '
					'TABLESPACE %I, or move the index first', oc.ts, oc.ts);
				RETURN NEXT;
			END IF;
			IF oc.level > 0 THEN
				plan_creates := plan_creates || format('DO %L', format(
					'DECLARE n name; BEGIN '
					'SELECT c.relname INTO n FROM pg_catalog.pg_partition_tree(%L::pg_catalog.regclass) t '
					'JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid '
					'JOIN pg_catalog.pg_index x ON x.indexrelid OPERATOR(pg_catalog.=) c.oid '
					'WHERE x.indrelid OPERATOR(pg_catalog.=) %s::pg_catalog.oid; '
					'IF n IS NOT NULL THEN EXECUTE pg_catalog.format(%L, %L, n, %L); END IF; END',
					idx.name, oc.part, 'ALTER INDEX %I.%I RENAME TO %I', oc.nsp,
					'arrw_migrate_' || oc.old_oid));
				plan_renames := plan_renames || format('ALTER INDEX IF EXISTS %I.%I RENAME TO %I',
					oc.nsp, 'arrw_migrate_' || oc.old_oid, oc.old_name);
			END IF;
			IF oc.note IS NOT NULL THEN
				plan_after := plan_after || format('COMMENT ON INDEX %I.%I IS %L', oc.nsp, oc.old_name, oc.note);
			END IF;
			-- A partition's index attached with options of its own: created again
			-- with the parent's, it gets its own back and is built with them.
			IF oc.level > 0 AND oc.kind = 'i' AND oc.opts IS DISTINCT FROM oc.top_opts THEN
				IF oc.top_opts IS NOT NULL THEN
					plan_after := plan_after || format('ALTER INDEX %I.%I RESET (%s)', oc.nsp, oc.old_name,
						(SELECT string_agg(quote_ident(split_part(o, '=', 1)), ', ') FROM unnest(oc.top_opts) o));
				END IF;
				IF oc.opts IS NOT NULL THEN
					plan_after := plan_after || format('ALTER INDEX %I.%I SET (%s)', oc.nsp, oc.old_name,
						(SELECT string_agg(format('%I = %L', split_part(o, '=', 1), substr(o, strpos(o, '=') + 1)), ', ')
						 FROM unnest(oc.opts) o));
				END IF;
				plan_after := plan_after || format('REINDEX INDEX %I.%I', oc.nsp, oc.old_name);
			END IF;
			IF oc.ts IS NOT NULL THEN
				plan_after := plan_after || format('ALTER INDEX %I.%I SET TABLESPACE %I', oc.nsp, oc.old_name, oc.ts);
			END IF;
			IF oc.indisreplident THEN
				plan_after := plan_after || format('ALTER TABLE %s REPLICA IDENTITY USING INDEX %I',
					oc.part_name, oc.old_name);
			END IF;
			IF oc.indisclustered THEN
				plan_after := plan_after || format('ALTER TABLE %s CLUSTER ON %I', oc.part_name, oc.old_name);
			END IF;
		END LOOP;
		action := 'drop index'; object := idx.name;
		detail := 'created again after the columns change (below)';
		RETURN NEXT;
	END LOOP;

	IF blockers > 0 AND NOT dry_run THEN
		RAISE EXCEPTION 'migrate_to_arrw: % object(s) block the migration; nothing was changed', blockers
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'SELECT * FROM migrate_to_arrw() lists them (action = ''blocked'').';
	END IF;

	-- Indexes first (an index cannot outlive its operator class's type), then
	-- the columns, then the indexes again.
	FOR i IN 1 .. coalesce(array_length(plan_drops, 1), 0) LOOP
		IF NOT dry_run THEN EXECUTE plan_drops[i]; END IF;
	END LOOP;
	FOR i IN 1 .. coalesce(array_length(plan_cols, 1), 0) LOOP
		action := 'alter column'; object := NULL; detail := plan_cols[i];
		IF NOT dry_run THEN EXECUTE plan_cols[i]; END IF;
		RETURN NEXT;
	END LOOP;
	-- Every index first (with its partitions' indexes renamed to names of
	-- their old OIDs), then their old names, then what goes with them.
	plan_creates := plan_creates || plan_renames || plan_after;
	FOR i IN 1 .. coalesce(array_length(plan_creates, 1), 0) LOOP
		action := 'create index'; object := NULL; detail := plan_creates[i];
		IF NOT dry_run THEN EXECUTE plan_creates[i]; END IF;
		RETURN NEXT;
	END LOOP;
	action := 'next'; object := NULL;
	detail := CASE WHEN blockers > 0 THEN 'resolve the blocked objects, then run migrate_to_arrw(dry_run => false)'
		WHEN dry_run THEN 'nothing was changed: migrate_to_arrw(dry_run => false) does the above'
		ELSE 'done: when no other object uses pgvector (skipped tables are migrated by their owners), DROP EXTENSION arrw_pgvector; DROP EXTENSION vector;' END;
	RETURN NEXT;
END
$fn$;
COMMENT ON FUNCTION @extschema@.migrate_to_arrw(boolean, boolean) IS
	'moves every column of pgvector''s vector/halfvec types to arrw''s, in place, with its indexes (dry run by default)';
