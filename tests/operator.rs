//! The operator's surface used as people use it: the approvals console in a real headless
//! Chromium (through chromedriver), `clientgate admin` as a process, a webhook delivered to
//! a loopback receiver, `/metrics` after a known sequence of calls, and the decision
//! export. Chromium and its driver come from Debian (`chromium`, `chromium-driver`; the
//! README's test command installs them): without them the browser test fails, it does not
//! skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clientgate::proto::registration_service_client::RegistrationServiceClient;
use clientgate::proto::{Decision, EvaluateRequest, EvaluateResponse, StepUpProof};
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OPERATOR_TOKEN: &str = "cg_test_operator_token_0123456789";
const EVALUATE_TOKEN: &str = "cg_test_evaluate_token_0123456789";

/// A DCR registration that the starter policies step up: its redirect URI is on another
/// domain than its `client_uri`.
const CROSS_DOMAIN: &str = r#"{"client_name":"Review me","client_uri":"https://app.example.com","redirect_uris":["https://evil.example.net/cb"],"grant_types":["authorization_code"],"response_types":["code"],"token_endpoint_auth_method":"none","application_type":"web"}"#;

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// A configuration with an operator token (`alice`) and an evaluate-only one (`as`), and
/// `extra` settings.
fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("clientgate.toml");
    std::fs::write(
        &path,
        format!(
            "[[auth.tokens]]\nname = \"alice\"\nsha256 = \"{}\"\nroles = [\"operator\"]\n\
             [[auth.tokens]]\nname = \"as\"\nsha256 = \"{}\"\nroles = [\"evaluate\"]\n{extra}",
            sha256_hex(OPERATOR_TOKEN),
            sha256_hex(EVALUATE_TOKEN)
        ),
    )
    .unwrap();
    path
}

fn start(dir: &Path, extra: &str) -> Server {
    let config = config(dir, extra);
    let data = dir.join("data");
    Server::start(
        &starter_policies(),
        &data,
        &["--config", config.to_str().unwrap()],
    )
}

fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn evaluate(server: &Server, request: EvaluateRequest) -> EvaluateResponse {
    RegistrationServiceClient::new(server.channel().await)
        .evaluate(authorized(request, EVALUATE_TOKEN))
        .await
        .expect("Evaluate answers")
        .into_inner()
}

/// Opens a ticket and returns its id.
async fn open_ticket(server: &Server) -> String {
    let answer = evaluate(server, dcr(CROSS_DOMAIN, "203.0.113.7")).await;
    assert_eq!(answer.decision(), Decision::StepUp, "{answer:?}");
    answer.step_up.expect("a ticket").ticket_id
}

fn with_ticket(ticket_id: &str) -> EvaluateRequest {
    EvaluateRequest {
        step_up: Some(StepUpProof {
            ticket_id: ticket_id.to_owned(),
            completed_challenges: Vec::new(),
        }),
        ..dcr(CROSS_DOMAIN, "203.0.113.7")
    }
}

// ---- the browser ---------------------------------------------------------------------

/// A chromedriver process and one headless Chromium session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: reqwest::Client,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    async fn start() -> Browser {
        let chromedriver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|path| Path::new(path).exists())
            .expect(
                "the console test needs chromedriver (Debian: apt-get install chromium chromium-driver; \
                 `bash .ci/run` installs them)",
            );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // In a process group of its own, so that the browser it starts goes with it.
        let driver = std::os::unix::process::CommandExt::process_group(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            0,
        )
        .spawn()
        .expect("chromedriver runs");
        let base = format!("http://127.0.0.1:{port}");
        let client = http();
        let mut ready = false;
        for _ in 0..100 {
            if let Ok(response) = client.get(format!("{base}/status")).send().await
                && let Ok(bytes) = response.bytes().await
                && let Ok(status) = serde_json::from_slice::<Value>(&bytes)
                && status["value"]["ready"] == true
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "chromedriver did not become ready on {base}");
        let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|path| Path::new(path).exists())
            .expect("the console test needs Chromium (Debian: apt-get install chromium)");
        let created: Value = client
            .post(format!("{base}/session"))
            .header("content-type", "application/json")
            .body(
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": binary,
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                 "--disable-dev-shm-usage", "--window-size=1400,1000",
                                 "--no-proxy-server"],
                    },
                }}})
                .to_string(),
            )
            .send()
            .await
            .expect("chromedriver answers")
            .bytes()
            .await
            .map(|bytes| serde_json::from_slice(&bytes).unwrap())
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"))
            .to_owned();
        let browser = Browser {
            driver,
            base,
            session,
            client,
        };
        // A click that submits a form returns before the next page has loaded: finding an
        // element waits up to five seconds for it to appear.
        browser
            .call(
                reqwest::Method::POST,
                "/timeouts",
                Some(json!({"implicit": 5000})),
            )
            .await;
        browser
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.client.request(method, &url);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let bytes = request.send().await.unwrap().bytes().await.unwrap();
        let answer: Value = serde_json::from_slice(&bytes).unwrap();
        if answer["value"]["error"].is_string() {
            panic!("WebDriver {path}: {answer}");
        }
        answer["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT].as_str().unwrap().to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Waits up to ten seconds for the page's address to end with `suffix` (a click that
    /// submits a form returns before the navigation it starts) and panics naming `why` and
    /// the address it saw instead.
    async fn wait_for_url(&self, suffix: &str, why: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.url().await;
            if url.ends_with(suffix) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{why}: the browser is at {url}, not at …{suffix}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a screenshot of the page in `target/test-artifacts/`.
    async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let data = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    /// Stops chromedriver and every Chromium process it started (its process group), even
    /// when the test failed half-way.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--"])
            .arg(format!("-{}", self.driver.id()))
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test]
async fn an_operator_approves_a_pending_registration_in_the_console_and_the_next_evaluate_approves()
{
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "");
    let ticket = open_ticket(&server).await;
    let browser = Browser::start().await;
    let console = format!("{}/console", server.url());

    browser.go(&console).await;
    browser
        .wait_for_url(
            "/console/sign-in",
            "a caller without a session sees the sign-in page",
        )
        .await;
    browser.type_into("#token", EVALUATE_TOKEN).await;
    browser.click("#sign-in").await;
    let refused = browser.text("#problem").await;
    assert!(
        refused.contains("lacks the `operator` role"),
        "an evaluate-only token cannot sign in: {refused}\n{}",
        server.log()
    );

    browser.type_into("#token", OPERATOR_TOKEN).await;
    browser.click("#sign-in").await;
    browser
        .wait_for_url(
            "/console/pending",
            "an operator signs in to the pending list",
        )
        .await;
    assert_eq!(browser.text("#identity").await, "alice");
    let pending = browser.text("#pending").await;
    assert!(pending.contains("Review me"), "{pending}");
    assert!(pending.contains("evil.example.net"), "{pending}");
    assert!(pending.contains("DCR"), "{pending}");
    let foreign = browser.text(".host.foreign").await;
    assert_eq!(
        foreign, "evil.example.net",
        "the redirect host off the client's domain stands out"
    );
    browser.screenshot("console-pending.png").await;

    browser
        .click(&format!("a[href='/console/tickets/{ticket}']"))
        .await;
    assert_eq!(browser.text("#state").await, "pending");
    assert_eq!(browser.text("#redirect-hosts").await, "evil.example.net");
    let metadata = browser.text("#metadata").await;
    assert!(
        metadata.contains("https://evil.example.net/cb") && metadata.contains("client_uri"),
        "the normalized metadata is shown, readable: {metadata}"
    );
    browser.type_into("#note", "called the vendor").await;
    let shot = browser.screenshot("console-ticket.png").await;
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
    browser.click("#approve").await;
    browser
        .wait_for_url(
            &format!("/console/tickets/{ticket}?resolved=1"),
            "post, redirect, get: a reload does not post again",
        )
        .await;
    assert_eq!(browser.text("#notice").await, "Ticket approved.");
    assert_eq!(browser.text("#state").await, "approved");

    let answer = evaluate(&server, with_ticket(&ticket)).await;
    assert_eq!(
        answer.decision(),
        Decision::Approve,
        "the approved ticket approves the registration: {answer:?}"
    );
    let log = server.log();
    assert!(
        log.contains("step-up resolved in the console") && log.contains("resolver=alice"),
        "the resolver recorded is the signed-in identity:\n{log}"
    );

    browser
        .go(&format!("{console}/decisions?decision=approve"))
        .await;
    let decisions = browser.text("table.decisions").await;
    assert!(
        decisions.contains("approve") && decisions.contains("Review me"),
        "{decisions}"
    );
    browser.click("#sign-out").await;
    browser
        .wait_for_url("/console/sign-in", "signing out leads to the sign-in page")
        .await;
    browser.go(&format!("{console}/pending")).await;
    browser
        .wait_for_url(
            "/console/sign-in",
            "signed out, the console shows nothing but the sign-in page",
        )
        .await;
}

/// Signs in over plain HTTP and returns the session cookie and the page's CSRF token.
async fn sign_in(base: &str, token: &str) -> reqwest::Response {
    let client = http();
    let page = client
        .get(format!("{base}/console/sign-in"))
        .send()
        .await
        .unwrap();
    let cookie = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let body = page.text().await.unwrap();
    let csrf = hidden(&body, "csrf");
    client
        .post(format!("{base}/console/sign-in"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", csrf.as_str()), ("token", token)]))
        .send()
        .await
        .unwrap()
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[tokio::test]
async fn forms_without_the_csrf_token_and_callers_without_the_operator_role_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "");
    let ticket = open_ticket(&server).await;
    let base = server.url();

    let refused = sign_in(&base, EVALUATE_TOKEN).await;
    assert_eq!(
        refused.status(),
        401,
        "an evaluate-only token cannot sign in"
    );
    assert!(
        !refused.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("cg_session="),
        "and gets no session"
    );

    let forged = http()
        .post(format!("{base}/console/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", "guessed"), ("token", OPERATOR_TOKEN)]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        403,
        "a sign-in without the form's token is refused"
    );

    let signed_in = sign_in(&base, OPERATOR_TOKEN).await;
    assert_eq!(signed_in.status(), 303);
    let set_cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set_cookie.starts_with("cg_session=")
            && set_cookie.contains("HttpOnly")
            && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let session = set_cookie.split(';').next().unwrap().to_owned();
    let resolve = format!("{base}/console/tickets/{ticket}/resolve");
    let without_token = http()
        .post(&resolve)
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("action", "approve")]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        without_token.status(),
        403,
        "a form posted without its CSRF token"
    );
    let page = http()
        .get(format!("{base}/console/tickets/{ticket}"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&page, "csrf");
    let cross_site = http()
        .post(&resolve)
        .header("cookie", &session)
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", csrf.as_str()), ("action", "approve")]))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403, "a post from another site");
    let no_session = http()
        .post(&resolve)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", csrf.as_str()), ("action", "approve")]))
        .send()
        .await
        .unwrap();
    assert_eq!(no_session.status(), 403, "a post without the session");
    let answer = evaluate(&server, with_ticket(&ticket)).await;
    assert_eq!(
        answer.decision(),
        Decision::StepUp,
        "none of the refused posts approved the ticket: {answer:?}"
    );
    let unauthenticated = http().get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401, "metrics need a credential");
}

// ---- the command line ----------------------------------------------------------------

fn admin(addr: &str, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clientgate"));
    command
        .arg("admin")
        .args(args)
        .env("CLIENTGATE_ADMIN_ADDR", addr)
        .env_remove("CLIENTGATE_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("CLIENTGATE_ADMIN_TOKEN", token);
    }
    let output = command.output().expect("clientgate admin runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn clientgate_admin_lists_shows_and_approves_and_its_exit_status_says_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "");
    let ticket = open_ticket(&server).await;
    let token = Some(OPERATOR_TOKEN);

    let (code, out, err) = admin(&server.url(), token, &["pending"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("TICKET"), "a table: {out}");
    assert!(
        out.contains(&ticket) && out.contains("evil.example.net"),
        "{out}"
    );

    let (code, out, err) = admin(&server.url(), token, &["--json", "pending"]);
    assert_eq!(code, 0, "{err}");
    let pending: Value = serde_json::from_str(&out).expect("JSON for scripts");
    assert_eq!(pending[0]["ticket_id"], ticket.as_str());
    assert_eq!(pending[0]["redirect_uri_hosts"][0], "evil.example.net");
    assert_eq!(
        pending[0]["client_metadata"]["redirect_uris"][0],
        "https://evil.example.net/cb"
    );

    let (code, out, _) = admin(&server.url(), token, &["show", &ticket]);
    assert_eq!(code, 0);
    assert!(
        out.contains("an approval registers:") && out.contains("\"client_uri\""),
        "{out}"
    );

    let (code, _, err) = admin(&server.url(), token, &["show", "01JUNKNOWNTICKET000000000"]);
    assert_eq!(code, 1, "an unknown ticket: {err}");
    let (code, _, err) = admin(&server.url(), None, &["pending"]);
    assert_eq!(code, 4, "no credentials: {err}");
    assert!(err.contains("Unauthenticated"), "{err}");
    let (code, _, err) = admin(&server.url(), Some(EVALUATE_TOKEN), &["approve", &ticket]);
    assert_eq!(code, 4, "a token without the operator role: {err}");

    let (code, out, err) = admin(
        &server.url(),
        token,
        &["approve", &ticket, "--note", "checked"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("{ticket} approved by alice"));
    let (code, out, err) = admin(&server.url(), token, &["approve", &ticket]);
    assert_eq!(code, 0, "approving again is harmless: {err}");
    assert_eq!(out.trim(), format!("{ticket} approved by alice"));
    let (code, _, err) = admin(&server.url(), token, &["deny", &ticket]);
    assert_eq!(code, 1, "a ticket already approved cannot be denied: {err}");
    assert!(err.contains("already"), "{err}");

    let (code, out, _) = admin(
        &server.url(),
        token,
        &[
            "--json",
            "decisions",
            "--decision",
            "step_up",
            "--since",
            "1h",
        ],
    );
    assert_eq!(code, 0);
    let decisions: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(decisions.as_array().unwrap().len(), 1, "{out}");
    assert_eq!(decisions[0]["step_up_ticket"], ticket.as_str());

    let (code, out, _) = admin(&server.url(), token, &["audit"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("resolve_step_up") && out.contains("alice") && out.contains(&ticket),
        "{out}"
    );
    assert!(
        out.contains("already approved"),
        "the repeated approval is recorded as what it was: {out}"
    );
    let (code, out, _) = admin(&server.url(), token, &["status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("policy version") && out.contains("last reload     ok"),
        "{out}"
    );

    let status = Command::new(env!("CARGO_BIN_EXE_clientgate"))
        .args(["healthcheck", "--server", &server.url()])
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    assert_eq!(String::from_utf8_lossy(&status.stdout).trim(), "ready");
    drop(server);
    let (code, _, err) = admin("http://127.0.0.1:9", token, &["pending"]);
    assert_eq!(code, 3, "an unreachable server: {err}");
    let down = Command::new(env!("CARGO_BIN_EXE_clientgate"))
        .args(["healthcheck", "--server", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(
        down.status.code(),
        Some(1),
        "a server that does not answer is not healthy"
    );
}

// ---- webhooks, metrics, export -------------------------------------------------------

/// One request a receiver got.
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .unwrap_or("")
    }
}

/// A loopback HTTP receiver that answers 500 to the first request and 200 after.
async fn receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (sender, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut served = 0;
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, length) = loop {
                let read = stream.read(&mut chunk).await.unwrap_or(0);
                if read == 0 {
                    break (None, 0);
                }
                buffer.extend_from_slice(&chunk[..read]);
                if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .and_then(|value| value.trim().parse().ok())
                        .unwrap_or(0);
                    break (Some(end + 4), length);
                }
            };
            let Some(head_end) = head_end else { continue };
            while buffer.len() < head_end + length {
                let read = stream.read(&mut chunk).await.unwrap_or(0);
                if read == 0 {
                    break;
                }
                buffer.extend_from_slice(&chunk[..read]);
            }
            let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
            let headers = head
                .lines()
                .skip(1)
                .filter_map(|line| line.split_once(':'))
                .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
                .collect();
            served += 1;
            let status = if served == 1 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = stream
                .write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
            let _ = sender.send(Received {
                headers,
                body: buffer[head_end..].to_vec(),
            });
        }
    });
    (url, received)
}

#[tokio::test]
async fn a_webhook_is_told_of_a_pending_registration_signed_and_retried_after_a_failure() {
    let (url, mut received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = "a-webhook-signing-secret";
    let server = start(
        dir.path(),
        &format!(
            "[notify]\nbackoff_ms = 50\nconsole_url = \"https://clientgate.example/console\"\n\
             [[notify.webhooks]]\nurl = \"{url}\"\nevents = [\"step_up.opened\"]\nsecret = \"{secret}\"\n"
        ),
    );
    let ticket = open_ticket(&server).await;
    let first = next(&mut received).await;
    let retry = next(&mut received).await;
    assert_eq!(
        first.header("clientgate-delivery"),
        retry.header("clientgate-delivery"),
        "the retry is the same delivery"
    );
    assert_eq!(retry.header("clientgate-event"), "step_up.opened");
    let timestamp = retry.header("clientgate-timestamp");
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&retry.body);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let expected = format!(
        "sha256={}",
        hex::encode(aws_lc_rs::hmac::sign(&key, &signed).as_ref())
    );
    assert_eq!(
        retry.header("clientgate-signature"),
        expected,
        "a receiver can verify it"
    );
    let body: Value = serde_json::from_slice(&retry.body).unwrap();
    assert_eq!(body["event"], "step_up.opened");
    assert_eq!(body["data"]["ticket_id"], ticket.as_str());
    assert_eq!(body["data"]["client_name"], "Review me");
    assert_eq!(
        body["data"]["console_url"],
        format!("https://clientgate.example/console/tickets/{ticket}")
    );

    let metrics = scrape(&server).await;
    assert_eq!(
        metric(
            &metrics,
            "clientgate_webhook_deliveries_total{result=\"retried\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &metrics,
            "clientgate_webhook_deliveries_total{result=\"delivered\"}"
        ),
        1
    );
}

async fn next(received: &mut tokio::sync::mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("the webhook is called")
        .unwrap()
}

async fn scrape(server: &Server) -> String {
    let response = http()
        .get(format!("{}/metrics", server.url()))
        .header("authorization", format!("Bearer {OPERATOR_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    response.text().await.unwrap()
}

/// The value of the sample `series` (name and labels, exactly as exposed).
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample `{series}` in:\n{text}"))
        .parse::<f64>()
        .unwrap() as u64
}

#[tokio::test]
async fn metrics_count_a_known_sequence_of_calls_and_every_decision_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("decisions.jsonl");
    let server = start(
        dir.path(),
        &format!(
            "[log]\ndecisions = \"file\"\ndecisions_file = \"{}\"\n",
            export.display()
        ),
    );
    let approved = r#"{"client_name":"Fine","client_uri":"https://ok.example.com","redirect_uris":["https://ok.example.com/cb"],"grant_types":["authorization_code"],"response_types":["code"],"token_endpoint_auth_method":"none","application_type":"web"}"#;
    for _ in 0..2 {
        evaluate(&server, dcr(approved, "203.0.113.20")).await;
    }
    let ticket = open_ticket(&server).await;
    evaluate(&server, dcr("{not json", "203.0.113.21")).await;

    let text = scrape(&server).await;
    let count = |decision: &str| {
        metric(
            &text,
            &format!(
                "clientgate_decisions_total{{decision=\"{decision}\",registration_type=\"dcr\",tenant=\"default\"}}"
            ),
        )
    };
    assert_eq!(count("approve"), 2, "{text}");
    assert_eq!(count("step_up"), 1);
    assert_eq!(count("deny"), 1);
    assert_eq!(
        metric(&text, "clientgate_decision_duration_seconds_count"),
        4
    );
    assert_eq!(metric(&text, "clientgate_step_ups_opened_total"), 1);
    assert_eq!(metric(&text, "clientgate_step_ups_pending"), 1);
    assert_eq!(
        metric(&text, "clientgate_store_decisions_recorded_total"),
        4
    );
    assert!(metric(&text, "clientgate_store_commit_duration_seconds_count") >= 1);
    assert!(text.contains("clientgate_policy_info{version=\""), "{text}");
    assert!(
        !text.contains("203.0.113"),
        "no IP address is a label value"
    );

    let (code, _, err) = admin(&server.url(), Some(OPERATOR_TOKEN), &["deny", &ticket]);
    assert_eq!(code, 0, "{err}");
    let text = scrape(&server).await;
    assert_eq!(
        metric(
            &text,
            "clientgate_step_ups_resolved_total{result=\"denied\"}"
        ),
        1
    );
    assert_eq!(metric(&text, "clientgate_step_ups_pending"), 0);

    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(&export)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lines.len(), 4, "one line per decision: {lines:?}");
    let last: Value = serde_json::from_str(&lines[3]).unwrap();
    assert_eq!(last["type"], "decision");
    assert_eq!(last["decision"], "deny");
    assert_eq!(last["kept"], true);
    assert_eq!(last["ip"], "203.0.113.21");
}

#[tokio::test]
async fn readyz_and_healthz_answer_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "");
    for (path, body) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
        let response = http()
            .get(format!("{}{path}", server.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.text().await.unwrap(), body);
    }
}

/// A signed-in session over plain HTTP: its cookie header value.
async fn session(base: &str) -> String {
    let signed_in = sign_in(base, OPERATOR_TOKEN).await;
    assert_eq!(signed_in.status(), 303);
    signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

async fn page(base: &str, path: &str, cookie: &str) -> String {
    let response = http()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn a_refused_reload_is_shown_with_its_line_and_told_to_a_webhook() {
    let (url, mut received) = receiver().await;
    let policies = starter_copy();
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &format!(
            "[policy]\nwatch = false\n[notify]\nbackoff_ms = 50\n\
             [[notify.webhooks]]\nurl = \"{url}\"\nevents = [\"policy.reload_failed\"]\n\
             secret = \"a-webhook-signing-secret\"\nformat = \"slack\"\n"
        ),
    );
    let server = Server::start(
        policies.path(),
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let base = server.url();
    let cookie = session(&base).await;
    let before = page(&base, "/console/policies", &cookie).await;
    assert!(before.contains("id=\"no-refusal\""), "{before}");

    std::fs::write(
        policies.path().join("50-broken.cedar"),
        "@id(\"broken\")\n@reason(\"r\")\nforbid (principal, action, resource)\nwhen { principal.no_such_attribute };\n",
    )
    .unwrap();
    server.hangup();
    next(&mut received).await; // the receiver answers the first delivery 500
    let told = next(&mut received).await;
    assert_eq!(told.header("clientgate-event"), "policy.reload_failed");
    let body: Value = serde_json::from_slice(&told.body).unwrap();
    let text = body["text"].as_str().expect("a Slack-compatible message");
    assert!(
        text.contains("refused") && text.contains("50-broken.cedar"),
        "{text}"
    );

    let after = page(&base, "/console/policies", &cookie).await;
    assert!(
        after.contains("50-broken.cedar:4"),
        "the file and line: {after}"
    );
    assert!(
        after.contains("<pre>when { principal.no_such_attribute };</pre>"),
        "the offending line itself: {after}"
    );
    let metrics = scrape(&server).await;
    assert_eq!(
        metric(
            &metrics,
            "clientgate_policy_reloads_total{result=\"refused\"}"
        ),
        1
    );
}

#[tokio::test]
async fn the_decisions_page_filters_and_pages_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "");
    let base = server.url();
    let ok = |n: usize| {
        format!(
            r#"{{"client_name":"Client {n}","client_uri":"https://ok{n}.example.com","redirect_uris":["https://ok{n}.example.com/cb"],"grant_types":["authorization_code"],"response_types":["code"],"token_endpoint_auth_method":"none","application_type":"web"}}"#
        )
    };
    for n in 0..52 {
        // One caller each: the starter policies hold back a flood from one address.
        evaluate(&server, dcr(&ok(n), &format!("198.51.100.{}", n + 1))).await;
    }
    evaluate(&server, dcr("{not json", "203.0.113.31")).await;
    let cookie = session(&base).await;

    let first = page(
        &base,
        "/console/decisions?decision=approve&type=dcr",
        &cookie,
    )
    .await;
    assert_eq!(
        first
            .matches("<tr><td><a href=\"/console/decisions/")
            .count(),
        50,
        "a page is 50 rows"
    );
    assert!(
        first.contains("Client 51") && !first.contains("Client 1<"),
        "newest first"
    );
    let marker = "id=\"next-page\" href=\"";
    let start = first.find(marker).expect("a link to older decisions") + marker.len();
    let next = first[start..start + first[start..].find('"').unwrap()].replace("&amp;", "&");
    let second = page(&base, &next, &cookie).await;
    assert_eq!(
        second
            .matches("<tr><td><a href=\"/console/decisions/")
            .count(),
        2
    );
    assert!(
        second.contains("Client 1<") && second.contains("Client 0<"),
        "{second}"
    );

    let denied = page(
        &base,
        "/console/decisions?decision=deny&ip=203.0.113.31",
        &cookie,
    )
    .await;
    assert_eq!(
        denied
            .matches("<tr><td><a href=\"/console/decisions/")
            .count(),
        1
    );
    let id_start = denied.find("/console/decisions/01").unwrap() + "/console/decisions/".len();
    let id = &denied[id_start..id_start + 26];
    let one = page(&base, &format!("/console/decisions/{id}"), &cookie).await;
    assert!(
        one.contains("id=\"decision\">deny") && one.contains("latency"),
        "{one}"
    );
    assert!(
        one.contains("invalid_json") || one.contains("not valid JSON") || one.contains("finding"),
        "its findings: {one}"
    );
    let none = page(&base, "/console/decisions?type=cimd", &cookie).await;
    assert!(none.contains("<p>None.</p>"), "no CIMD decisions were made");
    let bad = page(&base, "/console/decisions?since=yesterday", &cookie).await;
    assert!(
        bad.contains("neither a time (RFC 3339) nor an age"),
        "a bad filter is named: {bad}"
    );
}

#[tokio::test]
async fn without_configured_credentials_the_console_stays_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), &dir.path().join("data"), &[]);
    let base = server.url();
    let page = http()
        .get(format!("{base}/console/sign-in"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("The console needs credentials"), "{page}");
    let refused = sign_in(&base, "anything").await;
    assert_eq!(
        refused.status(),
        403,
        "nobody signs in when nobody can be told apart"
    );
    let pending = http()
        .get(format!("{base}/console/pending"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        pending.status(),
        303,
        "and every page sends back to the sign-in page"
    );
}

#[tokio::test]
async fn guessing_operator_tokens_is_stopped_after_five_failures() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "");
    let base = server.url();
    for guess in 0..5 {
        let refused = sign_in(&base, &format!("guess-{guess}")).await;
        assert_eq!(
            refused.status(),
            401,
            "guess {guess} is checked and refused"
        );
    }
    let held = sign_in(&base, "guess-5").await;
    assert_eq!(
        held.status(),
        429,
        "the sixth guess within a minute is not checked"
    );
    let page = held.text().await.unwrap();
    assert!(
        page.contains("Too many failed sign-ins from this address"),
        "{page}"
    );
    let right = sign_in(&base, OPERATOR_TOKEN).await;
    assert_eq!(
        right.status(),
        429,
        "while held back, even the right token is not checked (a guess that hits is not told)"
    );
    assert!(
        server.log().contains("too many failed sign-ins"),
        "{}",
        server.log()
    );
}
