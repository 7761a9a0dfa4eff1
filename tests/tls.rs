//! TLS on the listener, with a CA made here (rcgen): calls over TLS, a plaintext caller
//! refused, client certificates required and verified under `tls.client_ca_file`, and the
//! certificate reloaded from its files while calls go on.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clientgate::proto::Decision;
use clientgate::proto::registration_service_client::RegistrationServiceClient;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::{Channel, Endpoint};

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A certificate for `names` and its key, as PEM.
    fn issue(&self, names: &[&str], common_name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(
            names
                .iter()
                .map(|name| name.to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        (certificate.pem(), key.serialize_pem())
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }
}

/// A client identity: a certificate chain and its key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn identity(cert_pem: &str, key_pem: &str) -> Identity {
    use rustls::pki_types::pem::PemObject;
    (
        CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap(),
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
    )
}

/// A gRPC channel to `addr` over TLS trusting `roots`, presenting `client` if given. The
/// server certificate each handshake saw is pushed on `seen`.
async fn tls_channel(
    addr: &str,
    roots: &[&str],
    client: Option<Identity>,
    seen: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
) -> Result<Channel, tonic::transport::Error> {
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        for certificate in CertificateDer::pem_slice_iter(root.as_bytes()) {
            store.add(certificate.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store);
    let mut config = match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = addr.to_owned();
    Endpoint::try_from(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let (connector, addr, seen) = (connector.clone(), addr.clone(), seen.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await?;
                let name = ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, tcp).await?;
                if let Some(certificates) = tls.get_ref().1.peer_certificates() {
                    seen.lock().unwrap().push(certificates[0].to_vec());
                }
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn tls_server(dir: &Path, data: &Path, extra: &str) -> Server {
    let config = write(
        dir,
        "clientgate.toml",
        &format!(
            "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n{extra}",
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        ),
    );
    Server::start(
        &starter_policies(),
        data,
        &["--config", config.to_str().unwrap()],
    )
}

async fn evaluate(channel: Channel) -> Result<Decision, tonic::Status> {
    let answer = RegistrationServiceClient::new(channel)
        .evaluate(dcr(WEB_CLIENT, "203.0.113.7"))
        .await?;
    Ok(answer.into_inner().decision())
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_go_over_tls_and_a_plaintext_caller_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let ca = Ca::new("clientgate test CA");
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"], "clientgate");
    write(dir.path(), "server.pem", &cert);
    write(dir.path(), "server.key", &key);
    let server = tls_server(dir.path(), data.path(), "");

    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let channel = tls_channel(&server.addr, &[&ca.pem()], None, seen)
        .await
        .expect("a TLS handshake with the configured certificate");
    assert_eq!(evaluate(channel).await.unwrap(), Decision::Approve);

    let plaintext = Endpoint::try_from(server.url()).unwrap().connect().await;
    let refused = match plaintext {
        Err(_) => true,
        Ok(channel) => evaluate(channel).await.is_err(),
    };
    assert!(
        refused,
        "a plaintext caller gets no answer from a TLS listener"
    );

    let stranger = Ca::new("another CA");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let untrusted = match tls_channel(&server.addr, &[&stranger.pem()], None, seen).await {
        Err(_) => true,
        Ok(channel) => evaluate(channel).await.is_err(),
    };
    assert!(
        untrusted,
        "a client that does not trust the CA does not connect"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_client_ca_only_clients_with_its_certificates_connect() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let ca = Ca::new("clientgate test CA");
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"], "clientgate");
    write(dir.path(), "server.pem", &cert);
    write(dir.path(), "server.key", &key);
    let clients = Ca::new("clients CA");
    let client_ca = write(dir.path(), "clients.pem", &clients.pem());
    let server = tls_server(
        dir.path(),
        data.path(),
        &format!("client_ca_file = \"{}\"\n", client_ca.display()),
    );
    let seen = || Arc::new(std::sync::Mutex::new(Vec::new()));

    let (as_cert, as_key) = clients.issue(&["as.example.com"], "as.example.com");
    let channel = tls_channel(
        &server.addr,
        &[&ca.pem()],
        Some(identity(&as_cert, &as_key)),
        seen(),
    )
    .await
    .expect("a client certificate of the client CA is accepted");
    assert_eq!(evaluate(channel).await.unwrap(), Decision::Approve);

    let without = match tls_channel(&server.addr, &[&ca.pem()], None, seen()).await {
        Err(_) => true,
        Ok(channel) => evaluate(channel).await.is_err(),
    };
    assert!(without, "a client without a certificate is refused");

    let (other_cert, other_key) = ca.issue(&["intruder.example"], "intruder.example");
    let rejected = match tls_channel(
        &server.addr,
        &[&ca.pem()],
        Some(identity(&other_cert, &other_key)),
        seen(),
    )
    .await
    {
        Err(_) => true,
        Ok(channel) => evaluate(channel).await.is_err(),
    };
    assert!(rejected, "a certificate from another CA is rejected");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_certificate_is_taken_from_its_files_while_calls_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let ca = Ca::new("clientgate test CA");
    let (first, first_key) = ca.issue(&["localhost", "127.0.0.1"], "first");
    write(dir.path(), "server.pem", &first);
    write(dir.path(), "server.key", &first_key);
    let server = tls_server(dir.path(), data.path(), "");

    let seen_before = Arc::new(std::sync::Mutex::new(Vec::new()));
    let open = tls_channel(&server.addr, &[&ca.pem()], None, seen_before.clone())
        .await
        .unwrap();
    assert_eq!(evaluate(open.clone()).await.unwrap(), Decision::Approve);

    // Calls on the open connection go on while the files are replaced.
    let calls = {
        let open = open.clone();
        tokio::spawn(async move {
            let mut failures = 0;
            for _ in 0..40 {
                if evaluate(open.clone()).await.is_err() {
                    failures += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            failures
        })
    };
    let (second, second_key) = ca.issue(&["localhost", "127.0.0.1"], "second");
    // Key first, then certificate: a check between the writes sees a mismatched pair and
    // keeps the one in force.
    write(dir.path(), "server.key.new", &second_key);
    write(dir.path(), "server.pem.new", &second);
    std::fs::rename(
        dir.path().join("server.key.new"),
        dir.path().join("server.key"),
    )
    .unwrap();
    std::fs::rename(
        dir.path().join("server.pem.new"),
        dir.path().join("server.pem"),
    )
    .unwrap();

    let mut reloaded = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if server.log().contains("TLS certificate reloaded") {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "the server reloads the files:\n{}", server.log());
    let seen_after = Arc::new(std::sync::Mutex::new(Vec::new()));
    let fresh = tls_channel(&server.addr, &[&ca.pem()], None, seen_after.clone())
        .await
        .unwrap();
    // Answered (the decision itself turns to STEP_UP after so many equal registrations).
    evaluate(fresh).await.expect("a new connection is answered");
    assert_eq!(
        calls.await.unwrap(),
        0,
        "no call on the open connection failed"
    );

    let pem_der = |pem: &str| {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    };
    assert_eq!(seen_before.lock().unwrap()[0], pem_der(&first));
    assert_eq!(
        seen_after.lock().unwrap()[0],
        pem_der(&second),
        "a new handshake gets the new certificate"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_is_an_identity_with_the_roles_configured_for_its_subject() {
    use clientgate::proto::ListDecisionsRequest;
    use clientgate::proto::admin_service_client::AdminServiceClient;
    use tonic::Code;
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let ca = Ca::new("clientgate test CA");
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"], "clientgate");
    write(dir.path(), "server.pem", &cert);
    write(dir.path(), "server.key", &key);
    let clients = Ca::new("clients CA");
    let client_ca = write(dir.path(), "clients.pem", &clients.pem());
    let server = tls_server(
        dir.path(),
        data.path(),
        &format!(
            "client_ca_file = \"{}\"\n\n\
             [[auth.clients]]\nsubject = \"as.example.com\"\nroles = [\"evaluate\"]\n\n\
             [[auth.clients]]\nsubject = \"ops.example.com\"\nroles = [\"operator\"]\n",
            client_ca.display()
        ),
    );
    let channel_for = |name: &'static str| {
        let (cert, key) = clients.issue(&[name], name);
        let addr = server.addr.clone();
        let root = ca.pem();
        async move {
            tls_channel(
                &addr,
                &[&root],
                Some(identity(&cert, &key)),
                Arc::new(std::sync::Mutex::new(Vec::new())),
            )
            .await
            .unwrap()
        }
    };
    let list = |channel: Channel| async move {
        AdminServiceClient::new(channel)
            .list_decisions(ListDecisionsRequest::default())
            .await
            .map(drop)
            .map_err(|status| status.code())
    };

    let the_as = channel_for("as.example.com").await;
    assert_eq!(evaluate(the_as.clone()).await.unwrap(), Decision::Approve);
    assert_eq!(list(the_as).await, Err(Code::PermissionDenied));

    let ops = channel_for("ops.example.com").await;
    assert_eq!(list(ops.clone()).await, Ok(()));
    assert_eq!(
        evaluate(ops).await.map_err(|status| status.code()),
        Err(Code::PermissionDenied)
    );

    let stranger = channel_for("stranger.example.com").await;
    assert_eq!(
        evaluate(stranger).await.map_err(|status| status.code()),
        Err(Code::Unauthenticated),
        "a certificate of the client CA for no configured subject is nobody"
    );
}

/// A reqwest client over TLS to `localhost` (resolved to the server), trusting `root` and
/// presenting `client` (PEM certificate and key) if given.
fn https_client(addr: &str, root: &str, client: Option<(&str, &str)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .resolve("localhost", addr.parse().unwrap())
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap());
    if let Some((cert, key)) = client {
        builder = builder
            .identity(reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// Posts the console's certificate sign-in form as the holder of `client`.
async fn certificate_sign_in(client: &reqwest::Client, base: &str) -> reqwest::Response {
    let page = client
        .get(format!("{base}/console/sign-in"))
        .send()
        .await
        .unwrap();
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("; Secure"),
        "cookies are Secure under TLS: {cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let body = page.text().await.unwrap();
    assert!(
        body.contains("id=\"certificate-sign-in\""),
        "the certificate is offered: {body}"
    );
    let form = format!("csrf={}&certificate=1", hidden(&body, "csrf"));
    client
        .post(format!("{base}/console/sign-in"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_signs_in_to_the_console_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let ca = Ca::new("clientgate test CA");
    let (cert, key) = ca.issue(&["localhost"], "clientgate");
    write(dir.path(), "server.pem", &cert);
    write(dir.path(), "server.key", &key);
    let clients = Ca::new("clients CA");
    let client_ca = write(dir.path(), "clients.pem", &clients.pem());
    let server = tls_server(
        dir.path(),
        data.path(),
        &format!(
            "client_ca_file = \"{}\"\n\n\
             [[auth.clients]]\nsubject = \"as.example.com\"\nroles = [\"evaluate\"]\n\n\
             [[auth.clients]]\nsubject = \"ops.example.com\"\nroles = [\"operator\"]\n",
            client_ca.display()
        ),
    );
    let port = server.addr.rsplit(':').next().unwrap();
    let base = format!("https://localhost:{port}");
    let (ops_cert, ops_key) = clients.issue(&["ops.example.com"], "ops");
    let ops = https_client(&server.addr, &ca.pem(), Some((&ops_cert, &ops_key)));
    let signed_in = certificate_sign_in(&ops, &base).await;
    assert_eq!(signed_in.status(), 303);
    let session = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        session.starts_with("__Host-cg_session=") && session.contains("; Secure"),
        "{session}"
    );
    let pending = ops
        .get(format!("{base}/console/pending"))
        .header("cookie", session.split(';').next().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        pending.contains("<strong id=\"identity\">ops.example.com</strong>"),
        "the certificate's subject is who signed in: {pending}"
    );

    let (as_cert, as_key) = clients.issue(&["as.example.com"], "as");
    let the_as = https_client(&server.addr, &ca.pem(), Some((&as_cert, &as_key)));
    let refused = certificate_sign_in(&the_as, &base).await;
    assert_eq!(
        refused.status(),
        401,
        "a certificate without the operator role"
    );
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("lacks the `operator` role")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn clientgate_admin_and_healthcheck_verify_the_server_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let ca = Ca::new("clientgate test CA");
    let (cert, key) = ca.issue(&["localhost"], "clientgate");
    write(dir.path(), "server.pem", &cert);
    write(dir.path(), "server.key", &key);
    let ca_file = write(dir.path(), "ca.pem", &ca.pem());
    let other_ca = write(dir.path(), "other.pem", &Ca::new("another CA").pem());
    let server = tls_server(dir.path(), data.path(), "");
    let port = server.addr.rsplit(':').next().unwrap();
    let url = format!("https://localhost:{port}");
    let run = |args: &[&str], ca: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_clientgate"))
            .args(args)
            .args(["--server", &url, "--ca", ca.to_str().unwrap()])
            .env_remove("CLIENTGATE_ADMIN_TOKEN")
            .output()
            .unwrap()
    };
    let status = run(&["admin", "status"], &ca_file);
    assert!(status.status.success(), "{status:?}");
    assert!(String::from_utf8_lossy(&status.stdout).contains("policy version"));
    let ready = run(&["healthcheck"], &ca_file);
    assert!(ready.status.success(), "{ready:?}");
    let untrusted = run(&["admin", "status"], &other_ca);
    assert_eq!(
        untrusted.status.code(),
        Some(3),
        "a server whose certificate the CA did not issue is not talked to: {untrusted:?}"
    );
    assert_eq!(run(&["healthcheck"], &other_ca).status.code(), Some(1));
}
