// In-server tests for jobs (included into the pg_test schema by src/lib.rs).
