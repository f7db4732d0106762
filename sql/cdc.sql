-- Change data capture (see src/cdc/ and docs/cdc.md; the threat model is in
-- docs/security.md).
--
-- The durable feed is the `arrw` logical decoding output plugin, which needs no
-- SQL objects: pg_create_logical_replication_slot('feed', 'arrw'). What follows
-- are the low-latency NOTIFY channels (arrw.watch / arrw.unwatch),
-- arrw.emit_event, which puts an event into the durable feed, and the secret
-- behind arrw's authenticated job channel.

-- Per-database secrets of arrw. Only the table's owner (the superuser who ran
-- CREATE EXTENSION) and arrw's SECURITY DEFINER functions can read it.
--   job_channel: the secret behind the name of the authenticated job channel
--   (arrw.job_channel()): 'arrw_jobs_' and 32 hex digits of gen_random_uuid()
--   (122 random bits).
-- pg_dump does not copy the rows of an extension's table: a restored database
-- gets a new secret. CREATE DATABASE ... TEMPLATE copies them, though (and so
-- every database made from a template1 that has arrw): the channel's name is
-- therefore the secret hashed with the database's OID, so that a role that
-- learnt it in one database does not know it in another.
CREATE TABLE arrw.secret (
	name text PRIMARY KEY,
	value text NOT NULL
);
REVOKE ALL ON arrw.secret FROM PUBLIC;
INSERT INTO arrw.secret (name, value)
	VALUES ('job_channel', 'arrw_jobs_' || pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', ''));
COMMENT ON TABLE arrw.secret IS 'per-database secrets of arrw (superuser only); see docs/security.md';

-- The channel on which only arrw announces job state changes. PostgreSQL lets
-- anyone NOTIFY any channel whose name they know, so the name is the secret:
-- only roles the operator grants EXECUTE on this function learn it.
CREATE FUNCTION arrw.job_channel() RETURNS text
	LANGUAGE sql STABLE SECURITY DEFINER PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT 'arrw_jobs_' || pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
		s.value || ':' || d.oid::pg_catalog.text, 'UTF8')), 'hex'), 32)
	  FROM arrw.secret s, pg_catalog.pg_database d
	 WHERE s.name = 'job_channel' AND d.datname = pg_catalog.current_database()
$$;
REVOKE EXECUTE ON FUNCTION arrw.job_channel() FROM PUBLIC;
COMMENT ON FUNCTION arrw.job_channel() IS
	'the secret channel on which only arrw announces job state changes (not executable by PUBLIC: GRANT EXECUTE to trusted listeners)';

-- Puts {"kind": kind, "payload": payload} into the change feed as a
-- transactional logical decoding message with prefix 'arrw': consumers of an
-- 'arrw' slot see it, in commit order, only if the calling transaction commits.
-- Returns the message's LSN, or NULL when nothing can decode it (wal_level is
-- not 'logical', or this is a standby).
--
-- Kind 'job' and every kind starting with 'arrw' (ignoring case and
-- surrounding blanks) are reserved for events arrw writes itself, and refused
-- here for every caller, superusers included: arrw's job code writes its
-- events without this function (src/jobs/notify.rs). The plugin marks every
-- message with "origin"; "arrw" only for events it can tell arrw wrote.
CREATE FUNCTION arrw.emit_event(kind text, payload jsonb DEFAULT NULL) RETURNS pg_lsn
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	IF kind IS NULL OR kind = '' THEN
		RAISE EXCEPTION 'arrw.emit_event: kind must be a non-empty string'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- Blanks: ASCII white space, not spaces alone (a tab or a newline before
	-- "job" once passed). The vertical tab is \x0b: PostgreSQL has no \v
	-- escape (E'\v' is the letter v, which made 'vjob' reserved).
	IF lower(btrim(kind, E' \t\n\r\f\x0b')) = 'job'
	   OR starts_with(lower(btrim(kind, E' \t\n\r\f\x0b')), 'arrw') THEN
		RAISE EXCEPTION 'arrw.emit_event: event kind % is reserved for arrw', quote_literal(kind)
			USING ERRCODE = 'insufficient_privilege',
			      HINT = 'Kind "job" and kinds starting with "arrw" are written only by arrw itself.';
	END IF;
	IF current_setting('wal_level') <> 'logical' OR pg_is_in_recovery() THEN
		RETURN NULL;
	END IF;
	RETURN pg_logical_emit_message(true, 'arrw',
		jsonb_build_object('kind', kind, 'payload', payload)::text);
END
$$;
COMMENT ON FUNCTION arrw.emit_event(text, jsonb) IS
	'emit {"kind":...,"payload":...} into the arrw change feed (a transactional logical decoding message with prefix arrw); kinds job and arrw* are reserved';

-- The SQL expression (over the column reference col, such as r."id") that
-- gives a watch payload's key value for a column of type typ, as jsonb; NULL
-- when keys of that type are left out.
--
-- A key is rendered by code of PostgreSQL and arrw only, never by code a
-- type's owner defines, because it runs as whoever writes the table:
-- to_jsonb calls a cast to json that a type's owner created (for any type not
-- built in, and for the elements and fields of arrays and composites), and
-- the output function of a base type created outside PostgreSQL and arrw is
-- its creator's code. So:
-- - int8 and numeric (or a domain over either): their text, a JSON string, as
--   in the slot feed;
-- - other scalar types built into PostgreSQL (or domains over them): to_jsonb
--   (a number, a boolean, a string...);
-- - arrays, composites, and every type not built in (enums, ranges, arrw's
--   vector and halfvec...): their text output (format('%s'), which calls the
--   type's output function and no cast), a JSON string, as in the slot feed;
-- - NULL, no keys, when the type or any type inside it (through domains,
--   array elements, composite fields, range subtypes) has an output function
--   that is neither built into PostgreSQL nor arrw's own.
CREATE FUNCTION arrw._watch_key_expr(col text, typ oid) RETURNS text
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	SET standard_conforming_strings = on
	AS $$
	WITH RECURSIVE parts(t) AS (
		SELECT typ
		UNION
		SELECT c.t
		  FROM parts p
		  JOIN pg_type ty ON ty.oid = p.t
		  CROSS JOIN LATERAL (
			SELECT ty.typbasetype WHERE ty.typtype = 'd'
			UNION ALL
			SELECT ty.typelem WHERE ty.typelem <> 0 AND ty.typoutput = 'array_out'::regproc
			UNION ALL
			SELECT a.atttypid FROM pg_attribute a
			 WHERE ty.typtype = 'c' AND a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped
			UNION ALL
			SELECT r.rngsubtype FROM pg_range r WHERE ty.typtype = 'r' AND r.rngtypid = ty.oid
			UNION ALL
			SELECT r.rngtypid FROM pg_range r WHERE ty.typtype = 'm' AND r.rngmultitypid = ty.oid
		  ) AS c(t)
	), domains(t) AS (
		SELECT typ
		UNION ALL
		SELECT ty.typbasetype FROM pg_type ty JOIN domains d ON ty.oid = d.t WHERE ty.typtype = 'd'
	)
	SELECT CASE
		WHEN (SELECT bool_and(ty.typoutput::oid < 16384
		                      OR EXISTS (SELECT 1 FROM pg_depend dep JOIN pg_extension x ON x.oid = dep.refobjid
		                                  WHERE dep.classid = 'pg_type'::regclass AND dep.objid = ty.oid
		                                    AND dep.refclassid = 'pg_extension'::regclass
		                                    AND dep.deptype = 'e' AND x.extname = 'arrw'))
		        FROM parts p LEFT JOIN pg_type ty ON ty.oid = p.t) IS NOT TRUE
			THEN NULL
		WHEN b.oid IN ('int8'::regtype, 'numeric'::regtype)
		     OR b.oid >= 16384 OR b.typtype <> 'b'
		     OR (b.typelem <> 0 AND b.typsubscript = 'array_subscript_handler'::regproc)
			THEN 'to_jsonb(format(''%s'', ' || col || '))'
		-- As the slot feed: bytea in hex whatever the writer's bytea_output
		-- (its text form followed the session), an oid a number.
		WHEN b.oid = 'bytea'::regtype
			THEN 'to_jsonb(''\x'' || encode(' || col || ', ''hex''))'
		WHEN b.oid = 'oid'::regtype
			THEN 'to_jsonb(' || col || '::int8)'
		ELSE 'to_jsonb(' || col || ')'
	END
	  FROM pg_type b
	 WHERE b.oid = (SELECT d.t FROM domains d JOIN pg_type ty ON ty.oid = d.t WHERE ty.typtype <> 'd')
$$;

-- The trigger function behind arrw.watch: one pg_notify per statement, on the
-- channel given as the trigger's first argument, with a payload like
--   {"table":"public.docs","op":"insert","count":3}
-- Any role can LISTEN on any channel, so by default a payload carries only
-- the table's name, the operation and the row count. Only when the table's
-- owner opted in (arrw.watch(..., include_keys => true), which adds the
-- trigger argument 'keys') does it add
--   "keys":[1,2,3]
-- (primary-key values: the value itself for a one-column key, an object for a
-- composite key; int8 and numeric, arrays, composites and types not built into
-- PostgreSQL as strings of their text, as in the slot feed; see
-- arrw._watch_key_expr), for tables with a primary key, when the statement
-- touched at most 100 rows and the payload stays under 8000 bytes. Other
-- column values never go into payloads. A key is rendered only by code of
-- PostgreSQL and arrw, never by a cast or output function a type's owner
-- defined (it would run as whoever writes the table): a key of such a type
-- sends no keys.
-- Statements that touched no rows send nothing.
-- The key text must not depend on the writer's session: floats follow
-- extra_float_digits (at -15, 1/3 and 0.3 were both 0.3), dates inside
-- arrays, ranges and composites DateStyle (DMY against MDY), intervals
-- IntervalStyle, timestamptz the writer's TimeZone (keys are in UTC),
-- bytea inside arrays bytea_output, reg* values quote_all_identifiers; they
-- are pinned here (to PostgreSQL's defaults but for TimeZone), as the
-- slot feed pins extra_float_digits (src/cdc/plugin.rs). So is
-- standard_conforming_strings: with it off, the '\x' before a bytea key's
-- hex lost its backslash (here and in every function below that writes a
-- backslash in a literal).
CREATE FUNCTION arrw.notify_changes() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	SET standard_conforming_strings = on
	SET extra_float_digits = 1
	SET datestyle = 'ISO, MDY'
	SET intervalstyle = 'postgres'
	SET timezone = 'UTC'
	SET bytea_output = 'hex'
	SET quote_all_identifiers = off
	AS $$
DECLARE
	channel text := TG_ARGV[0];
	want_keys boolean := TG_NARGS > 1 AND TG_ARGV[1] = 'keys';
	tbl text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
	n bigint;
	keyexpr text;
	keys jsonb;
	payload text;
BEGIN
	IF TG_OP = 'TRUNCATE' THEN
		PERFORM pg_notify(channel, '{"table":' || to_json(tbl)::text || ',"op":"truncate"}');
		RETURN NULL;
	END IF;

	IF TG_OP = 'DELETE' THEN
		SELECT count(*) INTO n FROM arrw_old;
	ELSE
		SELECT count(*) INTO n FROM arrw_new;
	END IF;
	IF n = 0 THEN
		RETURN NULL;
	END IF;

	IF want_keys AND n <= 100 THEN
		-- A jsonb expression for the primary key of transition-table row r
		-- (each column's as arrw._watch_key_expr renders it); NULL, and no
		-- keys, when a column's type is one whose keys are left out.
		SELECT CASE WHEN count(*) <> count(e) THEN NULL
		            WHEN count(*) = 1 THEN min(e)
		            ELSE 'jsonb_build_object(' || string_agg(quote_literal(attname) || ', ' || e, ', ' ORDER BY ord) || ')'
		       END
		  INTO keyexpr
		  FROM (SELECT a.attname, k.ord,
		               CASE WHEN ty.oid < 16384 AND ty.typtype = 'b' THEN
		                      -- A type built into PostgreSQL (its output function
		                      -- is too): rendered here as arrw._watch_key_expr
		                      -- renders it, without its catalog walk, which is
		                      -- planned anew for every statement (~12 ms a
		                      -- statement for a bigint key before, hunt-57).
		                      CASE WHEN ty.oid IN ('int8'::regtype, 'numeric'::regtype)
		                             OR (ty.typelem <> 0 AND ty.typsubscript = 'array_subscript_handler'::regproc)
		                             THEN 'to_jsonb(format(''%s'', r.' || quote_ident(a.attname) || '))'
		                           WHEN ty.oid = 'bytea'::regtype
		                             THEN 'to_jsonb(''\x'' || encode(r.' || quote_ident(a.attname) || ', ''hex''))'
		                           WHEN ty.oid = 'oid'::regtype
		                             THEN 'to_jsonb(r.' || quote_ident(a.attname) || '::int8)'
		                           ELSE 'to_jsonb(r.' || quote_ident(a.attname) || ')'
		                      END
		                    ELSE arrw._watch_key_expr('r.' || quote_ident(a.attname), a.atttypid)
		               END AS e
		          FROM pg_index i
		          CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
		          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		          JOIN pg_type ty ON ty.oid = a.atttypid
		         WHERE i.indrelid = TG_RELID AND i.indisprimary
		         -- Not pulled up: e is used three times above, and would be
		         -- computed three times.
		         OFFSET 0) AS cols
		HAVING count(*) > 0;

		IF keyexpr IS NOT NULL THEN
			IF TG_OP = 'INSERT' THEN
				EXECUTE 'SELECT jsonb_agg(' || keyexpr || ') FROM arrw_new r' INTO keys;
			ELSIF TG_OP = 'DELETE' THEN
				EXECUTE 'SELECT jsonb_agg(' || keyexpr || ') FROM arrw_old r' INTO keys;
			ELSE
				-- Updates report the keys before and after (they differ only
				-- when the statement changed a primary key).
				EXECUTE 'SELECT jsonb_agg(DISTINCT k) FROM (SELECT ' || keyexpr || ' AS k FROM arrw_new r'
					|| ' UNION ALL SELECT ' || keyexpr || ' FROM arrw_old r) AS u' INTO keys;
			END IF;
		END IF;
	END IF;

	payload := '{"table":' || to_json(tbl)::text || ',"op":"' || lower(TG_OP) || '","count":' || n;
	IF keys IS NOT NULL AND octet_length(payload) + octet_length(keys::text) + 10 < 8000 THEN
		payload := payload || ',"keys":' || keys::text;
	END IF;
	payload := payload || '}';
	PERFORM pg_notify(channel, payload);
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION arrw.notify_changes() IS
	'statement-level trigger installed by arrw.watch: pg_notify one small JSON payload per statement';

-- Checks that the current user owns (has the privileges of the owner of) a
-- table that can be watched.
CREATE FUNCTION arrw._watch_check(rel regclass) RETURNS void
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	kind "char";
	owner oid;
BEGIN
	IF rel IS NULL THEN
		RAISE EXCEPTION 'table must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT relkind, relowner INTO kind, owner FROM pg_class WHERE oid = rel;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'relation with OID % does not exist', rel::oid
			USING ERRCODE = 'undefined_table';
	END IF;
	IF kind NOT IN ('r', 'p') THEN
		RAISE EXCEPTION '% is not a table', rel
			USING ERRCODE = 'wrong_object_type',
			      HINT = 'Only tables and partitioned tables can be watched.';
	END IF;
	IF NOT pg_has_role(owner, 'USAGE') THEN
		RAISE EXCEPTION 'must be owner of table %', rel
			USING ERRCODE = 'insufficient_privilege';
	END IF;
END
$$;

-- The channel a table's watch triggers notify, or NULL when it is not watched.
CREATE FUNCTION arrw._watch_channel(rel regclass) RETURNS text
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	SET standard_conforming_strings = on
	AS $$
	SELECT convert_from(substring(t.tgargs FROM 1 FOR position('\x00'::bytea IN t.tgargs) - 1), current_setting('server_encoding'))
	  FROM pg_trigger t
	 WHERE t.tgrelid = rel AND t.tgname = 'arrw_watch_insert'
$$;

-- Removes a table's watch triggers (if any).
CREATE FUNCTION arrw._watch_drop(rel regclass) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	trg name;
BEGIN
	FOR trg IN SELECT tgname FROM pg_trigger
	            WHERE tgrelid = rel
	              AND tgname IN ('arrw_watch_insert', 'arrw_watch_update', 'arrw_watch_delete', 'arrw_watch_truncate')
	LOOP
		EXECUTE format('DROP TRIGGER %I ON %s', trg, rel);
	END LOOP;
END
$$;

-- Whether a table's watch triggers put primary keys into payloads (their
-- arguments are the channel and 'keys'), NULL when it is not watched.
CREATE FUNCTION arrw._watch_keys(rel regclass) RETURNS boolean
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	SET standard_conforming_strings = on
	AS $$
	SELECT t.tgnargs = 2 AND position('\x006b65797300'::bytea IN t.tgargs) = octet_length(t.tgargs) - 5
	  FROM pg_trigger t
	 WHERE t.tgrelid = rel AND t.tgname = 'arrw_watch_insert'
$$;

-- Starts sending a notification on `channel` for every statement that
-- inserts, updates, deletes or truncates `rel`; returns the channel. Watching
-- a watched table again replaces its channel and key setting. Only the table's
-- owner (or a member of the owning role, or a superuser) may do this.
-- include_keys: also put primary-key values into the payloads. Every role
-- that can connect to the database can LISTEN and would receive them, whatever
-- its privileges on the table, so this is the owner's explicit decision.
CREATE FUNCTION arrw.watch(rel regclass, channel text DEFAULT 'arrw_changes', include_keys boolean DEFAULT false)
	RETURNS text
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	SET standard_conforming_strings = on
	AS $$
DECLARE
	targs text;
BEGIN
	PERFORM arrw._watch_check(rel);
	-- A channel is an identifier (LISTEN takes one): as PostgreSQL's scanner
	-- reads one, a letter, underscore or any non-ASCII character, then those,
	-- digits or dollar signs; at most 63 bytes. ([[:alpha:]] followed the
	-- database's LC_CTYPE: a name with an accented letter was refused under
	-- C, accepted under C.UTF-8.)
	IF channel IS NULL OR channel !~ '^([A-Za-z_]|[^\x01-\x7f])([A-Za-z0-9_$]|[^\x01-\x7f])*$' OR octet_length(channel) > 63 THEN
		RAISE EXCEPTION 'invalid channel name: %', coalesce(quote_literal(channel), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'A channel name is an identifier of at most 63 bytes: a letter or underscore followed by letters, digits, underscores or dollar signs.';
	END IF;
	IF include_keys IS NULL THEN
		RAISE EXCEPTION 'include_keys must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	targs := quote_literal(channel);
	IF include_keys THEN
		targs := targs || ', ' || quote_literal('keys');
	END IF;
	PERFORM arrw._watch_drop(rel);
	EXECUTE format('CREATE TRIGGER arrw_watch_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS arrw_new'
		' FOR EACH STATEMENT EXECUTE FUNCTION arrw.notify_changes(%s)', rel, targs);
	EXECUTE format('CREATE TRIGGER arrw_watch_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS arrw_old NEW TABLE AS arrw_new'
		' FOR EACH STATEMENT EXECUTE FUNCTION arrw.notify_changes(%s)', rel, targs);
	EXECUTE format('CREATE TRIGGER arrw_watch_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS arrw_old'
		' FOR EACH STATEMENT EXECUTE FUNCTION arrw.notify_changes(%s)', rel, targs);
	EXECUTE format('CREATE TRIGGER arrw_watch_truncate AFTER TRUNCATE ON %s'
		' FOR EACH STATEMENT EXECUTE FUNCTION arrw.notify_changes(%s)', rel, targs);
	RETURN channel;
END
$$;
COMMENT ON FUNCTION arrw.watch(regclass, text, boolean) IS
	'notify a channel (default arrw_changes) once per statement that changes the table; primary keys only with include_keys (any role can LISTEN)';

-- Stops the notifications of a watched table; returns the channel it used.
CREATE FUNCTION arrw.unwatch(rel regclass) RETURNS text
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	channel text;
BEGIN
	PERFORM arrw._watch_check(rel);
	channel := arrw._watch_channel(rel);
	IF channel IS NULL THEN
		RAISE EXCEPTION 'table % is not watched', rel
			USING ERRCODE = 'undefined_object',
			      HINT = 'arrw.watches lists the watched tables.';
	END IF;
	PERFORM arrw._watch_drop(rel);
	RETURN channel;
END
$$;
COMMENT ON FUNCTION arrw.unwatch(regclass) IS
	'stop the notifications arrw.watch set up for the table';

-- Watched tables, their channels, and whether their payloads carry primary
-- keys. (Trigger arguments are in pg_trigger, which every role can read.)
CREATE VIEW arrw.watches AS
	SELECT t.tgrelid::regclass AS "table", arrw._watch_channel(t.tgrelid) AS channel,
	       arrw._watch_keys(t.tgrelid) AS keys
	  FROM pg_catalog.pg_trigger t
	 WHERE t.tgname = 'arrw_watch_insert'
	   AND t.tgfoid = 'arrw.notify_changes()'::pg_catalog.regprocedure;
-- Everyone reads it: it shows what pg_trigger shows every role.
GRANT SELECT ON arrw.watches TO PUBLIC;
COMMENT ON VIEW arrw.watches IS 'tables watched with arrw.watch, the channel each notifies, and whether its payloads carry primary keys';
