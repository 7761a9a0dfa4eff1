//! A throwaway PostgreSQL server for one test: `initdb` into a temporary directory, then
//! `pg_ctl start` on a free loopback port; stopped (immediate shutdown) and removed when
//! dropped. Run as root, the server runs as the `postgres` user (PostgreSQL refuses root).
//! Without the server binaries the test fails and says how to install them: it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    running: bool,
    /// Server options besides the port and addresses.
    extra: String,
}

impl Postgres {
    /// A fresh cluster, started.
    pub fn start() -> Postgres {
        let mut postgres = Postgres::init();
        postgres.resume();
        postgres
    }

    /// A fresh cluster that accepts TCP connections only over TLS, with a certificate for
    /// 127.0.0.1 from a CA of its own; started. Returns the CA's PEM file too.
    pub fn start_tls() -> (Postgres, PathBuf) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut postgres = Postgres::init();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "clientgate test database CA");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let certificate = params.signed_by(&key, &ca).unwrap();
        let data = postgres.data();
        std::fs::write(data.join("server.crt"), certificate.pem()).unwrap();
        std::fs::write(data.join("server.key"), key.serialize_pem()).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        let ca_file = postgres.dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        hand_over(postgres.dir.path());
        let status = Command::new("chmod")
            .arg("600")
            .arg(data.join("server.key"))
            .status()
            .unwrap();
        assert!(status.success());
        postgres.extra = "-c ssl=on".to_owned();
        postgres.resume();
        (postgres, ca_file)
    }

    /// A fresh cluster, not started.
    fn init() -> Postgres {
        let bin = binaries();
        let dir = tempfile::tempdir().unwrap();
        hand_over(dir.path());
        let data = dir.path().join("data");
        let output = command(&bin, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb runs");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Postgres {
            dir,
            bin,
            port: free_port(),
            running: false,
            extra: String::new(),
        }
    }

    /// A connection URL to its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once (as a crash would), keeping its data.
    pub fn halt(&mut self) {
        if !self.running {
            return;
        }
        let output = command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            output.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.running = false;
    }

    /// Starts the server again on its port and data.
    pub fn resume(&mut self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200 {}",
            self.port,
            self.dir.path().display(),
            self.extra
        );
        let output = command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .arg("-o")
            .arg(options)
            .args(["-w", "-t", "60", "start"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            output.status.success(),
            "PostgreSQL did not start: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
        self.running = true;
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let _ = command(&self.bin, "pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

/// Gives `dir` to `postgres` when we are root (the server refuses to run as root).
fn hand_over(dir: &Path) {
    if as_root() {
        let status = Command::new("chown")
            .arg("-R")
            .arg("postgres")
            .arg(dir)
            .status()
            .expect("chown runs");
        assert!(
            status.success(),
            "cannot hand `{}` to `postgres`",
            dir.display()
        );
    }
}

fn as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program` from the server binaries, as `postgres` when we are root.
fn command(bin: &Path, program: &str) -> Command {
    let path = bin.join(program);
    if as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

/// The newest installed server's binaries (Debian keeps them in /usr/lib/postgresql/N/bin).
fn binaries() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let bin = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if bin.join("initdb").exists() {
            return bin;
        }
    }
    panic!(
        "the PostgreSQL tests need the server binaries (initdb, pg_ctl): \
         `apt-get install postgresql` (scripts/test installs them when it can)"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
