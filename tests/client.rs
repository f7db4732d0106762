//! A real pgvector client library (the `pgvector` crate over `postgres`) against a
//! real server running arrw: binary parameters and results, binary COPY in and out,
//! and text COPY must all round-trip bit-exactly, exactly as they do with pgvector.

use arrw_tests::Cluster;
use pgvector::Vector;
use postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutIter};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{Kind, Type};
use postgres::Client;
use std::io::{Read, Write};

/// Vectors whose floats exercise the edges of the format: signed zero, the
/// smallest subnormal, the largest finite, values with long shortest forms.
fn tricky() -> Vec<Vec<f32>> {
    vec![
        vec![1.0, 2.0, 3.0],
        vec![-0.0, f32::from_bits(1), f32::MAX],
        vec![0.1, 1.0 / 3.0, -123456.79],
        vec![f32::MIN_POSITIVE, -f32::MAX, 1e-20],
    ]
}

fn setup() -> (Cluster, Client, Type) {
    let cluster = Cluster::start("client", "");
    let mut c = cluster.connect();
    c.batch_execute(
        "CREATE EXTENSION arrw; CREATE TABLE items (id int PRIMARY KEY, embedding vector(3))",
    )
    .unwrap();
    let oid: u32 = c
        .query_one("SELECT 'vector'::regtype::oid", &[])
        .unwrap()
        .get(0);
    let ty = Type::new("vector".into(), oid, Kind::Simple, "public".into());
    (cluster, c, ty)
}

/// The server's message of a database error ("db error" is all Display shows).
fn msg(e: &postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn binary_parameters_and_results_round_trip_bit_exactly() {
    let (_cluster, mut c, _) = setup();
    for (i, v) in tricky().into_iter().enumerate() {
        c.execute(
            "INSERT INTO items VALUES ($1, $2)",
            &[&(i as i32), &Vector::from(v.clone())],
        )
        .unwrap();
        let got: Vector = c
            .query_one("SELECT embedding FROM items WHERE id = $1", &[&(i as i32)])
            .unwrap()
            .get(0);
        assert_eq!(bits(got.as_slice()), bits(&v), "row {i}");
    }
    // A nearest-neighbour query with a binary parameter, as every client issues it.
    let q = Vector::from(vec![1.0, 2.0, 3.5]);
    let id: i32 = c
        .query_one(
            "SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 1",
            &[&q],
        )
        .unwrap()
        .get(0);
    assert_eq!(id, 0);
}

#[test]
fn binary_parameters_are_checked_like_text() {
    let (_cluster, mut c, _) = setup();
    let err = c
        .execute(
            "INSERT INTO items VALUES (1, $1)",
            &[&Vector::from(vec![1.0, 2.0])],
        )
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "22000", "{}", msg(&err));
    assert!(
        msg(&err).contains("expected 3 dimensions, not 2"),
        "{}",
        msg(&err)
    );
    let err = c
        .execute(
            "INSERT INTO items VALUES (1, $1)",
            &[&Vector::from(vec![1.0, f32::NAN, 3.0])],
        )
        .unwrap_err();
    assert!(
        msg(&err).contains("NaN not allowed in vector"),
        "{}",
        msg(&err)
    );
    let err = c
        .execute(
            "INSERT INTO items VALUES (1, $1)",
            &[&Vector::from(vec![1.0, f32::INFINITY, 3.0])],
        )
        .unwrap_err();
    assert!(
        msg(&err).contains("infinite value not allowed in vector"),
        "{}",
        msg(&err)
    );
}

#[test]
fn binary_copy_in_and_out_round_trip_bit_exactly() {
    let (_cluster, mut c, ty) = setup();
    let rows = tricky();
    {
        let sink = c
            .copy_in("COPY items (id, embedding) FROM STDIN (FORMAT binary)")
            .unwrap();
        let mut w = BinaryCopyInWriter::new(sink, &[Type::INT4, ty.clone()]);
        for (i, v) in rows.iter().enumerate() {
            w.write(&[&(i as i32), &Vector::from(v.clone())]).unwrap();
        }
        assert_eq!(w.finish().unwrap(), rows.len() as u64);
    }
    let src = c
        .copy_out("COPY (SELECT id, embedding FROM items ORDER BY id) TO STDOUT (FORMAT binary)")
        .unwrap();
    let mut n = 0;
    let mut it = BinaryCopyOutIter::new(src, &[Type::INT4, ty.clone()]);
    while let Some(row) = it.next().unwrap() {
        let id: i32 = row.get(0);
        let v: Vector = row.get(1);
        assert_eq!(bits(v.as_slice()), bits(&rows[id as usize]));
        n += 1;
    }
    drop(it);
    assert_eq!(n, rows.len());

    // Binary COPY enforces the column's typmod too.
    let sink = c
        .copy_in("COPY items (id, embedding) FROM STDIN (FORMAT binary)")
        .unwrap();
    let mut w = BinaryCopyInWriter::new(
        sink,
        &[
            Type::INT4,
            Type::new("vector".into(), 0, Kind::Simple, "public".into()),
        ],
    );
    let _ = w.write(&[&100i32, &Vector::from(vec![1.0f32; 4])]);
    let err = w.finish().unwrap_err();
    assert!(
        msg(&err).contains("expected 3 dimensions, not 4"),
        "{}",
        msg(&err)
    );
}

#[test]
fn text_copy_round_trips_and_reports_bad_rows() {
    let (_cluster, mut c, _) = setup();
    let rows = tricky();
    let mut text = String::new();
    for (i, v) in rows.iter().enumerate() {
        let items: Vec<String> = v.iter().map(|x| format!("{x:e}")).collect();
        text.push_str(&format!("{i}\t[{}]\n", items.join(", ")));
    }
    let mut sink = c.copy_in("COPY items (id, embedding) FROM STDIN").unwrap();
    sink.write_all(text.as_bytes()).unwrap();
    sink.finish().unwrap();

    let mut out = String::new();
    c.copy_out("COPY (SELECT id, embedding FROM items ORDER BY id) TO STDOUT")
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    for (line, v) in out.lines().zip(&rows) {
        let body = line.split('\t').nth(1).unwrap();
        let parsed: Vec<f32> = body
            .trim_matches(|ch| ch == '[' || ch == ']')
            .split(',')
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(bits(&parsed), bits(v), "{line}");
    }

    let mut sink = c.copy_in("COPY items (id, embedding) FROM STDIN").unwrap();
    sink.write_all(b"50\t[1,2]\n").unwrap();
    let err = sink.finish().unwrap_err();
    assert!(
        msg(&err).contains("expected 3 dimensions, not 2"),
        "{}",
        msg(&err)
    );
}

/// `halfvec` through the same client in binary mode: parameters, results and
/// binary COPY carry IEEE halves bit for bit; the client's rounding of f32 to
/// half (the `half` crate) equals the server's rounding of the same text; bad
/// binary values get pgvector's errors.
#[test]
fn halfvec_binary_parameters_results_and_copy_round_trip() {
    use pgvector::HalfVector;
    let cluster = Cluster::start("client_halfvec", "");
    let mut c = cluster.connect();
    c.batch_execute(
        "CREATE EXTENSION arrw; CREATE TABLE h (id int PRIMARY KEY, embedding halfvec(3))",
    )
    .unwrap();
    let half_bits =
        |v: &HalfVector| -> Vec<u16> { v.as_slice().iter().map(|h| h.to_bits()).collect() };
    // Signed zero, the smallest subnormal half, the largest half, values that round.
    let rows: Vec<Vec<f32>> = vec![
        vec![1.0, 2.0, 3.0],
        vec![-0.0, 5.960_464_5e-8, 65504.0],
        vec![0.1, 1.0 / 3.0, -1234.567],
    ];
    for (i, v) in rows.iter().enumerate() {
        let sent = HalfVector::from_f32_slice(v);
        c.execute("INSERT INTO h VALUES ($1, $2)", &[&(i as i32), &sent])
            .unwrap();
        let got: HalfVector = c
            .query_one("SELECT embedding FROM h WHERE id = $1", &[&(i as i32)])
            .unwrap()
            .get(0);
        assert_eq!(half_bits(&got), half_bits(&sent), "row {i}");
        // The server rounds the f32 text to the same halves the client did.
        let text = format!(
            "[{}]",
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let parsed: HalfVector = c
            .query_one("SELECT $1::text::halfvec", &[&text])
            .unwrap()
            .get(0);
        assert_eq!(half_bits(&parsed), half_bits(&sent), "{text}");
    }
    let id: i32 = c
        .query_one(
            "SELECT id FROM h ORDER BY embedding <-> $1 LIMIT 1",
            &[&HalfVector::from_f32_slice(&[1.0, 2.0, 3.5])],
        )
        .unwrap()
        .get(0);
    assert_eq!(id, 0);

    for (v, text) in [
        (vec![1.0, 2.0], "expected 3 dimensions, not 2"),
        (vec![1.0, f32::NAN, 3.0], "NaN not allowed in halfvec"),
        (
            vec![1.0, f32::INFINITY, 3.0],
            "infinite value not allowed in halfvec",
        ),
    ] {
        let err = c
            .execute(
                "INSERT INTO h VALUES (99, $1)",
                &[&HalfVector::from_f32_slice(&v)],
            )
            .unwrap_err();
        assert_eq!(err.code().unwrap().code(), "22000", "{}", msg(&err));
        assert!(msg(&err).contains(text), "{}", msg(&err));
    }

    let oid: u32 = c
        .query_one("SELECT 'halfvec'::regtype::oid", &[])
        .unwrap()
        .get(0);
    let ty = Type::new("halfvec".into(), oid, Kind::Simple, "public".into());
    c.batch_execute("CREATE TABLE h2 (LIKE h)").unwrap();
    {
        let sink = c
            .copy_in("COPY h2 (id, embedding) FROM STDIN (FORMAT binary)")
            .unwrap();
        let mut w = BinaryCopyInWriter::new(sink, &[Type::INT4, ty.clone()]);
        for (i, v) in rows.iter().enumerate() {
            w.write(&[&(i as i32), &HalfVector::from_f32_slice(v)])
                .unwrap();
        }
        assert_eq!(w.finish().unwrap(), rows.len() as u64);
    }
    let src = c
        .copy_out("COPY (SELECT id, embedding FROM h2 ORDER BY id) TO STDOUT (FORMAT binary)")
        .unwrap();
    let mut it = BinaryCopyOutIter::new(src, &[Type::INT4, ty]);
    let mut n = 0;
    while let Some(row) = it.next().unwrap() {
        let id: i32 = row.get(0);
        let v: HalfVector = row.get(1);
        assert_eq!(
            half_bits(&v),
            half_bits(&HalfVector::from_f32_slice(&rows[id as usize]))
        );
        n += 1;
    }
    assert_eq!(n, rows.len());
}
