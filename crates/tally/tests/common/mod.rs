//! Helpers for end-to-end tests: a real `tally serve` child process on an ephemeral port.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_tally");

pub struct Project {
    pub id: String,
    pub name: String,
    pub write_key: String,
    pub read_key: String,
    pub admin_key: String,
}

/// `tally project create NAME --json` on `data_dir`.
pub fn create_project(data_dir: &Path, name: &str) -> Project {
    let out = Command::new(BIN)
        .args(["project", "create", name, "--json", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run tally project create");
    assert!(
        out.status.success(),
        "project create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("project create prints JSON");
    Project {
        id: v["id"].as_str().unwrap().to_owned(),
        name: v["name"].as_str().unwrap().to_owned(),
        write_key: v["write_key"].as_str().unwrap().to_owned(),
        read_key: v["read_key"].as_str().unwrap().to_owned(),
        admin_key: v["admin_key"].as_str().unwrap().to_owned(),
    }
}

/// `tally users create EMAIL --project PROJECT --role ROLE` on `data_dir`, the password in
/// `TALLY_PASSWORD`.
pub fn create_user(data_dir: &Path, email: &str, project: &str, role: &str, password: &str) {
    let out = Command::new(BIN)
        .args([
            "users",
            "create",
            email,
            "--project",
            project,
            "--role",
            role,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env("TALLY_PASSWORD", password)
        .output()
        .expect("run tally users create");
    assert!(
        out.status.success(),
        "users create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub data_dir: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    /// Starts `tally serve` on `data_dir` with extra flags and waits until `/health` answers.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// `start`, with environment variables for the server.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut s = Server {
            child: None,
            url: String::new(),
            data_dir: data_dir.to_owned(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        self.spawn_on(free_port());
    }

    /// Starts the server again on the port it had (after `stop` or `kill9`), so clients that
    /// know its address reconnect.
    pub fn start_again(&mut self) {
        let port: u16 = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the server had a port");
        self.spawn_on(port);
    }

    fn spawn_on(&mut self, port: u16) {
        self.url = format!("http://127.0.0.1:{port}");
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("TALLY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tally serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = client();
        loop {
            if let Ok(r) = client.get(format!("{}/health", self.url)).send()
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("tally serve exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "tally serve did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: a graceful stop.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY-free: `kill` the command-line tool sends SIGTERM.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if c.try_wait().ok().flatten().is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("tally serve did not stop on SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn restart_after_kill9(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn post(&self, path: &str, key: &str, body: &Value) -> (u16, Value) {
        let r = client()
            .post(format!("{}{path}", self.url))
            .bearer_auth(key)
            .json(body)
            .send()
            .expect("request");
        let status = r.status().as_u16();
        let v = r.json().unwrap_or(Value::Null);
        (status, v)
    }

    pub fn post_raw(
        &self,
        path: &str,
        key: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = client().post(format!("{}{path}", self.url)).body(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().expect("request");
        let status = r.status().as_u16();
        let h = r.headers().clone();
        let v = r.json().unwrap_or(Value::Null);
        (status, v, h)
    }

    /// Runs a query and returns its `results`, panicking with the answer if it failed.
    pub fn query(&self, key: &str, body: &Value) -> Value {
        let (status, v) = self.post("/v1/query", key, body);
        assert_eq!(status, 200, "query failed: {v}");
        v["results"].clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `tally ARGS --data-dir DATA_DIR`: (success, stdout, stderr).
pub fn tally(args: &[&str], data_dir: &Path) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run tally");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// JSON equality with numbers compared to a relative 1e-9 (results hold averages and ratios).
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// The golden case `tests/golden/NAME.json`.
pub fn golden_case(name: &str) -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/golden/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("golden case exists"))
        .expect("golden case is JSON")
}

/// Where `tests/clients/setup.sh` installed the real clients and servers the tests use.
pub fn test_env_dir() -> PathBuf {
    let dir = std::env::var_os("TALLY_TEST_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/tally/test-env")
        });
    assert!(
        dir.join("stamp").exists(),
        "the test clients are not installed in {}: run tests/clients/setup.sh (scripts/test does)",
        dir.display()
    );
    dir
}

/// A helper process from `tests/clients/` (an SMTP server, a webhook receiver) run by the test
/// venv's Python; it writes its port to a file once it listens. Killed on drop.
pub struct Helper {
    child: Child,
    pub port: u16,
    pub out_dir: PathBuf,
}

impl Helper {
    pub fn start(script: &str, work: &Path, args: &[&str]) -> Helper {
        let python = test_env_dir().join("py/bin/python");
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/clients")
            .join(script);
        let port_file = work.join(format!(
            "{}.port",
            script.file_stem().unwrap().to_string_lossy()
        ));
        let out_dir = work.join(format!(
            "{}.out",
            script.file_stem().unwrap().to_string_lossy()
        ));
        let child = Command::new(python)
            .arg(&script)
            .arg(&port_file)
            .arg(&out_dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the helper");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                break p.trim().parse().expect("a port");
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start",
                script.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Helper {
            child,
            port,
            out_dir,
        }
    }

    /// The JSON records the helper wrote (`1.json`, `2.json`, ...), in order.
    pub fn records(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for n in 1.. {
            match std::fs::read(self.out_dir.join(format!("{n}.json"))) {
                Ok(b) => out.push(serde_json::from_slice(&b).expect("a JSON record")),
                Err(_) => break,
            }
        }
        out
    }

    /// Waits until at least `n` records exist.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let r = self.records();
            if r.len() >= n {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} records arrived",
                r.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
