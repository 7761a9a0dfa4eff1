//! A real HTTPS server on 127.0.0.1 that serves CIMD documents for any host name, with a
//! certificate from a CA generated at test time, and that misbehaves on request (hangs,
//! huge bodies, compression bombs, redirects, error pages). clientgate reaches it through
//! its `[cimd]` development keys: `allow_loopback`, `ca_file` and `resolve`.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How the server answers one URL.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// 200 with this body and content type, extra headers, after a delay.
    Document {
        body: Vec<u8>,
        content_type: String,
        headers: Vec<(String, String)>,
        delay: Duration,
    },
    /// 200 with an ETag; 304 when the request carries `If-None-Match` with it.
    Revalidating {
        body: Vec<u8>,
        etag: String,
        max_age: u64,
    },
    /// Any status with a body.
    Status {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    },
    /// A redirect to `location`.
    Redirect { status: u16, location: String },
    /// Accepts the request and never answers.
    Hang,
    /// `size` bytes of JSON-ish padding, announced with Content-Length or streamed without.
    Huge { size: usize, announce_length: bool },
    /// A small gzip body that inflates to `inflated` bytes.
    GzipBomb { inflated: usize },
}

impl Behaviour {
    pub fn json(body: impl Into<Vec<u8>>) -> Behaviour {
        Behaviour::Document {
            body: body.into(),
            content_type: "application/json".to_owned(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
}

/// One request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub host: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    routes: HashMap<(String, String), Behaviour>,
    seen: Vec<Seen>,
}

/// The running document server.
pub struct DocServer {
    pub addr: SocketAddr,
    pub ca_file: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    state: Arc<Mutex<State>>,
    _dir: tempfile::TempDir,
}

/// Host names the test certificate covers.
pub const HOSTS: &[&str] = &[
    "app.example.com",
    "claude.ai",
    "chatgpt.com",
    "vscode.dev",
    "cimd.dev",
    "mcptest.io",
    "opencode.ai",
    "zed.dev",
    "evil.example",
    "slow.example",
    "pinned.example",
];

impl DocServer {
    pub async fn start() -> DocServer {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "clientgate test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        // Every test host, and any name under `evil.example` (an attacker's wildcard DNS).
        let mut names: Vec<String> = HOSTS.iter().map(|h| h.to_string()).collect();
        names.push("*.evil.example".to_owned());
        let leaf_params = CertificateParams::new(names).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("test-ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let serving_state = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let state = serving_state.clone();
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = serve_one(stream, state).await;
                    }
                });
            }
        });
        DocServer {
            addr,
            ca_file,
            ca,
            state,
            _dir: dir,
        }
    }

    /// Serves `behaviour` for `https://host/path`.
    pub fn route(&self, host: &str, path: &str, behaviour: Behaviour) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert((host.to_owned(), path.to_owned()), behaviour);
    }

    /// Requests seen for `https://host/path`.
    pub fn seen(&self, host: &str, path: &str) -> Vec<Seen> {
        self.state
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|seen| seen.host == host && seen.path == path)
            .cloned()
            .collect()
    }

    /// A certificate for clientgate itself on this machine (`localhost`, `127.0.0.1`),
    /// issued by this server's test CA, written to `dir` with its key; the `[tls]` table
    /// that serves it.
    pub fn write_clientgate_tls(&self, dir: &Path) -> String {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let certificate = params.signed_by(&key, &self.ca).unwrap();
        let (cert_file, key_file) = (dir.join("clientgate.pem"), dir.join("clientgate.key"));
        std::fs::write(&cert_file, certificate.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        format!(
            "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert_file.display(),
            key_file.display()
        )
    }

    /// A clientgate configuration file that reaches this server for every test host.
    pub fn write_config(&self, dir: &Path, allow_loopback: bool, extra: &str) -> PathBuf {
        self.write_config_reaching(dir, allow_loopback, &[], extra)
    }

    /// A configuration that reaches this server for every test host and for `more` hosts
    /// (names under `evil.example`, which its certificate covers).
    pub fn write_config_reaching(
        &self,
        dir: &Path,
        allow_loopback: bool,
        more: &[String],
        extra: &str,
    ) -> PathBuf {
        let mut resolve = String::new();
        for host in HOSTS.iter().copied().chain(more.iter().map(String::as_str)) {
            resolve.push_str(&format!("\"{host}\" = \"{}\", ", self.addr));
        }
        let config = format!(
            "[cimd]\nallow_loopback = {allow_loopback}\nca_file = \"{}\"\ntotal_timeout_ms = 1500\nconnect_timeout_ms = 1000\nresolve = {{ {} }}\n{extra}",
            self.ca_file.display(),
            resolve.trim_end_matches(", "),
        );
        let path = dir.join("clientgate.toml");
        std::fs::write(&path, config).unwrap();
        path
    }
}

async fn serve_one<S>(mut stream: S, state: Arc<Mutex<State>>) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&request).into_owned();
    let mut lines = text.split("\r\n");
    let path = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or("/")
        .to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let host = header("host")
        .unwrap_or_default()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let behaviour = {
        let mut state = state.lock().unwrap();
        state.seen.push(Seen {
            host: host.clone(),
            path: path.clone(),
            headers: headers.clone(),
        });
        state.routes.get(&(host.clone(), path.clone())).cloned()
    };
    let Some(behaviour) = behaviour else {
        return respond(&mut stream, 404, "text/plain", &[], b"no such document").await;
    };
    match behaviour {
        Behaviour::Document {
            body,
            content_type,
            headers,
            delay,
        } => {
            tokio::time::sleep(delay).await;
            respond(&mut stream, 200, &content_type, &headers, &body).await
        }
        Behaviour::Revalidating {
            body,
            etag,
            max_age,
        } => {
            let cache = vec![
                ("ETag".to_owned(), etag.clone()),
                ("Cache-Control".to_owned(), format!("max-age={max_age}")),
            ];
            if header("if-none-match").as_deref() == Some(etag.as_str()) {
                respond(&mut stream, 304, "application/json", &cache, b"").await
            } else {
                respond(&mut stream, 200, "application/json", &cache, &body).await
            }
        }
        Behaviour::Status {
            status,
            content_type,
            body,
        } => respond(&mut stream, status, &content_type, &[], &body).await,
        Behaviour::Redirect { status, location } => {
            respond(
                &mut stream,
                status,
                "text/plain",
                &[("Location".to_owned(), location)],
                b"",
            )
            .await
        }
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
        Behaviour::Huge {
            size,
            announce_length,
        } => {
            let mut head = String::from(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n",
            );
            if announce_length {
                head.push_str(&format!("Content-Length: {size}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes()).await?;
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0;
            while sent < size {
                let n = chunk.len().min(size - sent);
                if stream.write_all(&chunk[..n]).await.is_err() {
                    return Ok(());
                }
                sent += n;
            }
            stream.shutdown().await
        }
        Behaviour::GzipBomb { inflated } => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(b"{\"client_id\":\"").unwrap();
            let padding = vec![b'a'; 64 * 1024];
            let mut written = 0;
            while written < inflated {
                encoder.write_all(&padding).unwrap();
                written += padding.len();
            }
            encoder.write_all(b"\"}").unwrap();
            let compressed = encoder.finish().unwrap();
            respond(
                &mut stream,
                200,
                "application/json",
                &[("Content-Encoding".to_owned(), "gzip".to_owned())],
                &compressed,
            )
            .await
        }
    }
}

async fn respond<S>(
    stream: &mut S,
    status: u16,
    content_type: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()>
where
    S: tokio::io::AsyncWrite + Unpin,
{
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}
