//! arrw beside pgvector: `CREATE EXTENSION arrw SCHEMA arrw_ext` in a database
//! whose `public` has pgvector's `vector`, and the companion extension
//! `arrw_pgvector` (extensions/arrw_pgvector/), whose ivfpq operator classes
//! index pgvector columns in place.
//!
//! The proof that ivfpq reads pgvector's datums correctly: the same rows in a
//! pgvector column and in an arrw column, indexed alike, give the same ids in
//! the same order for every operator class, approximate and exact, before and
//! after inserts, deletes and VACUUM; exact answers equal pgvector's own
//! sequential scan.
//!
//! Needs pgvector installed in the PostgreSQL under test; without it the test
//! passes after printing `SKIPPED` (scripts/test says which it was).

use arrw_tests::{exec, msg, Cluster, Rng};
use postgres::Client;

const DIM: usize = 16;

fn available(c: &mut Client, ext: &str) -> bool {
    c.query_one(
        "SELECT count(*) FROM pg_available_extensions WHERE name = $1",
        &[&ext],
    )
    .unwrap()
    .get::<_, i64>(0)
        > 0
}

fn lit(v: &[f32]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(","))
}

fn col(c: &mut Client, sql: &str) -> Vec<String> {
    c.query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", msg(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The ids (as text) and the plan of a k-NN query on `table`.
fn knn(c: &mut Client, table: &str, op: &str, q: &str, k: usize) -> (Vec<String>, String) {
    let sql = format!("SELECT id::text FROM {table} ORDER BY embedding {op} '{q}' LIMIT {k}");
    let plan = col(c, &format!("EXPLAIN (COSTS OFF) {sql}")).join("\n");
    (col(c, &sql), plan)
}

fn insert(c: &mut Client, rows: &[(i32, Vec<f32>)]) {
    for chunk in rows.chunks(200) {
        let values: Vec<String> = chunk
            .iter()
            .map(|(id, v)| format!("({id}, '{}')", lit(v)))
            .collect();
        let values = values.join(",");
        exec(c, &format!("INSERT INTO pg_items VALUES {values}"));
        exec(c, &format!("INSERT INTO ax_items VALUES {values}"));
    }
}

/// Both tables answer every query alike through their ivfpq index (`exact`:
/// every list probed and every candidate re-ranked; then they also equal
/// pgvector's sequential scan).
fn compare(c: &mut Client, op: &str, queries: &[Vec<f32>], exact: bool) {
    let settings = if exact {
        "SET ivfpq.probes = 0; SET ivfpq.max_probes = 0; SET ivfpq.probes = 1000; \
         SET ivfpq.rerank = 100000"
    } else {
        "SET ivfpq.probes = 2; SET ivfpq.rerank = 20"
    };
    exec(c, &format!("SET enable_seqscan = off; {settings}"));
    for q in queries {
        let q = lit(q);
        let (pg, pg_plan) = knn(c, "pg_items", op, &q, 10);
        let (ax, ax_plan) = knn(c, "ax_items", op, &q, 10);
        assert!(pg_plan.contains("Index Scan using pg_items_"), "{pg_plan}");
        assert!(ax_plan.contains("Index Scan using ax_items_"), "{ax_plan}");
        assert_eq!(pg, ax, "{op} {q} (exact: {exact})");
        assert_eq!(pg.len(), 10);
        if exact {
            exec(c, "SET enable_indexscan = off; SET enable_seqscan = on");
            let (truth, plan) = knn(c, "pg_items", op, &q, 10);
            assert!(!plan.contains("Index"), "{plan}");
            exec(c, "RESET enable_indexscan; SET enable_seqscan = off");
            assert_eq!(pg, truth, "{op} {q}: pgvector's own exact answer");
        }
    }
}

/// A server with pgvector in `public`, arrw in schema `arrw_ext` and
/// `arrw_pgvector` beside them; None (after printing `SKIPPED`) when pgvector
/// is not installed in the PostgreSQL under test.
fn beside_pgvector(name: &str, what: &str) -> Option<(Cluster, Client)> {
    let cluster = Cluster::start(name, "");
    let mut c = cluster.connect();
    if !available(&mut c, "vector") {
        eprintln!(
            "SKIPPED tests/pgvector.rs ({what}): pgvector (extension `vector`) is not \
             installed in this PostgreSQL"
        );
        return None;
    }
    assert!(
        available(&mut c, "arrw_pgvector"),
        "arrw_pgvector is not installed: scripts/lib.sh's install_extension (or \
         scripts/package) copies extensions/arrw_pgvector/ into the extension directory"
    );
    // pgvector in public, arrw beside it, the companion where pgvector is.
    exec(
        &mut c,
        "CREATE EXTENSION vector; CREATE SCHEMA arrw_ext; \
         CREATE EXTENSION arrw SCHEMA arrw_ext; CREATE EXTENSION arrw_pgvector",
    );
    Some((cluster, c))
}

#[test]
fn ivfpq_on_a_pgvector_column_answers_like_on_an_arrw_column() {
    let Some((cluster, mut c)) = beside_pgvector("pgvector", "vector") else {
        return;
    };
    let types = col(
        &mut c,
        "SELECT format('%s %s', e.extname, n.nspname) FROM pg_extension e \
         JOIN pg_namespace n ON n.oid = e.extnamespace \
         WHERE e.extname IN ('vector', 'arrw', 'arrw_pgvector') ORDER BY 1",
    );
    assert_eq!(
        types,
        ["arrw arrw_ext", "arrw_pgvector public", "vector public"]
    );
    // With only public on the path, `vector` is pgvector's.
    assert_eq!(
        col(&mut c, "SELECT 'vector'::regtype::text"),
        ["vector"],
        "unqualified vector"
    );
    assert_eq!(
        col(
            &mut c,
            "SELECT t.typnamespace::regnamespace::text FROM pg_type t \
             WHERE t.oid = 'vector'::regtype"
        ),
        ["public"]
    );

    exec(
        &mut c,
        &format!(
            "SET search_path = public, arrw_ext; \
             SET max_parallel_maintenance_workers = 0; \
             CREATE TABLE pg_items (id int PRIMARY KEY, embedding public.vector({DIM})) \
               WITH (autovacuum_enabled = off); \
             CREATE TABLE ax_items (id int PRIMARY KEY, embedding arrw_ext.vector({DIM})) \
               WITH (autovacuum_enabled = off)"
        ),
    );
    let mut rng = Rng(2024);
    let mut point = |i: i32| -> Vec<f32> {
        let centre = (i % 7) as f64 * 3.0;
        (0..DIM).map(|_| (centre + rng.gauss()) as f32).collect()
    };
    let rows: Vec<(i32, Vec<f32>)> = (0..3000).map(|i| (i, point(i))).collect();
    insert(&mut c, &rows);
    // The same bytes in both columns (pgvector's send against arrw's).
    assert_eq!(
        col(
            &mut c,
            "SELECT count(*)::text FROM pg_items p JOIN ax_items a USING (id) \
             WHERE public.vector_send(p.embedding) = arrw_ext.vector_send(a.embedding) \
               AND pg_column_size(p.embedding) = pg_column_size(a.embedding)"
        ),
        ["3000"]
    );
    let queries: Vec<Vec<f32>> = (0..6).map(|i| point(10_000 + i)).collect();

    for (op, class) in [
        ("<->", "vector_l2_ops"),
        ("<#>", "vector_ip_ops"),
        ("<=>", "vector_cosine_ops"),
    ] {
        // `class` unqualified is arrw_pgvector's (public comes first); arrw's
        // own class for its type is named with its schema.
        exec(
            &mut c,
            &format!(
                "DROP INDEX IF EXISTS pg_items_v; DROP INDEX IF EXISTS ax_items_v; \
                 CREATE INDEX pg_items_v ON pg_items USING ivfpq (embedding {class}) \
                   WITH (lists = 6, m = 8); \
                 CREATE INDEX ax_items_v ON ax_items USING ivfpq (embedding arrw_ext.{class}) \
                   WITH (lists = 6, m = 8)"
            ),
        );
        let info = |c: &mut Client, idx: &str| {
            col(
                c,
                &format!(
                    "SELECT format('%s %s %s %s %s %s', lists, rows, rows_min, rows_max, \
                     metric, trained) FROM arrw.ivfpq_info('{idx}')"
                ),
            )
        };
        assert_eq!(
            info(&mut c, "pg_items_v"),
            info(&mut c, "ax_items_v"),
            "{class}"
        );
        compare(&mut c, op, &queries, false);
        compare(&mut c, op, &queries, true);
    }

    // Inserts, deletes and VACUUM through both indexes (the cosine pair the
    // loop left) keep them alike.
    let more: Vec<(i32, Vec<f32>)> = (3000..3400).map(|i| (i, point(i))).collect();
    insert(&mut c, &more);
    exec(
        &mut c,
        "DELETE FROM pg_items WHERE id % 5 = 0; DELETE FROM ax_items WHERE id % 5 = 0",
    );
    exec(&mut c, "VACUUM pg_items");
    exec(&mut c, "VACUUM ax_items");
    compare(&mut c, "<=>", &queries, false);
    compare(&mut c, "<=>", &queries, true);
    for idx in ["pg_items_v", "ax_items_v"] {
        assert_eq!(
            col(&mut c, &format!("SELECT arrw.ivfpq_check('{idx}')::text")),
            ["true"]
        );
    }

    // The default class for pgvector's type is arrw_pgvector's l2 class, and
    // the distances a query projects are pgvector's.
    exec(
        &mut c,
        "CREATE INDEX pg_items_default ON pg_items USING ivfpq (embedding)",
    );
    assert_eq!(
        col(
            &mut c,
            "SELECT opc.opcname::text || ' ' || opc.opcnamespace::regnamespace::text \
             FROM pg_index i JOIN pg_opclass opc ON opc.oid = i.indclass[0] \
             WHERE i.indexrelid = 'pg_items_default'::regclass"
        ),
        ["vector_l2_ops public"]
    );
    let e = c
        .batch_execute("CREATE INDEX ON ax_items USING ivfpq (embedding public.vector_l2_ops)")
        .unwrap_err();
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("42804"),
        "{}",
        msg(&e)
    );
    let log = cluster.log();
    assert!(!log.contains("panicked"), "a Rust panic in the log");
}

/// pgvector's `halfvec` beside arrw's: the same values have the same binary
/// and text forms in both types, and arrw_pgvector's halfvec classes index a
/// pgvector halfvec column with the same answers (ids and order) as arrw's
/// classes on an arrw halfvec column, equal to pgvector's own exact scan when
/// every list is probed.
#[test]
fn ivfpq_on_a_pgvector_halfvec_column_answers_like_on_an_arrw_halfvec_column() {
    let Some((cluster, mut c)) = beside_pgvector("pgvector_halfvec", "halfvec") else {
        return;
    };
    exec(
        &mut c,
        &format!(
            "SET search_path = public, arrw_ext; SET max_parallel_maintenance_workers = 0; \
             CREATE TABLE pgh (id int PRIMARY KEY, embedding public.halfvec({DIM})); \
             CREATE TABLE axh (id int PRIMARY KEY, embedding arrw_ext.halfvec({DIM}))"
        ),
    );
    let mut rng = Rng(7);
    let mut point = |i: i32| -> Vec<f32> {
        let centre = (i % 5) as f64 * 2.0;
        (0..DIM).map(|_| (centre + rng.gauss()) as f32).collect()
    };
    let rows: Vec<(i32, Vec<f32>)> = (0..2000).map(|i| (i, point(i))).collect();
    for chunk in rows.chunks(200) {
        let values: Vec<String> = chunk
            .iter()
            .map(|(id, v)| format!("({id}, '{}')", lit(v)))
            .collect();
        let values = values.join(",");
        exec(&mut c, &format!("INSERT INTO pgh VALUES {values}"));
        exec(&mut c, &format!("INSERT INTO axh VALUES {values}"));
    }
    // Same rounding, same bytes (send), same text (out), row for row.
    assert_eq!(
        col(
            &mut c,
            "SELECT count(*)::text FROM pgh p JOIN axh a USING (id) \
             WHERE public.halfvec_send(p.embedding) = arrw_ext.halfvec_send(a.embedding) \
               AND p.embedding::text = a.embedding::text \
               AND pg_column_size(p.embedding) = pg_column_size(a.embedding)"
        ),
        ["2000"]
    );
    let queries: Vec<String> = (0..5).map(|i| lit(&point(10_000 + i))).collect();
    for (op, class) in [
        ("<->", "halfvec_l2_ops"),
        ("<#>", "halfvec_ip_ops"),
        ("<=>", "halfvec_cosine_ops"),
    ] {
        exec(
            &mut c,
            &format!(
                "DROP INDEX IF EXISTS pgh_v; DROP INDEX IF EXISTS axh_v; \
                 CREATE INDEX pgh_v ON pgh USING ivfpq (embedding {class}) WITH (lists = 5, m = 8); \
                 CREATE INDEX axh_v ON axh USING ivfpq (embedding arrw_ext.{class}) WITH (lists = 5, m = 8); \
                 SET enable_seqscan = off; SET ivfpq.probes = 2; SET ivfpq.rerank = 20"
            ),
        );
        for exact in [false, true] {
            if exact {
                exec(&mut c, "SET ivfpq.probes = 1000; SET ivfpq.rerank = 100000");
            }
            for q in &queries {
                let pg_q = format!("'{q}'::public.halfvec");
                let ax_q = format!("'{q}'::arrw_ext.halfvec");
                let sql = |t: &str, qq: &str| {
                    format!("SELECT id::text FROM {t} ORDER BY embedding {op} {qq} LIMIT 10")
                };
                let plan = col(
                    &mut c,
                    &format!("EXPLAIN (COSTS OFF) {}", sql("pgh", &pg_q)),
                )
                .join("\n");
                assert!(plan.contains("Index Scan using pgh_v"), "{plan}");
                let plan = col(
                    &mut c,
                    &format!("EXPLAIN (COSTS OFF) {}", sql("axh", &ax_q)),
                )
                .join("\n");
                assert!(plan.contains("Index Scan using axh_v"), "{plan}");
                let pg = col(&mut c, &sql("pgh", &pg_q));
                let ax = col(&mut c, &sql("axh", &ax_q));
                assert_eq!(pg, ax, "{class} {q} (exact: {exact})");
                assert_eq!(pg.len(), 10);
                if exact {
                    exec(
                        &mut c,
                        "SET enable_indexscan = off; SET enable_seqscan = on",
                    );
                    let truth = col(&mut c, &sql("pgh", &pg_q));
                    exec(&mut c, "RESET enable_indexscan; SET enable_seqscan = off");
                    assert_eq!(pg, truth, "{class} {q}: pgvector's own exact answer");
                }
            }
        }
    }
    let log = cluster.log();
    assert!(!log.contains("panicked"), "a Rust panic in the log");
}

/// `migrate_to_arrw()` (extensions/arrw_pgvector/): pgvector's columns become
/// arrw's in place, with their indexes, and answer as before; what it cannot
/// move (a view reading a column, pgvector's own hnsw index, another role's
/// table) blocks it with nothing changed; a dry run changes nothing.
#[test]
fn migrate_to_arrw_moves_pgvector_columns_in_place() {
    let Some((cluster, mut c)) = beside_pgvector("pgvector_migrate", "migrate_to_arrw") else {
        return;
    };
    exec(
        &mut c,
        &format!(
            "SET max_parallel_maintenance_workers = 0; \
             CREATE TABLE docs (id int PRIMARY KEY, embedding vector({DIM}), \
                 h halfvec({DIM}), many vector({DIM})[], note text); \
             CREATE TABLE parts (id int, embedding vector) PARTITION BY RANGE (id); \
             CREATE TABLE parts_a PARTITION OF parts FOR VALUES FROM (0) TO (1000); \
             CREATE TABLE parts_b PARTITION OF parts FOR VALUES FROM (1000) TO (MAXVALUE); \
             CREATE TABLE graph (id int, embedding vector({DIM})); \
             CREATE VIEW docs_v AS SELECT id, embedding FROM docs"
        ),
    );
    let mut rng = Rng(11);
    let mut point = |i: i32| -> Vec<f32> {
        let centre = (i % 7) as f64;
        (0..DIM).map(|_| (centre + rng.gauss()) as f32).collect()
    };
    let rows: Vec<(i32, Vec<f32>)> = (0..1500).map(|i| (i, point(i))).collect();
    for chunk in rows.chunks(250) {
        let values: Vec<String> = chunk
            .iter()
            .map(|(id, v)| {
                let l = lit(v);
                format!("({id}, '{l}', '{l}', ARRAY['{l}', '{l}']::vector[], 'row {id}')")
            })
            .collect();
        let values = values.join(",");
        exec(&mut c, &format!("INSERT INTO docs VALUES {values}"));
    }
    exec(
        &mut c,
        "INSERT INTO parts SELECT id, embedding FROM docs; \
         INSERT INTO graph SELECT id, embedding FROM docs; \
         CREATE INDEX docs_cos ON docs USING ivfpq (embedding vector_cosine_ops) WITH (lists = 6, m = 8); \
         CREATE INDEX docs_h ON docs USING ivfpq (h) WITH (lists = 6, m = 8); \
         CREATE INDEX parts_l2 ON parts USING ivfpq (embedding vector_l2_ops) WITH (lists = 4, m = 8); \
         CREATE INDEX graph_hnsw ON graph USING hnsw (embedding vector_l2_ops)",
    );
    let queries: Vec<String> = (0..4).map(|i| lit(&point(50_000 + i))).collect();
    let answers = |c: &mut Client| -> Vec<Vec<String>> {
        exec(
            c,
            "SET enable_seqscan = off; SET ivfpq.probes = 1000; SET ivfpq.rerank = 100000",
        );
        let mut out = Vec::new();
        for q in &queries {
            for sql in [
                format!("SELECT id::text FROM docs ORDER BY embedding <=> '{q}' LIMIT 10"),
                format!("SELECT id::text FROM docs ORDER BY h <-> '{q}' LIMIT 10"),
                format!("SELECT id::text FROM parts ORDER BY embedding <-> '{q}' LIMIT 10"),
            ] {
                // (parts: the planner may sort an Append of its partitions)
                let plan = col(c, &format!("EXPLAIN (COSTS OFF) {sql}")).join("\n");
                assert!(
                    sql.contains("FROM parts") || plan.contains("Index Scan using"),
                    "{sql}: {plan}"
                );
                out.push(col(c, &sql));
            }
        }
        exec(c, "RESET enable_seqscan");
        out
    };
    let before = answers(&mut c);
    let text_before = col(
        &mut c,
        "SELECT md5(string_agg(embedding::text || h::text || many::text, ',' ORDER BY id)) FROM docs",
    );
    let types = |c: &mut Client| {
        col(
            c,
            "SELECT format('%s.%s %s', c.relname, a.attname, a.atttypid::regtype::text) \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             WHERE c.relname IN ('docs', 'parts', 'parts_a', 'graph') AND a.attnum > 1 \
             ORDER BY 1",
        )
    };
    let pg_types = types(&mut c);

    // The plan: blocked by the view and the hnsw index; nothing changes.
    let plan = col(
        &mut c,
        "SELECT action || ' ' || coalesce(object, '') || ': ' || detail FROM migrate_to_arrw()",
    );
    let blocked: Vec<&String> = plan.iter().filter(|r| r.starts_with("blocked")).collect();
    assert_eq!(blocked.len(), 3, "{plan:#?}"); // docs_v's column, docs.embedding read by docs_v, graph_hnsw
    assert!(
        plan.iter()
            .any(|r| r.contains("graph_hnsw") && r.contains("hnsw")),
        "{plan:#?}"
    );
    assert!(plan
        .iter()
        .any(|r| r.contains("view public.docs_v") || r.contains("docs_v")));
    assert_eq!(types(&mut c), pg_types, "a dry run changed a column");
    let err = c
        .batch_execute("SELECT * FROM migrate_to_arrw(dry_run => false)")
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "55000", "{}", msg(&err));
    assert!(msg(&err).contains("nothing was changed"), "{}", msg(&err));
    assert_eq!(types(&mut c), pg_types);

    // Another role's tables are skipped, never altered by someone else: ALTER
    // COLUMN TYPE runs the table's own code as the caller.
    exec(
        &mut c,
        "DROP VIEW docs_v; CREATE ROLE stranger; GRANT USAGE ON SCHEMA arrw_ext TO stranger",
    );
    exec(&mut c, "SET ROLE stranger");
    let plan_stranger = col(
        &mut c,
        "SELECT action || ' ' || coalesce(object, '') || ': ' || detail FROM migrate_to_arrw()",
    );
    assert!(
        plan_stranger
            .iter()
            .any(|r| r.starts_with("skipped") && r.contains("owned by")),
        "{plan_stranger:#?}"
    );
    assert!(
        !plan_stranger.iter().any(|r| r.starts_with("alter column")),
        "{plan_stranger:#?}"
    );
    exec(
        &mut c,
        "SELECT * FROM migrate_to_arrw(dry_run => false, drop_unsupported_indexes => true)",
    );
    assert_eq!(types(&mut c), pg_types, "the stranger changed nothing");
    exec(&mut c, "RESET ROLE");

    // Nor does a superuser alter another role's table, whose CHECK constraint
    // would run as the superuser during the change (a role that owned one made
    // itself superuser that way).
    exec(
        &mut c,
        "CREATE ROLE mallory LOGIN; CREATE SCHEMA m AUTHORIZATION mallory;
         SET ROLE mallory;
         CREATE FUNCTION m.evil(v anyelement) RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN
             IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                 EXECUTE 'ALTER ROLE mallory SUPERUSER';
             END IF;
             RETURN true;
         END $$;
         CREATE TABLE m.items (id int, embedding public.vector(3) CHECK (m.evil(embedding)));
         INSERT INTO m.items VALUES (1, '[1,2,3]');
         RESET ROLE;",
    );

    // Now it runs: graph's hnsw index is dropped and reported, the others rebuilt.
    let done = col(
        &mut c,
        "SELECT action || ' ' || coalesce(object, '') || ': ' || detail \
         FROM migrate_to_arrw(dry_run => false, drop_unsupported_indexes => true)",
    );
    assert!(!done.iter().any(|r| r.starts_with("blocked")), "{done:#?}");
    assert!(
        done.iter()
            .any(|r| r.starts_with("skipped m.items.embedding") && r.contains("mallory")),
        "{done:#?}"
    );
    let mallory_super: bool = c
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!mallory_super, "mallory's CHECK ran as the superuser");
    assert_eq!(
        col(
            &mut c,
            "SELECT atttypid::regtype::text FROM pg_attribute WHERE attrelid = 'm.items'::regclass AND attname = 'embedding'"
        ),
        ["vector"]
    );
    assert!(
        done.iter()
            .any(|r| r.starts_with("drop index public.graph_hnsw")),
        "{done:#?}"
    );
    assert_eq!(
        done.iter()
            .filter(|r| r.starts_with("alter column"))
            .count(),
        5,
        "{done:#?}"
    );
    // (Besides the CREATE INDEX statements: the partitions' own index names
    // put back, which the plan lists with them.)
    assert_eq!(
        done.iter()
            .filter(|r| r.starts_with("create index : CREATE INDEX"))
            .count(),
        3,
        "{done:#?}"
    );
    assert_eq!(
        types(&mut c),
        [
            "docs.embedding arrw_ext.vector",
            "docs.h arrw_ext.halfvec",
            "docs.many arrw_ext.vector[]",
            "docs.note text",
            "graph.embedding arrw_ext.vector",
            "parts.embedding arrw_ext.vector",
            "parts_a.embedding arrw_ext.vector",
        ]
    );
    assert_eq!(
        col(
            &mut c,
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'docs'::regclass AND attname = 'embedding'"
        ),
        [format!("arrw_ext.vector({DIM})")]
    );
    // The same values (text), the same answers through the rebuilt indexes,
    // whose classes are arrw's now.
    assert_eq!(
        col(
            &mut c,
            "SELECT md5(string_agg(embedding::text || h::text || many::text, ',' ORDER BY id)) FROM docs",
        ),
        text_before
    );
    let classes = col(
        &mut c,
        "SELECT DISTINCT n.nspname || '.' || o.opcname FROM pg_index i \
         JOIN pg_opclass o ON o.oid = ANY (i.indclass::oid[]) \
         JOIN pg_namespace n ON n.oid = o.opcnamespace \
         JOIN pg_am am ON am.oid = o.opcmethod AND am.amname = 'ivfpq' ORDER BY 1",
    );
    assert_eq!(
        classes,
        [
            "arrw_ext.halfvec_l2_ops",
            "arrw_ext.vector_cosine_ops",
            "arrw_ext.vector_l2_ops"
        ]
    );
    // arrw's operators are in arrw_ext (pgvector's are still in public).
    exec(&mut c, "SET search_path = arrw_ext, public");
    assert_eq!(answers(&mut c), before);
    // The partitions' indexes came back with the parent's.
    assert_eq!(
        col(
            &mut c,
            "SELECT count(*)::text FROM pg_indexes WHERE tablename IN ('parts_a', 'parts_b') \
             AND indexdef LIKE '%USING ivfpq%'"
        ),
        ["2"]
    );
    // Nothing of pgvector's is left in use but mallory's skipped table (its
    // owner would migrate it): without it both extensions drop cleanly.
    exec(
        &mut c,
        "DROP SCHEMA m CASCADE; DROP EXTENSION arrw_pgvector; DROP EXTENSION vector",
    );
    let log = cluster.log();
    assert!(!log.contains("panicked"), "a Rust panic in the log");
}

/// The drop-in promise, object by object: every function, operator and cast
/// pgvector's extension creates exists in arrw under the same name and
/// argument types, except those of what arrw documents as not provided
/// (`sparsevec`, and pgvector's own index methods hnsw and ivfflat with their
/// support functions). `binary_quantize(vector)` was missing, and calls went
/// through the implicit cast to `halfvec` (1e-9 lost its bit, 70000 raised
/// halfvec's range error); pgvector's `bit` distances were missing too. And
/// the functions both have answer alike.
#[test]
fn arrw_has_every_pgvector_function_operator_and_cast() {
    let Some((_cluster, mut c)) = beside_pgvector("pgvector-catalog", "catalog") else {
        return;
    };
    // Objects of an extension, with types named without their schema.
    let objects = |c: &mut Client, ext: &str| -> std::collections::BTreeSet<String> {
        let sql = format!(
            "WITH e AS (SELECT oid FROM pg_extension WHERE extname = '{ext}'),
             f AS (SELECT 'function ' || p.proname || '(' || coalesce((
                     SELECT string_agg(t.typname, ',' ORDER BY a.n)
                     FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(oid, n)
                     JOIN pg_type t ON t.oid = a.oid), '') || ')' AS o
                   FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass
                     AND d.objid = p.oid AND d.deptype = 'e' AND d.refobjid = (SELECT oid FROM e)),
             o AS (SELECT 'operator ' || coalesce(l.typname, '') || ' ' || op.oprname || ' '
                     || coalesce(r.typname, '') AS o
                   FROM pg_operator op LEFT JOIN pg_type l ON l.oid = op.oprleft
                   LEFT JOIN pg_type r ON r.oid = op.oprright
                   JOIN pg_depend d ON d.classid = 'pg_operator'::regclass
                     AND d.objid = op.oid AND d.deptype = 'e' AND d.refobjid = (SELECT oid FROM e)),
             c AS (SELECT 'cast ' || s.typname || ' -> ' || t.typname || ' ' || k.castcontext::text AS o
                   FROM pg_cast k JOIN pg_type s ON s.oid = k.castsource
                   JOIN pg_type t ON t.oid = k.casttarget
                   JOIN pg_depend d ON d.classid = 'pg_cast'::regclass
                     AND d.objid = k.oid AND d.deptype = 'e' AND d.refobjid = (SELECT oid FROM e))
             SELECT o FROM f UNION ALL SELECT o FROM o UNION ALL SELECT o FROM c"
        );
        col(c, &sql).into_iter().collect()
    };
    let pgvector = objects(&mut c, "vector");
    let arrw = objects(&mut c, "arrw");
    assert!(pgvector.len() > 100, "{pgvector:?}");
    let not_provided = |o: &str| {
        o.contains("sparsevec")
            || o.starts_with("function hnsw")
            || o.starts_with("function ivfflat")
    };
    let missing: Vec<&String> = pgvector
        .iter()
        .filter(|o| !not_provided(o) && !arrw.contains(*o))
        .collect();
    assert!(missing.is_empty(), "pgvector has, arrw lacks: {missing:?}");

    // The same answers (pgvector's in public, arrw's qualified).
    for (pg, ax) in [
        (
            "binary_quantize('[1e-9,-1e-9,70000,0,3]'::vector)::text",
            "arrw_ext.binary_quantize('[1e-9,-1e-9,70000,0,3]'::arrw_ext.vector)::text",
        ),
        (
            "binary_quantize('[0.5,-0.5,1e-9]'::halfvec)::text",
            "arrw_ext.binary_quantize('[0.5,-0.5,1e-9]'::arrw_ext.halfvec)::text",
        ),
        (
            "(B'110010101' OPERATOR(public.<~>) B'101010011')::text",
            "(B'110010101' OPERATOR(arrw_ext.<~>) B'101010011')::text",
        ),
        (
            "(B'110010101' OPERATOR(public.<%>) B'101010011')::text",
            "(B'110010101' OPERATOR(arrw_ext.<%>) B'101010011')::text",
        ),
        (
            "(B'0000' OPERATOR(public.<%>) B'0000')::text",
            "(B'0000' OPERATOR(arrw_ext.<%>) B'0000')::text",
        ),
        (
            "public.jaccard_distance(repeat('10', 50)::varbit, repeat('1100', 25)::varbit)::text",
            "arrw_ext.jaccard_distance(repeat('10', 50)::varbit, repeat('1100', 25)::varbit)::text",
        ),
    ] {
        assert_eq!(
            col(&mut c, &format!("SELECT {pg}")),
            col(&mut c, &format!("SELECT {ax}")),
            "{pg}"
        );
    }
    for q in [
        "SELECT public.hamming_distance(B'101', B'1010')",
        "SELECT arrw_ext.hamming_distance(B'101', B'1010')",
    ] {
        let e = c.query(q, &[]).unwrap_err();
        assert_eq!(msg(&e), "22000: different bit lengths 3 and 4", "{q}");
    }
}

/// What `migrate_to_arrw()` cannot change in place is reported as `blocked` by
/// the dry run, and the real run then changes nothing (55000). Each of these
/// once got no `blocked` row, and the real run failed halfway (rolled back):
/// a policy, a trigger's WHEN, a `BEGIN ATOMIC` function and a generated
/// column reading the column (0A000), an index whose expression uses
/// pgvector's cast or function (42846, 42883). A domain over pgvector's type
/// was not even listed (the plan said done while pgvector was still in use).
/// A column inherited from a parent is altered with the parent (listed alone
/// it failed with 42P16).
#[test]
fn migrate_to_arrw_reports_what_it_cannot_change() {
    let Some((_cluster, mut c)) = beside_pgvector("pgvector_blockers", "migrate blockers") else {
        return;
    };
    exec(
        &mut c,
        "CREATE TABLE pol (id int, v vector(3));
         ALTER TABLE pol ENABLE ROW LEVEL SECURITY;
         CREATE POLICY p ON pol USING (v IS NOT NULL);
         CREATE TABLE trg (id int, v vector(3));
         CREATE FUNCTION trg_f() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
         CREATE TRIGGER t BEFORE UPDATE ON trg FOR EACH ROW
           WHEN (old.v IS DISTINCT FROM new.v) EXECUTE FUNCTION trg_f();
         CREATE TABLE fun (id int, v vector(3));
         CREATE FUNCTION fun_n() RETURNS bigint LANGUAGE sql BEGIN ATOMIC
           SELECT count(v) FROM fun; END;
         CREATE TABLE gen (id int, v vector(3), d int GENERATED ALWAYS AS (vector_dims(v)) STORED);
         CREATE TABLE ex (id int, v vector(3));
         CREATE INDEX ex_h ON ex USING ivfpq ((v::halfvec(3)) halfvec_l2_ops);
         CREATE TABLE nrm (id int, v vector(3));
         CREATE INDEX nrm_n ON nrm USING ivfpq (l2_normalize(v));
         CREATE DOMAIN dvec AS vector(3);
         CREATE TABLE dom (id int, d dvec);
         CREATE DOMAIN dvec2 AS dvec CHECK (VALUE IS NOT NULL);
         CREATE DOMAIN dlist AS vector(3)[] CHECK (cardinality(VALUE) <= 2);
         CREATE TYPE vrange AS RANGE (subtype = vector);
         CREATE TABLE built (id int, dd dvec2, da dvec2[], dl dlist, r vrange, mr vmultirange);
         CREATE TABLE par (id int, v vector(3));
         CREATE TABLE chi (extra int) INHERITS (par);
         INSERT INTO chi VALUES (1, '[1,2,3]', 7);
         CREATE TABLE pk (v vector(3)) PARTITION BY LIST (v);
         CREATE TABLE pke (id int, v vector(3)) PARTITION BY RANGE ((vector_norm(v)));
         CREATE TABLE pks (id int, v vector(3)) PARTITION BY LIST (id);
         CREATE TABLE pks1 PARTITION OF pks FOR VALUES IN (1) PARTITION BY LIST (v);
         CREATE TABLE chk (id int, v vector(3) CHECK (vector_dims(v) = 3));
         CREATE TABLE sta (id int, v vector(3));
         CREATE STATISTICS sta_s ON (vector_dims(v)) FROM sta;
         CREATE TABLE uq (id int, v vector(3));
         CREATE UNIQUE INDEX uq_v ON uq (v);
         CREATE TABLE uc (id int, v vector(3) UNIQUE);",
    );
    let plan = col(
        &mut c,
        "SELECT action || ' ' || coalesce(object, '') || ': ' || detail FROM migrate_to_arrw()",
    );
    let blocked = |what: &str, why: &str| {
        assert!(
            plan.iter()
                .any(|l| l.starts_with(&format!("blocked {what}")) && l.contains(why)),
            "{what} ({why}) not blocked:\n{}",
            plan.join("\n")
        );
    };
    blocked("public.pol.v", "policy p");
    blocked("public.trg.v", "trigger t");
    blocked("public.fun.v", "function public.fun_n()");
    blocked("public.gen.v", "generated column d");
    // The key reads the column through pgvector's cast to its halfvec: the
    // PostgreSQL 15.20 of earlier machines recorded the index's dependency on
    // the type, Debian 12's 15.18 only on the cast's function. Either blocks it.
    blocked("public.ex_h", "its expression or predicate uses pgvector's");
    assert!(
        plan.iter().any(|l| l.starts_with("blocked public.ex_h")
            && (l.contains("pgvector's type public.halfvec")
                || l.contains("pgvector's function public.vector_to_halfvec("))),
        "{}",
        plan.join("\n")
    );
    blocked(
        "public.nrm_n",
        "pgvector's function public.l2_normalize(public.vector)",
    );
    blocked("public.dom.d", "domain public.dvec");
    // Every other type built on pgvector's: each was once neither migrated
    // nor listed (hunt-116), and the plan said done.
    blocked("public.built.dd", "domain public.dvec2");
    blocked("public.built.da", "array public.dvec2[]");
    blocked("public.built.dl", "domain public.dlist");
    blocked("public.built.r", "range public.vrange");
    blocked("public.built.mr", "multirange public.vmultirange");
    blocked("public.pk.v", "partition key");
    blocked("public.pke.v", "partition key");
    blocked("public.pks.v", "partition key");
    blocked("public.chk.v", "constraint chk_v_check on table public.chk uses pgvector's function public.vector_dims(public.vector)");
    blocked(
        "public.sta.v",
        "statistics object public.sta_s uses pgvector's function public.vector_dims(public.vector)",
    );
    // A constraint's index blocks; a unique index of no constraint does not
    // (it was reported as backing a constraint).
    blocked("public.uc_v_key", "backs a constraint");
    assert!(
        plan.iter().any(|l| l.starts_with("drop index public.uq_v")),
        "{}",
        plan.join("\n")
    );
    // The child's column goes with its parent's: one ALTER, of the parent.
    let alters: Vec<&String> = plan
        .iter()
        .filter(|l| {
            l.starts_with("alter column")
                && (l.contains("public.par ") || l.contains("public.chi "))
        })
        .collect();
    assert_eq!(alters.len(), 1, "{}", plan.join("\n"));
    assert!(alters[0].contains("ALTER TABLE public.par "), "{alters:?}");
    let e = c
        .batch_execute("SELECT * FROM migrate_to_arrw(dry_run => false)")
        .unwrap_err();
    assert_eq!(e.code().map(|s| s.code()), Some("55000"), "{}", msg(&e));
    // Without the blockers the migration runs, the inherited column included.
    exec(
        &mut c,
        "DROP TABLE pol, trg, gen, ex, nrm, dom, built, pk, pke, pks, chk, sta, uc; DROP FUNCTION fun_n; DROP TABLE fun;
         DROP FUNCTION trg_f; DROP TYPE vrange; DROP DOMAIN dlist, dvec2, dvec;
         SELECT * FROM migrate_to_arrw(dry_run => false)",
    );
    assert_eq!(
        col(
            &mut c,
            "SELECT format('%s %s', attrelid::regclass, format_type(atttypid, atttypmod)) \
             FROM pg_attribute WHERE attrelid IN ('par'::regclass, 'chi'::regclass) \
             AND attname = 'v' ORDER BY 1"
        ),
        ["chi arrw_ext.vector(3)", "par arrw_ext.vector(3)"]
    );
    assert_eq!(col(&mut c, "SELECT v::text FROM chi"), ["[1,2,3]"]);
    assert_eq!(
        col(&mut c, "SELECT pg_get_indexdef('uq_v'::regclass)"),
        ["CREATE UNIQUE INDEX uq_v ON public.uq USING btree (v)"]
    );
}

/// `migrate_to_arrw()` changes only the caller's objects: another role's
/// inheritance child (its indexes were dropped and created again while its
/// table was reported skipped), view, composite type or domain column neither
/// changes nor blocks the caller's tables, and a child of another role under
/// the caller's parent blocks the parent (ALTER TABLE would recurse into it).
#[test]
fn migrate_to_arrw_changes_only_the_callers_objects() {
    let Some((_cluster, mut c)) = beside_pgvector("pgvector_owners", "migrate owners") else {
        return;
    };
    exec(
        &mut c,
        "CREATE ROLE alice; CREATE ROLE bob;
         CREATE SCHEMA a AUTHORIZATION alice; CREATE SCHEMA b AUTHORIZATION bob;
         GRANT USAGE ON SCHEMA arrw_ext TO alice, bob;
         SET ROLE alice;
         CREATE TABLE a.p (id int, v vector(3));
         CREATE TABLE a.c () INHERITS (a.p);
         INSERT INTO a.c VALUES (1, '[1,2,3]');
         CREATE INDEX c_ivf ON a.c USING ivfpq (v vector_l2_ops) WITH (lists = 1);
         COMMENT ON INDEX a.c_ivf IS 'alice''s';
         CREATE TABLE a.q (id int, v vector(3));
         RESET ROLE;
         SET ROLE bob;
         CREATE VIEW b.w AS SELECT '[1,2,3]'::vector AS x;
         CREATE TYPE b.ct AS (x vector(3));
         CREATE DOMAIN b.dv AS vector(3);
         CREATE TABLE b.d (id int, v b.dv);
         CREATE TABLE b.t (id int, v vector(3));
         RESET ROLE;",
    );
    // The superuser migrates nothing of alice's or bob's.
    exec(
        &mut c,
        "SELECT * FROM migrate_to_arrw(dry_run => false, drop_unsupported_indexes => true)",
    );
    assert_eq!(
        col(
            &mut c,
            "SELECT format('%s %s', pg_get_indexdef(i.indexrelid), \
                    obj_description(i.indexrelid, 'pg_class')) \
             FROM pg_index i WHERE i.indrelid = 'a.c'::regclass"
        ),
        ["CREATE INDEX c_ivf ON a.c USING ivfpq (v) WITH (lists='1') alice's"]
    );
    // Bob's objects do not block alice, who migrates her own tables.
    exec(&mut c, "SET ROLE alice");
    let plan = col(
        &mut c,
        "SELECT action || ' ' || coalesce(object, '') || ': ' || detail FROM migrate_to_arrw()",
    );
    assert!(
        !plan.iter().any(|l| l.starts_with("blocked")),
        "{}",
        plan.join("\n")
    );
    for skipped in ["b.w.x", "b.ct.x", "b.d.v", "b.t.v"] {
        assert!(
            plan.iter()
                .any(|l| l.starts_with(&format!("skipped {skipped}"))),
            "{skipped} not skipped:\n{}",
            plan.join("\n")
        );
    }
    exec(
        &mut c,
        "SELECT * FROM migrate_to_arrw(dry_run => false); RESET ROLE",
    );
    assert_eq!(
        col(
            &mut c,
            "SELECT format('%s %s', attrelid::regclass, format_type(atttypid, atttypmod)) \
             FROM pg_attribute WHERE attrelid IN ('a.p'::regclass, 'a.c'::regclass, \
             'a.q'::regclass, 'b.t'::regclass) AND attname = 'v' ORDER BY 1"
        ),
        [
            "a.c arrw_ext.vector(3)",
            "a.p arrw_ext.vector(3)",
            "a.q arrw_ext.vector(3)",
            "b.t vector(3)"
        ]
    );
    // Her child's index was created again for the new column.
    assert_eq!(
        col(
            &mut c,
            "SELECT obj_description(i.indexrelid, 'pg_class') FROM pg_index i \
             WHERE i.indrelid = 'a.c'::regclass"
        ),
        ["alice's"]
    );
    // Bob's child under a parent of alice's: blocked, nothing changed.
    exec(
        &mut c,
        "SET ROLE alice; CREATE TABLE a.r (id int, v vector(3)); RESET ROLE;
         CREATE TABLE b.rc () INHERITS (a.r); ALTER TABLE b.rc OWNER TO bob; SET ROLE alice",
    );
    let plan = col(
        &mut c,
        "SELECT action || ' ' || coalesce(object, '') || ': ' || detail FROM migrate_to_arrw()",
    );
    assert!(
        plan.iter().any(
            |l| l.starts_with("blocked a.r.v") && l.contains("inherited by b.rc, owned by bob")
        ),
        "{}",
        plan.join("\n")
    );
    let e = c
        .batch_execute("SELECT * FROM migrate_to_arrw(dry_run => false)")
        .unwrap_err();
    assert_eq!(e.code().map(|s| s.code()), Some("55000"), "{}", msg(&e));
}

/// What the real run of `migrate_to_arrw()` would refuse is in the plan, and
/// what a re-created index carries besides its definition comes back: a typed
/// table, a table whose row type another column uses, a child of two parents
/// and a rule on the table itself passed the dry run and failed the real one;
/// a replica identity index lost its role (UPDATEs of a published table then
/// failed), its CLUSTER mark, and a partition's own index its name and comment.
#[test]
fn migrate_to_arrw_plans_what_the_run_meets_and_keeps_index_properties() {
    let Some((_cluster, mut c)) = beside_pgvector("pgvector_plan", "migrate plan") else {
        return;
    };
    exec(
        &mut c,
        "CREATE TYPE tt AS (id int, v vector(3)); CREATE TABLE typed OF tt;
         CREATE TABLE rt (id int, v vector(3)); CREATE TABLE holds_rt (x rt);
         CREATE TABLE p1 (v vector(3)); CREATE TABLE p2 (v vector(3));
         CREATE TABLE two () INHERITS (p1, p2);
         CREATE TABLE ru (id int, v vector(3));
         CREATE RULE ru_r AS ON UPDATE TO ru WHERE NEW.v IS NULL DO INSTEAD NOTHING;
         CREATE TABLE df (id int, v vector(3) DEFAULT '[1,2,3]');
         CREATE TABLE rd (id int, v vector(3)); CREATE DOMAIN rd_dom AS rd;
         CREATE TABLE holds_rd (x rd_dom);
         CREATE TABLE dp (v vector(3)); CREATE TABLE dc1 () INHERITS (dp);
         CREATE TABLE dc2 () INHERITS (dp); CREATE TABLE dgc () INHERITS (dc1, dc2);",
    );
    let plan = col(
        &mut c,
        "SELECT action || ' ' || coalesce(object, '') || ': ' || detail FROM migrate_to_arrw()",
    );
    for (what, why) in [
        ("public.typed.v", "typed table"),
        ("public.rt.v", "column public.holds_rt.x"),
        ("public.p1.v", "a parent outside this table's tree"),
        ("public.ru.v", "rule ru_r on public.ru"),
        ("public.df.v", "the default of column v"),
        ("public.rd.v", "column public.holds_rd.x"),
    ] {
        assert!(
            plan.iter()
                .any(|l| l.starts_with(&format!("blocked {what}")) && l.contains(why)),
            "{what} ({why}) not blocked:\n{}",
            plan.join("\n")
        );
    }
    // Two parents within one table's tree (a diamond) are reached by its one
    // ALTER: not blocked.
    assert!(
        !plan.iter().any(|l| l.starts_with("blocked public.dp.v")),
        "{}",
        plan.join("\n")
    );
    exec(
        &mut c,
        "DROP TABLE typed, holds_rt, two, ru, df, holds_rd; DROP TYPE tt; DROP DOMAIN rd_dom;
         CREATE TABLE ri (id int, v vector(3) NOT NULL);
         CREATE UNIQUE INDEX ri_v ON ri (v);
         ALTER TABLE ri REPLICA IDENTITY USING INDEX ri_v; CLUSTER ri USING ri_v;
         CREATE TABLE pt (id int, v vector(3)) PARTITION BY RANGE (id);
         CREATE TABLE pt1 PARTITION OF pt FOR VALUES FROM (0) TO (10);
         CREATE INDEX pt_v ON pt USING ivfpq (v vector_l2_ops) WITH (lists = 1);
         ALTER INDEX pt1_v_idx RENAME TO pt1_own_name;
         COMMENT ON INDEX pt1_own_name IS 'kept';
         CREATE TABLE sp (id int, v vector(3)) PARTITION BY RANGE (id);
         CREATE TABLE sp1 PARTITION OF sp FOR VALUES FROM (0) TO (10) PARTITION BY RANGE (id);
         CREATE TABLE sp1a PARTITION OF sp1 FOR VALUES FROM (0) TO (5);
         CREATE TABLE sp2 PARTITION OF sp FOR VALUES FROM (10) TO (20);
         CREATE TABLE sp3 PARTITION OF sp FOR VALUES FROM (20) TO (30);
         CREATE INDEX sp_v ON sp (v);
         ALTER INDEX sp1a_v_idx RENAME TO \"Leaf Index\";
         COMMENT ON INDEX \"Leaf Index\" IS 'costs $m$ 5';
         ALTER INDEX sp2_v_idx RENAME TO swap_tmp; ALTER INDEX sp3_v_idx RENAME TO sp2_v_idx;
         ALTER INDEX swap_tmp RENAME TO sp3_v_idx;
         SELECT * FROM migrate_to_arrw(dry_run => false)",
    );
    // Every level of a partition tree keeps its indexes' names and comments,
    // names swapped between partitions included.
    assert_eq!(
        col(
            &mut c,
            "SELECT format('%s %s %s', x.indrelid::regclass, c.relname, \
                    coalesce(obj_description(c.oid, 'pg_class'), '-')) \
             FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid \
             WHERE x.indrelid IN ('sp1'::regclass, 'sp1a'::regclass, 'sp2'::regclass, 'sp3'::regclass) \
             ORDER BY 1"
        ),
        [
            "sp1 sp1_v_idx -",
            "sp1a Leaf Index costs $m$ 5",
            "sp2 sp3_v_idx -",
            "sp3 sp2_v_idx -"
        ]
    );
    assert_eq!(
        col(
            &mut c,
            "SELECT format('%s %s %s', c.relname, i.indisreplident, i.indisclustered) \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = 'ri'::regclass"
        ),
        ["ri_v t t"]
    );
    assert_eq!(
        col(
            &mut c,
            "SELECT format('%s %s', c.relname, obj_description(c.oid, 'pg_class')) \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = 'pt1'::regclass"
        ),
        ["pt1_own_name kept"]
    );
}

/// What ALTER TABLE meets in every table of a tree is in the plan, and indexes
/// come back exactly as they were: a view or trigger on a partition, a policy
/// on an inheritance child, a partition's own CHECK calling pgvector, a
/// foreign partition, a publication's column list and another session's
/// temporary table passed the dry run and failed the real one; an index whose
/// name and predicate held its operator class's name had both rewritten; a
/// partition's index attached with its own options came back with the
/// parent's.
#[test]
fn migrate_to_arrw_checks_every_table_of_a_tree_and_rebuilds_indexes_as_they_were() {
    let Some((cluster, mut c)) = beside_pgvector("pgvector_tree", "migrate tree") else {
        return;
    };
    exec(
        &mut c,
        "CREATE TABLE vp (id int, v vector(3)) PARTITION BY RANGE (id);
         CREATE TABLE vp1 PARTITION OF vp FOR VALUES FROM (0) TO (10);
         CREATE VIEW vp1_view AS SELECT v FROM vp1;
         CREATE TABLE tp (id int, v vector(3)) PARTITION BY RANGE (id);
         CREATE TABLE tp1 PARTITION OF tp FOR VALUES FROM (0) TO (10);
         CREATE FUNCTION nothing() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
         CREATE TRIGGER tp1_t BEFORE UPDATE OF v ON tp1 FOR EACH ROW EXECUTE FUNCTION nothing();
         CREATE TABLE ip (id int, v vector(3)); CREATE TABLE ic () INHERITS (ip);
         CREATE POLICY ic_p ON ic USING (v IS NOT NULL);
         CREATE TABLE cp (id int, v vector(3)) PARTITION BY RANGE (id);
         CREATE TABLE cp1 PARTITION OF cp FOR VALUES FROM (0) TO (10);
         ALTER TABLE cp1 ADD CONSTRAINT cp1_dims CHECK (vector_dims(v) = 3);
         CREATE FOREIGN DATA WRAPPER nowhere; CREATE SERVER nowhere FOREIGN DATA WRAPPER nowhere;
         CREATE TABLE fp (id int, v vector(3)) PARTITION BY RANGE (id);
         CREATE FOREIGN TABLE fp1 PARTITION OF fp FOR VALUES FROM (0) TO (10) SERVER nowhere;
         CREATE TABLE pub (id int, v vector(3));
         CREATE PUBLICATION pub_cols FOR TABLE pub (id, v);
         CREATE TABLE inv (id int, v vector(2)); INSERT INTO inv VALUES (1, '[1,2]'), (2, '[1,2]');
         CREATE TABLE q (id int, v vector(4)) PARTITION BY RANGE (id);
         CREATE TABLE q1 PARTITION OF q FOR VALUES FROM (0) TO (10);
         CREATE INDEX q_v ON ONLY q USING ivfpq (v vector_l2_ops) WITH (m = 3);
         CREATE INDEX q1_v ON q1 USING ivfpq (v vector_l2_ops) WITH (m = 2);
         ALTER INDEX q_v ATTACH PARTITION q1_v;",
    );
    // A failed CREATE INDEX CONCURRENTLY leaves an invalid index.
    assert!(c
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY inv_v ON inv (v)")
        .is_err());
    let mut other = cluster.connect();
    exec(&mut other, "CREATE TEMP TABLE theirs (id int, v vector(3))");
    let plan = col(
        &mut c,
        "SELECT action || ' ' || coalesce(object, '') || ': ' || detail FROM migrate_to_arrw()",
    );
    for (what, why) in [
        ("blocked public.vp.v", "view public.vp1_view"),
        ("blocked public.tp.v", "trigger tp1_t"),
        ("blocked public.ip.v", "policy ic_p"),
        ("blocked public.cp.v", "cp1_dims"),
        ("blocked public.fp.v", "foreign table public.fp1"),
        ("blocked public.pub.v", "publication pub_cols"),
        ("skipped pg_temp_", "temporary table of another session"),
        ("blocked public.inv_v", "an invalid index"),
        ("blocked public.q_v", "m option does not divide"),
    ] {
        assert!(
            plan.iter().any(|l| l.starts_with(what) && l.contains(why)),
            "{what} ({why}) not in the plan:\n{}",
            plan.join("\n")
        );
    }
    exec(
        &mut c,
        "DROP VIEW vp1_view; DROP TRIGGER tp1_t ON tp1; DROP POLICY ic_p ON ic;
         ALTER TABLE cp1 DROP CONSTRAINT cp1_dims; DROP TABLE fp; DROP PUBLICATION pub_cols;
         DROP TABLE inv, q;",
    );
    drop(other);
    exec(
        &mut c,
        "CREATE TABLE named (id int, tag text, \"x public.vector_ip_ops\" vector(3), v vector(3));
         CREATE INDEX \"by public.vector_cosine_ops\" ON named USING ivfpq (v vector_cosine_ops)
           WITH (lists = 1) WHERE tag = ' public.vector_cosine_ops';
         CREATE INDEX named_x ON named USING ivfpq (\"x public.vector_ip_ops\" vector_ip_ops) WITH (lists = 1);
         CREATE TABLE op (id int, v vector(4)) PARTITION BY RANGE (id);
         CREATE TABLE op1 PARTITION OF op FOR VALUES FROM (0) TO (1000);
         CREATE TABLE op2 (id int, v vector(4));
         INSERT INTO op1 SELECT i, format('[%s,%s,%s,1]', i, i % 7, i % 3)::vector FROM generate_series(0, 99) i;
         INSERT INTO op2 SELECT i, format('[%s,%s,%s,1]', i, i % 7, i % 3)::vector FROM generate_series(1000, 1099) i;
         CREATE INDEX op2_v ON op2 USING ivfpq (v vector_cosine_ops) WITH (lists = 3, nbits = 8, probes = 2);
         CREATE INDEX op_v ON op USING ivfpq (v vector_cosine_ops) WITH (lists = 2);
         ALTER TABLE op ATTACH PARTITION op2 FOR VALUES FROM (1000) TO (2000);",
    );
    let before = col(
        &mut c,
        "SELECT format('%s %s', c.relname, pg_get_indexdef(c.oid)) FROM pg_class c \
         WHERE c.relkind IN ('i', 'I') AND c.relname IN ('by public.vector_cosine_ops', 'named_x', \
         'op_v', 'op1_v_idx', 'op2_v') ORDER BY 1",
    );
    exec(&mut c, "SELECT * FROM migrate_to_arrw(dry_run => false)");
    let after = col(
        &mut c,
        "SELECT format('%s %s', c.relname, pg_get_indexdef(c.oid)) FROM pg_class c \
         WHERE c.relkind IN ('i', 'I') AND c.relname IN ('by public.vector_cosine_ops', 'named_x', \
         'op_v', 'op1_v_idx', 'op2_v') ORDER BY 1",
    );
    // The same definitions, arrw's classes in place of arrw_pgvector's.
    let expect: Vec<String> = before
        .iter()
        .map(|l| {
            l.replace(
                "USING ivfpq (v vector_cosine_ops)",
                "USING ivfpq (v arrw_ext.vector_cosine_ops)",
            )
            .replace(
                "(\"x public.vector_ip_ops\" vector_ip_ops)",
                "(\"x public.vector_ip_ops\" arrw_ext.vector_ip_ops)",
            )
        })
        .collect();
    assert_eq!(after, expect, "before:\n{}", before.join("\n"));
    assert_eq!(
        col(
            &mut c,
            "SELECT format('%s %s', relname, reloptions) FROM pg_class \
             WHERE relname IN ('op_v', 'op1_v_idx', 'op2_v') ORDER BY 1"
        ),
        [
            "op1_v_idx {lists=2}",
            "op2_v {lists=3,nbits=8,probes=2}",
            "op_v {lists=2}"
        ]
    );
}

/// `migrate_to_arrw()` rebuilds only the indexes that key a column whose type
/// changes, with arrw's class for that key alone, and keeps what ALTER COLUMN
/// TYPE resets: the indexes of a table's sparsevec and bit columns
/// (pgvector's, untouched by the change) were blocked, or dropped with
/// `drop_unsupported_indexes`, also when they only included or filtered on the
/// vector column or keyed it beside them (hunt-64, hunt-69), and every
/// migrated column came out with its new type's storage and no compression
/// method (hunt-64). An index reading the column through the whole row
/// (`emb(t)`) is in the plan, not a surprise of the real run (hunt-69).
#[test]
fn migrate_to_arrw_leaves_other_columns_indexes_and_keeps_storage() {
    let Some((_cluster, mut c)) = beside_pgvector("pgvector_keep", "migrate keeps") else {
        return;
    };
    exec(
        &mut c,
        "CREATE TABLE docs (id int PRIMARY KEY, v vector(3), s sparsevec(3), b bit(3));
         INSERT INTO docs SELECT i, ARRAY[i, 1, 2]::real[]::vector,
                ARRAY[i, 0, 2]::real[]::vector::sparsevec, '101' FROM generate_series(1, 50) i;
         CREATE INDEX docs_v ON docs USING ivfpq (v) WITH (lists = 1);
         CREATE INDEX docs_s_hnsw ON docs USING hnsw (s sparsevec_l2_ops);
         CREATE INDEX docs_s_btree ON docs (s);
         CREATE INDEX docs_s_norm ON docs (l2_norm(s));
         CREATE INDEX docs_b_hnsw ON docs USING hnsw (b bit_hamming_ops);
         CREATE INDEX docs_s_pred ON docs USING hnsw (s sparsevec_l2_ops) WHERE v IS NOT NULL;
         CREATE INDEX docs_vs ON docs (v, s);
         CREATE INDEX docs_s_incl ON docs (s) INCLUDE (v);
         CREATE TABLE ex (id int, v vector(3), s sparsevec(3),
                          EXCLUDE USING btree (s WITH =) WHERE (v IS NOT NULL));
         ALTER TABLE docs ALTER COLUMN v SET STORAGE PLAIN;
         CREATE TABLE pt (id int, v vector(3), h halfvec(3)[]) PARTITION BY RANGE (id);
         CREATE TABLE pt1 PARTITION OF pt FOR VALUES FROM (0) TO (10);
         CREATE TABLE pt2 PARTITION OF pt FOR VALUES FROM (10) TO (20);
         ALTER TABLE pt ALTER COLUMN v SET STORAGE MAIN;
         ALTER TABLE ONLY pt2 ALTER COLUMN v SET STORAGE PLAIN;
         ALTER TABLE pt1 ALTER COLUMN v SET COMPRESSION pglz;
         ALTER TABLE pt ALTER COLUMN h SET STORAGE MAIN",
    );
    let plan = col(
        &mut c,
        "SELECT action || ' ' || coalesce(object, '') || ': ' || detail FROM migrate_to_arrw()",
    );
    assert!(
        !plan.iter().any(|l| l.starts_with("blocked")),
        "{}",
        plan.join("\n")
    );
    exec(
        &mut c,
        "CREATE TABLE w (id int, v vector(3));
         CREATE FUNCTION emb(w) RETURNS vector LANGUAGE sql IMMUTABLE AS 'SELECT $1.v';
         CREATE INDEX w_row ON w USING ivfpq ((emb(w)) vector_l2_ops) WITH (lists = 1)",
    );
    let plan = col(
        &mut c,
        "SELECT action || ' ' || coalesce(object, '') || ': ' || detail FROM migrate_to_arrw()",
    );
    assert!(
        plan.iter()
            .any(|l| l.starts_with("blocked public.w_row") && l.contains("expression key")),
        "{}",
        plan.join("\n")
    );
    exec(
        &mut c,
        "DROP TABLE w CASCADE;
         SELECT * FROM migrate_to_arrw(dry_run => false, drop_unsupported_indexes => true)",
    );
    assert_eq!(
        col(
            &mut c,
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = 'docs'::regclass ORDER BY 1"
        ),
        [
            "docs_b_hnsw",
            "docs_pkey",
            "docs_s_btree",
            "docs_s_hnsw",
            "docs_s_incl",
            "docs_s_norm",
            "docs_s_pred",
            "docs_v",
            "docs_vs"
        ]
    );
    // Only the key that changed type takes arrw's class.
    assert_eq!(
        col(&mut c, "SELECT pg_get_indexdef('docs_vs'::regclass)"),
        ["CREATE INDEX docs_vs ON public.docs USING btree (v, s)"]
    );
    assert_eq!(
        col(
            &mut c,
            "SELECT format('%s %s', c.opcname, n.nspname) FROM pg_index i, \
                    unnest(i.indclass::oid[]) WITH ORDINALITY k(cls, n0) \
                    JOIN pg_opclass c ON c.oid = k.cls JOIN pg_namespace n ON n.oid = c.opcnamespace \
             WHERE i.indexrelid = 'docs_vs'::regclass ORDER BY k.n0"
        ),
        ["vector_ops arrw_ext", "sparsevec_ops public"]
    );
    assert_eq!(
        col(
            &mut c,
            "SELECT count(*)::text FROM pg_constraint WHERE conrelid = 'ex'::regclass"
        ),
        ["1"]
    );
    assert_eq!(
        col(
            &mut c,
            "SELECT format('%s.%s %s %s %s', attrelid::regclass, attname, \
                    format_type(atttypid, atttypmod), attstorage, attcompression) \
             FROM pg_attribute WHERE attrelid IN ('docs'::regclass, 'pt'::regclass, \
                    'pt1'::regclass, 'pt2'::regclass) AND attname IN ('v', 'h') ORDER BY 1"
        ),
        [
            "docs.v arrw_ext.vector(3) p ",
            "pt.h arrw_ext.halfvec(3)[] m ",
            "pt.v arrw_ext.vector(3) m ",
            "pt1.h arrw_ext.halfvec(3)[] m ",
            "pt1.v arrw_ext.vector(3) m p",
            "pt2.h arrw_ext.halfvec(3)[] m ",
            "pt2.v arrw_ext.vector(3) p "
        ]
    );
}

/// Index definitions are printed and run again: under the caller's settings
/// their constants changed value (hunt-104: under `extra_float_digits = -15`
/// a predicate's 1234.5 came back as 1000, under German DateStyle a date's
/// day and month swapped, and a timestamptz printed with a zone abbreviation
/// read back in another zone), and a `vector[]` holding NULL failed to read
/// back under `array_nulls = off`. The migration prints under fixed settings.
#[test]
fn migrate_to_arrw_rebuilds_indexes_alike_under_any_caller_settings() {
    let Some((_cluster, mut c)) = beside_pgvector("pgvector_settings", "migrate settings") else {
        return;
    };
    exec(
        &mut c,
        "CREATE TABLE t (id int, v vector(2), x float8, d date, ts timestamptz);
         CREATE UNIQUE INDEX t_v_x ON t (v) WHERE x > '1234.5';
         CREATE INDEX t_v_d ON t USING ivfpq (v) WHERE d > '2024-01-02';
         CREATE INDEX t_v_ts ON t USING ivfpq (v) WHERE ts > '2024-06-01 00:00:00+00';
         INSERT INTO t VALUES (1, '[1,1]', 1100, '2024-01-20', now()), (2, '[2,2]', 1200, '2024-01-20', now());
         CREATE TABLE m (id int, vs vector(2)[]);
         INSERT INTO m VALUES (1, ARRAY['[1,2]'::vector, NULL])",
    );
    let preds = |c: &mut Client| {
        col(
            c,
            "SELECT indexrelid::regclass || ' ' || pg_get_expr(indpred, indrelid) FROM pg_index \
             WHERE indrelid = 't'::regclass ORDER BY 1",
        )
    };
    let before = preds(&mut c);
    exec(
        &mut c,
        "BEGIN;
         SET LOCAL extra_float_digits = -15; SET LOCAL DateStyle = 'German, MDY';
         SET LOCAL TimeZone = 'Asia/Kolkata'; SET LOCAL IntervalStyle = 'sql_standard';
         SET LOCAL array_nulls = off;
         SELECT * FROM migrate_to_arrw(dry_run => false);
         COMMIT",
    );
    assert_eq!(preds(&mut c), before);
    assert_eq!(
        col(
            &mut c,
            "SELECT format_type(atttypid, atttypmod) || ' ' || (SELECT (vs[2] IS NULL)::text FROM m) \
             FROM pg_attribute WHERE attrelid = 'm'::regclass AND attname = 'vs'"
        ),
        ["arrw_ext.vector(2)[] true"]
    );
    // Rows 1 and 2 (x below 1234.5) were outside the unique index, and stay so.
    exec(
        &mut c,
        "INSERT INTO t VALUES (3, '[1,1]', 1200, '2024-01-20', now())",
    );
}

/// With arrw 0.1.0 (no `halfvec`) a pgvector `halfvec` column is `blocked` with
/// the update it needs; the dry run once failed whole with a bare 42704 (type
/// "arrw_ext.halfvec" does not exist) and showed no plan (hunt-116).
#[test]
fn migrate_to_arrw_asks_for_an_update_when_arrw_lacks_the_type() {
    let cluster = Cluster::start("pgvector_old_arrw", "");
    let mut c = cluster.connect();
    if !available(&mut c, "vector") {
        eprintln!(
            "SKIPPED tests/pgvector.rs (migrate with arrw 0.1.0): pgvector (extension \
             `vector`) is not installed in this PostgreSQL"
        );
        return;
    }
    exec(
        &mut c,
        "CREATE EXTENSION vector; CREATE SCHEMA arrw_ext;
         CREATE EXTENSION arrw SCHEMA arrw_ext VERSION '0.1.0'; CREATE EXTENSION arrw_pgvector;
         CREATE TABLE t (id int, v vector(3), h halfvec(3));
         CREATE DOMAIN dh AS halfvec(3);
         CREATE TABLE td (id int, d dh);",
    );
    let plan = col(
        &mut c,
        "SELECT action || ' ' || coalesce(object, '') || ': ' || detail FROM migrate_to_arrw()",
    );
    assert!(
        plan.iter().any(|l| l.starts_with("blocked public.t.h")
            && l.contains("has no type halfvec (arrw 0.1.0): ALTER EXTENSION arrw UPDATE")),
        "{}",
        plan.join("\n")
    );
    // A domain over it: the update first, too (the advice was to create the
    // domain's like over arrw's halfvec, which 0.1.0 lacks; hunt-117).
    assert!(
        plan.iter().any(|l| l.starts_with("blocked public.td.d")
            && l.contains("which arrw 0.1.0 lacks: ALTER EXTENSION arrw UPDATE")),
        "{}",
        plan.join("\n")
    );
    exec(&mut c, "ALTER EXTENSION arrw UPDATE");
    let plan = col(
        &mut c,
        "SELECT action || ': ' || detail FROM migrate_to_arrw()",
    );
    assert!(
        plan.iter()
            .any(|l| l.starts_with("alter column: ALTER TABLE public.t ALTER COLUMN h TYPE")),
        "{}",
        plan.join("\n")
    );
}
