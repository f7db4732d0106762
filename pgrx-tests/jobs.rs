// In-server tests for jobs (included into the pg_test schema by src/lib.rs).
// A #[pg_test] runs in a transaction that is rolled back, so no job it submits ever
// reaches a worker: here how bulk_import streams batches, argument validation, the
// queue's visibility rules and cancel/wait on queued jobs. The row splitter itself
// is tested in crates/arrw-core (src/import.rs). Workers, crashes, restarts and
// roles over real connections: tests/jobs.rs.

fn jobs_batches(
    data: &[u8],
    format: arrw_core::import::Format,
    max_rows: u64,
    chunk: usize,
) -> Vec<(Vec<u8>, crate::jobs::import::Batch)> {
    use crate::jobs::import::{read_batch, Input};
    use arrw_core::import::{Encoding, Splitter};
    let mut input = Input::with_capacity(data, chunk);
    let mut s = Splitter::new(format, Encoding::Plain, u64::MAX);
    let mut out = Vec::new();
    loop {
        let mut w = Vec::new();
        let b = read_batch(&mut input, &mut s, &mut w, max_rows, u64::MAX, &mut || false).unwrap();
        let last = b.last;
        out.push((w, b));
        if last {
            return out;
        }
    }
}

#[pg_test]
fn jobs_csv_batches_count_bytes_and_rows() {
    use crate::jobs::import::Batch;
    let csv = arrw_core::import::Format::csv(b'"', b'"');
    // Whatever the read buffer size, the same batches.
    for chunk in [1, 3, 1 << 20] {
        let b = jobs_batches(b"1,\"a\nb\"\n2,x\n3,y\n", csv, 2, chunk);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].0, b"1,\"a\nb\"\n2,x\n");
        assert_eq!(
            b[0].1,
            Batch { rows: 2, consumed: 12, last: false, marker: false, marker_row: None, at_marker: false }
        );
        assert_eq!(
            b[1].1,
            Batch { rows: 1, consumed: 4, last: true, marker: false, marker_row: None, at_marker: false }
        );
    }
    // A batch ending exactly at the end of the file is the last one.
    let b = jobs_batches(b"1\n2\n", csv, 2, 1 << 20);
    assert_eq!((b.len(), b[0].1.last), (1, true));
    // The end marker ends the data; what follows is never read into a batch.
    let b = jobs_batches(b"1\n\\.\n2\n", arrw_core::import::Format::Text, 10, 2);
    assert_eq!(b[0].0, b"1\n\\.\n");
    assert_eq!(
        b[0].1,
        Batch { rows: 1, consumed: 5, last: true, marker: true, marker_row: None, at_marker: false }
    );
}

#[pg_test]
fn jobs_reading_stops_when_asked_between_chunks() {
    use crate::jobs::import::{read_batch, CutError, Input};
    use arrw_core::import::{Encoding, Format, Splitter};
    // One long row: the check runs before every chunk, not once per row.
    let data = vec![b'x'; 10_000];
    let mut input = Input::with_capacity(&data[..], 100);
    let mut s = Splitter::new(Format::Text, Encoding::Plain, u64::MAX);
    let mut calls = 0;
    let r = read_batch(&mut input, &mut s, &mut std::io::sink(), 10, u64::MAX, &mut || {
        calls += 1;
        calls > 5
    });
    assert!(matches!(r, Err(CutError::Stopped)));
    assert_eq!(calls, 6);
    // A row over the limit is an error as soon as the limit is passed.
    let mut input = Input::with_capacity(&data[..], 100);
    let mut s = Splitter::new(Format::Text, Encoding::Plain, 1000);
    let mut calls = 0;
    let r = read_batch(&mut input, &mut s, &mut std::io::sink(), 10, u64::MAX, &mut || {
        calls += 1;
        false
    });
    assert!(matches!(r, Err(CutError::Split(..))));
    assert!(calls <= 11, "{calls}");
}

#[pg_test]
fn jobs_binary_batches_split_on_tuples() {
    use crate::jobs::import::{read_batch, Input};
    use arrw_core::import::{Encoding, Format, Found, Splitter};
    let mut file = b"PGCOPY\n\xff\r\n\0".to_vec();
    file.extend_from_slice(&0u32.to_be_bytes());
    file.extend_from_slice(&3u32.to_be_bytes());
    file.extend_from_slice(b"ext");
    for v in [7i32, 8, 9] {
        file.extend_from_slice(&2i16.to_be_bytes());
        file.extend_from_slice(&4i32.to_be_bytes());
        file.extend_from_slice(&v.to_be_bytes());
        file.extend_from_slice(&(-1i32).to_be_bytes());
    }
    file.extend_from_slice(&(-1i16).to_be_bytes());
    let mut s = Splitter::new(Format::Binary, Encoding::Plain, u64::MAX);
    let step = s.step(&file).unwrap();
    assert_eq!(step, arrw_core::import::Step { used: 22, found: Some(Found::Header) });
    let mut input = Input::new(&file[22..]);
    let mut w = Vec::new();
    let b = read_batch(&mut input, &mut s, &mut w, 2, u64::MAX, &mut || false).unwrap();
    assert_eq!((b.rows, b.consumed, b.last, b.marker), (2, 28, false, false));
    let mut w = Vec::new();
    let b = read_batch(&mut input, &mut s, &mut w, 2, u64::MAX, &mut || false).unwrap();
    // The file's own trailer is part of the last batch.
    assert_eq!((b.rows, b.consumed, b.last, b.marker), (1, 16, true, true));
    assert_eq!(&w[w.len() - 2..], &[0xff, 0xff]);
}

#[pg_test(error = "argument \"encoding\" must be a valid encoding name, not \"klingon\"")]
fn jobs_submit_rejects_unknown_encodings() {
    Spi::run("CREATE TABLE jobs_t (id int)").unwrap();
    Spi::run(r#"SELECT arrw.submit_job('bulk_import', '{"table": "jobs_t", "path": "/x", "encoding": "klingon"}')"#)
        .unwrap();
}

#[pg_test]
fn jobs_cancel_leaves_the_job_row_unlocked() {
    Spi::run("CREATE TABLE jobs_t (id int)").unwrap();
    let id = Spi::get_one::<i64>(
        r#"SELECT arrw.submit_job('batch_delete', '{"table": "jobs_t", "where": "id > 1"}')"#,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        Spi::get_one::<bool>(&format!("SELECT arrw.cancel_job({id})")).unwrap(),
        Some(true)
    );
    // The request is a row of its own; the job's row is neither changed nor
    // locked by this transaction (xmax stays unset).
    assert_eq!(
        Spi::get_two::<String, String>(&format!(
            "SELECT state, xmax::text FROM arrw.job WHERE id = {id}"
        ))
        .unwrap(),
        (Some("queued".into()), Some("0".into()))
    );
    assert_eq!(
        Spi::get_one::<String>(&format!("SELECT state FROM arrw.jobs WHERE id = {id}")).unwrap(),
        Some("cancelled".into())
    );
}

#[pg_test(error = "unknown job kind \"nope\"")]
fn jobs_submit_rejects_unknown_kind() {
    Spi::run("SELECT arrw.submit_job('nope', '{}')").unwrap();
}

#[pg_test(error = "unknown argument \"colour\" for a batch_delete job")]
fn jobs_submit_rejects_unknown_argument() {
    Spi::run("CREATE TABLE jobs_t (id int)").unwrap();
    Spi::run(r#"SELECT arrw.submit_job('batch_delete', '{"table": "jobs_t", "where": "true", "colour": 1}')"#).unwrap();
}

#[pg_test(error = "argument \"batch_rows\" must be an integer between 1 and 100000000")]
fn jobs_submit_rejects_wrong_types() {
    Spi::run("CREATE TABLE jobs_t (id int)").unwrap();
    Spi::run(r#"SELECT arrw.submit_job('batch_delete', '{"table": "jobs_t", "where": "true", "batch_rows": 1.5}')"#)
        .unwrap();
}

#[pg_test(
    error = "argument \"where\" must be a single SQL expression (the body of a WHERE clause)"
)]
fn jobs_submit_rejects_statements_in_fragments() {
    Spi::run("CREATE TABLE jobs_t (id int)").unwrap();
    Spi::run(
        r#"SELECT arrw.submit_job('batch_delete', '{"table": "jobs_t", "where": "true LIMIT 1"}')"#,
    )
    .unwrap();
}

#[pg_test(error = "argument \"quote\" is not allowed with format binary")]
fn jobs_submit_rejects_options_of_other_formats() {
    Spi::run("CREATE TABLE jobs_t (id int)").unwrap();
    Spi::run(r#"SELECT arrw.submit_job('bulk_import', '{"table": "jobs_t", "path": "/x", "format": "binary", "quote": "x"}')"#)
        .unwrap();
}

#[pg_test(error = "relation \"jobs_missing\" does not exist")]
fn jobs_submit_resolves_tables() {
    Spi::run(r#"SELECT arrw.submit_job('bulk_import', '{"table": "jobs_missing", "path": "/x"}')"#)
        .unwrap();
}

#[pg_test(
    error = "must be superuser or have privileges of the pg_read_server_files role to import a server file"
)]
fn jobs_submit_needs_pg_read_server_files() {
    Spi::run("CREATE ROLE jobs_nobody; CREATE TABLE jobs_t (id int); GRANT INSERT ON jobs_t TO jobs_nobody").unwrap();
    Spi::run("SET LOCAL ROLE jobs_nobody").unwrap();
    Spi::run(r#"SELECT arrw.submit_job('bulk_import', '{"table": "jobs_t", "path": "/x"}')"#)
        .unwrap();
}

#[pg_test]
fn jobs_queue_cancel_and_visibility() {
    Spi::run("CREATE ROLE jobs_a; CREATE ROLE jobs_b; CREATE TABLE jobs_t (id int); GRANT SELECT, DELETE ON jobs_t TO jobs_a")
        .unwrap();
    Spi::run("SET LOCAL ROLE jobs_a").unwrap();
    let id = Spi::get_one::<i64>(
        r#"SELECT arrw.submit_job('batch_delete', '{"table": "jobs_t", "where": "id > 1"}', 5)"#,
    )
    .unwrap()
    .unwrap();
    let row = Spi::get_three::<String, String, i32>(&format!(
        "SELECT state, owner::text, max_attempts FROM arrw.jobs WHERE id = {id}"
    ))
    .unwrap();
    assert_eq!(row, (Some("queued".into()), Some("jobs_a".into()), Some(5)));
    // Another role neither sees nor cancels it.
    Spi::run("SET LOCAL ROLE jobs_b").unwrap();
    assert_eq!(
        Spi::get_one::<i64>("SELECT count(*) FROM arrw.jobs").unwrap(),
        Some(0)
    );
    assert_eq!(
        Spi::get_one::<bool>(&format!("SELECT arrw.cancel_job({id})")).unwrap(),
        Some(false)
    );
    // Its owner cancels it; a second cancel finds nothing to do.
    Spi::run("SET LOCAL ROLE jobs_a").unwrap();
    assert_eq!(
        Spi::get_one::<bool>(&format!("SELECT arrw.cancel_job({id})")).unwrap(),
        Some(true)
    );
    assert_eq!(
        Spi::get_one::<bool>(&format!("SELECT arrw.cancel_job({id})")).unwrap(),
        Some(false)
    );
    assert_eq!(
        Spi::get_one::<String>(&format!("SELECT state FROM arrw.jobs WHERE id = {id}")).unwrap(),
        Some("cancelled".into())
    );
    // wait_job returns the final state at once.
    assert_eq!(
        Spi::get_one::<String>(&format!("SELECT arrw.wait_job({id})")).unwrap(),
        Some("cancelled".into())
    );
    Spi::run("RESET ROLE").unwrap();
    assert_eq!(
        Spi::get_one::<i64>("SELECT count(*) FROM arrw.jobs").unwrap(),
        Some(1)
    );
}

#[pg_test(error = "permission denied for table job")]
fn jobs_queue_is_not_writable_by_users() {
    Spi::run("CREATE ROLE jobs_a").unwrap();
    Spi::run("SET LOCAL ROLE jobs_a").unwrap();
    Spi::run("UPDATE arrw.job SET state = 'queued'").unwrap();
}

#[pg_test]
fn jobs_submit_records_owner_search_path_and_defaults() {
    Spi::run("CREATE SCHEMA jobs_s; CREATE TABLE jobs_s.t (id int); SET LOCAL search_path = jobs_s, public").unwrap();
    let id = Spi::get_one::<i64>(
        r#"SELECT arrw.submit_job('batch_update', '{"table": "t", "set": "id = id + 1"}')"#,
    )
    .unwrap()
    .unwrap();
    let (sp, attempts, max) = Spi::get_three::<String, i32, i32>(&format!(
        "SELECT search_path, attempts, max_attempts FROM arrw.job WHERE id = {id}"
    ))
    .unwrap();
    assert_eq!(sp.as_deref(), Some("jobs_s, public"));
    assert_eq!((attempts, max), (Some(0), Some(3)));
}

/// The batch walk's bound on the rows a range can hold without a count is
/// PostgreSQL's MaxHeapTuplesPerPage: 291 at 8 kB pages.
#[pg_test]
fn jobs_max_heap_tuples_per_page_is_postgresql_s() {
    assert_eq!(pgrx::pg_sys::BLCKSZ, 8192);
    assert_eq!(crate::jobs::kinds::max_heap_tuples_per_page(), 291);
}
