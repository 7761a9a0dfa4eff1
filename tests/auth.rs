//! Callers authenticated and authorized, over gRPC against the real binary: every RPC with
//! no credentials and with each role, the resolver recorded as who authenticated, the admin
//! audit trail, and the refusal to serve beyond loopback without protection.

mod common;

use std::path::Path;

use clientgate::proto::admin_service_client::AdminServiceClient;
use clientgate::proto::registration_service_client::RegistrationServiceClient;
use clientgate::proto::step_up_service_client::StepUpServiceClient;
use clientgate::proto::{
    Decision, GetDecisionRequest, GetPolicyStatusRequest, GetStepUpRequest,
    ListAdminActionsRequest, ListDecisionsRequest, ListShadowDisagreementsRequest,
    ListStepUpsRequest, ReloadPoliciesRequest, ResolveStepUpRequest,
};
use common::*;
use sha2::{Digest, Sha256};
use tonic::Code;
use tonic::transport::Channel;

const AS_TOKEN: &str = "as-3f9a0c1e7b2d";
const OPS_TOKEN: &str = "ops-5b8e2a9d4c1f";
const ROOT_TOKEN: &str = "root-7c4d1e8a2b6f";

/// A configuration with one token per role: the AS's and the operator's by their SHA-256,
/// the administrator's in a token file.
fn auth_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let hex = |token: &str| hex::encode(Sha256::digest(token.as_bytes()));
    let root_file = dir.join("root.token");
    std::fs::write(&root_file, format!("{ROOT_TOKEN}\n")).unwrap();
    let config = dir.join("clientgate.toml");
    std::fs::write(
        &config,
        format!(
            "[[auth.tokens]]\nname = \"as\"\nsha256 = \"{}\"\nroles = [\"evaluate\"]\n\n\
             [[auth.tokens]]\nname = \"ops@example.com\"\nsha256 = \"{}\"\nroles = [\"operator\"]\n\n\
             [[auth.tokens]]\nname = \"root\"\ntoken_file = \"{}\"\nroles = [\"admin\"]\n\n{extra}",
            hex(AS_TOKEN),
            hex(OPS_TOKEN),
            root_file.display()
        ),
    )
    .unwrap();
    config
}

fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

struct Clients {
    registration: RegistrationServiceClient<Channel>,
    admin: AdminServiceClient<Channel>,
    step_ups: StepUpServiceClient<Channel>,
}

impl Clients {
    async fn of(server: &Server) -> Clients {
        let channel = server.channel().await;
        Clients {
            registration: RegistrationServiceClient::new(channel.clone()),
            admin: AdminServiceClient::new(channel.clone()),
            step_ups: StepUpServiceClient::new(channel),
        }
    }

    /// Calls `rpc` with `token`; the status code (`Ok` when it answered).
    async fn call(&mut self, rpc: &str, token: Option<&str>) -> Code {
        let code = |result: Result<(), tonic::Status>| result.err().map_or(Code::Ok, |s| s.code());
        match rpc {
            "Evaluate" => code(
                self.registration
                    .evaluate(with_token(dcr(WEB_CLIENT, "203.0.113.7"), token))
                    .await
                    .map(drop),
            ),
            "Evaluate(explain)" => {
                let mut request = dcr(WEB_CLIENT, "203.0.113.7");
                request.explain = true;
                code(
                    self.registration
                        .evaluate(with_token(request, token))
                        .await
                        .map(drop),
                )
            }
            "ListDecisions" => code(
                self.admin
                    .list_decisions(with_token(ListDecisionsRequest::default(), token))
                    .await
                    .map(drop),
            ),
            "GetDecision" => code(
                self.admin
                    .get_decision(with_token(
                        GetDecisionRequest {
                            decision_id: "01JDQ8ZK2M4X7B9C3D5E6F7G8H".to_owned(),
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
            "GetPolicyStatus" => code(
                self.admin
                    .get_policy_status(with_token(GetPolicyStatusRequest::default(), token))
                    .await
                    .map(drop),
            ),
            "ReloadPolicies" => code(
                self.admin
                    .reload_policies(with_token(ReloadPoliciesRequest::default(), token))
                    .await
                    .map(drop),
            ),
            "ListShadowDisagreements" => code(
                self.admin
                    .list_shadow_disagreements(with_token(
                        ListShadowDisagreementsRequest::default(),
                        token,
                    ))
                    .await
                    .map(drop),
            ),
            "ListAdminActions" => code(
                self.admin
                    .list_admin_actions(with_token(ListAdminActionsRequest::default(), token))
                    .await
                    .map(drop),
            ),
            "GetStepUp" => code(
                self.step_ups
                    .get_step_up(with_token(
                        GetStepUpRequest {
                            ticket_id: "01JDQ8ZK2M4X7B9C3D5E6F7G8J".to_owned(),
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
            "ListStepUps" => code(
                self.step_ups
                    .list_step_ups(with_token(ListStepUpsRequest::default(), token))
                    .await
                    .map(drop),
            ),
            "ResolveStepUp" => code(
                self.step_ups
                    .resolve_step_up(with_token(
                        ResolveStepUpRequest {
                            ticket_id: "01JDQ8ZK2M4X7B9C3D5E6F7G8J".to_owned(),
                            approve: true,
                            resolver: String::new(),
                            note: String::new(),
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
            other => panic!("no RPC `{other}` in this table"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_answers_only_the_roles_it_needs() {
    use Code::{NotFound, Ok as Answered, PermissionDenied as Denied, Unauthenticated as NoCreds};
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = auth_config(dir.path(), "");
    let server = Server::start(
        &starter_policies(),
        data.path(),
        &["--config", config.to_str().unwrap()],
    );
    let mut clients = Clients::of(&server).await;
    // RPC, then the code with no credentials, with `evaluate`, `operator`, `admin`. An
    // allowed call on an id that does not exist answers NOT_FOUND.
    let table: &[(&str, [Code; 4])] = &[
        ("Evaluate", [NoCreds, Answered, Denied, Denied]),
        ("Evaluate(explain)", [NoCreds, Denied, Denied, Denied]),
        ("ListDecisions", [NoCreds, Denied, Answered, Answered]),
        ("GetDecision", [NoCreds, Denied, NotFound, NotFound]),
        ("GetPolicyStatus", [NoCreds, Denied, Answered, Answered]),
        (
            "ListShadowDisagreements",
            [NoCreds, Denied, Answered, Answered],
        ),
        ("ListAdminActions", [NoCreds, Denied, Answered, Answered]),
        ("GetStepUp", [NoCreds, Denied, NotFound, NotFound]),
        ("ListStepUps", [NoCreds, Denied, Answered, Answered]),
        ("ResolveStepUp", [NoCreds, Denied, NotFound, NotFound]),
        ("ReloadPolicies", [NoCreds, Denied, Denied, Answered]),
    ];
    let tokens = [None, Some(AS_TOKEN), Some(OPS_TOKEN), Some(ROOT_TOKEN)];
    let mut wrong = Vec::new();
    for (rpc, expected) in table {
        for (token, expected) in tokens.iter().zip(expected) {
            let got = clients.call(rpc, *token).await;
            if got != *expected {
                wrong.push(format!(
                    "{rpc} with {token:?}: {got:?}, expected {expected:?}"
                ));
            }
        }
        let guessed = clients.call(rpc, Some("guessed")).await;
        if guessed != NoCreds {
            wrong.push(format!("{rpc} with an unknown token: {guessed:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_name_what_is_missing_and_never_echo_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = auth_config(dir.path(), "");
    let server = Server::start(
        &starter_policies(),
        data.path(),
        &["--config", config.to_str().unwrap()],
    );
    let mut admin = server.admin().await;
    let none = admin
        .reload_policies(ReloadPoliciesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated);
    assert!(
        none.message().contains("authorization: Bearer"),
        "{}",
        none.message()
    );
    assert!(none.message().contains("`admin`"), "{}", none.message());
    let operator = admin
        .reload_policies(with_token(
            ReloadPoliciesRequest::default(),
            Some(OPS_TOKEN),
        ))
        .await
        .unwrap_err();
    assert_eq!(operator.code(), Code::PermissionDenied);
    assert_eq!(
        operator.message(),
        "`ops@example.com` lacks the `admin` role this call needs (it has: operator)"
    );
    let unknown = admin
        .list_decisions(with_token(
            ListDecisionsRequest::default(),
            Some("not-a-token-1234"),
        ))
        .await
        .unwrap_err();
    assert!(
        !unknown.message().contains("not-a-token-1234"),
        "{}",
        unknown.message()
    );
    assert!(
        !server.log().contains("not-a-token-1234"),
        "the log never holds a token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_resolver_is_who_authenticated_and_the_audit_trail_lists_resolve_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = auth_config(dir.path(), "");
    let server = Server::start(
        &starter_policies(),
        data.path(),
        &["--config", config.to_str().unwrap()],
    );
    let mut clients = Clients::of(&server).await;
    let held = clients
        .registration
        .evaluate(with_token(
            dcr(CROSS_DOMAIN_CLIENT, "203.0.113.7"),
            Some(AS_TOKEN),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(held.decision(), Decision::StepUp);
    let ticket_id = held.step_up.unwrap().ticket_id;

    let resolved = clients
        .step_ups
        .resolve_step_up(with_token(
            ResolveStepUpRequest {
                ticket_id: ticket_id.clone(),
                approve: true,
                resolver: "the-ceo@example.com".to_owned(),
                note: "vendor checked".to_owned(),
            },
            Some(OPS_TOKEN),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resolved.resolver, "ops@example.com",
        "the claim is not the resolver"
    );
    assert_eq!(
        resolved.note,
        "(resolver given as `the-ceo@example.com`) vendor checked"
    );

    let reloaded = clients
        .admin
        .reload_policies(with_token(
            ReloadPoliciesRequest::default(),
            Some(ROOT_TOKEN),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(reloaded.loaded);

    let trail = clients
        .admin
        .list_admin_actions(with_token(
            ListAdminActionsRequest::default(),
            Some(OPS_TOKEN),
        ))
        .await
        .unwrap()
        .into_inner();
    let summary: Vec<(&str, &str, &str)> = trail
        .actions
        .iter()
        .map(|action| {
            (
                action.action.as_str(),
                action.actor.as_str(),
                action.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "reload_policies",
                "root",
                format!("loaded {}", reloaded.version).as_str()
            ),
            ("resolve_step_up", "ops@example.com", "approved"),
        ],
        "newest first"
    );
    assert_eq!(trail.actions[1].target, ticket_id);
    assert!(
        trail
            .actions
            .iter()
            .all(|action| action.peer.starts_with("127.0.0.1:")),
        "{:?}",
        trail.actions
    );
    assert!(trail.actions.iter().all(|action| action.at.is_some()));
}

#[tokio::test(flavor = "multi_thread")]
async fn health_needs_no_credentials_and_reflection_can_require_them() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = auth_config(dir.path(), "[auth]\nreflection_requires_auth = true\n");
    let server = Server::start(
        &starter_policies(),
        data.path(),
        &["--config", config.to_str().unwrap()],
    );
    let mut health = HealthClient::new(server.channel().await);
    let serving = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health is served without credentials");
    assert_eq!(serving.into_inner().status, 1);

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, server_reflection_request};
    let list = || ServerReflectionRequest {
        host: String::new(),
        message_request: Some(server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let refused = match reflection
        .server_reflection_info(tokio_stream::iter([list()]))
        .await
    {
        Err(status) => status.code(),
        Ok(response) => {
            let mut stream = response.into_inner();
            match stream.message().await {
                Err(status) => status.code(),
                Ok(_) => Code::Ok,
            }
        }
    };
    assert_eq!(refused, Code::Unauthenticated);
    let mut request = tonic::Request::new(tokio_stream::iter([list()]));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {AS_TOKEN}").parse().unwrap(),
    );
    let mut answers = reflection
        .server_reflection_info(request)
        .await
        .expect("a known caller may reflect")
        .into_inner();
    assert!(answers.message().await.unwrap().is_some());
}

#[test]
fn serving_beyond_loopback_without_protection_is_refused_naming_the_keys() {
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clientgate"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(data.path())
        .arg("--policies")
        .arg(starter_policies())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "will not serve `0.0.0.0:0` beyond loopback without TLS and without authentication"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("`[[auth.tokens]]`"), "{stderr}");
    assert!(
        stderr.contains("`server.allow_insecure = true`"),
        "{stderr}"
    );
}

#[test]
fn a_token_table_with_problems_is_refused_with_the_member_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("clientgate.toml");
    std::fs::write(
        &config,
        "[[auth.tokens]]\nname = \"a\"\nsha256 = \"abc\"\nroles = [\"evaluate\"]\n\n\
         [[auth.tokens]]\nname = \"b\"\ntoken = \"in-the-clear\"\nroles = [\"admin\"]\n\n\
         [[auth.tokens]]\nname = \"c\"\nsha256 = \"{}\"\nroles = [\"superuser\"]\n"
            .replace("{}", &"0".repeat(64)),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clientgate"))
        .args(["check", "--config"])
        .arg(&config)
        .arg("--policies")
        .arg(starter_policies())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`auth.tokens[0].sha256`"), "{stderr}");
    assert!(stderr.contains("`auth.tokens[1].token`"), "{stderr}");
    assert!(stderr.contains("`auth.tokens[2].roles`"), "{stderr}");
    assert!(
        !stderr.contains("in-the-clear"),
        "a token is never echoed: {stderr}"
    );
}

/// Runs `clientgate token new` with `args`.
fn token_new(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_clientgate"))
        .args(["token", "new"])
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_made_by_token_new_is_let_in_with_its_roles_and_its_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("as.token");
    let made = token_new(&[
        "--name",
        "as-prod",
        "--role",
        "evaluate",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let token = std::fs::read_to_string(&out).unwrap().trim_end().to_owned();
    let table = String::from_utf8(made.stdout).unwrap();
    assert!(
        !table.contains(&token),
        "the table never holds the token: {table}"
    );
    assert!(
        !String::from_utf8_lossy(&made.stderr).contains(&token),
        "with --out, the token is only in the file"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only its owner reads the token file");
    }
    let again = token_new(&[
        "--name",
        "other",
        "--role",
        "admin",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "an existing token file is never overwritten"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap().trim_end(), token);

    let config = dir.path().join("clientgate.toml");
    std::fs::write(&config, &table).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &starter_policies(),
        data.path(),
        &["--config", config.to_str().unwrap()],
    );
    let mut clients = Clients::of(&server).await;
    let body = r#"{"redirect_uris":["https://app.example.com/cb"]}"#;
    clients
        .registration
        .evaluate(with_token(dcr(body, ""), Some(&token)))
        .await
        .expect("the made token is let in");
    let denied = clients
        .admin
        .list_decisions(with_token(ListDecisionsRequest::default(), Some(&token)))
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        Code::PermissionDenied,
        "it holds only the role asked for"
    );
}

#[test]
fn token_new_refuses_an_unknown_role_naming_the_roles() {
    let made = token_new(&["--name", "x", "--role", "root"]);
    assert_eq!(made.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&made.stderr);
    assert!(
        stderr.contains("`root` is not a role (evaluate, operator, admin)"),
        "{stderr}"
    );
    assert!(made.stdout.is_empty(), "no table for a refused token");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_can_listen_apart_from_the_decision_api() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &starter_policies(),
        data.path(),
        &["--admin-listen", "127.0.0.1:0"],
    );
    let admin_addr = server
        .log()
        .split_whitespace()
        .find_map(|field| field.strip_prefix("admin_addr="))
        .expect("the listening line names admin_addr=")
        .to_owned();
    assert_ne!(admin_addr, server.addr);
    let admin_channel = Channel::from_shared(format!("http://{admin_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let decision_channel = server.channel().await;

    let mut on_decisions = Clients {
        registration: RegistrationServiceClient::new(decision_channel.clone()),
        admin: AdminServiceClient::new(decision_channel.clone()),
        step_ups: StepUpServiceClient::new(decision_channel.clone()),
    };
    let mut on_admin = Clients {
        registration: RegistrationServiceClient::new(admin_channel.clone()),
        admin: AdminServiceClient::new(admin_channel.clone()),
        step_ups: StepUpServiceClient::new(admin_channel.clone()),
    };
    assert_eq!(on_decisions.call("Evaluate", None).await, Code::Ok);
    assert_eq!(on_admin.call("Evaluate", None).await, Code::Unimplemented);
    for rpc in [
        "ListDecisions",
        "ReloadPolicies",
        "ListStepUps",
        "ListAdminActions",
    ] {
        assert_eq!(
            on_decisions.call(rpc, None).await,
            Code::Unimplemented,
            "{rpc}"
        );
        assert_eq!(on_admin.call(rpc, None).await, Code::Ok, "{rpc}");
    }
    for channel in [decision_channel, admin_channel] {
        let health = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("both listeners answer health checks");
        assert_eq!(health.into_inner().status, 1);
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_unix_socket_listener_serves_with_the_mode_it_was_given() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let socket = dir.path().join("clientgate.sock");
    // A regular file in the way is never removed.
    let in_the_way = dir.path().join("not-a-socket");
    std::fs::write(&in_the_way, b"keep me").unwrap();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_clientgate"))
        .args(["serve", "--listen"])
        .arg(format!("unix:{}", in_the_way.display()))
        .arg("--policies")
        .arg(starter_policies())
        .arg("--data")
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not a socket"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(std::fs::read(&in_the_way).unwrap(), b"keep me");
    // A socket left by an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let listen = format!("unix:{}", socket.display());
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_clientgate"));
    command
        .args(["serve", "--listen", &listen, "--policies"])
        .arg(starter_policies())
        .arg("--data")
        .arg(data.path())
        .env_remove("RUST_LOG")
        .env("CLIENTGATE_SERVER_SOCKET_MODE", "0660");
    let server = match Server::try_start_command(command) {
        Ok(server) => server,
        Err((status, log)) => panic!("clientgate did not start ({status:?}):\n{log}"),
    };
    assert_eq!(server.addr, listen);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "server.socket_mode applies");
    let path = socket.clone();
    let channel = tonic::transport::Endpoint::try_from("http://clientgate.local")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .expect("connects over the Unix socket");
    let mut registration = RegistrationServiceClient::new(channel);
    let answer = registration
        .evaluate(dcr(WEB_CLIENT, "203.0.113.7"))
        .await
        .expect("Evaluate over the Unix socket, with no [auth]: the socket is local")
        .into_inner();
    assert_eq!(answer.decision(), Decision::Approve);
}
