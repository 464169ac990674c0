//! A throwaway PostgreSQL server (Debian's `postgresql` package): `initdb` into a temp dir,
//! `pg_ctl start` on a free loopback port with its unix socket in that dir, `pg_ctl stop` on
//! drop.
//!
//! `initdb` refuses to run as root. When the tests run as root (CI containers), the data
//! directory is handed to the `postgres` user (or `nobody`) and the server binaries run through
//! `runuser -u <user>`; otherwise they run as the current user.
//!
//! Binaries: `$LARDER_PG_BIN` (a directory, set by `scripts/test.sh`), else the newest
//! `/usr/lib/postgresql/<version>/bin`, else `PATH`. Missing → a panic naming the package.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const INSTALL_HINT: &str = "Install PostgreSQL: apt-get install postgresql";

/// A running PostgreSQL server, stopped (and its data deleted) on drop.
pub struct PgServer {
    port: u16,
    bin: PathBuf,
    data: PathBuf,
    run_as: Option<String>,
    _dir: tempfile::TempDir,
}

fn bin_dir() -> PathBuf {
    if let Some(p) =
        std::env::var_os("LARDER_PG_BIN").map(PathBuf::from).filter(|p| p.join("initdb").is_file())
    {
        return p;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let initdb = crate::find_binary("LARDER_PG_INITDB", "initdb", INSTALL_HINT);
    initdb.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `(uid, gid)` of a local user, from `id`.
fn ids_of(user: &str) -> Option<(u32, u32)> {
    let get = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, user]).output().ok()?;
        if !o.status.success() {
            return None;
        }
        std::str::from_utf8(o.stdout.trim_ascii()).ok()?.parse().ok()
    };
    Some((get("-u")?, get("-g")?))
}

impl PgServer {
    /// Initializes and starts a server; the superuser is `larder` (trust authentication, only
    /// on 127.0.0.1 and the private socket directory), with a database `larder`.
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("larder-pg-")
            .tempdir()
            .expect("create a temp dir for PostgreSQL");
        let run_as = if is_root() {
            let user = ["postgres", "nobody"]
                .into_iter()
                .find(|u| ids_of(u).is_some())
                .expect("running as root, but neither a `postgres` nor a `nobody` user exists for initdb");
            let (uid, gid) = ids_of(user).unwrap_or((65534, 65534));
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("chown the PostgreSQL temp dir");
            Some(user.to_owned())
        } else {
            None
        };
        let data = dir.path().join("data");
        let port = crate::free_port();
        let server = PgServer { port, bin, data, run_as, _dir: dir };
        let initdb = server.run(
            "initdb",
            &[
                "-D",
                &server.data.display().to_string(),
                "-U",
                "larder",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ],
        );
        assert!(initdb.status.success(), "initdb failed: {}", String::from_utf8_lossy(&initdb.stderr));
        let sock = server.socket_dir();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c shared_buffers=128MB",
            sock.display()
        );
        let log = server._dir.path().join("server.log").display().to_string();
        let start = server.run(
            "pg_ctl",
            &["-D", &server.data.display().to_string(), "-o", &opts, "-l", &log, "-w", "-t", "60", "start"],
        );
        if !start.status.success() {
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("pg_ctl start failed: {}\n{log_text}", String::from_utf8_lossy(&start.stderr));
        }
        let created = server.run(
            "createdb",
            &["-h", &sock.display().to_string(), "-p", &port.to_string(), "-U", "larder", "larder"],
        );
        assert!(created.status.success(), "createdb failed: {}", String::from_utf8_lossy(&created.stderr));
        server
    }

    fn socket_dir(&self) -> PathBuf {
        self._dir.path().to_path_buf()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args)
            .current_dir(self._dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("could not run {}: {e}. {INSTALL_HINT}", exe.display()))
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq-style connection string for the `larder` database over loopback TCP.
    pub fn conn_str(&self) -> String {
        format!("host=127.0.0.1 port={} user=larder dbname=larder", self.port)
    }

    /// A `postgresql://` URL of the same database.
    pub fn url(&self) -> String {
        format!("postgresql://larder@127.0.0.1:{}/larder", self.port)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ =
            self.run("pg_ctl", &["-D", &self.data.display().to_string(), "-m", "immediate", "-w", "stop"]);
    }
}
