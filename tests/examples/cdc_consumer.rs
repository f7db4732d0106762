//! A small consumer of arrw's change feed: reads an `arrw` logical replication
//! slot, prints each event (one JSON object per line) and confirms what it has
//! printed, so that a restarted consumer resumes after the last transaction
//! it finished: no gaps; at-least-once if it dies between printing and
//! confirming, or if the server crashes before its next checkpoint (the slot
//! then resumes from the position it had there; docs/cdc.md, "After a
//! crash"). Optionally it LISTENs on an `arrw.watch`
//! channel to wake up as soon as something commits instead of polling.
//!
//! ```text
//! cargo run -p arrw-tests --example cdc_consumer -- \
//!     --conninfo "host=127.0.0.1 port=5432 user=postgres dbname=postgres" \
//!     --slot feed --create --channel arrw_changes [--tables public.docs] \
//!     [--include-vectors] [--once]
//! ```
//!
//! The protocol (docs/cdc.md, "Resuming without gaps"): peek a batch with
//! `include-transaction` (decoding always stops at a transaction boundary),
//! process it, then move the slot with `pg_replication_slot_advance` to the
//! `lsn` of the batch's last `commit` event, or of a non-transactional message
//! that came after it (no commit follows those: confirming at commits alone
//! would read them again forever). A peek that
//! returns nothing moves the slot to the WAL flush position read before it
//! (a slot whose `tables` matched nothing recent keeps its WAL otherwise).

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
        // The flush position, not pg_current_wal_lsn(): a peek decodes only
        // flushed WAL, so everything before this has been looked at once the
        // peek below returns nothing.
        let flushed: String = db
            .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])?
            .get(0);
        let rows = db.query(
            "SELECT lsn::text, data FROM pg_logical_slot_peek_changes($1::text::name, NULL, $2, VARIADIC $3::text[])",
            &[&args.slot, &args.batch, &opts],
        )?;
        let mut out = stdout.lock();
        // Where to resume.
        let mut confirm: Option<String> = None;
        let mut in_transaction = false;
        for row in &rows {
            let lsn: String = row.get(0);
            let data: &str = row.get(1);
            writeln!(out, "{data}")?;
            let event: serde_json::Value = serde_json::from_str(data)?;
            match event["op"].as_str() {
                Some("begin") => in_transaction = true,
                // A commit ends a transaction: its lsn is where to resume.
                Some("commit") => {
                    in_transaction = false;
                    confirm = Some(lsn);
                }
                // A non-transactional message between transactions: its lsn
                // is the end of its WAL record, where to resume past it.
                Some("message") if !in_transaction && event["transactional"] == false => {
                    confirm = Some(lsn);
                }
                _ => {}
            }
        }
        out.flush()?;
        drop(out);
        if rows.is_empty() {
            confirm = Some(flushed);
        }
        if let Some(lsn) = &confirm {
            db.execute(
                "SELECT pg_replication_slot_advance($1::text::name, $2::text::pg_lsn)",
                &[&args.slot, lsn],
            )?;
            if !rows.is_empty() {
                eprintln!("confirmed {} up to {lsn}", args.slot);
            }
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
