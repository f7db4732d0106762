//! Throwaway PostgreSQL clusters for arrw's multi-process tests.
//!
//! Each test starts its own cluster (initdb + pg_ctl, run as the `postgres` OS user
//! when the tests run as root, since PostgreSQL refuses root), with arrw preloaded
//! and logical decoding allowed. The cluster is stopped and removed on drop, also
//! when the test panics. arrw must already be installed into the system PostgreSQL
//! (`scripts/test` does that through `cargo pgrx test`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The PostgreSQL binaries the tests run: the system's, or a private copy of the
/// tree named by `ARRW_TEST_PG_BIN` (so a build can be tested without installing
/// it into the system PostgreSQL that other work uses).
pub static PG_BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::env::var("ARRW_TEST_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into())
});

static SEQ: AtomicU32 = AtomicU32::new(0);

/// tests/server.conf, less the settings the server at `PG_BIN` does not know: a
/// setting of one PostgreSQL build only stops every other build from starting
/// (`output_plugin_libraries` is in the PostgreSQL 15.20 of some machines, not in
/// the 15.18 Debian 12 installs on others). scripts/lib.sh's `server_conf` does the
/// same for the shell's servers.
static SERVER_CONF: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut cmd = pg_command("postgres");
    cmd.arg("--describe-config");
    let out = run(cmd);
    let text = String::from_utf8_lossy(&out.stdout);
    let known: std::collections::HashSet<&str> =
        text.lines().filter_map(|l| l.split('\t').next()).collect();
    let mut conf = String::new();
    for line in include_str!("server.conf").lines() {
        let name = line.split('=').next().unwrap_or("").trim();
        if line.trim_start().starts_with('#') || name.is_empty() || known.contains(name) {
            conf.push_str(line);
        } else {
            conf.push_str("# not a setting of this server: ");
            conf.push_str(line);
        }
        conf.push('\n');
    }
    conf
});

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// Runs a PostgreSQL program as the postgres OS user (when we are root).
fn pg_command(program: &str) -> Command {
    let path = format!("{}/{program}", *PG_BIN);
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(path)
    };
    // With RUST_BACKTRACE set, pgrx appends Rust backtraces to error DETAILs.
    c.env_remove("RUST_BACKTRACE");
    c
}

fn run(mut cmd: Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running (or stopped) test cluster.
pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
}

impl Cluster {
    /// initdb and start a new cluster; `extra_conf` is appended to postgresql.conf.
    pub fn start(name: &str, extra_conf: &str) -> Cluster {
        let dir = std::env::temp_dir().join(format!(
            "arrw-it-{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        chown_postgres(&dir);
        let mut initdb = pg_command("initdb");
        initdb.args([
            "-D",
            data(&dir).to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        run(initdb);
        let mut c = Cluster {
            dir,
            port: free_port(),
        };
        c.write_conf(extra_conf);
        c.start_new_server();
        c
    }

    /// Appends this cluster's address, the settings of every test server
    /// (tests/server.conf), a test-sized `shared_buffers` and then `extra`, so that
    /// a test's own settings override the common ones.
    fn write_conf(&self, extra: &str) {
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             {}shared_buffers = 64MB\n{}\n",
            self.port,
            self.dir.display(),
            *SERVER_CONF,
            extra
        );
        let path = data(&self.dir).join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&conf);
        std::fs::write(&path, text).unwrap();
    }

    /// Starts the server and waits until it accepts connections; panics with
    /// the end of the server's log if it does not.
    pub fn start_server(&self) {
        if let Err(e) = self.try_start() {
            panic!("{e}");
        }
    }

    /// The first start of a new cluster, whose port no one knows yet: tests run
    /// in parallel, and another test's server may take the port `free_port`
    /// found before this one binds it (a CI run lost a test to that once), so a
    /// port already in use gets the server a new one, up to 5 times.
    fn start_new_server(&mut self) {
        for attempt in 1.. {
            match self.try_start() {
                Ok(()) => return,
                Err(e) if attempt < 5 && e.contains("Address already in use") => {
                    self.port = free_port();
                    // The last `port` line of postgresql.conf wins.
                    let path = data(&self.dir).join("postgresql.conf");
                    let mut text = std::fs::read_to_string(&path).unwrap();
                    text.push_str(&format!("\nport = {}\n", self.port));
                    std::fs::write(&path, text).unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Runs `pg_ctl start` and waits; on failure, what it printed and the last
    /// lines of the server's log.
    fn try_start(&self) -> Result<(), String> {
        let log = self.dir.join("log");
        let mut c = pg_command("pg_ctl");
        c.args([
            "-D",
            data(&self.dir).to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-t",
            "120",
            "start",
        ]);
        let out = c.output().expect("spawn pg_ctl");
        if out.status.success() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        Err(format!(
            "{:?} failed: {}\n{}\nserver log (last lines):\n{}",
            c,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    }

    /// Stops the server: `mode` is `smart`, `fast` or `immediate` (a crash: no
    /// shutdown checkpoint, recovery replays WAL at the next start).
    pub fn stop(&self, mode: &str) {
        let mut c = pg_command("pg_ctl");
        c.args([
            "-D",
            data(&self.dir).to_str().unwrap(),
            "-m",
            mode,
            "-w",
            "-t",
            "120",
            "stop",
        ]);
        run(c);
    }

    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        )
    }

    /// A new connection to database `postgres`.
    pub fn connect(&self) -> postgres::Client {
        self.connect_db("postgres")
    }

    pub fn connect_db(&self, db: &str) -> postgres::Client {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match postgres::Client::connect(&self.conninfo(db), postgres::NoTls) {
                Ok(c) => return c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("connect to {}: {e}", self.conninfo(db)),
            }
        }
    }

    /// Takes a base backup into a new cluster configured as a streaming standby
    /// of this one, and starts it.
    pub fn start_replica(&self, name: &str) -> Cluster {
        let dir = std::env::temp_dir().join(format!(
            "arrw-it-{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        chown_postgres(&dir);
        let mut bb = pg_command("pg_basebackup");
        bb.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-D",
            data(&dir).to_str().unwrap(),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        ]);
        run(bb);
        let mut replica = Cluster {
            dir,
            port: free_port(),
        };
        replica.write_conf("hot_standby = on");
        replica.start_new_server();
        replica
    }

    /// Blocks until `replica` has replayed everything this primary has written.
    pub fn wait_for_replay(&self, replica: &Cluster) {
        let mut p = self.connect();
        let lsn: String = p
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .unwrap()
            .get(0);
        let mut r = replica.connect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let caught_up: bool = r
                .query_one(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                    &[&lsn],
                )
                .unwrap()
                .get(0);
            if caught_up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica did not catch up to {lsn}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut c = pg_command("pg_ctl");
        c.args([
            "-D",
            data(&self.dir).to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
        let _ = c.output();
        if std::env::var_os("ARRW_KEEP_CLUSTERS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn data(dir: &Path) -> PathBuf {
    dir.join("data")
}

/// Gives `dir` to the server's user when the tests run as root (a
/// tablespace's directory, say).
pub fn chown_postgres(dir: &Path) {
    if is_root() {
        run({
            let mut c = Command::new("chown");
            c.args(["postgres:postgres", dir.to_str().unwrap()]);
            c
        });
    }
}

/// The server's SQLSTATE and message of an error ("db error" is all Display shows).
pub fn msg(e: &postgres::Error) -> String {
    e.as_db_error()
        .map(|d| format!("{}: {}", d.code().code(), d.message()))
        .unwrap_or_else(|| e.to_string())
}

/// Runs `sql`, panicking with the server's message on an error.
pub fn exec(c: &mut postgres::Client, sql: &str) {
    if let Err(e) = c.batch_execute(sql) {
        panic!("{sql}: {}", msg(&e));
    }
}

/// SplitMix64: tiny, seedable, good enough for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Standard normal (Box-Muller).
    pub fn gauss(&mut self) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}
