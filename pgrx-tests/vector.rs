// In-server tests (`#[pg_test]`): each runs inside a PostgreSQL backend, in a
// transaction that is rolled back. Run with `cargo pgrx test pg15 --runas postgres
// --pgdata <dir>` (see TESTING.md); one test: append its name. `pgrx::prelude::*`
// is in scope (src/lib.rs); test names must be unique across these files.

#[pg_test]
fn vector_text_round_trip() {
    let s = Spi::get_one::<String>("SELECT '[1, 2.5 ,-3e-5]'::vector::text")
        .unwrap()
        .unwrap();
    assert_eq!(s, "[1,2.5,-3e-05]");
}

#[pg_test]
fn l2_distance_matches_definition() {
    let d = Spi::get_one::<f64>("SELECT '[0,0]'::vector <-> '[3,4]'")
        .unwrap()
        .unwrap();
    assert_eq!(d, 5.0);
}
