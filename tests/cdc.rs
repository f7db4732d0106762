//! Change data capture over real connections: the `arrw` output plugin (read
//! with the pg_logical_slot_* functions and with pg_recvlogical over a
//! replication connection) and the `arrw.watch` NOTIFY channels (received by a
//! second connection). Every event the plugin writes is parsed with serde_json.
//!
//! `cargo test -p arrw-tests --release --test cdc`; the latency figures:
//! `cargo test -p arrw-tests --release --test cdc watch_latency -- --nocapture`.

use arrw_tests::{Cluster, PG_BIN};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Notification};
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};

fn setup(name: &str) -> (Cluster, Client) {
    let cluster = Cluster::start(name, "");
    let mut c = cluster.connect();
    c.batch_execute("CREATE EXTENSION arrw").unwrap();
    (cluster, c)
}

/// One row of pg_logical_slot_*_changes: the `lsn` column and the parsed event.
#[derive(Debug, Clone)]
struct Row {
    lsn: String,
    ev: Value,
}

/// Every character a line-splitting reader may break a line at: `\n` and `\r`,
/// and U+0085, U+2028 and U+2029 (Python's `str.splitlines`, Java's `\R`; the
/// others it splits at, VT, FF and FS to RS, are control characters, which
/// JSON escapes anyway).
const LINE_BREAKS: [char; 5] = ['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'];

fn parse(data: &str) -> Value {
    assert!(!data.contains(LINE_BREAKS), "event spans lines: {data:?}");
    serde_json::from_str(data).unwrap_or_else(|e| panic!("invalid JSON ({e}): {data}"))
}

/// `pg_logical_slot_{get,peek}_changes(slot, upto_lsn, upto_n, opts...)`.
fn read_slot(
    c: &mut Client,
    func: &str,
    slot: &str,
    upto_lsn: Option<&str>,
    upto_n: Option<i32>,
    opts: &[&str],
) -> Result<Vec<Row>, postgres::Error> {
    let opts: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
    let rows = c.query(
        &format!(
            "SELECT lsn::text, data FROM pg_logical_slot_{func}_changes($1::text::name, $2::text::pg_lsn, $3, VARIADIC $4::text[])"
        ),
        &[&slot, &upto_lsn, &upto_n, &opts],
    )?;
    Ok(rows
        .iter()
        .map(|r| Row {
            lsn: r.get(0),
            ev: parse(r.get::<_, &str>(1)),
        })
        .collect())
}

fn get(c: &mut Client, slot: &str, opts: &[&str]) -> Vec<Value> {
    read_slot(c, "get", slot, None, None, opts)
        .unwrap()
        .into_iter()
        .map(|r| r.ev)
        .collect()
}

fn peek(c: &mut Client, slot: &str, opts: &[&str]) -> Vec<Value> {
    read_slot(c, "peek", slot, None, None, opts)
        .unwrap()
        .into_iter()
        .map(|r| r.ev)
        .collect()
}

fn create_slot(c: &mut Client, slot: &str) {
    c.execute(
        "SELECT pg_create_logical_replication_slot($1::text::name, 'arrw')",
        &[&slot],
    )
    .unwrap();
}

fn ops(evs: &[Value]) -> Vec<&str> {
    evs.iter().map(|e| e["op"].as_str().unwrap()).collect()
}

/// A JSON array of numbers (a vector column) as f64s.
fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn sqlstate(e: &postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

// ---------------------------------------------------------------------------
// The output plugin
// ---------------------------------------------------------------------------

#[test]
fn feed_every_op_and_type() {
    let (_cl, mut c) = setup("cdc-types");
    c.batch_execute(
        "CREATE TABLE docs (id bigint PRIMARY KEY, title text, n int, s smallint, o oid,
            f8 float8, f4 real, nan float8, inf float8, num numeric, b bool, j json, jb jsonb,
            by bytea, ts timestamptz, t timestamp, d date, tm time, arr int[], tarr text[],
            iv interval, u uuid, nul text, embedding vector(3))",
    )
    .unwrap();
    create_slot(&mut c, "feed");
    c.batch_execute(
        r#"SET TimeZone = 'UTC';
        INSERT INTO docs VALUES (9007199254740993, E'hello "w"\n\ttab \\ back \u00e9 \U0001F600 \x01 end', 42, -7, 4000000000,
            0.1, 1.5, 'NaN', '-Infinity', 12345678901234567890.123456789, true,
            '{"a":
              [1, 2]}', '{"b": null, "c": "x\ny"}', '\x00ff10', '2024-01-02 03:04:05.678+00',
            '2024-01-02 03:04:05', '2024-01-02', '12:34:56', '{1,2,3}', '{"a b","c\"d"}',
            '1 day 2 hours', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', NULL, '[1,2.5,-3e-05]');"#,
    )
    .unwrap();
    // One transaction each.
    for sql in [
        "UPDATE docs SET n = 43",
        "UPDATE docs SET id = 2",
        "DELETE FROM docs",
    ] {
        c.batch_execute(sql).unwrap();
    }
    // Rendering does not depend on the decoding session's DateStyle, bytea_output
    // or extra_float_digits (at -15 a float4 1.5 printed as "2").
    c.batch_execute(
        "SET DateStyle = 'SQL, DMY'; SET bytea_output = 'escape'; SET extra_float_digits = -15",
    )
    .unwrap();
    let evs = peek(&mut c, "feed", &[]);
    assert_eq!(ops(&evs), ["insert", "update", "update", "delete"]);
    let ins = &evs[0];
    assert_eq!(ins["table"], "public.docs");
    assert!(ins["xid"].as_u64().unwrap() > 0);
    assert!(ins["lsn"].as_str().unwrap().contains('/'));
    assert_eq!(ins["key"], json!({"id": "9007199254740993"}));
    let row = &ins["row"];
    assert_eq!(row["id"], "9007199254740993");
    assert_eq!(
        row["title"],
        "hello \"w\"\n\ttab \\ back \u{e9} \u{1F600} \u{1} end"
    );
    assert_eq!(row["n"], 42);
    assert_eq!(row["s"], -7);
    assert_eq!(row["o"], 4000000000u64);
    assert_eq!(row["f4"], 1.5);
    assert_eq!(row["nan"], "NaN");
    assert_eq!(row["inf"], "-Infinity");
    assert_eq!(row["num"], "12345678901234567890.123456789");
    assert_eq!(row["b"], true);
    assert_eq!(row["j"], json!({"a": [1, 2]}));
    assert_eq!(row["jb"], json!({"b": null, "c": "x\ny"}));
    assert_eq!(row["by"], "\\x00ff10");
    assert_eq!(row["ts"], "2024-01-02T03:04:05.678+00:00");
    assert_eq!(row["t"], "2024-01-02T03:04:05");
    assert_eq!(row["d"], "2024-01-02");
    assert_eq!(row["tm"], "12:34:56");
    assert_eq!(row["arr"], "{1,2,3}");
    assert_eq!(row["tarr"], "{\"a b\",\"c\\\"d\"}");
    assert_eq!(row["u"], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(row["nul"], Value::Null);
    assert!(
        row.get("embedding").is_none(),
        "vectors are omitted by default"
    );
    assert_eq!(ins["omitted"], json!(["embedding"]));

    // update: the old key; a key change shows the old key in `key`, the new
    // one in `new_key` (and in the row).
    assert_eq!(evs[1]["key"], json!({"id": "9007199254740993"}));
    assert_eq!(evs[1]["row"]["n"], 43);
    assert!(evs[1].get("new_key").is_none());
    assert_eq!(evs[2]["key"], json!({"id": "9007199254740993"}));
    assert_eq!(evs[2]["new_key"], json!({"id": "2"}));
    assert_eq!(evs[2]["row"]["id"], "2");
    // delete: key only.
    assert_eq!(evs[3]["key"], json!({"id": "2"}));
    assert!(evs[3].get("row").is_none());
    // Each transaction has its own xid, in commit order.
    let xids: Vec<u64> = evs.iter().map(|e| e["xid"].as_u64().unwrap()).collect();
    assert!(xids.windows(2).all(|w| w[0] < w[1]), "{xids:?}");

    // include-vectors: the vector is a JSON array of numbers, nothing omitted.
    let evs = get(&mut c, "feed", &["include-vectors", "true"]);
    assert_eq!(floats(&evs[0]["row"]["embedding"]), [1.0, 2.5, -3e-05]);
    assert!(evs[0].get("omitted").is_none());
    assert!(
        get(&mut c, "feed", &[]).is_empty(),
        "get consumed everything"
    );
}

#[test]
fn feed_unchanged_toast_and_identity() {
    let (_cl, mut c) = setup("cdc-ident");
    c.batch_execute(
        "CREATE TABLE big (id int PRIMARY KEY, body text, n int, doc jsonb);
         ALTER TABLE big ALTER body SET STORAGE EXTERNAL;
         CREATE TABLE nopk (a int, b text);
         CREATE TABLE fullt (a int, b text, v vector(2));
         ALTER TABLE fullt REPLICA IDENTITY FULL;
         CREATE TABLE uniq (a int NOT NULL, b text);
         CREATE UNIQUE INDEX uniq_a ON uniq (a);
         ALTER TABLE uniq REPLICA IDENTITY USING INDEX uniq_a;
         CREATE TABLE nothing (id int PRIMARY KEY, t text);
         ALTER TABLE nothing REPLICA IDENTITY NOTHING;
         CREATE TABLE vkey (v vector(2) PRIMARY KEY, b text);",
    )
    .unwrap();
    create_slot(&mut c, "feed");
    c.batch_execute(
        "INSERT INTO big VALUES (1, repeat('x', 100000), 1);
         UPDATE big SET n = 2;
         UPDATE big SET body = 'short';
         UPDATE big SET body = repeat('y', 100000);
         UPDATE big SET doc = '{\"unchanged_toast\": true}';
         INSERT INTO nopk VALUES (1, 'x'); UPDATE nopk SET b = 'y'; DELETE FROM nopk;
         INSERT INTO fullt VALUES (1, 'x', '[1,2]'); UPDATE fullt SET b = 'y'; DELETE FROM fullt;
         INSERT INTO vkey VALUES ('[1,2]', 'x'); DELETE FROM vkey;
         INSERT INTO uniq VALUES (1, 'x'); UPDATE uniq SET a = 2; DELETE FROM uniq;
         INSERT INTO nothing VALUES (1, 'x'); UPDATE nothing SET t = 'y'; DELETE FROM nothing;",
    )
    .unwrap();
    let evs = get(&mut c, "feed", &[]);
    let by = |t: &str| -> Vec<&Value> { evs.iter().filter(|e| e["table"] == t).collect() };

    let big = by("public.big");
    assert_eq!(big[0]["row"]["body"].as_str().unwrap().len(), 100000);
    assert_eq!(big[1]["row"]["body"], json!({"unchanged_toast": true}));
    assert_eq!(big[1]["row"]["n"], 2);
    assert_eq!(big[1]["unchanged_toast"], json!(["body"]));
    assert_eq!(big[2]["row"]["body"], "short");
    assert!(big[2].get("unchanged_toast").is_none());
    // A jsonb value may be the marker's object itself: only the list beside
    // `row` tells the two apart (hunt-96: a consumer kept its old value).
    assert_eq!(big[4]["row"]["body"], json!({"unchanged_toast": true}));
    assert_eq!(big[4]["row"]["doc"], json!({"unchanged_toast": true}));
    assert_eq!(big[4]["unchanged_toast"], json!(["body"]));

    // No primary key, default identity: no key at all.
    let nopk = by("public.nopk");
    assert_eq!(
        ops(&nopk.iter().map(|e| (*e).clone()).collect::<Vec<_>>()),
        ["insert", "update", "delete"]
    );
    assert!(nopk.iter().all(|e| e["key"].is_null()));
    assert_eq!(nopk[1]["row"], json!({"a": 1, "b": "y"}));

    // REPLICA IDENTITY FULL: the key is the whole old row (vectors still omitted).
    let full = by("public.fullt");
    assert_eq!(full[1]["key"], json!({"a": 1, "b": "x"}));
    assert_eq!(full[1]["row"], json!({"a": 1, "b": "y"}));
    assert_eq!(full[2]["key"], json!({"a": 1, "b": "y"}));
    assert_eq!(full[2]["omitted"], json!(["v"]));

    // REPLICA IDENTITY USING INDEX: the index columns.
    let uniq = by("public.uniq");
    assert_eq!(uniq[0]["key"], json!({"a": 1}));
    assert_eq!(uniq[1]["key"], json!({"a": 1}));
    assert_eq!(uniq[1]["new_key"], json!({"a": 2}));
    assert_eq!(uniq[1]["row"]["a"], 2);
    assert_eq!(uniq[2]["key"], json!({"a": 2}));

    // REPLICA IDENTITY NOTHING: no key even with a primary key.
    let nothing = by("public.nothing");
    assert_eq!(nothing.len(), 3);
    assert!(nothing.iter().all(|e| e["key"].is_null()));

    // A vector column of the replica identity index stays in `key` (docs/cdc.md,
    // `omitted`); `row` leaves it out and `omitted` names it.
    let vkey = by("public.vkey");
    assert_eq!(vkey[0]["key"], json!({"v": [1, 2]}));
    assert_eq!(vkey[0]["row"], json!({"b": "x"}));
    assert_eq!(vkey[0]["omitted"], json!(["v"]));
    assert_eq!(vkey[1]["key"], json!({"v": [1, 2]}));
}

/// An update that changes the key carries the new key in `new_key`, whatever
/// the options: it was only in `row`, which `include-row=false` leaves out, and
/// which leaves out a vector key column (hunt-122). No `new_key` when the key
/// did not change, or when there is no key.
#[test]
fn feed_update_of_the_key_carries_new_key() {
    let (_cl, mut c) = setup("cdc-newkey");
    c.batch_execute(
        "CREATE TABLE r1_int (id int PRIMARY KEY, t text);
         CREATE TABLE r1_vec (v vector(2) PRIMARY KEY, n int);
         CREATE TABLE r1_two (a int, b text, n int, PRIMARY KEY (a, b));
         CREATE TABLE r1_idx (a int NOT NULL, t text);
         CREATE UNIQUE INDEX r1_idx_a ON r1_idx (a);
         ALTER TABLE r1_idx REPLICA IDENTITY USING INDEX r1_idx_a;
         CREATE TABLE r1_full (a int, b text, v vector(2), big text);
         ALTER TABLE r1_full REPLICA IDENTITY FULL;
         ALTER TABLE r1_full ALTER big SET STORAGE EXTERNAL;
         CREATE TABLE r1_none (id int PRIMARY KEY, t text);
         ALTER TABLE r1_none REPLICA IDENTITY NOTHING;
         CREATE TABLE r1_nopk (id int, t text);
         CREATE TABLE r1_toast (k text PRIMARY KEY, n int);
         ALTER TABLE r1_toast ALTER k SET STORAGE EXTERNAL;",
    )
    .unwrap();
    create_slot(&mut c, "feed");
    c.batch_execute(
        "INSERT INTO r1_int VALUES (1, 'x');
         UPDATE r1_int SET id = 2;
         UPDATE r1_int SET t = 'y';
         UPDATE r1_int SET id = 2;
         DELETE FROM r1_int;
         INSERT INTO r1_vec VALUES ('[1,2]', 1);
         UPDATE r1_vec SET v = '[5,6]';
         UPDATE r1_vec SET n = 2;
         DELETE FROM r1_vec;
         INSERT INTO r1_two VALUES (1, 'a', 1);
         UPDATE r1_two SET b = 'b';
         INSERT INTO r1_idx VALUES (1, 'x');
         UPDATE r1_idx SET a = 2;
         UPDATE r1_idx SET t = 'y';
         INSERT INTO r1_full VALUES (1, 'x', '[1,2]', repeat('z', 5000));
         UPDATE r1_full SET b = 'y';
         UPDATE r1_full SET v = '[3,4]';
         UPDATE r1_full SET a = a;
         INSERT INTO r1_none VALUES (1, 'x');
         UPDATE r1_none SET id = 2;
         INSERT INTO r1_nopk VALUES (1, 'x');
         UPDATE r1_nopk SET id = 2;
         INSERT INTO r1_toast SELECT string_agg(md5(i::text), ''), 1 FROM generate_series(1, 78) i;
         UPDATE r1_toast SET n = 2;
         UPDATE r1_toast SET k = 'j' || k;",
    )
    .unwrap();
    let upd = |evs: &[Value], t: &str| -> Vec<Value> {
        evs.iter()
            .filter(|e| e["table"] == t && e["op"] == "update")
            .cloned()
            .collect()
    };
    let new_key = |e: &Value| e.get("new_key").cloned();
    // 2496 hex digits: incompressible, so stored out of line, but small
    // enough for a btree entry.
    let toast_key: String = c
        .query_one(
            "SELECT string_agg(md5(i::text), '') FROM generate_series(1, 78) i",
            &[],
        )
        .unwrap()
        .get(0);

    for opts in [&[][..], &["include-row", "false"]] {
        let evs = peek(&mut c, "feed", opts);
        // The report's case: keys only. The consumer deletes the key it got.
        let u = upd(&evs, "public.r1_int");
        assert_eq!(u[0]["key"], json!({"id": 1}), "{opts:?}");
        assert_eq!(new_key(&u[0]), Some(json!({"id": 2})), "{opts:?}");
        assert_eq!(new_key(&u[1]), None, "key unchanged: {}", u[1]);
        assert_eq!(new_key(&u[2]), None, "same value: {}", u[2]);
        // A vector key: rendered in full in both, as `key` always was.
        let u = upd(&evs, "public.r1_vec");
        assert_eq!(u[0]["key"], json!({"v": [1, 2]}));
        assert_eq!(new_key(&u[0]), Some(json!({"v": [5, 6]})), "{opts:?}");
        assert_eq!(new_key(&u[1]), None);
        // A composite key: all of its columns.
        let u = upd(&evs, "public.r1_two");
        assert_eq!(u[0]["key"], json!({"a": 1, "b": "a"}));
        assert_eq!(new_key(&u[0]), Some(json!({"a": 1, "b": "b"})));
        // REPLICA IDENTITY USING INDEX.
        let u = upd(&evs, "public.r1_idx");
        assert_eq!(u[0]["key"], json!({"a": 1}));
        assert_eq!(new_key(&u[0]), Some(json!({"a": 2})));
        assert_eq!(new_key(&u[1]), None);
        // REPLICA IDENTITY FULL: the key is the whole row, so is the new key;
        // the out-of-line value the update left unchanged is in it (taken
        // from the old row), vectors are left out as in `key`, and an update
        // that changes only what is left out, or nothing, has no new key.
        let u = upd(&evs, "public.r1_full");
        let big = "z".repeat(5000);
        assert_eq!(u[0]["key"], json!({"a": 1, "b": "x", "big": big}));
        assert_eq!(
            new_key(&u[0]),
            Some(json!({"a": 1, "b": "y", "big": big})),
            "{opts:?}"
        );
        assert_eq!(u[0]["omitted"], json!(["v"]));
        assert_eq!(new_key(&u[1]), None, "only the omitted vector changed");
        assert_eq!(new_key(&u[2]), None, "nothing changed");
        // No key, no new key.
        for t in ["public.r1_none", "public.r1_nopk"] {
            let u = upd(&evs, t);
            assert!(
                u[0]["key"].is_null() && new_key(&u[0]).is_none(),
                "{}",
                u[0]
            );
        }
        // A key stored out of line: PostgreSQL logs the old key whenever it
        // is, also when the update left it unchanged (the new row has only
        // the TOAST pointer): no new key then, and the whole new value when
        // the key changed.
        let u = upd(&evs, "public.r1_toast");
        assert_eq!(u[0]["key"], json!({ "k": toast_key }));
        assert_eq!(new_key(&u[0]), None, "{}", u[0]);
        assert_eq!(u[1]["key"], json!({ "k": toast_key }));
        assert_eq!(
            new_key(&u[1]),
            Some(json!({ "k": format!("j{toast_key}") }))
        );
        if opts.is_empty() {
            assert_eq!(
                upd(&evs, "public.r1_int")[0]["row"],
                json!({"id": 2, "t": "x"})
            );
            assert_eq!(upd(&evs, "public.r1_vec")[0]["row"], json!({"n": 1}));
            assert_eq!(
                upd(&evs, "public.r1_toast")[0]["unchanged_toast"],
                json!(["k"])
            );
        } else {
            assert!(evs.iter().all(|e| e.get("row").is_none()));
        }
    }

    // With include-vectors a vector of a REPLICA IDENTITY FULL row is in the
    // key, and a change of it is a new key.
    let evs = peek(&mut c, "feed", &["include-vectors", "true"]);
    let u = upd(&evs, "public.r1_full");
    assert_eq!(u[1]["key"]["v"], json!([1, 2]));
    assert_eq!(u[1]["new_key"]["v"], json!([3, 4]));
    assert_eq!(new_key(&u[2]), None);
}

/// U+0085, U+2028 and U+2029 are escaped wherever the feed writes a string,
/// in a UTF-8 database: raw, they are valid JSON, but readers that split lines
/// by Unicode's rules cut the event there (hunt-122). In other encodings the
/// same bytes are other characters, and pass unchanged.
#[test]
fn feed_escapes_unicode_line_terminators() {
    let (cl, mut c) = setup("cdc-lines");
    c.batch_execute(
        "CREATE TABLE \"t\u{2028}1\" (id int PRIMARY KEY, \"c\u{85}ol\" text, j json, jb jsonb, arr text[])",
    )
    .unwrap();
    create_slot(&mut c, "feed");
    let val = "a\u{2028}b\u{2029}c\u{85}d \u{2027}\u{84}\u{e9}";
    c.execute(
        "INSERT INTO \"t\u{2028}1\" VALUES (1, $1, $2::text::json, $2::text::jsonb, ARRAY[$1])",
        &[&val, &format!("{{\"k\u{2028}\": \"{val}\"}}")],
    )
    .unwrap();
    c.execute(
        "SELECT pg_logical_emit_message(true, 'arrw', $1)",
        &[&format!("{{\"m\": \"{val}\"}}")],
    )
    .unwrap();
    c.execute("SELECT pg_logical_emit_message(true, 'arrw', $1)", &[&val])
        .unwrap();

    let raw: Vec<String> = c
        .query(
            "SELECT data FROM pg_logical_slot_peek_changes('feed', NULL, NULL)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(raw.len(), 3, "{raw:?}");
    // Escaped, not dropped or replaced: the values read back exactly.
    assert!(raw[0].contains("\\u2028"), "{}", raw[0]);
    let evs: Vec<Value> = raw.iter().map(|d| parse(d)).collect();
    assert_eq!(evs[0]["table"], "public.t\u{2028}1");
    let row = &evs[0]["row"];
    assert_eq!(row["c\u{85}ol"], val);
    assert_eq!(row["j"], json!({"k\u{2028}": val}));
    assert_eq!(row["jb"], json!({"k\u{2028}": val}));
    assert_eq!(row["arr"], format!("{{\"{val}\"}}"));
    assert_eq!(evs[1]["content"], json!({"m": val}));
    assert_eq!(evs[2]["content"], val);

    // Over a replication connection (the raw bytes of the database encoding):
    // one event per line, by Unicode's rules too.
    let end: String = c
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .unwrap()
        .get(0);
    let out = pg_program("pg_recvlogical")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cl.port.to_string(),
            "-U",
            "postgres",
        ])
        .args(["-d", "postgres", "--slot", "feed", "--start", "-f", "-"])
        .args(["--endpos", &end, "--no-loop"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.split(LINE_BREAKS).filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3, "{text:?}");
    assert_eq!(lines.iter().map(|l| parse(l)).collect::<Vec<_>>(), evs);

    // A LATIN1 database: "\xc2\x85" is two characters there (Â and a C1
    // control), not U+0085: left alone, not turned into \u0085.
    c.batch_execute(
        "CREATE DATABASE lat ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    )
    .unwrap();
    let mut l = cl.connect_db("lat");
    l.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .unwrap();
    create_slot(&mut l, "lfeed");
    l.execute(
        "INSERT INTO t VALUES (1, $1)",
        &[&"\u{c2}\u{85}|\u{e2}\u{80}\u{a8}"],
    )
    .unwrap();
    let data: String = l
        .query_one(
            "SELECT data FROM pg_logical_slot_peek_changes('lfeed', NULL, NULL)",
            &[],
        )
        .unwrap()
        .get(0);
    let ev: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        ev["row"]["v"], "\u{c2}\u{85}|\u{e2}\u{80}\u{a8}",
        "{data:?}"
    );
    l.batch_execute("SELECT pg_drop_replication_slot('lfeed')")
        .unwrap();
}

#[test]
fn feed_copy_truncate_transactions() {
    let (cl, mut c) = setup("cdc-txn");
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE u (id int)")
        .unwrap();
    create_slot(&mut c, "feed");

    // COPY of 10,000 rows: 10,000 insert events in one transaction.
    {
        let mut w = c.copy_in("COPY t FROM STDIN").unwrap();
        for i in 0..10_000 {
            writeln!(w, "{i}\trow {i}").unwrap();
        }
        w.finish().unwrap();
    }
    let evs = get(&mut c, "feed", &["include-transaction", "true"]);
    assert_eq!(evs.len(), 10_002);
    assert_eq!(evs[0]["op"], "begin");
    assert_eq!(evs[10_001]["op"], "commit");
    assert!(evs[1..10_001]
        .iter()
        .enumerate()
        .all(|(i, e)| e["op"] == "insert" && e["key"]["id"] == i));
    let xid = &evs[0]["xid"];
    assert!(evs.iter().all(|e| &e["xid"] == xid));
    assert!(evs[0]["commit_time"].as_str().unwrap().len() >= 19);

    // A multi-statement transaction, a rollback, and savepoints.
    c.batch_execute(
        "BEGIN; INSERT INTO t VALUES (-1, 'a'); UPDATE t SET v = 'b' WHERE id = -1; INSERT INTO u VALUES (1); COMMIT;
         BEGIN; INSERT INTO t VALUES (-2, 'rolled back'); ROLLBACK;
         BEGIN; INSERT INTO t VALUES (-3, 'kept');
                SAVEPOINT s1; INSERT INTO t VALUES (-4, 'dropped'); ROLLBACK TO s1;
                SAVEPOINT s2; INSERT INTO t VALUES (-5, 'released'); RELEASE s2;
         COMMIT;
         TRUNCATE t, u;",
    )
    .unwrap();
    let evs = get(&mut c, "feed", &["include-transaction", "true"]);
    let summary: Vec<String> = evs
        .iter()
        .map(|e| match e["op"].as_str().unwrap() {
            "begin" | "commit" => e["op"].as_str().unwrap().to_string(),
            op => format!("{op} {} {}", e["table"].as_str().unwrap(), e["key"]),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "begin",
            "insert public.t {\"id\":-1}",
            "update public.t {\"id\":-1}",
            "insert public.u null",
            "commit",
            "begin",
            "insert public.t {\"id\":-3}",
            "insert public.t {\"id\":-5}",
            "commit",
            "begin",
            "truncate public.t null",
            "truncate public.u null",
            "commit",
        ]
    );
    // Within a transaction every event carries its xid; begin/commit agree.
    for txn in evs.split_inclusive(|e| e["op"] == "commit") {
        let xid = &txn[0]["xid"];
        assert!(txn.iter().all(|e| &e["xid"] == xid));
        assert_eq!(txn[0]["commit_lsn"], txn[txn.len() - 1]["lsn"]);
    }

    // Transactions that touch only filtered-out tables produce no begin/commit.
    c.batch_execute("INSERT INTO u VALUES (2)").unwrap();
    let evs = get(
        &mut c,
        "feed",
        &["include-transaction", "true", "tables", "public.t"],
    );
    assert!(evs.is_empty(), "{evs:?}");

    drop(cl);
}

#[test]
fn feed_messages_in_commit_order() {
    let (cl, mut c) = setup("cdc-msg");
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    create_slot(&mut c, "feed");
    let mut c2 = cl.connect();

    // T1 emits first but commits last: its events come after T2's.
    c.batch_execute(
        "BEGIN; SELECT arrw.emit_event('first', '{\"n\": 1}'); INSERT INTO t VALUES (1)",
    )
    .unwrap();
    c2.batch_execute("BEGIN; SELECT arrw.emit_event('second', '{\"n\": 2}'); COMMIT")
        .unwrap();
    c.batch_execute("COMMIT").unwrap();
    // Aborted: never appears. Other prefixes: ignored. Non-JSON content: a string.
    c.batch_execute("BEGIN; SELECT arrw.emit_event('aborted', NULL); ROLLBACK")
        .unwrap();
    for sql in [
        "SELECT pg_logical_emit_message(true, 'other', 'ignored')",
        "SELECT pg_logical_emit_message(true, 'arrw', 'plain text, not JSON')",
        "SELECT pg_logical_emit_message(true, 'arrw', E'{\"multi\":\\n [1,\\n 2]}')",
        "SELECT pg_logical_emit_message(false, 'arrw', '[\"non-transactional\"]')",
    ] {
        c.batch_execute(sql).unwrap();
    }
    // A non-transactional message needs no commit, so nothing flushes its WAL
    // right away (and decoding reads only flushed WAL): commit something after it.
    c.batch_execute("INSERT INTO t VALUES (2)").unwrap();
    let err = c
        .query("SELECT arrw.emit_event(NULL, '{}')", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22023");

    let evs = get(&mut c, "feed", &[]);
    let msgs: Vec<&Value> = evs.iter().filter(|e| e["op"] == "message").collect();
    assert_eq!(msgs.len(), 5, "{evs:?}");
    assert_eq!(
        msgs[0]["content"],
        json!({"kind": "second", "payload": {"n": 2}})
    );
    assert_eq!(
        msgs[1]["content"],
        json!({"kind": "first", "payload": {"n": 1}})
    );
    assert_eq!(msgs[0]["prefix"], "arrw");
    assert_eq!(msgs[0]["transactional"], true);
    assert_eq!(msgs[2]["content"], "plain text, not JSON");
    assert_eq!(msgs[3]["content"], json!({"multi": [1, 2]}));
    assert_eq!(msgs[4]["content"], json!(["non-transactional"]));
    assert_eq!(msgs[4]["transactional"], false);
    // T1's insert follows its message, after T2.
    let order: Vec<String> = evs
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["op"].as_str().unwrap(),
                e["content"]["kind"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(&order[..3], ["message second", "message first", "insert "]);
}

#[test]
fn feed_options() {
    let (_cl, mut c) = setup("cdc-opts");
    c.batch_execute(
        r#"CREATE TABLE docs (id int PRIMARY KEY, body text, embedding vector(2));
           CREATE TABLE chunks (id int PRIMARY KEY, doc int);
           CREATE SCHEMA "My Schema";
           CREATE TABLE "My Schema"."Odd, Name" (id int PRIMARY KEY);"#,
    )
    .unwrap();
    create_slot(&mut c, "feed");
    for sql in [
        "INSERT INTO docs VALUES (1, 'a', '[1,2]')",
        "INSERT INTO chunks VALUES (1, 1)",
        r#"INSERT INTO "My Schema"."Odd, Name" VALUES (7)"#,
        "UPDATE docs SET body = 'b'",
    ] {
        c.batch_execute(sql).unwrap();
    }

    let tables = |evs: &[Value]| -> Vec<String> {
        evs.iter()
            .map(|e| e["table"].as_str().unwrap().to_string())
            .collect()
    };
    let all = peek(&mut c, "feed", &[]);
    assert_eq!(
        tables(&all),
        [
            "public.docs",
            "public.chunks",
            "My Schema.Odd, Name",
            "public.docs"
        ]
    );
    let only = peek(&mut c, "feed", &["tables", "public.docs"]);
    assert_eq!(tables(&only), ["public.docs", "public.docs"]);
    let two = peek(
        &mut c,
        "feed",
        &["tables", " PUBLIC.Chunks , \"My Schema\".\"Odd, Name\""],
    );
    assert_eq!(tables(&two), ["public.chunks", "My Schema.Odd, Name"]);
    let schema = peek(&mut c, "feed", &["tables", "public.*"]);
    assert_eq!(schema.len(), 3);

    // include-row=false: keys only; vectors are then not mentioned at all.
    let keys = peek(&mut c, "feed", &["include-row", "false"]);
    assert!(keys
        .iter()
        .all(|e| e.get("row").is_none() && e.get("omitted").is_none()));
    assert_eq!(keys[3]["key"], json!({"id": 1}));
    // include-vectors, include-transaction with several spellings of booleans.
    let v = peek(
        &mut c,
        "feed",
        &[
            "include-vectors",
            "on",
            "include-transaction",
            "1",
            "tables",
            "public.docs",
        ],
    );
    assert_eq!(
        ops(&v),
        ["begin", "insert", "commit", "begin", "update", "commit"]
    );
    assert_eq!(floats(&v[1]["row"]["embedding"]), [1.0, 2.0]);
    let v = peek(
        &mut c,
        "feed",
        &["include-vectors", "off", "include-transaction", "no"],
    );
    assert_eq!(v[0]["omitted"], json!(["embedding"]));

    // Bad options: ERROR with SQLSTATE 22023, and the slot is unharmed.
    for bad in [
        &["bogus", "true"][..],
        &["include-vectors", "maybe"],
        &["include-row", ""],
        &["include-transaction", "2"],
        &["tables", "docs"],
        &["tables", ""],
        &["tables", "public.docs,"],
        &["tables", "\"unterminated.docs"],
    ] {
        let err = read_slot(&mut c, "peek", "feed", None, None, bad).unwrap_err();
        assert_eq!(sqlstate(&err), "22023", "{bad:?}: {err:?}");
    }
    // An odd number of option arguments is PostgreSQL's own error.
    assert!(read_slot(&mut c, "peek", "feed", None, None, &["include-row"]).is_err());
    assert_eq!(peek(&mut c, "feed", &[]).len(), 4);
}

/// Splits `rows` after the last commit event and returns that commit's LSN,
/// the position a consumer confirms once it has processed those rows.
fn last_commit_end(rows: &[Row]) -> Option<String> {
    rows.iter().rev().find(|r| r.ev["op"] == "commit").map(|r| {
        // The `lsn` column of a commit row is the end of its commit record.
        assert_eq!(r.ev["end_lsn"].as_str().unwrap(), r.lsn);
        r.lsn.clone()
    })
}

/// docs/cdc.md's at-least-once protocol past non-transactional messages: no
/// commit row follows them, so a consumer that confirmed only at commits read
/// the same messages on every peek, and never got past them when they filled
/// its `upto_nchanges` (hunt-57: any role can write them). Confirming at such
/// a message's `lsn` (the end of its WAL record) delivers each message once and
/// reaches the transaction after them.
#[test]
fn feed_consumer_confirms_past_non_transactional_messages() {
    let (_cl, mut c) = setup("cdc-nontx");
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    create_slot(&mut c, "feed");
    for i in 0..3 {
        c.execute(
            "SELECT pg_logical_emit_message(false, 'arrw', $1)",
            &[&format!("m{i}")],
        )
        .unwrap();
    }
    c.batch_execute("INSERT INTO t VALUES (1)").unwrap();
    c.execute("SELECT pg_logical_emit_message(false, 'arrw', 'm3')", &[])
        .unwrap();
    // PostgreSQL 15 does not flush a non-transactional message's WAL, and a
    // peek reads only flushed WAL: m3 is seen once a commit flushes it.
    c.batch_execute("INSERT INTO t VALUES (2)").unwrap();

    let opts = ["include-transaction", "true"];
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..20 {
        let rows = read_slot(&mut c, "peek", "feed", None, Some(2), &opts).unwrap();
        if rows.is_empty() {
            break;
        }
        // The documented rule: the lsn of the last commit, or of a
        // non-transactional message that came after it.
        let mut confirm: Option<String> = None;
        let mut in_transaction = false;
        for r in &rows {
            match r.ev["op"].as_str().unwrap() {
                "begin" => in_transaction = true,
                "commit" => {
                    in_transaction = false;
                    confirm = Some(r.lsn.clone());
                }
                "message" if !in_transaction && r.ev["transactional"] == false => {
                    seen.push(r.ev["content"].as_str().unwrap().to_string());
                    confirm = Some(r.lsn.clone());
                }
                "insert" => seen.push(format!("insert {}", r.ev["key"]["id"])),
                _ => {}
            }
        }
        let lsn = confirm.expect("every batch ends at a commit or a message");
        c.execute(
            "SELECT pg_replication_slot_advance('feed', $1::text::pg_lsn)",
            &[&lsn],
        )
        .unwrap();
    }
    assert_eq!(seen, ["m0", "m1", "m2", "insert 1", "m3", "insert 2"]);
    assert!(peek(&mut c, "feed", &opts).is_empty());
}

#[test]
fn feed_consumer_resumes_without_gaps_or_duplicates() {
    let (cl, mut c) = setup("cdc-resume");
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    create_slot(&mut c, "feed");
    let insert_batch = |c: &mut Client, from: i32| {
        // Three transactions of two rows each.
        for k in 0..3 {
            let a = from + 2 * k;
            c.execute("INSERT INTO t VALUES ($1), ($2)", &[&a, &(a + 1)])
                .unwrap();
        }
    };
    let ids = |rows: &[Row]| -> Vec<i64> {
        rows.iter()
            .filter(|r| r.ev["op"] == "insert")
            .map(|r| r.ev["key"]["id"].as_i64().unwrap())
            .collect()
    };
    let opts = ["include-transaction", "true"];
    let mut seen: Vec<i64> = Vec::new();

    insert_batch(&mut c, 0);
    // Session 1: peek a few changes (decoding stops at a transaction end),
    // process them, then confirm up to the last commit and disconnect.
    {
        let mut s1 = cl.connect();
        let rows = read_slot(&mut s1, "peek", "feed", None, Some(3), &opts).unwrap();
        let upto = last_commit_end(&rows).unwrap();
        seen.extend(ids(&rows));
        assert_eq!(seen, [0, 1]);
        s1.execute(
            "SELECT pg_replication_slot_advance('feed', $1::text::pg_lsn)",
            &[&upto],
        )
        .unwrap();
        let confirmed: String = s1
            .query_one("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'feed'", &[])
            .unwrap()
            .get(0);
        assert_eq!(confirmed, upto);
    }
    insert_batch(&mut c, 6);

    // Session 2: peek everything up to a given LSN (the end of the second
    // transaction it sees), process, confirm with get_changes up to the same LSN.
    {
        let mut s2 = cl.connect();
        let all = read_slot(&mut s2, "peek", "feed", None, None, &opts).unwrap();
        assert_eq!(ids(&all), [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        let commits: Vec<&Row> = all.iter().filter(|r| r.ev["op"] == "commit").collect();
        let upto = commits[1].lsn.clone();
        let rows = read_slot(&mut s2, "peek", "feed", Some(&upto), None, &opts).unwrap();
        assert_eq!(ids(&rows), [2, 3, 4, 5]);
        let got = read_slot(&mut s2, "get", "feed", Some(&upto), None, &opts).unwrap();
        assert_eq!(ids(&got), ids(&rows));
        seen.extend(ids(&got));
    }

    // A clean restart keeps the confirmed position.
    cl.stop("fast");
    cl.start_server();
    let mut c = cl.connect();
    insert_batch(&mut c, 12);

    // Session 3: resume and drain with get_changes.
    let rows = read_slot(&mut c, "get", "feed", None, None, &opts).unwrap();
    seen.extend(ids(&rows));
    assert_eq!(
        seen,
        (0..18).collect::<Vec<i64>>(),
        "no gaps, no duplicates"
    );
    assert!(read_slot(&mut c, "get", "feed", None, None, &opts)
        .unwrap()
        .is_empty());
}

/// Runs a PostgreSQL client program as the postgres OS user when we are root.
fn pg_program(name: &str) -> std::process::Command {
    let path = format!("{}/{name}", *PG_BIN);
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false);
    let mut cmd = if root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        std::process::Command::new(path)
    };
    cmd.env_remove("RUST_BACKTRACE");
    cmd
}

#[test]
fn feed_over_replication_connection() {
    let (cl, mut c) = setup("cdc-recv");
    c.batch_execute("CREATE TABLE docs (id int PRIMARY KEY, body text, embedding vector(2))")
        .unwrap();
    let port = cl.port.to_string();
    let recv = |args: &[&str]| {
        let mut cmd = pg_program("pg_recvlogical");
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "--slot",
            "rfeed",
        ]);
        cmd.args(args);
        cmd.output().unwrap()
    };
    let out = recv(&["--create-slot", "-P", "arrw"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.batch_execute(
        "INSERT INTO docs VALUES (1, E'line\\nbreak', '[1,2]'); SELECT arrw.emit_event('done', '{}')",
    )
    .unwrap();
    let end: String = c
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .unwrap()
        .get(0);
    let out = recv(&[
        "--start",
        "-f",
        "-",
        "--endpos",
        &end,
        "-o",
        "include-transaction",
        "-o",
        "include-vectors=true",
        "-o",
        "tables=public.docs",
        "--no-loop",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let evs: Vec<Value> = text.lines().map(parse).collect();
    assert_eq!(
        ops(&evs),
        ["begin", "insert", "message", "commit"],
        "{text}"
    );
    assert_eq!(evs[1]["row"]["body"], "line\nbreak");
    assert_eq!(floats(&evs[1]["row"]["embedding"]), [1.0, 2.0]);
    assert_eq!(evs[2]["content"]["kind"], "done");

    // Unknown options fail the START_REPLICATION command.
    let out = recv(&[
        "--start",
        "-f",
        "-",
        "--endpos",
        &end,
        "-o",
        "nope=1",
        "--no-loop",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("option \"nope\" is not recognized"));
}

// ---------------------------------------------------------------------------
// arrw.watch: NOTIFY channels
// ---------------------------------------------------------------------------

fn listener(cl: &Cluster, channels: &[&str]) -> Client {
    let mut l = cl.connect();
    for ch in channels {
        l.batch_execute(&format!("LISTEN {ch}")).unwrap();
    }
    l
}

/// Waits (up to 10 s each) for `expect` notifications, then 300 ms more for
/// any unexpected extra ones, and returns them all as (channel, payload).
fn drain(l: &mut Client, expect: usize) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut n = l.notifications();
    loop {
        let wait = if out.len() < expect {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(300)
        };
        let note: Notification = match n.timeout_iter(wait).next() {
            Ok(Some(note)) => note,
            _ => return out,
        };
        let v: Value = serde_json::from_str(note.payload())
            .unwrap_or_else(|e| panic!("invalid JSON payload ({e}): {}", note.payload()));
        out.push((note.channel().to_string(), v));
    }
}

#[test]
fn watch_notifies_per_statement() {
    let (cl, mut c) = setup("cdc-watch");
    c.batch_execute(
        "CREATE TABLE docs (id bigint PRIMARY KEY, body text, embedding vector(2));
         CREATE DOMAIN doc_id AS bigint;
         CREATE TABLE chunks (doc doc_id, n int, body text, PRIMARY KEY (doc, n));
         CREATE TABLE nopk (a int);",
    )
    .unwrap();
    let ch: String = c
        .query_one(
            "SELECT arrw.watch('docs'::regclass, include_keys => true)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(ch, "arrw_changes");
    let ch: String = c
        .query_one(
            "SELECT arrw.watch('chunks'::regclass, 'chunk_events', include_keys => true)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(ch, "chunk_events");
    c.query_one("SELECT arrw.watch('nopk', include_keys => true)", &[])
        .unwrap();
    let mut l = listener(&cl, &["arrw_changes", "chunk_events"]);

    c.batch_execute("INSERT INTO docs VALUES (1, 'a', '[1,2]'), (2, 'b', '[3,4]')")
        .unwrap();
    c.batch_execute("UPDATE docs SET body = 'c' WHERE id = 1")
        .unwrap();
    c.batch_execute("UPDATE docs SET id = 3 WHERE id = 2")
        .unwrap();
    c.batch_execute("UPDATE docs SET body = 'none' WHERE id = 99")
        .unwrap();
    c.batch_execute("DELETE FROM docs WHERE id = 1").unwrap();
    c.batch_execute("INSERT INTO chunks VALUES (1, 1, 'x'), (1, 2, 'y')")
        .unwrap();
    c.batch_execute("INSERT INTO nopk VALUES (1)").unwrap();
    c.batch_execute("TRUNCATE docs").unwrap();
    let got = drain(&mut l, 7);
    let want = vec![
        (
            "arrw_changes",
            json!({"table": "public.docs", "op": "insert", "count": 2, "keys": ["1", "2"]}),
        ),
        (
            "arrw_changes",
            json!({"table": "public.docs", "op": "update", "count": 1, "keys": ["1"]}),
        ),
        (
            "arrw_changes",
            json!({"table": "public.docs", "op": "update", "count": 1, "keys": ["2", "3"]}),
        ),
        (
            "arrw_changes",
            json!({"table": "public.docs", "op": "delete", "count": 1, "keys": ["1"]}),
        ),
        (
            "chunk_events",
            // A domain over bigint is a string, as bigint is (and as in the slot feed).
            json!({"table": "public.chunks", "op": "insert", "count": 2, "keys": [{"doc": "1", "n": 1}, {"doc": "1", "n": 2}]}),
        ),
        (
            "arrw_changes",
            json!({"table": "public.nopk", "op": "insert", "count": 1}),
        ),
        (
            "arrw_changes",
            json!({"table": "public.docs", "op": "truncate"}),
        ),
    ];
    let want: Vec<(String, Value)> = want.into_iter().map(|(c, v)| (c.to_string(), v)).collect();
    assert_eq!(got, want);
    // Never row contents or vectors.
    assert!(got
        .iter()
        .all(|(_, v)| !v.to_string().contains("[1,2]") && !v.to_string().contains("\"a\"")));

    // COPY of 10,000 rows: one notification, no keys.
    {
        let mut w = c.copy_in("COPY docs (id, body) FROM STDIN").unwrap();
        for i in 0..10_000 {
            writeln!(w, "{i}\tbody {i}").unwrap();
        }
        w.finish().unwrap();
    }
    let got = drain(&mut l, 1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].1,
        json!({"table": "public.docs", "op": "insert", "count": 10000})
    );

    // 100 rows get keys, 101 do not; keys are dropped when the payload would
    // reach 8000 bytes.
    c.batch_execute(
        "INSERT INTO docs (id) SELECT g FROM generate_series(100001, 100100) g;
         INSERT INTO docs (id) SELECT g FROM generate_series(200001, 200101) g;
         INSERT INTO chunks SELECT 1, g, 'x' FROM generate_series(10, 109) g;",
    )
    .unwrap();
    let got = drain(&mut l, 3);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].1["keys"].as_array().unwrap().len(), 100);
    assert_eq!(
        got[1].1,
        json!({"table": "public.docs", "op": "insert", "count": 101})
    );
    assert_eq!(got[2].1["count"], 100);
    assert!(got[2].1.get("keys").is_some());
    c.batch_execute(
        "CREATE TABLE wide (k text PRIMARY KEY); SELECT arrw.watch('wide', include_keys => true)",
    )
    .unwrap();
    c.batch_execute("INSERT INTO wide SELECT repeat('k', 100) || g FROM generate_series(1, 100) g")
        .unwrap();
    let got = drain(&mut l, 1);
    assert_eq!(
        got,
        vec![(
            "arrw_changes".to_string(),
            json!({"table": "public.wide", "op": "insert", "count": 100})
        )]
    );

    // Delivered at commit only; rollbacks and rolled-back savepoints send nothing.
    c.batch_execute("BEGIN; INSERT INTO nopk VALUES (2); UPDATE nopk SET a = 3 WHERE a = 2")
        .unwrap();
    assert!(drain(&mut l, 0).is_empty(), "nothing before commit");
    c.batch_execute(
        "SAVEPOINT s; DELETE FROM nopk; ROLLBACK TO s; INSERT INTO chunks VALUES (2, 1, 'z'); COMMIT",
    )
    .unwrap();
    let got = drain(&mut l, 3);
    let ops: Vec<String> = got
        .iter()
        .map(|(_, v)| {
            format!(
                "{} {}",
                v["table"].as_str().unwrap(),
                v["op"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            "public.nopk insert",
            "public.nopk update",
            "public.chunks insert"
        ]
    );
    c.batch_execute("BEGIN; INSERT INTO nopk VALUES (4); DELETE FROM docs; ROLLBACK")
        .unwrap();
    assert!(drain(&mut l, 0).is_empty());

    // Re-watching moves the table to another channel, and without
    // include_keys its payloads lose their keys; unwatch stops it.
    c.query_one("SELECT arrw.watch('docs', 'chunk_events')", &[])
        .unwrap();
    c.batch_execute("INSERT INTO docs (id) VALUES (-1)")
        .unwrap();
    let got = drain(&mut l, 1);
    assert_eq!(
        got,
        vec![(
            "chunk_events".to_string(),
            json!({"table": "public.docs", "op": "insert", "count": 1})
        )]
    );
    let old: String = c
        .query_one("SELECT arrw.unwatch('docs')", &[])
        .unwrap()
        .get(0);
    assert_eq!(old, "chunk_events");
    c.batch_execute("INSERT INTO docs (id) VALUES (-2)")
        .unwrap();
    assert!(drain(&mut l, 0).is_empty());
    let err = c.query("SELECT arrw.unwatch('docs')", &[]).unwrap_err();
    assert_eq!(sqlstate(&err), "42704");
    c.query_one("SELECT arrw.watch('docs')", &[]).unwrap();
    let watched: Vec<(String, String, bool)> = c
        .query(
            "SELECT \"table\"::text, channel, keys FROM arrw.watches ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let w = |t: &str, ch: &str, keys| (t.to_string(), ch.to_string(), keys);
    assert_eq!(
        watched,
        [
            w("chunks", "chunk_events", true),
            w("docs", "arrw_changes", false),
            w("nopk", "arrw_changes", true),
            w("wide", "arrw_changes", true),
        ]
    );
}

#[test]
fn watch_permissions_and_validation() {
    let (cl, mut c) = setup("cdc-perm");
    c.batch_execute(
        "CREATE ROLE owner_role LOGIN; CREATE ROLE other LOGIN; CREATE ROLE member LOGIN IN ROLE owner_role;
         CREATE TABLE docs (id int PRIMARY KEY); ALTER TABLE docs OWNER TO owner_role;
         GRANT ALL ON docs TO other; GRANT USAGE ON SCHEMA arrw TO PUBLIC;
         CREATE VIEW v AS SELECT 1 AS x;",
    )
    .unwrap();
    let as_role = |role: &str| {
        let mut s = cl.connect();
        s.batch_execute(&format!("SET ROLE {role}")).unwrap();
        s
    };

    let mut other = as_role("other");
    for sql in [
        "SELECT arrw.watch('docs')",
        "SELECT arrw.watch('docs', 'x')",
    ] {
        let err = other.query(sql, &[]).unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{sql}");
        assert!(err
            .as_db_error()
            .unwrap()
            .message()
            .contains("must be owner of table"));
    }
    let mut owner = as_role("owner_role");
    let ch: String = owner
        .query_one("SELECT arrw.watch('docs')", &[])
        .unwrap()
        .get(0);
    assert_eq!(ch, "arrw_changes");
    let err = other.query("SELECT arrw.unwatch('docs')", &[]).unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    // Members of the owning role count as owners.
    let mut member = as_role("member");
    member
        .query_one("SELECT arrw.watch('docs', 'member_channel')", &[])
        .unwrap();
    // A non-owner with write access still triggers notifications.
    let mut l = listener(&cl, &["member_channel"]);
    other.batch_execute("INSERT INTO docs VALUES (1)").unwrap();
    assert_eq!(drain(&mut l, 1).len(), 1);
    member
        .query_one("SELECT arrw.unwatch('docs')", &[])
        .unwrap();

    // Validation.
    for (sql, state) in [
        ("SELECT arrw.watch('docs', 'Bad-Name')", "22023"),
        ("SELECT arrw.watch('docs', '1abc')", "22023"),
        ("SELECT arrw.watch('docs', '')", "22023"),
        ("SELECT arrw.watch('docs', NULL)", "22023"),
        ("SELECT arrw.watch('docs', repeat('a', 64))", "22023"),
        ("SELECT arrw.watch('v')", "42809"),
        ("SELECT arrw.watch('no_such_table')", "42P01"),
        ("SELECT arrw.unwatch('docs')", "42704"),
        ("SELECT arrw.watch('docs', 'x', NULL)", "22004"),
    ] {
        let err = c.query(sql, &[]).unwrap_err();
        assert_eq!(sqlstate(&err), state, "{sql}: {err:?}");
    }
    let ch: String = c
        .query_one("SELECT arrw.watch('docs', repeat('a', 63))", &[])
        .unwrap()
        .get(0);
    assert_eq!(ch.len(), 63);
}

/// A session logged in as `role` (the test clusters trust every local login).
fn connect_as(cl: &Cluster, role: &str) -> Client {
    Client::connect(
        &format!(
            "host=127.0.0.1 port={} user={role} dbname=postgres",
            cl.port
        ),
        postgres::NoTls,
    )
    .unwrap()
}

/// LISTEN needs no privilege: a role that may not read a watched table still
/// receives its notifications, so by default they carry no key values.
#[test]
fn watch_keys_only_by_opt_in_for_unprivileged_listeners() {
    let (cl, mut c) = setup("cdc-leak");
    c.batch_execute(
        "CREATE ROLE nobody LOGIN;
         CREATE TABLE accounts (email text PRIMARY KEY, secret text);
         CREATE TABLE pairs (a text, b text, PRIMARY KEY (a, b));
         REVOKE ALL ON accounts, pairs FROM PUBLIC;
         SELECT arrw.watch('accounts');
         SELECT arrw.watch('pairs', 'pair_events');",
    )
    .unwrap();
    let mut l = connect_as(&cl, "nobody");
    let err = l.query("SELECT * FROM accounts", &[]).unwrap_err();
    assert_eq!(
        sqlstate(&err),
        "42501",
        "the listener cannot read the table"
    );
    l.batch_execute("LISTEN arrw_changes; LISTEN pair_events")
        .unwrap();

    c.batch_execute(
        "INSERT INTO accounts VALUES ('alice@example.com', 's3cret'), ('bob@example.com', 'pw');
         UPDATE accounts SET email = 'carol@example.com' WHERE email = 'bob@example.com';
         DELETE FROM accounts WHERE email = 'alice@example.com';
         INSERT INTO pairs VALUES ('alice@example.com', 'x');",
    )
    .unwrap();
    let got = drain(&mut l, 4);
    let want: Vec<(String, Value)> = vec![
        (
            "arrw_changes".into(),
            json!({"table": "public.accounts", "op": "insert", "count": 2}),
        ),
        (
            "arrw_changes".into(),
            json!({"table": "public.accounts", "op": "update", "count": 1}),
        ),
        (
            "arrw_changes".into(),
            json!({"table": "public.accounts", "op": "delete", "count": 1}),
        ),
        (
            "pair_events".into(),
            json!({"table": "public.pairs", "op": "insert", "count": 1}),
        ),
    ];
    assert_eq!(got, want);
    for (_, v) in &got {
        let text = v.to_string();
        assert!(
            !text.contains("example.com") && !text.contains("s3cret"),
            "{text}"
        );
    }

    // The owner's explicit opt-in sends the keys, to every listener.
    c.batch_execute(
        "SELECT arrw.watch('accounts', include_keys => true);
         INSERT INTO accounts VALUES ('dave@example.com', 'x');",
    )
    .unwrap();
    assert_eq!(
        drain(&mut l, 1),
        vec![(
            "arrw_changes".to_string(),
            json!({"table": "public.accounts", "op": "insert", "count": 1, "keys": ["dave@example.com"]})
        )]
    );
}

/// Databases copied from one template (`CREATE DATABASE ... TEMPLATE`, and so
/// every database made from a template1 that has arrw) share the template's
/// `arrw.secret` row; the job channel's name differs in each all the same, so
/// a role granted `arrw.job_channel()` in one does not know another's. Before,
/// the name was the secret itself: every copy had the template's channel.
#[test]
fn each_database_copied_from_a_template_has_its_own_job_channel() {
    let (cl, mut c) = setup("cdc-template");
    c.batch_execute("CREATE DATABASE tpl").unwrap();
    let mut t = cl.connect_db("tpl");
    t.batch_execute("CREATE EXTENSION arrw").unwrap();
    let channel = |c: &mut Client| -> String {
        c.query_one("SELECT arrw.job_channel()", &[])
            .unwrap()
            .get(0)
    };
    let in_tpl = channel(&mut t);
    drop(t);
    // One statement each: CREATE DATABASE refuses a multi-statement string
    // (an implicit transaction block).
    c.batch_execute("CREATE DATABASE copy_a TEMPLATE tpl STRATEGY wal_log")
        .unwrap();
    c.batch_execute("CREATE DATABASE copy_b TEMPLATE tpl STRATEGY file_copy")
        .unwrap();
    let mut names = vec![in_tpl, channel(&mut c)];
    for db in ["copy_a", "copy_b"] {
        let mut d = cl.connect_db(db);
        let secret: String = d
            .query_one(
                "SELECT value FROM arrw.secret WHERE name = 'job_channel'",
                &[],
            )
            .unwrap()
            .get(0);
        let mut t = cl.connect_db("tpl");
        let tpl_secret: String = t
            .query_one(
                "SELECT value FROM arrw.secret WHERE name = 'job_channel'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(
            secret, tpl_secret,
            "{db}: the copy has the template's secret row"
        );
        names.push(channel(&mut d));
    }
    for n in &names {
        assert!(n.starts_with("arrw_jobs_") && n.len() == 42, "{n}");
    }
    let distinct: std::collections::HashSet<_> = names.iter().collect();
    assert_eq!(distinct.len(), names.len(), "one channel shared: {names:?}");
}

/// Only arrw can write events that a consumer sees as arrw's: job events in the
/// change feed carry "origin":"arrw" only when arrw wrote them, arrw.emit_event
/// refuses the reserved kinds, and the job channel's name is a secret.
#[test]
fn job_events_cannot_be_forged() {
    let (cl, mut c) = setup("cdc-forge");
    c.batch_execute(
        "CREATE ROLE alice LOGIN; CREATE ROLE mallory LOGIN;
         CREATE TABLE t (id int); ALTER TABLE t OWNER TO alice;",
    )
    .unwrap();
    let mut alice = connect_as(&cl, "alice");
    let mut mallory = connect_as(&cl, "mallory");

    // The reserved kinds are refused, for superusers too.
    for (who, sess) in [("mallory", &mut mallory), ("postgres", &mut c)] {
        for kind in ["job", "JOB", " job ", "arrw.index", "arrw"] {
            let err = sess
                .query(
                    "SELECT arrw.emit_event($1, '{\"id\": 424242, \"state\": \"succeeded\"}')",
                    &[&kind],
                )
                .unwrap_err();
            assert_eq!(sqlstate(&err), "42501", "{who}: {kind:?}");
        }
    }
    create_slot(&mut c, "feed");
    let secret_channel: String = c
        .query_one("SELECT arrw.job_channel()", &[])
        .unwrap()
        .get(0);
    assert!(
        secret_channel.starts_with("arrw_jobs_") && secret_channel.len() == 42,
        "{secret_channel}"
    );
    let mut l = listener(&cl, &["arrw_jobs", &secret_channel]);
    // The secret channel's name is not for everyone.
    for sql in ["SELECT arrw.job_channel()", "SELECT value FROM arrw.secret"] {
        let err = mallory.query(sql, &[]).unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{sql}");
    }

    // PostgreSQL 15 lets every role write logical decoding messages with any
    // prefix, so mallory can write the exact bytes of a job event.
    let can: bool = mallory
        .query_one(
            "SELECT has_function_privilege('pg_logical_emit_message(boolean,text,text)', 'EXECUTE')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(can);
    // A batch_delete job of nothing, and the bytes of its event for a state.
    let submit = |sess: &mut Client| -> i64 {
        sess.query_one(
            "SELECT arrw.submit_job('batch_delete', '{\"table\": \"t\", \"where\": \"false\"}')",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let event_of = |id: i64, state: &str| {
        format!(
            r#"{{"kind": "job", "payload": {{"id": {id}, "kind": "batch_delete", "state": "{state}"}}}}"#
        )
    };
    let emit = |sess: &mut Client, content: &str| {
        sess.execute(
            "SELECT pg_logical_emit_message(true, 'arrw', $1)",
            &[&content],
        )
        .unwrap();
    };
    let id = submit(&mut alice);
    let event = |state: &str| event_of(id, state);
    emit(&mut mallory, &event("failed"));
    // Even the true state of a job, written in a transaction that did not
    // change the job, is not arrw's.
    emit(&mut mallory, &event("queued"));
    mallory
        .execute("SELECT arrw.emit_event('mine', '{\"n\": 1}')", &[])
        .unwrap();
    // Nor can one ride on a transaction that really changed a job of one's own:
    // the event must match the state that transaction wrote.
    c.batch_execute("GRANT ALL ON t TO mallory").unwrap();
    mallory.batch_execute("BEGIN").unwrap();
    let own = submit(&mut mallory);
    let own_event = event_of(own, "succeeded");
    emit(&mut mallory, &own_event);
    mallory.batch_execute("COMMIT").unwrap();
    // Nor behind arrw's own event, in the transaction that wrote it: copies of
    // the bytes arrw just wrote are the user's (hunt-57: a submit, a cancel and
    // two copies of the cancel's event gave three "cancelled" events of arrw).
    mallory.batch_execute("BEGIN").unwrap();
    let twice = submit(&mut mallory);
    let twice_event = |state: &str| event_of(twice, state);
    emit(&mut mallory, &twice_event("queued"));
    mallory
        .execute("SELECT arrw.cancel_job($1)", &[&twice])
        .unwrap();
    for _ in 0..2 {
        emit(&mut mallory, &twice_event("cancelled"));
    }
    mallory.batch_execute("COMMIT").unwrap();
    c.batch_execute("INSERT INTO t VALUES (1)").unwrap();

    let evs = get(&mut c, "feed", &["tables", "public.t"]);
    let msgs: Vec<(String, String)> = evs
        .iter()
        .filter(|e| e["op"] == "message")
        .map(|e| {
            (
                e["origin"].as_str().unwrap_or("none").to_string(),
                e["content"].to_string(),
            )
        })
        .collect();
    let compact = |s: &str| serde_json::from_str::<Value>(s).unwrap().to_string();
    let origin_of = |content: &str| -> Vec<&str> {
        msgs.iter()
            .filter(|(_, c)| *c == compact(content))
            .map(|(o, _)| o.as_str())
            .collect()
    };
    // alice's submit wrote the job's row and its event: arrw's.
    assert_eq!(origin_of(&event("queued"))[0], "arrw", "{msgs:?}");
    // mallory's copy of the same bytes, in a transaction of its own: not arrw's.
    assert_eq!(origin_of(&event("queued")).len(), 2, "{msgs:?}");
    assert_eq!(origin_of(&event("queued"))[1], "user", "{msgs:?}");
    assert_eq!(origin_of(&event("failed")), ["user"], "{msgs:?}");
    // mallory's message comes first (the job cannot run before mallory's
    // transaction commits); the worker may already have run the job and
    // written the same bytes itself, as arrw.
    let own = origin_of(&own_event);
    assert_eq!(own.first(), Some(&"user"), "{msgs:?}");
    assert!(own[1..].iter().all(|o| *o == "arrw"), "{msgs:?}");
    assert!(own.len() <= 2, "{msgs:?}");
    assert_eq!(
        origin_of(&twice_event("queued")),
        ["arrw", "user"],
        "{msgs:?}"
    );
    assert_eq!(
        origin_of(&twice_event("cancelled")),
        ["arrw", "user", "user"],
        "{msgs:?}"
    );
    let mine = r#"{"kind": "mine", "payload": {"n": 1}}"#;
    assert_eq!(origin_of(mine), ["user"], "{msgs:?}");
    // Every message is marked; the workers' own events (running, succeeded)
    // are arrw's too.
    for (origin, content) in &msgs {
        assert!(origin == "arrw" || origin == "user", "{origin} {content}");
        if origin == "arrw" {
            let v: Value = serde_json::from_str(content).unwrap();
            assert_eq!(v["kind"], "job", "{content}");
        }
    }

    // NOTIFY: anyone can send on arrw_jobs (a hint only); the secret channel
    // carries arrw's own announcements.
    mallory
        .batch_execute(r#"NOTIFY arrw_jobs, '{"id": 424242, "state": "succeeded"}'"#)
        .unwrap();
    // At least: alice's and mallory's submits on both channels, the forgery.
    let got = drain(&mut l, 5);
    let forged = json!({"id": 424242, "state": "succeeded"});
    assert!(
        got.contains(&("arrw_jobs".to_string(), forged.clone())),
        "{got:?}"
    );
    assert!(
        !got.iter()
            .any(|(ch, v)| ch == &secret_channel && v == &forged),
        "{got:?}"
    );
    let queued = json!({"id": id, "state": "queued"});
    assert!(
        got.contains(&(secret_channel.clone(), queued.clone())),
        "{got:?}"
    );
    assert!(got.contains(&("arrw_jobs".to_string(), queued)), "{got:?}");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Commit-to-receipt latency of arrw.watch notifications, printed (not asserted).
#[test]
fn watch_latency() {
    const N: usize = 400;
    let (cl, mut c) = setup("cdc-latency");
    c.batch_execute(
        "CREATE TABLE docs (id int PRIMARY KEY, body text); SELECT arrw.watch('docs', include_keys => true);
         CREATE TABLE plain (id int PRIMARY KEY, body text);",
    )
    .unwrap();
    // Baseline: the same inserts into a table nobody watches.
    let plain = c.prepare("INSERT INTO plain VALUES ($1, 'x')").unwrap();
    let mut base: Vec<f64> = (0..N as i32)
        .map(|i| {
            let t0 = Instant::now();
            c.execute(&plain, &[&i]).unwrap();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    base.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut l = listener(&cl, &["arrw_changes"]);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let receiver = std::thread::spawn(move || {
        tx.send(()).unwrap();
        let mut got = Vec::with_capacity(N);
        let mut n = l.notifications();
        let mut it = n.timeout_iter(Duration::from_secs(10));
        while got.len() < N {
            match it.next() {
                Ok(Some(note)) => {
                    let at = Instant::now();
                    let v: Value = serde_json::from_str(note.payload()).unwrap();
                    got.push((v["keys"][0].as_i64().unwrap() as usize, at));
                }
                _ => break,
            }
        }
        got
    });
    rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let stmt = c.prepare("INSERT INTO docs VALUES ($1, 'x')").unwrap();
    let mut sent = Vec::with_capacity(N);
    for i in 0..N {
        let t0 = Instant::now();
        c.execute(&stmt, &[&(i as i32)]).unwrap();
        sent.push((t0, Instant::now()));
        std::thread::sleep(Duration::from_millis(2));
    }
    let got = receiver.join().unwrap();
    assert_eq!(got.len(), N, "every single-row insert is notified");
    // From the start of the autocommit INSERT (which commits before it returns)
    // to receipt, and from the client seeing the commit to receipt (negative when
    // the listener hears of it first).
    let mut from_start: Vec<f64> = Vec::new();
    let mut from_ack: Vec<f64> = Vec::new();
    for (id, at) in got {
        let (t0, t1) = sent[id];
        from_start.push(at.duration_since(t0).as_secs_f64() * 1e3);
        from_ack.push(if at >= t1 {
            at.duration_since(t1).as_secs_f64() * 1e3
        } else {
            -(t1.duration_since(at).as_secs_f64() * 1e3)
        });
    }
    from_start.sort_by(|a, b| a.partial_cmp(b).unwrap());
    from_ack.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "arrw.watch latency over {N} single-row autocommit inserts:\n  \
         insert start -> receipt: median {:.3} ms, p99 {:.3} ms, max {:.3} ms\n  \
         commit ack   -> receipt: median {:.3} ms, p99 {:.3} ms, max {:.3} ms\n  \
         (baseline: the same insert into an unwatched table takes median {:.3} ms, p99 {:.3} ms)",
        percentile(&from_start, 0.5),
        percentile(&from_start, 0.99),
        from_start[from_start.len() - 1],
        percentile(&from_ack, 0.5),
        percentile(&from_ack, 0.99),
        from_ack[from_ack.len() - 1],
        percentile(&base, 0.5),
        percentile(&base, 0.99),
    );
}

/// A job cancelled while queued is announced as arrw's. cancel_job never
/// locks a job's row; for a job its own transaction submitted (as here) its
/// event is marked "arrw" because its transaction writes the request's row of
/// arrw.job_cancel with the announced kind (the cdc_feed regression test
/// checks that event), and the worker that records the cancellation does not
/// announce it again; any other queued job's cancellation is announced by
/// that worker, in the transaction that writes the row. Before, it announced
/// nothing, and consumers trusting only "origin":"arrw" events never learnt
/// of the cancellation.
#[test]
fn a_job_cancelled_while_queued_is_announced_as_arrw() {
    let (_cl, mut c) = setup("cdc-cancelled");
    c.batch_execute("CREATE TABLE t (id int)").unwrap();
    create_slot(&mut c, "feed");
    // Submitted and cancelled in one transaction: no worker sees it queued.
    c.batch_execute("BEGIN").unwrap();
    let id: i64 = c
        .query_one(
            "SELECT arrw.submit_job('batch_delete', '{\"table\": \"t\", \"where\": \"false\"}')",
            &[],
        )
        .unwrap()
        .get(0);
    let cancelled: bool = c
        .query_one("SELECT arrw.cancel_job($1)", &[&id])
        .unwrap()
        .get(0);
    assert!(cancelled);
    c.batch_execute("COMMIT").unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s: String = c
            .query_one("SELECT state FROM arrw.job WHERE id = $1", &[&id])
            .unwrap()
            .get(0);
        if s == "cancelled" {
            break;
        }
        assert!(Instant::now() < deadline, "job {id} still {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let evs = get(&mut c, "feed", &["tables", "public.t"]);
    let origins: Vec<&str> = evs
        .iter()
        .filter(|e| {
            e["op"] == "message"
                && e["content"]["payload"]["id"] == id
                && e["content"]["payload"]["state"] == "cancelled"
        })
        .map(|e| e["origin"].as_str().unwrap_or("none"))
        .collect();
    assert!(origins.contains(&"arrw"), "{origins:?}");
}

/// A message too large to render within PostgreSQL's 1 GB output limit once
/// escaped (any role may emit one) is left out, with its size: such an event
/// made every later read of the slot fail (54000) for good.
#[test]
fn feed_leaves_out_a_message_too_large_to_render() {
    let (_cl, mut c) = setup("cdc-bigmsg");
    create_slot(&mut c, "feed");
    c.batch_execute(
        "SELECT pg_logical_emit_message(true, 'arrw', repeat(chr(1), 70 * 1024 * 1024));
         SELECT pg_logical_emit_message(true, 'arrw', '{\"after\": 1}');",
    )
    .unwrap();
    let evs = get(&mut c, "feed", &[]);
    let msgs: Vec<&Value> = evs.iter().filter(|e| e["op"] == "message").collect();
    assert_eq!(msgs.len(), 2, "{evs:?}");
    assert_eq!(msgs[0]["content"], Value::Null);
    assert_eq!(msgs[0]["content_bytes"], 70 * 1024 * 1024);
    assert_eq!(msgs[1]["content"], json!({"after": 1}));
}
