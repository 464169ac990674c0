//! moto's KMS server (`moto_server`, PyPI `moto[server]`): the AWS KMS wire protocol on a
//! loopback port, for the envelope's AWS KMS tests.
//!
//! Each [`MotoServer`] is its own `moto_server` process on a free port, with its stdout/stderr
//! in a log file and moto's request recorder switched on, so tests can count the KMS operations
//! that actually reached the server ([`MotoServer::count_requests`]). moto's own access log
//! (werkzeug's `"POST / HTTP/1.1" 200 -` lines) does not name the operation, because every KMS
//! call is a `POST /` with an `X-Amz-Target: TrentService.<Operation>` header; the recorder
//! (`MOTO_ENABLE_RECORDING`, `MOTO_RECORDER_FILEPATH`) writes one JSON line per request with
//! its headers, which does.
//!
//! Outages, two kinds:
//! - [`MotoServer::stop`] kills the process: connections are refused. moto keeps its keys in
//!   memory only, so after [`MotoServer::restart`] (same port) the keys created before are gone.
//! - [`MotoServer::pause`] freezes the process (`SIGSTOP`): the kernel still accepts TCP
//!   connections but nothing answers, the slow kind of outage that only timeouts end.
//!   [`MotoServer::resume`] (`SIGCONT`) brings it back with its keys intact.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};

/// How long `moto_server` may take to answer HTTP after it is spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `moto_server`, killed on drop.
pub struct MotoServer {
    port: u16,
    child: Option<Child>,
    paused: bool,
    dir: tempfile::TempDir,
}

impl MotoServer {
    /// Starts `moto_server -H 127.0.0.1 -p <free port>` and waits until it answers HTTP.
    ///
    /// The binary is `$LARDER_MOTO_SERVER`, else `moto_server` on `PATH`; panics with an install
    /// hint when neither exists, or with the server's log when it does not come up.
    pub fn start() -> MotoServer {
        let dir =
            tempfile::Builder::new().prefix("larder-moto-").tempdir().expect("create a temp dir for moto");
        let mut server = MotoServer { port: crate::free_port(), child: None, paused: false, dir };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let binary = crate::find_binary(
            "LARDER_MOTO_SERVER",
            "moto_server",
            "Install it with: python3 -m venv .venv && .venv/bin/pip install 'moto[server]'",
        );
        let log =
            File::options().create(true).append(true).open(self.log_path()).expect("open the moto log file");
        let log_err = log.try_clone().expect("clone the moto log handle");
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .env("MOTO_ENABLE_RECORDING", "true")
            .env("MOTO_RECORDER_FILEPATH", self.recording_path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("could not spawn {}: {e}", binary.display()));
        self.child = Some(child);
        self.paused = false;
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "moto_server exited ({status}) before answering on port {}. Its log:\n{}",
                        self.port,
                        self.log()
                    );
                }
            }
            if answers_http(addr) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "moto_server did not answer HTTP on port {} within {STARTUP_TIMEOUT:?}. Its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The endpoint URL to give the AWS SDK (`http://127.0.0.1:<port>`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The loopback port the server listens on (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True while the process is running (started or restarted, and not stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (connections are then refused). moto's keys die with it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// Starts a fresh server on the same port (stopping the old one first if it still runs).
    /// The new process has none of the old one's keys; the request recording carries on.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Freezes the server with `SIGSTOP`: connections are still accepted by the kernel, but no
    /// request gets an answer until [`resume`](Self::resume).
    pub fn pause(&mut self) {
        self.signal("-STOP");
        self.paused = true;
    }

    /// Thaws a [`pause`](Self::pause)d server; it answers again with its keys intact.
    pub fn resume(&mut self) {
        self.signal("-CONT");
        self.paused = false;
    }

    fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("moto_server is not running");
        let status = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .expect("run kill(1) to signal moto_server");
        assert!(status.success(), "kill {sig} {} failed", child.id());
    }

    /// The file receiving the server's stdout and stderr (werkzeug's access log, tracebacks).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("moto.log")
    }

    /// The file moto's request recorder appends one JSON line per request to.
    pub fn recording_path(&self) -> PathBuf {
        self.dir.path().join("requests.jsonl")
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// How many requests for KMS operation `operation` (`"GenerateDataKey"`, `"Decrypt"`, ...)
    /// reached the server, by the `X-Amz-Target` header in moto's request recording. Counts
    /// requests, not successes: a request refused by moto counts too.
    pub fn count_requests(&self, operation: &str) -> usize {
        count_operation(&self.recording_path(), operation)
    }

    /// An `aws-sdk-kms` client for this server: endpoint URL, dummy static credentials, region
    /// `us-east-1`, the SDK's defaults otherwise.
    pub fn kms_client(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::from_conf(self.kms_config())
    }

    /// The configuration [`kms_client`](Self::kms_client) uses, to adjust before building.
    pub fn kms_config(&self) -> aws_sdk_kms::Config {
        aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "larder-testkit"))
            .build()
    }

    /// Creates a symmetric KMS key (`SYMMETRIC_DEFAULT`, encrypt/decrypt) and returns its ARN.
    pub async fn create_key(&self) -> String {
        let out = self
            .kms_client()
            .create_key()
            .description("larder test key")
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateKey on moto failed: {e:?}\nmoto log:\n{}", self.log()));
        out.key_metadata().and_then(|m| m.arn()).expect("CreateKey response without a key ARN").to_owned()
    }

    /// Creates `alias/<name>` pointing at `key_id` and returns the alias ARN.
    pub async fn create_alias(&self, name: &str, key_id: &str) -> String {
        let alias = format!("alias/{name}");
        self.kms_client()
            .create_alias()
            .alias_name(&alias)
            .target_key_id(key_id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateAlias on moto failed: {e:?}"));
        format!("arn:aws:kms:us-east-1:123456789012:{alias}")
    }

    /// Creates a symmetric key in `region` with `alias/<alias>` pointing at it; returns (key
    /// ARN, alias ARN). For configurations that name keys in several regions.
    pub async fn create_key_with_alias_in(&self, region: &str, alias: &str) -> (String, String) {
        let conf = self.kms_config().to_builder().region(Region::new(region.to_owned())).build();
        let client = aws_sdk_kms::Client::from_conf(conf);
        let out = client.create_key().description("larder test key").send().await.unwrap_or_else(|e| {
            panic!("CreateKey in {region} on moto failed: {e:?}\nmoto log:\n{}", self.log())
        });
        let meta = out.key_metadata().expect("CreateKey response without key metadata");
        let arn = meta.arn().expect("CreateKey response without a key ARN").to_owned();
        client
            .create_alias()
            .alias_name(format!("alias/{alias}"))
            .target_key_id(meta.key_id())
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateAlias in {region} on moto failed: {e:?}"));
        (arn, format!("arn:aws:kms:{region}:123456789012:alias/{alias}"))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        if self.paused {
            // A stopped process still dies of SIGKILL, but thaw it anyway so nothing lingers.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.signal("-CONT")));
        }
        self.stop();
    }
}

/// Counts the lines of a moto recording whose `X-Amz-Target` is `TrentService.<operation>`.
fn count_operation(recording: &Path, operation: &str) -> usize {
    let text = match fs::read_to_string(recording) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(e) => panic!("read moto recording {}: {e}", recording.display()),
    };
    // The closing quote keeps `GenerateDataKey` from also counting
    // `GenerateDataKeyWithoutPlaintext` or `GenerateDataKeyPair`.
    let needle = format!("\"TrentService.{operation}\"");
    text.lines().filter(|l| l.contains("\"X-Amz-Target\"") && l.contains(&needle)).count()
}

/// One HTTP request to `addr`; true when something answers with an HTTP status line.
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_the_named_operation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        fs::write(
            &path,
            concat!(
                "{\"headers\": {\"X-Amz-Target\": \"TrentService.GenerateDataKey\"}}\n",
                "{\"headers\": {\"X-Amz-Target\": \"TrentService.GenerateDataKeyWithoutPlaintext\"}}\n",
                "{\"headers\": {\"X-Amz-Target\": \"TrentService.Decrypt\"}}\n",
                "{\"headers\": {\"X-Amz-Target\": \"TrentService.GenerateDataKey\"}}\n",
            ),
        )
        .unwrap();
        assert_eq!(count_operation(&path, "GenerateDataKey"), 2);
        assert_eq!(count_operation(&path, "Decrypt"), 1);
        assert_eq!(count_operation(&path, "Encrypt"), 0);
        assert_eq!(count_operation(&dir.path().join("missing"), "Decrypt"), 0);
    }
}
