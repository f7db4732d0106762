-- Update arrw 0.1.0 -> 0.2.0 (ALTER EXTENSION arrw UPDATE TO '0.2.0').
--
-- The SQL objects of 0.2.0 are those of 0.1.0: the install scripts
-- (sql/versions/arrw--0.1.0.sql and what `cargo pgrx schema` generates for
-- 0.2.0) differ only in pgrx's source-line comments, so there is nothing to
-- change. Every C function of 0.1.0 keeps its symbol in the 0.2.0 library
-- (tests/upgrade.rs creates 0.1.0 against it). An ivfpq index keeps its
-- on-disk format (2); no REINDEX is needed.
--
-- When a release changes SQL objects, its update script says so here: only
-- CREATE OR REPLACE / ALTER / new objects, never a DROP of user-visible state.

\echo Use "ALTER EXTENSION arrw UPDATE" to load this file. \quit
