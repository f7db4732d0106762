//! A small consumer of arrw's change feed: reads an `arrw` logical replication
//! slot, prints each event (one JSON object per line) and confirms what it has
//! printed, so that a restarted consumer resumes exactly after the last
//! transaction it finished: no gaps, no duplicates (at-least-once if it dies
//! between printing and confirming). Optionally it LISTENs on an `arrw.watch`
//! channel to wake up as soon as something commits instead of polling.
//!
//! ```text
//! cargo run -p arrw-tests --example cdc_consumer -- \
//!     --conninfo "host=127.0.0.1 port=5432 user=postgres dbname=postgres" \
//!     --slot feed --create --channel arrw_changes [--tables public.docs] \
//!     [--include-vectors] [--once]
//! ```
//!
//! The protocol: peek a batch with `include-transaction` (decoding always
//! stops at a transaction boundary), process it, then move the slot to the
//! `lsn` of the batch's last `commit` event with `pg_replication_slot_advance`.

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use std::io::Write;
use std::time::Duration;

struct Args {
    conninfo: String,
    slot: String,
    create: bool,
    channel: Option<String>,
    tables: Option<String>,
    include_vectors: bool,
    once: bool,
    batch: i32,
}

fn usage() -> ! {
    eprintln!(
        "usage: cdc_consumer [--conninfo STR] [--slot NAME] [--create] [--channel NAME] \
         [--tables LIST] [--include-vectors] [--once] [--batch N]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        conninfo: "host=127.0.0.1 user=postgres dbname=postgres".into(),
        slot: "arrw_feed".into(),
        create: false,
        channel: None,
        tables: None,
        include_vectors: false,
        once: false,
        batch: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--conninfo" => a.conninfo = value(),
            "--slot" => a.slot = value(),
            "--create" => a.create = true,
            "--channel" => a.channel = Some(value()),
            "--tables" => a.tables = Some(value()),
            "--include-vectors" => a.include_vectors = true,
            "--once" => a.once = true,
            "--batch" => a.batch = value().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    a
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args();
    let mut db = Client::connect(&args.conninfo, NoTls)?;

    if args.create {
        let exists = db
            .query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1::text::name",
                &[&args.slot],
            )?
            .is_some();
        if !exists {
            db.execute(
                "SELECT pg_create_logical_replication_slot($1::text::name, 'arrw')",
                &[&args.slot],
            )?;
            eprintln!("created slot {}", args.slot);
        }
    }
    if let Some(ch) = &args.channel {
        // LISTEN takes an identifier; arrw.watch only accepts identifier-safe names.
        db.batch_execute(&format!("LISTEN \"{}\"", ch.replace('"', "\"\"")))?;
    }

    let mut opts = vec!["include-transaction".to_string(), "true".to_string()];
    if args.include_vectors {
        opts.extend(["include-vectors".to_string(), "true".to_string()]);
    }
    if let Some(t) = &args.tables {
        opts.extend(["tables".to_string(), t.clone()]);
    }

    let stdout = std::io::stdout();
    loop {
        let rows = db.query(
            "SELECT lsn::text, data FROM pg_logical_slot_peek_changes($1::text::name, NULL, $2, VARIADIC $3::text[])",
            &[&args.slot, &args.batch, &opts],
        )?;
        let mut out = stdout.lock();
        let mut confirm: Option<String> = None;
        for row in &rows {
            let lsn: String = row.get(0);
            let data: &str = row.get(1);
            writeln!(out, "{data}")?;
            // Commit events end a transaction: the row's lsn is where to resume.
            if data.starts_with("{\"op\":\"commit\"") {
                confirm = Some(lsn);
            }
        }
        out.flush()?;
        drop(out);
        if let Some(lsn) = &confirm {
            db.execute(
                "SELECT pg_replication_slot_advance($1::text::name, $2::text::pg_lsn)",
                &[&args.slot, lsn],
            )?;
            eprintln!("confirmed {} up to {lsn}", args.slot);
        }
        if !rows.is_empty() {
            continue;
        }
        if args.once {
            return Ok(());
        }
        // Nothing new: wait for a notification (or poll again after 5 s).
        let mut notes = db.notifications();
        notes.timeout_iter(Duration::from_secs(5)).next()?;
        // Swallow the rest of a burst; one peek reads everything committed.
        let mut rest = notes.iter();
        while rest.next()?.is_some() {}
    }
}
