// In-server tests for cdc (included into the pg_test schema by src/lib.rs).
// Decoding itself needs a transaction that has not written anything, which a
// #[pg_test] is not: the output plugin is tested over real connections in
// tests/cdc.rs. Here: the JSON and option code, and the SQL functions.

#[pg_test]
fn cdc_json_escapes_strings() {
    use crate::cdc::json;
    let mut out = Vec::new();
    json::push_str(&mut out, b"a\"b\\c\nd\te\x01\x1f\x7f\xc3\xa9");
    assert_eq!(out, b"\"a\\\"b\\\\c\\nd\\te\\u0001\\u001f\x7f\xc3\xa9\"");
    let mut out = Vec::new();
    json::push_hex_bytes(&mut out, &[0, 0xff, 0x1a]);
    assert_eq!(out, b"\"\\\\x00ff1a\"");
    let mut out = Vec::new();
    json::push_lsn(&mut out, 0x0000_0001_016B_3748);
    assert_eq!(out, b"\"1/16B3748\"");
    let mut out = Vec::new();
    json::push_raw_one_line(&mut out, b"{\"a\":\r\n [1]}");
    assert_eq!(out, b"{\"a\":   [1]}");
}

#[pg_test]
fn cdc_json_validates() {
    use crate::cdc::json::{is_number, is_valid};
    for ok in [
        "0",
        "-1.5e+10",
        "1E5",
        "\"x\\u00e9\\n\"",
        "[]",
        "{}",
        " {\"a\": [1, {\"b\": null}], \"c\": true } ",
        "[1,2.5,-3e-05]",
        "false",
    ] {
        assert!(is_valid(ok.as_bytes()), "{ok}");
    }
    for bad in [
        "",
        "01",
        "1.",
        ".5",
        "+1",
        "NaN",
        "[1,]",
        "{\"a\"}",
        "{a:1}",
        "\"\\x\"",
        "\"a\nb\"",
        "[1] 2",
        "tru",
        "\"unterminated",
    ] {
        assert!(!is_valid(bad.as_bytes()), "{bad}");
    }
    let deep = "[".repeat(1000) + &"]".repeat(1000);
    assert!(!is_valid(deep.as_bytes()));
    assert!(is_number(b"1e+20") && is_number(b"-0") && is_number(b"0.1"));
    assert!(!is_number(b"NaN") && !is_number(b"Infinity") && !is_number(b"-Infinity"));
}

#[pg_test]
fn cdc_emit_event_returns_lsn() {
    let lsn = Spi::get_one::<String>("SELECT arrw.emit_event('test', '{\"n\": 1}')::text").unwrap();
    // The pg_test server runs with wal_level = logical.
    assert!(lsn.is_some_and(|l| l.contains('/')));
}

#[pg_test(error = "arrw.emit_event: kind must be a non-empty string")]
fn cdc_emit_event_needs_kind() {
    Spi::run("SELECT arrw.emit_event('', NULL)").unwrap();
}

#[pg_test]
fn cdc_watch_and_unwatch() {
    Spi::run("CREATE TABLE public.cdc_w (id int PRIMARY KEY, t text)").unwrap();
    let ch = Spi::get_one::<String>("SELECT arrw.watch('public.cdc_w')").unwrap();
    assert_eq!(ch.as_deref(), Some("arrw_changes"));
    let n = Spi::get_one::<i64>(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.cdc_w'::regclass",
    )
    .unwrap();
    assert_eq!(n, Some(4));
    // Watching again replaces the channel (still four triggers).
    let ch = Spi::get_one::<String>("SELECT arrw.watch('public.cdc_w', 'chunk_events')").unwrap();
    assert_eq!(ch.as_deref(), Some("chunk_events"));
    let n = Spi::get_one::<i64>(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.cdc_w'::regclass",
    )
    .unwrap();
    assert_eq!(n, Some(4));
    let listed = Spi::get_one::<String>(
        "SELECT channel FROM arrw.watches WHERE \"table\" = 'public.cdc_w'::regclass",
    )
    .unwrap();
    assert_eq!(listed.as_deref(), Some("chunk_events"));
    // The triggers run (the notification itself is only sent at commit).
    Spi::run("INSERT INTO public.cdc_w VALUES (1, 'a'), (2, 'b'); UPDATE public.cdc_w SET t = 'c'; DELETE FROM public.cdc_w; TRUNCATE public.cdc_w")
        .unwrap();
    let old = Spi::get_one::<String>("SELECT arrw.unwatch('public.cdc_w')").unwrap();
    assert_eq!(old.as_deref(), Some("chunk_events"));
    let n = Spi::get_one::<i64>(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.cdc_w'::regclass",
    )
    .unwrap();
    assert_eq!(n, Some(0));
}

#[pg_test(error = "table public.cdc_u is not watched")]
fn cdc_unwatch_unwatched() {
    Spi::run("CREATE TABLE public.cdc_u (id int)").unwrap();
    Spi::run("SELECT arrw.unwatch('public.cdc_u')").unwrap();
}

#[pg_test(error = "invalid channel name: 'no-dashes'")]
fn cdc_watch_bad_channel() {
    Spi::run("CREATE TABLE public.cdc_c (id int)").unwrap();
    Spi::run("SELECT arrw.watch('public.cdc_c', 'no-dashes')").unwrap();
}

#[pg_test(error = "public.cdc_v is not a table")]
fn cdc_watch_view() {
    Spi::run("CREATE VIEW public.cdc_v AS SELECT 1 AS x").unwrap();
    Spi::run("SELECT arrw.watch('public.cdc_v')").unwrap();
}

#[pg_test(error = "must be owner of table public.cdc_p")]
fn cdc_watch_needs_owner() {
    Spi::run("CREATE TABLE public.cdc_p (id int); CREATE ROLE cdc_not_owner; GRANT ALL ON public.cdc_p TO cdc_not_owner; SET ROLE cdc_not_owner")
        .unwrap();
    Spi::run("SELECT arrw.watch('public.cdc_p')").unwrap();
}

#[pg_test(error = "arrw.emit_event: event kind 'job' is reserved for arrw")]
fn cdc_emit_event_refuses_job_kind() {
    // Run by a superuser: refused all the same.
    Spi::run("SELECT arrw.emit_event('job', '{\"id\": 1, \"state\": \"succeeded\"}')").unwrap();
}

#[pg_test(error = "arrw.emit_event: event kind 'ARRW.index' is reserved for arrw")]
fn cdc_emit_event_refuses_arrw_kinds() {
    Spi::run("SELECT arrw.emit_event('ARRW.index', NULL)").unwrap();
}

#[pg_test]
fn cdc_job_event_content_is_jsonb_text() {
    // The bytes the job code writes and the plugin compares are jsonb's own
    // text form of the event.
    let ours = crate::cdc::job_event_content(42, b"bulk_import", b"queued");
    let jsonb = Spi::get_one::<String>(
        "SELECT jsonb_build_object('kind', 'job', 'payload', \
                jsonb_build_object('id', 42::int8, 'kind', 'bulk_import', 'state', 'queued'))::text",
    )
    .unwrap()
    .unwrap();
    assert_eq!(String::from_utf8(ours).unwrap(), jsonb);
}

#[pg_test]
fn cdc_secret_is_not_public() {
    let public = |sql: &str| Spi::get_one::<bool>(sql).unwrap().unwrap();
    assert!(!public(
        "SELECT has_function_privilege('public', 'arrw.job_channel()', 'EXECUTE')"
    ));
    assert!(!public(
        "SELECT has_table_privilege('public', 'arrw.secret', 'SELECT')"
    ));
    let ch = Spi::get_one::<String>("SELECT arrw.job_channel()")
        .unwrap()
        .unwrap();
    assert!(ch.starts_with("arrw_jobs_") && ch.len() == 42, "{ch}");
}

#[pg_test]
fn cdc_watch_keys_by_opt_in() {
    Spi::run("CREATE TABLE public.cdc_k (id int PRIMARY KEY)").unwrap();
    let keys = || {
        Spi::get_one::<bool>(
            "SELECT keys FROM arrw.watches WHERE \"table\" = 'public.cdc_k'::regclass",
        )
        .unwrap()
    };
    Spi::run("SELECT arrw.watch('public.cdc_k')").unwrap();
    assert_eq!(keys(), Some(false));
    Spi::run("SELECT arrw.watch('public.cdc_k', 'keys', include_keys => true)").unwrap();
    assert_eq!(keys(), Some(true));
    let ch = Spi::get_one::<String>(
        "SELECT channel FROM arrw.watches WHERE \"table\" = 'public.cdc_k'::regclass",
    )
    .unwrap();
    assert_eq!(ch.as_deref(), Some("keys"));
    // The triggers run with and without keys (notifications go out at commit).
    Spi::run("INSERT INTO public.cdc_k VALUES (1)").unwrap();
    Spi::run("SELECT arrw.watch('public.cdc_k', 'keys', false)").unwrap();
    assert_eq!(keys(), Some(false));
    Spi::run("INSERT INTO public.cdc_k VALUES (2)").unwrap();
}
