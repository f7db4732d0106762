// In-server tests for cdc (included into the pg_test schema by src/lib.rs).
