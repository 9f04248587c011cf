//! S3-compatible servers on loopback for the tests: s3s-fs 0.14.1 (checks
//! SigV4 and checksums) and moto[server] 5.2.5 (AWS-exact error codes),
//! both installed by scripts/setup.sh. A missing server fails the test
//! loudly: nothing is skipped in silence.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::{free_port, wait_for};

pub const ACCESS_KEY: &str = "pitrtestaccess";
pub const SECRET_KEY: &str = "pitr-test-secret-Do-Not-Print-4711";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    S3sFs,
    Moto,
}

pub struct S3Server {
    pub kind: Kind,
    pub port: u16,
    pub endpoint: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn find(program: &str) -> PathBuf {
    let cargo_bin = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo"))
        .join("bin")
        .join(program);
    if cargo_bin.is_file() {
        return cargo_bin;
    }
    // moto, in the virtual environment scripts/setup.sh owns.
    let venv =
        PathBuf::from(std::env::var("PITR_VENV").unwrap_or_else(|_| "/opt/pitr-venv".into()))
            .join("bin")
            .join(program);
    if venv.is_file() {
        return venv;
    }
    which::which(program).unwrap_or_else(|_| {
        panic!("{program} is not installed: run scripts/setup.sh (the README's test command installs it)")
    })
}

/// An HTTP GET on loopback; returns the status code.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1)?.parse().ok()
}

impl S3Server {
    pub fn start(kind: Kind) -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut s = S3Server {
            kind,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            dir,
            child: None,
        };
        s.resume();
        s
    }

    /// (Re)starts the server on the same port and data.
    pub fn resume(&mut self) {
        assert!(self.child.is_none());
        let child = match self.kind {
            Kind::S3sFs => Command::new(find("s3s-fs"))
                .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(self.dir.path())
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn(),
            Kind::Moto => Command::new(find("moto_server"))
                .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn(),
        }
        .expect("start S3 server");
        self.child = Some(child);
        let (port, kind) = (self.port, self.kind);
        wait_for(
            "S3 server to listen",
            Duration::from_secs(30),
            || match kind {
                // Unsigned requests are refused once it serves.
                Kind::S3sFs => http_status(port, "/").is_some_and(|s| s == 403),
                Kind::Moto => http_status(port, "/moto-api/").is_some_and(|s| s == 200),
            },
        );
    }

    /// Stops the server (the data stays for `resume`).
    pub fn pause(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let port = self.port;
        wait_for("S3 server to stop", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_err()
        });
    }

    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("PITR_S3_PATH_STYLE", "1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    pub fn client(&self) -> aws_sdk_s3::Client {
        let creds =
            aws_sdk_s3::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(creds)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    pub fn create_bucket(&self, name: &str) {
        let client = self.client();
        runtime()
            .block_on(client.create_bucket().bucket(name).send())
            .unwrap_or_else(|e| {
                panic!(
                    "create bucket {name}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
    }

    /// Where s3s-fs keeps an object on disk.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        assert_eq!(self.kind, Kind::S3sFs);
        self.dir.path().join(bucket).join(key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// One s3s-fs server shared by the tests of this process (each test uses
/// its own bucket).
pub fn shared() -> &'static S3Server {
    static S: OnceLock<S3Server> = OnceLock::new();
    S.get_or_init(|| {
        let s = S3Server::start(Kind::S3sFs);
        if let Some(c) = &s.child {
            SHARED_PID.store(c.id(), std::sync::atomic::Ordering::SeqCst);
            // Statics are never dropped: stop the server when the test
            // process exits.
            unsafe {
                libc::atexit(kill_shared);
            }
        }
        s
    })
}

static SHARED_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn kill_shared() {
    let pid = SHARED_PID.load(std::sync::atomic::Ordering::SeqCst);
    if pid != 0 {
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
}
