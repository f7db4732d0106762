//! `ALTER EXTENSION arrw UPDATE` from every released version.
//!
//! For each frozen install script `sql/versions/arrw--<old>.sql` (installed next
//! to the current one by `scripts/lib.sh`'s `install_extension` and by
//! `scripts/package`), a database is created at the old version, given data, an
//! ivfpq index and a change channel, and updated; every query must answer as it
//! did before the update, the extension must report the current version, and
//! its objects must be exactly those of a fresh `CREATE EXTENSION arrw` in
//! another database of the same server.
//!
//! Creating the old version runs against the current library, so this also
//! proves every C symbol an old install script names still exists (a database
//! at the old version keeps calling them until it is updated).

use arrw_tests::{exec, msg, Cluster, Rng};
use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use std::time::Duration;

/// The versions with a frozen install script, oldest first.
fn old_versions() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../sql/versions");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|n| {
            n.strip_prefix("arrw--")?
                .strip_suffix(".sql")
                .filter(|v| !v.contains("--"))
                .map(str::to_string)
        })
        .collect();
    v.sort_by_key(|s| {
        s.split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>()
    });
    v
}

/// The version of the arrw crate, which is `default_version` of the control file.
fn current_version() -> String {
    let toml = include_str!("../Cargo.toml");
    let pkg = toml.split("[package]").nth(1).expect("[package] section");
    let line = pkg
        .lines()
        .find(|l| l.starts_with("version"))
        .expect("version line");
    line.split('"').nth(1).unwrap().to_string()
}

fn one<T: for<'a> postgres::types::FromSql<'a>>(c: &mut Client, sql: &str) -> T {
    c.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", msg(&e)))
        .get(0)
}

/// Every row of `sql`, each row's columns cast to text by the query, joined.
fn rows(c: &mut Client, sql: &str) -> Vec<String> {
    c.query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", msg(&e)))
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| {
                    r.get::<_, Option<String>>(i)
                        .unwrap_or_else(|| "NULL".into())
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

fn lit(v: &[f32]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(","))
}

const DIM: usize = 8;

/// What the answers must not change across the update: exact and approximate
/// index scans, operators and functions of the type, the index's own report.
fn answers(c: &mut Client, queries: &[Vec<f32>]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    exec(
        c,
        "SET enable_seqscan = off; SET ivfpq.probes = 2; SET ivfpq.rerank = 40",
    );
    for q in queries {
        let q = lit(q);
        let sql = format!("SELECT id::text FROM items ORDER BY v <-> '{q}' LIMIT 10");
        let plan = rows(c, &format!("EXPLAIN (COSTS OFF) {sql}")).join("\n");
        assert!(plan.contains("Index Scan using items_v"), "{plan}");
        out.push(rows(c, &sql));
        out.push(rows(
            c,
            &format!(
                "SELECT id::text, (v <-> '{q}')::text, (v <=> '{q}')::text, \
                 (v <#> '{q}')::text, l2_distance(v, '{q}')::text, vector_dims(v)::text \
                 FROM items WHERE id % 97 = 0 ORDER BY id"
            ),
        ));
    }
    out.push(rows(
        c,
        "SELECT lists::text, rows::text, dim::text, m::text, nbits::text, metric, \
         trained::text FROM arrw.ivfpq_info('items_v')",
    ));
    out.push(rows(c, "SELECT arrw.ivfpq_check('items_v')::text"));
    out.push(rows(
        c,
        "SELECT (v + v)::text, l2_normalize(v)::text, avg(v) OVER ()::text \
         FROM items WHERE id < 3 ORDER BY id",
    ));
    out.push(rows(
        c,
        "SELECT \"table\"::text, channel, keys::text FROM arrw.watches",
    ));
    out
}

/// The extension's member objects, and for functions their definition.
fn members(c: &mut Client) -> Vec<String> {
    rows(
        c,
        "SELECT pg_describe_object(d.classid, d.objid, 0) || coalesce(' = ' || \
           (SELECT concat_ws(' ', p.prosrc, p.probin, p.provolatile, p.proparallel, \
                   p.proisstrict, p.prorettype::regtype, p.proconfig::text) \
            FROM pg_proc p WHERE d.classid = 'pg_proc'::regclass AND p.oid = d.objid), '') \
         FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid \
         WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' \
           AND e.extname = 'arrw' ORDER BY 1",
    )
}

/// A LISTEN connection to `db` gets `arrw.watch`'s notification for one INSERT.
fn expect_change(cl: &Cluster, db: &str, c: &mut Client, id: i32) {
    let mut l = cl.connect_db(db);
    exec(&mut l, "LISTEN arrw_changes");
    exec(
        c,
        &format!("INSERT INTO items VALUES ({id}, '{}')", lit(&[0.5; DIM])),
    );
    let mut n = l.notifications();
    let note = n
        .timeout_iter(Duration::from_secs(10))
        .next()
        .unwrap()
        .unwrap_or_else(|| panic!("no notification for the insert of {id}"));
    let v: serde_json::Value = serde_json::from_str(note.payload()).unwrap();
    assert_eq!(v["table"], "public.items", "{v}");
    assert_eq!(v["op"], "insert", "{v}");
    assert_eq!(v["keys"], serde_json::json!([id]), "{v}");
}

#[test]
fn alter_extension_update_from_every_released_version() {
    let versions = old_versions();
    assert!(
        !versions.is_empty(),
        "no frozen install script in sql/versions"
    );
    let current = current_version();
    let cluster = Cluster::start("upgrade", "");
    let mut admin = cluster.connect();
    let available = rows(
        &mut admin,
        "SELECT version FROM pg_available_extension_versions WHERE name = 'arrw' ORDER BY 1",
    );
    for v in versions.iter().chain([&current]) {
        assert!(
            available.contains(v),
            "arrw {v} is not installed (available: {available:?}); \
             install with scripts/lib.sh's install_extension or scripts/package"
        );
    }

    // The objects of a fresh install of the current version.
    exec(&mut admin, "CREATE DATABASE fresh");
    let mut fresh = cluster.connect_db("fresh");
    exec(&mut fresh, "CREATE EXTENSION arrw");
    let want_members = members(&mut fresh);
    drop(fresh);

    let mut rng = Rng(7);
    let data: Vec<Vec<f32>> = (0..1500)
        .map(|i| {
            let centre = (i % 5) as f64 * 4.0;
            (0..DIM).map(|_| (centre + rng.gauss()) as f32).collect()
        })
        .collect();
    let queries: Vec<Vec<f32>> = (0..5).map(|i| data[i * 101].clone()).collect();

    for old in versions.iter().filter(|v| **v != current) {
        let db = format!("from_{}", old.replace('.', "_"));
        exec(&mut admin, &format!("CREATE DATABASE {db}"));
        let mut c = cluster.connect_db(&db);
        exec(&mut c, &format!("CREATE EXTENSION arrw VERSION '{old}'"));
        assert_eq!(
            one::<String>(
                &mut c,
                "SELECT extversion FROM pg_extension WHERE extname = 'arrw'"
            ),
            *old
        );
        exec(
            &mut c,
            &format!("CREATE TABLE items (id int PRIMARY KEY, v vector({DIM}))"),
        );
        for (chunk_no, chunk) in data.chunks(250).enumerate() {
            let values: Vec<String> = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| format!("({}, '{}')", chunk_no * 250 + i, lit(v)))
                .collect();
            exec(
                &mut c,
                &format!("INSERT INTO items VALUES {}", values.join(",")),
            );
        }
        exec(
            &mut c,
            "CREATE INDEX items_v ON items USING ivfpq (v) WITH (lists = 4, m = 4, nbits = 8)",
        );
        exec(&mut c, "SELECT arrw.watch('items', include_keys => true)");
        expect_change(&cluster, &db, &mut c, 100_000);
        let before = answers(&mut c, &queries);
        let secret_before: String = one(
            &mut c,
            "SELECT value FROM arrw.secret WHERE name = 'job_channel'",
        );

        exec(&mut c, "ALTER EXTENSION arrw UPDATE");
        // A new secret: the old versions' arrw.job_channel() gave the secret
        // itself to every role granted it, so the new name (the secret hashed
        // with the database's OID) derived from the old secret would be known
        // to such a role in every copy of a template (hunt-54).
        assert_ne!(
            one::<String>(
                &mut c,
                "SELECT value FROM arrw.secret WHERE name = 'job_channel'"
            ),
            secret_before,
            "update from {old}"
        );
        assert_eq!(
            one::<String>(
                &mut c,
                "SELECT extversion FROM pg_extension WHERE extname = 'arrw'"
            ),
            current,
            "update from {old}"
        );
        // A new session, so nothing cached from before the update answers.
        drop(c);
        let mut c = cluster.connect_db(&db);
        assert_eq!(answers(&mut c, &queries), before, "update from {old}");
        assert_eq!(members(&mut c), want_members, "update from {old}");
        // The function the update adds answers about the index built before
        // it (by this library, which measured its probes; an index from the
        // 0.1.0 library has on-disk format 2 and is refused until a REINDEX).
        assert_eq!(
            one::<String>(
                &mut c,
                "SELECT source FROM arrw.ivfpq_default_probes('items_v')"
            ),
            "measured",
            "update from {old}"
        );
        // Writes through the old index and the old channel still work.
        expect_change(&cluster, &db, &mut c, 100_001);
        exec(&mut c, "SET enable_seqscan = off; SET ivfpq.probes = 4");
        let sql = format!(
            "SELECT count(*) FROM (SELECT id FROM items ORDER BY v <-> '{}' LIMIT 2) s \
             WHERE id >= 100000",
            lit(&[0.5; DIM])
        );
        assert_eq!(one::<i64>(&mut c, &sql), 2, "update from {old}");
        exec(&mut c, "VACUUM items");
        assert!(one::<bool>(&mut c, "SELECT arrw.ivfpq_check('items_v')"));
    }
}
