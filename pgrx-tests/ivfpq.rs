// In-server tests for ivfpq (included into the pg_test schema by src/lib.rs).
