//! Real `redis-server` processes for tests: a single server on a free loopback port or a unix
//! socket, and a 3-node Redis Cluster.
//!
//! Every server runs with `--save "" --appendonly no` in its own temporary directory and is
//! killed when its handle drops. Readiness is checked by polling `PING` (and `CLUSTER INFO` for
//! the cluster) with a bounded deadline; a server that does not come up makes the test fail
//! with its log attached.
//!
//! Outage tests use [`RedisServer::kill9`] (SIGKILL, like a crash) and
//! [`RedisServer::restart`], which brings a fresh, empty server back on the same port or socket.
// Length: one module for every way a test starts Redis (single server, TLS, ACL,
// cluster) so they share the start-up and wait logic; it passes 700 lines only with its unit
// tests (from `mod tests`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{find_binary, free_port};

const INSTALL_HINT: &str = "Install it with: apt-get install redis-server";
const START_DEADLINE: Duration = Duration::from_secs(20);

/// Path of the `redis-server` binary (`$LARDER_REDIS_SERVER`, else `PATH`).
pub fn redis_server_binary() -> PathBuf {
    find_binary("LARDER_REDIS_SERVER", "redis-server", INSTALL_HINT)
}

/// Path of the `redis-cli` binary (`$LARDER_REDIS_CLI`, else `PATH`).
pub fn redis_cli_binary() -> PathBuf {
    find_binary("LARDER_REDIS_CLI", "redis-cli", INSTALL_HINT)
}

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `127.0.0.1:<port>`.
    Tcp(u16),
    /// A unix socket path.
    Unix(PathBuf),
}

impl Endpoint {
    /// Sends one command (RESP array of bulk strings) and returns its reply as text: simple
    /// strings and bulk strings as they are, integers in decimal, errors prefixed with `ERR:`,
    /// arrays as their elements joined by newlines, nil as an empty string.
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        self.command_auth(None, args)
    }

    /// Like [`command`](Self::command), after `AUTH password` (the `default` user) on the same
    /// connection when a password is given.
    pub fn command_auth(&self, password: Option<&str>, args: &[&str]) -> std::io::Result<String> {
        let timeout = Some(Duration::from_secs(5));
        match self {
            Endpoint::Tcp(port) => {
                let s = TcpStream::connect_timeout(
                    &std::net::SocketAddr::from(([127, 0, 0, 1], *port)),
                    Duration::from_secs(2),
                )?;
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)?;
                roundtrip(s, password, args)
            }
            Endpoint::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)?;
                roundtrip(s, password, args)
            }
        }
    }
}

fn resp(args: &[&str]) -> Vec<u8> {
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    req
}

fn roundtrip<S: Read + Write>(
    mut stream: S,
    password: Option<&str>,
    args: &[&str],
) -> std::io::Result<String> {
    let mut req = Vec::new();
    if let Some(pw) = password {
        req.extend_from_slice(&resp(&["AUTH", pw]));
    }
    req.extend_from_slice(&resp(args));
    stream.write_all(&req)?;
    let mut reader = BufReader::new(stream);
    if password.is_some() {
        let auth = read_reply(&mut reader)?;
        if auth != "OK" {
            return Ok(auth);
        }
    }
    read_reply(&mut reader)
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

fn read_reply<R: BufRead>(r: &mut R) -> std::io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at_checked(1).ok_or_else(|| bad("empty reply line"))?;
    match kind {
        "+" | ":" => Ok(rest.to_string()),
        "-" => Ok(format!("ERR:{rest}")),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad("bad bulk length"))?;
            if len < 0 {
                return Ok(String::new());
            }
            let mut buf = vec![0u8; len as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(len as usize);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| bad("bad array length"))?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(read_reply(r)?);
            }
            Ok(items.join("\n"))
        }
        _ => Err(bad("unknown reply type")),
    }
}

/// How to start a [`RedisServer`].
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Listen on a unix socket in the temp dir instead of a loopback port.
    pub unix_socket: bool,
    /// Pin the server to this CPU with `taskset -c` (for latency benchmarks).
    pub pin_cpu: Option<usize>,
    /// More `redis-server` arguments (e.g. `["--notify-keyspace-events", "KEA"]`).
    pub extra_args: Vec<String>,
    /// `--requirepass`: the `default` user's password (the helpers' own commands send it).
    pub password: Option<String>,
}

/// One `redis-server` owned by a test; killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    endpoint: Endpoint,
    options: RedisOptions,
    tls: Option<TlsEndpoint>,
}

/// The TLS side of a server started with [`RedisServer::start_tls`].
struct TlsEndpoint {
    port: u16,
    ca_cert: PathBuf,
    /// The certificates' directory, when this server owns it (a cluster's nodes share one).
    _certs: Option<tempfile::TempDir>,
}

/// redis-server arguments for a TLS port with the test CA's server certificate (clients need
/// not present one unless a caller adds `--tls-auth-clients yes` after these).
fn tls_args(port: u16, ca: &Path, cert: &Path, key: &Path) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    vec![
        "--tls-port".into(),
        port.to_string(),
        "--tls-cert-file".into(),
        path(cert),
        "--tls-key-file".into(),
        path(key),
        "--tls-ca-cert-file".into(),
        path(ca),
        "--tls-auth-clients".into(),
        "no".into(),
    ]
}

/// Makes a throwaway CA and a certificate for `IP:127.0.0.1` with the `openssl` CLI (usable as
/// a server and as a client certificate: cluster nodes present it to each other on the bus).
/// Returns (CA cert, server cert, server key) paths inside `dir`.
fn make_test_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = find_binary("LARDER_OPENSSL", "openssl", "Install it with: apt-get install openssl");
    let p = |name: &str| dir.join(name);
    std::fs::write(
        p("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("write the certificate extension file");
    let run = |args: &[&str]| {
        let out = Command::new(&openssl).args(args).current_dir(dir).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=larder test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    (p("ca.crt"), p("server.crt"), p("server.key"))
}

impl RedisServer {
    /// Starts a server on a free loopback port.
    pub fn start() -> Self {
        Self::start_with(RedisOptions::default())
    }

    /// Starts a server listening only on a unix socket in a fresh temp dir.
    pub fn start_unix() -> Self {
        Self::start_with(RedisOptions { unix_socket: true, ..RedisOptions::default() })
    }

    /// Starts a server with `options`.
    pub fn start_with(options: RedisOptions) -> Self {
        let dir = tempfile::Builder::new().prefix("larder-redis-").tempdir().expect("create a temp dir");
        let endpoint = if options.unix_socket {
            Endpoint::Unix(dir.path().join("redis.sock"))
        } else {
            Endpoint::Tcp(free_port())
        };
        let mut server = RedisServer { child: None, dir, endpoint, options, tls: None };
        let mut last_err = String::new();
        // A free port can be taken by someone else before the server binds it: retry.
        for _ in 0..5 {
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => {
                    last_err = e;
                    server.kill9();
                    if let Endpoint::Tcp(port) = &mut server.endpoint {
                        *port = free_port();
                    }
                }
            }
        }
        panic!("redis-server did not start: {last_err}");
    }

    /// Starts a server that also accepts TLS on a second loopback port, with a certificate for
    /// `IP:127.0.0.1` issued by a throwaway CA (see [`ca_cert`](Self::ca_cert)). Clients are
    /// not asked for certificates. [`url`](Self::url) stays the plaintext one (for admin
    /// commands); [`tls_url`](Self::tls_url) is `rediss://127.0.0.1:PORT`.
    pub fn start_tls() -> Self {
        Self::start_tls_with(RedisOptions::default())
    }

    /// [`start_tls`](Self::start_tls) with more options (a password, extra arguments).
    pub fn start_tls_with(mut options: RedisOptions) -> Self {
        let certs =
            tempfile::Builder::new().prefix("larder-redis-tls-").tempdir().expect("create a temp dir");
        let (ca, cert, key) = make_test_certs(certs.path());
        let port = free_port();
        let mut extra_args = tls_args(port, &ca, &cert, &key);
        // The caller's arguments come last, so they win (e.g. `--tls-auth-clients yes`).
        extra_args.append(&mut options.extra_args);
        options.extra_args = extra_args;
        let mut server = Self::start_with(options);
        server.tls = Some(TlsEndpoint { port, ca_cert: ca, _certs: Some(certs) });
        server
    }

    /// `rediss://127.0.0.1:PORT` for a server started with [`start_tls`](Self::start_tls).
    pub fn tls_url(&self) -> Option<String> {
        self.tls.as_ref().map(|t| format!("rediss://127.0.0.1:{}", t.port))
    }

    /// The PEM file of the CA that issued the TLS server's certificate.
    pub fn ca_cert(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca_cert.as_path())
    }

    /// A client certificate and key (PEM) issued by the same CA, for mutual TLS (start the
    /// server with `--tls-auth-clients yes` in `extra_args` to require one).
    pub fn client_cert_and_key(&self) -> Option<(PathBuf, PathBuf)> {
        let dir = self.tls.as_ref()?.ca_cert.parent()?;
        Some((dir.join("server.crt"), dir.join("server.key")))
    }

    fn spawn(&mut self) -> Result<(), String> {
        let bin = redis_server_binary();
        let log = self.dir.path().join("redis.log");
        let mut args: Vec<String> = vec![
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--daemonize".into(),
            "no".into(),
            "--dir".into(),
            self.dir.path().display().to_string(),
            "--logfile".into(),
            log.display().to_string(),
        ];
        match &self.endpoint {
            Endpoint::Tcp(port) => {
                args.extend(["--port".into(), port.to_string(), "--bind".into(), "127.0.0.1".into()]);
            }
            Endpoint::Unix(path) => {
                args.extend([
                    "--port".into(),
                    "0".into(),
                    "--unixsocket".into(),
                    path.display().to_string(),
                    "--unixsocketperm".into(),
                    "700".into(),
                ]);
            }
        }
        if let Some(pw) = &self.options.password {
            args.extend(["--requirepass".into(), pw.clone()]);
        }
        args.extend(self.options.extra_args.iter().cloned());
        let mut cmd = match self.options.pin_cpu {
            Some(cpu) => {
                let mut c = Command::new(find_binary("LARDER_TASKSET", "taskset", "Install util-linux"));
                c.arg("-c").arg(cpu.to_string()).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        self.child = Some(child);
        let password = self.options.password.clone();
        wait_ready(&self.endpoint, password.as_deref(), self.child.as_mut(), &log, |_| true)
    }

    /// Where the server listens.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The loopback port (None for a unix-socket server).
    pub fn port(&self) -> Option<u16> {
        match &self.endpoint {
            Endpoint::Tcp(p) => Some(*p),
            Endpoint::Unix(_) => None,
        }
    }

    /// The server's URL: `redis://127.0.0.1:PORT` or `redis+unix:///path/redis.sock`.
    pub fn url(&self) -> String {
        match &self.endpoint {
            Endpoint::Tcp(port) => format!("redis://127.0.0.1:{port}"),
            Endpoint::Unix(path) => format!("redis+unix://{}", path.display()),
        }
    }

    /// The server's process id (None after [`kill9`](Self::kill9)).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends one command to the server (see [`Endpoint::command`]); panics on I/O errors.
    pub fn command(&self, args: &[&str]) -> String {
        self.endpoint
            .command_auth(self.options.password.as_deref(), args)
            .unwrap_or_else(|e| panic!("redis command {args:?} failed: {e}"))
    }

    /// Kills the server with SIGKILL (a crash: no shutdown, no save) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused server must die too (SIGKILL works on stopped processes).
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Endpoint::Unix(path) = &self.endpoint {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Freezes the server with SIGSTOP: connections stay open but nothing answers (a stalled
    /// server, for timeout tests). Undo with [`resume`](Self::resume).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a [`pause`](Self::pause)d server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.pid().expect("the server is not running");
        let status = Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status()
            .unwrap_or_else(|e| panic!("run kill {sig}: {e}"));
        assert!(status.success(), "kill {sig} {pid} failed");
    }

    /// Starts an empty server again on the same port or socket (after [`kill9`](Self::kill9);
    /// kills a running one first).
    pub fn restart(&mut self) {
        self.kill9();
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("redis-server did not restart: {e}"),
                Err(_) => {
                    self.kill9();
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Polls `PING` (then `ready(endpoint)`) until it answers, the child exits, or the deadline.
fn wait_ready(
    endpoint: &Endpoint,
    password: Option<&str>,
    mut child: Option<&mut Child>,
    log: &Path,
    ready: impl Fn(&Endpoint) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Some(c) = child.as_deref_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(format!("redis-server exited with {status}; log:\n{}", log_tail(log)));
            }
        }
        if let Ok(reply) = endpoint.command_auth(password, &["PING"]) {
            if reply == "PONG" && ready(endpoint) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("redis-server not ready after {START_DEADLINE:?}; log:\n{}", log_tail(log)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Redis Cluster of `n` primaries (no replicas) on free loopback ports; all nodes are killed
/// on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// The throwaway CA's directory and certificate, for a TLS cluster.
    certs: Option<(tempfile::TempDir, PathBuf)>,
}

/// How to start a [`RedisCluster`].
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// `--requirepass` on every node (the helpers' own commands send it).
    pub password: Option<String>,
    /// Every node also listens for TLS (certificate for `IP:127.0.0.1` from a throwaway CA),
    /// and the cluster bus runs over TLS (`--tls-cluster yes`); TLS clients are told the TLS
    /// ports, plaintext clients (the helpers) the plaintext ones.
    pub tls: bool,
}

/// A loopback port whose cluster bus port (`port + 10000`) is free as well.
fn free_cluster_port() -> u16 {
    loop {
        let p = free_port();
        if p > 55_000 {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

impl RedisCluster {
    /// Starts `n` (≥ 3) `redis-server --cluster-enabled yes` nodes, joins them with
    /// `redis-cli --cluster create … --cluster-replicas 0 --cluster-yes`, and waits until every
    /// node reports `cluster_state:ok`.
    pub fn start(n: usize) -> Self {
        Self::start_with(n, ClusterOptions::default())
    }

    /// [`start`](Self::start) with a password and/or TLS.
    pub fn start_with(n: usize, options: ClusterOptions) -> Self {
        assert!(n >= 3, "a Redis Cluster needs at least 3 primaries");
        let mut last = String::new();
        for _attempt in 0..3 {
            match Self::try_start(n, &options) {
                Ok(c) => return c,
                Err(e) => last = e,
            }
        }
        panic!("Redis Cluster did not start: {last}");
    }

    fn try_start(n: usize, opts: &ClusterOptions) -> Result<Self, String> {
        let certs = if opts.tls {
            let dir = tempfile::Builder::new()
                .prefix("larder-redis-cluster-tls-")
                .tempdir()
                .map_err(|e| e.to_string())?;
            let files = make_test_certs(dir.path());
            Some((dir, files))
        } else {
            None
        };
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            let dir = tempfile::Builder::new()
                .prefix("larder-redis-cluster-")
                .tempdir()
                .map_err(|e| e.to_string())?;
            let conf = dir.path().join("nodes.conf").display().to_string();
            let mut extra_args: Vec<String> = vec![
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                conf,
                "--cluster-node-timeout".into(),
                "5000".into(),
            ];
            let mut tls = None;
            if let Some((_, (ca, cert, key))) = &certs {
                // With --tls-cluster the bus listens on the TLS port + 10000.
                let port = free_cluster_port();
                extra_args.extend(tls_args(port, ca, cert, key));
                extra_args.extend(["--tls-cluster".to_string(), "yes".to_string()]);
                tls = Some(TlsEndpoint { port, ca_cert: ca.clone(), _certs: None });
            }
            let options = RedisOptions {
                unix_socket: false,
                pin_cpu: None,
                password: opts.password.clone(),
                extra_args,
            };
            let mut server =
                RedisServer { child: None, dir, endpoint: Endpoint::Tcp(free_cluster_port()), options, tls };
            server.spawn()?;
            nodes.push(server);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|s| match &s.tls {
                Some(t) => format!("127.0.0.1:{}", t.port),
                None => format!("127.0.0.1:{}", s.port().unwrap_or_default()),
            })
            .collect();
        let mut cli = Command::new(redis_cli_binary());
        if let Some((_, (ca, _, _))) = &certs {
            cli.arg("--tls").arg("--cacert").arg(ca);
        }
        if let Some(pw) = &opts.password {
            cli.args(["-a", pw, "--no-auth-warning"]);
        }
        let out = cli
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run redis-cli: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let pw = opts.password.as_deref();
        for node in &nodes {
            let log = node.dir.path().join("redis.log");
            wait_ready(&node.endpoint, pw, None, &log, |e| {
                e.command_auth(pw, &["CLUSTER", "INFO"])
                    .map(|i| i.contains("cluster_state:ok"))
                    .unwrap_or(false)
            })?;
        }
        Ok(RedisCluster { nodes, certs: certs.map(|(dir, (ca, _, _))| (dir, ca)) })
    }

    /// `rediss+cluster://127.0.0.1:T1,…` (the TLS ports) for a cluster started with `tls`.
    pub fn tls_url(&self) -> Option<String> {
        let hosts: Option<Vec<String>> =
            self.nodes.iter().map(|s| s.tls.as_ref().map(|t| format!("127.0.0.1:{}", t.port))).collect();
        hosts.map(|h| format!("rediss+cluster://{}", h.join(",")))
    }

    /// The PEM file of the CA that issued a TLS cluster's certificates.
    pub fn ca_cert(&self) -> Option<&Path> {
        self.certs.as_ref().map(|(_, ca)| ca.as_path())
    }

    /// The nodes, in creation order.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Mutable access to the nodes (for outage tests).
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,…`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> =
            self.nodes.iter().map(|s| format!("127.0.0.1:{}", s.port().unwrap_or_default())).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The number of keys stored on each node (`DBSIZE`), in node order.
    pub fn dbsizes(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.command(&["DBSIZE"]).parse().unwrap_or(0)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_server_starts_dies_and_restarts_on_the_same_port() {
        let mut s = RedisServer::start();
        assert_eq!(s.command(&["SET", "k", "v"]), "OK");
        assert_eq!(s.command(&["GET", "k"]), "v");
        let url = s.url();
        s.kill9();
        assert!(s.endpoint().command(&["PING"]).is_err(), "server still answers after kill -9");
        s.restart();
        assert_eq!(s.url(), url);
        assert_eq!(s.command(&["GET", "k"]), "", "a restarted server starts empty (no persistence)");
    }

    #[test]
    fn unix_socket_server() {
        let s = RedisServer::start_unix();
        assert!(s.url().starts_with("redis+unix:///"));
        assert_eq!(s.command(&["PING"]), "PONG");
    }

    #[test]
    fn three_node_cluster_covers_all_slots() {
        let c = RedisCluster::start(3);
        for n in c.nodes() {
            let info = n.command(&["CLUSTER", "INFO"]);
            assert!(info.contains("cluster_state:ok"), "{info}");
            assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
            assert!(info.contains("cluster_known_nodes:3"), "{info}");
        }
        assert!(c.url().starts_with("redis+cluster://127.0.0.1:"));
    }
}
