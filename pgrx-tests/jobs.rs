// In-server tests for jobs (included into the pg_test schema by src/lib.rs).
// A #[pg_test] runs in a transaction that is rolled back, so no job it submits ever
// reaches a worker: here the row splitter, argument validation, the queue's
// visibility rules and cancel/wait on queued jobs. Workers, crashes, restarts and
// roles over real connections: tests/jobs.rs.

fn jobs_split(data: &[u8], rows: crate::jobs::import::Rows) -> Vec<String> {
    use crate::jobs::import::{read_row, Bytes, RowEnd};
    let mut input = Bytes::new(data);
    let mut out = Vec::new();
    loop {
        let mut row = Vec::new();
        match read_row(&mut input, rows, &mut row).unwrap() {
            RowEnd::Row => out.push(String::from_utf8(row).unwrap()),
            _ => return out,
        }
    }
}

#[pg_test]
fn jobs_csv_rows_keep_quoted_newlines_together() {
    use crate::jobs::import::Rows;
    let csv = Rows::Csv {
        quote: b'"',
        escape: b'"',
    };
    assert_eq!(
        jobs_split(b"1,\"a\nb\"\n2,\"x\"\"\ny\"\r\n3,plain", csv),
        vec!["1,\"a\nb\"\n", "2,\"x\"\"\ny\"\r\n", "3,plain"]
    );
    // A quoted "\." is data; an unquoted one ends the data.
    assert_eq!(
        jobs_split(b"\"\\.\"\n1\n\\.\n2\n", csv),
        vec!["\"\\.\"\n", "1\n"]
    );
    // Old Mac line ends.
    assert_eq!(jobs_split(b"1\r2\r", csv), vec!["1\r", "2\r"]);
}

#[pg_test]
fn jobs_csv_escape_other_than_quote() {
    use crate::jobs::import::Rows;
    let csv = Rows::Csv {
        quote: b'"',
        escape: b'\\',
    };
    assert_eq!(
        jobs_split(b"1,\"a\\\"\nb\"\n2,c\n", csv),
        vec!["1,\"a\\\"\nb\"\n", "2,c\n"]
    );
    // An escape not followed by quote or escape is an ordinary character.
    assert_eq!(
        jobs_split(b"1,\"a\\b\"\n2\n", csv),
        vec!["1,\"a\\b\"\n", "2\n"]
    );
}

#[pg_test]
fn jobs_text_rows_and_end_marker() {
    use crate::jobs::import::Rows;
    assert_eq!(
        jobs_split(b"1\ta\\\nb\n2\tc\n\\.\n3\td\n", Rows::Text),
        vec!["1\ta\\\nb\n", "2\tc\n"]
    );
    assert_eq!(
        jobs_split(b"1\ta\\\\\n2\n", Rows::Text),
        vec!["1\ta\\\\\n", "2\n"]
    );
}

#[pg_test]
fn jobs_binary_batches_split_on_tuples() {
    use crate::jobs::args::Format;
    use crate::jobs::import::{read_batch, read_binary_header, Bytes, Rows};
    let mut file = b"PGCOPY\n\xff\r\n\0".to_vec();
    file.extend_from_slice(&0u32.to_be_bytes());
    file.extend_from_slice(&0u32.to_be_bytes());
    for v in [7i32, 8, 9] {
        file.extend_from_slice(&2i16.to_be_bytes());
        file.extend_from_slice(&4i32.to_be_bytes());
        file.extend_from_slice(&v.to_be_bytes());
        file.extend_from_slice(&(-1i32).to_be_bytes());
    }
    file.extend_from_slice(&(-1i16).to_be_bytes());
    let mut input = Bytes::new(&file[..]);
    let header = read_binary_header(&mut input).unwrap();
    assert_eq!(header.len(), 19);
    let b = read_batch(&mut input, Format::Binary, Rows::Text, 2, &header).unwrap();
    assert_eq!((b.rows, b.consumed, b.last), (2, 28, false));
    // Each batch is a complete binary COPY file: header, tuples, trailer.
    assert_eq!(&b.data[..19], &header[..]);
    assert_eq!(&b.data[b.data.len() - 2..], &[0xff, 0xff]);
    assert_eq!(b.data.len(), 19 + 28 + 2);
    let b = read_batch(&mut input, Format::Binary, Rows::Text, 2, &header).unwrap();
    assert_eq!((b.rows, b.consumed, b.last), (1, 14, true));
}

#[pg_test]
fn jobs_csv_batches_count_bytes_and_rows() {
    use crate::jobs::args::Format;
    use crate::jobs::import::{read_batch, Bytes, Rows};
    let csv = Rows::Csv {
        quote: b'"',
        escape: b'"',
    };
    let data = b"1,\"a\nb\"\n2,x\n3,y\n";
    let mut input = Bytes::new(&data[..]);
    let b = read_batch(&mut input, Format::Csv, csv, 2, &[]).unwrap();
    assert_eq!((b.rows, b.consumed, b.last), (2, 12, false));
    assert_eq!(b.data, b"1,\"a\nb\"\n2,x\n");
    let b = read_batch(&mut input, Format::Csv, csv, 2, &[]).unwrap();
    assert_eq!((b.rows, b.consumed, b.last), (1, 4, true));
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
    Spi::run("CREATE ROLE jobs_a; CREATE ROLE jobs_b; CREATE TABLE jobs_t (id int); GRANT DELETE ON jobs_t TO jobs_a")
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
