//! `clientgate admin`: the operator's command line over the admin API (`StepUpService`,
//! `AdminService`), like `cerbosctl`. Human tables by default, `--json` for scripts.
//!
//! The server, token and CA come from flags or the environment (`CLIENTGATE_ADMIN_ADDR`,
//! `CLIENTGATE_ADMIN_TOKEN`, `CLIENTGATE_ADMIN_CA_FILE`). Exit statuses: 0 done; 1 the
//! server refused the request (not found, already resolved, invalid); 2 bad usage; 3 the
//! server cannot be reached or is unavailable; 4 not authenticated or not allowed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tonic::transport::{Channel, Endpoint};

use crate::proto::admin_service_client::AdminServiceClient;
use crate::proto::step_up_service_client::StepUpServiceClient;
use crate::proto::{self, StepUpState};

/// `println!` of what a server said, made `printable`.
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{}", $crate::cli::admin::print::printable(&format!($($arg)*)))
    };
}

mod print;

use print::{
    age, decision_json, decision_name, or_dash, print_json, printable, rfc3339, show, state_name,
    step_up_json, table,
};

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The admin listener: http://host:port, or https://host:port with --ca.
    #[arg(
        long,
        env = "CLIENTGATE_ADMIN_ADDR",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    server: String,
    /// A bearer token with the operator role (admin for reloads).
    #[arg(
        long,
        env = "CLIENTGATE_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// A file holding the token (trailing whitespace ignored).
    #[arg(long, env = "CLIENTGATE_ADMIN_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// The CA (PEM) that signed the server's certificate, for https.
    #[arg(long, env = "CLIENTGATE_ADMIN_CA_FILE", global = true)]
    ca: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Tickets waiting for an operator.
    Pending {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// One ticket: what an approval registers, and why it waits.
    Show { ticket: String },
    /// Approve a pending ticket.
    Approve {
        ticket: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Deny a pending ticket.
    Deny {
        ticket: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// The decision log, newest first.
    Decisions {
        /// approve, deny or step_up.
        #[arg(long)]
        decision: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        /// A CIMD client_id.
        #[arg(long)]
        client: Option<String>,
        #[arg(long)]
        ip: Option<String>,
        /// An age such as 90s, 30m, 1h, 7d.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// The policy set in force and the last refused reload.
    Status,
    /// The admin audit trail: resolutions and reloads, newest first.
    Audit {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

/// Why a command failed, with the exit status it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Failure {
        use tonic::Code;
        let code = match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => 4,
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown => 3,
            _ => 1,
        };
        Failure {
            code,
            message: format!("{:?}: {}", status.code(), status.message()),
        }
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

pub fn admin(args: AdminArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("clientgate admin: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("clientgate admin: {}", printable(&failure.message));
            ExitCode::from(failure.code)
        }
    }
}

async fn run(args: AdminArgs) -> Result<(), Failure> {
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => Some(token.trim().to_owned()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|error| usage(format!("cannot read {}: {error}", path.display())))?
                .trim_end()
                .to_owned(),
        ),
        (None, None) => None,
    };
    let channel = connect(&args.server, args.ca.as_deref()).await?;
    let authorize = move |mut request: tonic::Request<()>| {
        if let Some(token) = &token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| tonic::Status::invalid_argument("the token is not valid metadata"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    };
    let mut step_ups = StepUpServiceClient::with_interceptor(channel.clone(), authorize.clone());
    let mut admin = AdminServiceClient::with_interceptor(channel, authorize);
    let json = args.json;
    match args.command {
        AdminCommand::Pending { tenant } => {
            let page = step_ups
                .list_step_ups(proto::ListStepUpsRequest {
                    tenant: tenant.unwrap_or_default(),
                    state: StepUpState::Pending as i32,
                    page_size: 1000,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            if json {
                print_json(&Value::Array(
                    page.step_ups.iter().map(step_up_json).collect(),
                ));
            } else if page.step_ups.is_empty() {
                println!("nothing is waiting for approval");
            } else {
                let rows = page
                    .step_ups
                    .iter()
                    .map(|s| {
                        vec![
                            s.ticket_id.clone(),
                            s.tenant.clone(),
                            or_dash(&s.client_name),
                            if s.client_id.is_empty() {
                                "DCR"
                            } else {
                                "CIMD"
                            }
                            .to_owned(),
                            or_dash(&s.client_id_host),
                            s.redirect_uri_hosts.join(","),
                            s.created_at.as_ref().map(age).unwrap_or_default(),
                            s.reasons
                                .first()
                                .map(|r| r.message.clone())
                                .unwrap_or_default(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "TICKET",
                        "TENANT",
                        "CLIENT",
                        "HOW",
                        "CLIENT_ID HOST",
                        "REDIRECT HOSTS",
                        "AGE",
                        "WHY",
                    ],
                    rows,
                );
            }
        }
        AdminCommand::Show { ticket } => {
            let step_up = step_ups
                .get_step_up(proto::GetStepUpRequest { ticket_id: ticket })
                .await?
                .into_inner();
            if json {
                print_json(&step_up_json(&step_up));
            } else {
                show(&step_up);
            }
        }
        AdminCommand::Approve { ticket, note } | AdminCommand::Deny { ticket, note }
            if ticket.is_empty() =>
        {
            let _ = note;
            return Err(usage("name the ticket"));
        }
        command @ (AdminCommand::Approve { .. } | AdminCommand::Deny { .. }) => {
            let (ticket, note, approve) = match command {
                AdminCommand::Approve { ticket, note } => (ticket, note, true),
                AdminCommand::Deny { ticket, note } => (ticket, note, false),
                _ => unreachable!("matched above"),
            };
            let step_up = step_ups
                .resolve_step_up(proto::ResolveStepUpRequest {
                    ticket_id: ticket,
                    approve,
                    resolver: String::new(),
                    note,
                })
                .await?
                .into_inner();
            if json {
                print_json(&step_up_json(&step_up));
            } else {
                say!(
                    "{} {} by {}",
                    step_up.ticket_id,
                    state_name(step_up.state),
                    step_up.resolver
                );
            }
        }
        AdminCommand::Decisions {
            decision,
            tenant,
            client,
            ip,
            since,
            limit,
        } => {
            let decision = match decision.as_deref() {
                None => proto::Decision::Unspecified,
                Some("approve") => proto::Decision::Approve,
                Some("deny") => proto::Decision::Deny,
                Some("step_up") => proto::Decision::StepUp,
                Some(other) => {
                    return Err(usage(format!(
                        "--decision `{other}`: approve, deny or step_up"
                    )));
                }
            };
            let since = match since {
                None => None,
                Some(text) => {
                    let ago = crate::vocab::parse_age(&text).ok_or_else(|| {
                        usage(format!("--since `{text}`: an age such as 1h or 7d"))
                    })?;
                    let at = SystemTime::now()
                        .checked_sub(ago)
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    Some(prost_types::Timestamp::from(at))
                }
            };
            let page = admin
                .list_decisions(proto::ListDecisionsRequest {
                    tenant: tenant.unwrap_or_default(),
                    client_id: client.unwrap_or_default(),
                    ip: ip.unwrap_or_default(),
                    decision: decision as i32,
                    since,
                    until: None,
                    page_size: limit.clamp(1, 1000),
                    page_token: String::new(),
                    fingerprint: String::new(),
                })
                .await?
                .into_inner();
            if json {
                print_json(&Value::Array(
                    page.decisions.iter().map(decision_json).collect(),
                ));
            } else {
                let rows = page
                    .decisions
                    .iter()
                    .map(|d| {
                        vec![
                            d.decided_at.as_ref().map(rfc3339).unwrap_or_default(),
                            d.decision_id.clone(),
                            decision_name(d.decision).to_owned(),
                            d.tenant.clone(),
                            d.registration_type.clone(),
                            or_dash(if d.client_name.is_empty() {
                                &d.client_id
                            } else {
                                &d.client_name
                            }),
                            or_dash(&d.ip),
                            d.reasons
                                .first()
                                .map(|r| r.policy_id.clone())
                                .unwrap_or_default(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "WHEN",
                        "DECISION ID",
                        "DECISION",
                        "TENANT",
                        "TYPE",
                        "CLIENT",
                        "IP",
                        "POLICY",
                    ],
                    rows,
                );
            }
        }
        AdminCommand::Status => {
            let status = admin
                .get_policy_status(proto::GetPolicyStatusRequest {})
                .await?
                .into_inner();
            if json {
                print_json(&json!({
                    "version": status.version,
                    "policy_count": status.policy_count,
                    "loaded_at": status.loaded_at.as_ref().map(rfc3339),
                    "profile": status.profile,
                    "last_error": (!status.last_error.is_empty()).then_some(&status.last_error),
                    "last_error_at": status.last_error_at.as_ref().map(rfc3339),
                    "shadow_version": (!status.shadow_version.is_empty()).then_some(&status.shadow_version),
                }));
            } else {
                say!("policy version  {}", status.version);
                say!("policies        {}", status.policy_count);
                say!(
                    "loaded          {}",
                    status.loaded_at.as_ref().map(rfc3339).unwrap_or_default()
                );
                say!("profile         {}", status.profile);
                if !status.shadow_version.is_empty() {
                    say!("shadow          {}", status.shadow_version);
                }
                if status.last_error.is_empty() {
                    say!("last reload     ok");
                } else {
                    say!(
                        "last refused    {}\n{}",
                        status
                            .last_error_at
                            .as_ref()
                            .map(rfc3339)
                            .unwrap_or_default(),
                        status.last_error
                    );
                }
            }
        }
        AdminCommand::Audit { limit } => {
            let page = admin
                .list_admin_actions(proto::ListAdminActionsRequest {
                    page_size: limit.clamp(1, 1000),
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            if json {
                print_json(&Value::Array(
                    page.actions
                        .iter()
                        .map(|a| {
                            json!({
                                "action_id": a.action_id, "at": a.at.as_ref().map(rfc3339),
                                "actor": a.actor, "action": a.action, "target": a.target,
                                "outcome": a.outcome, "peer": a.peer,
                            })
                        })
                        .collect(),
                ));
            } else {
                let rows = page
                    .actions
                    .iter()
                    .map(|a| {
                        vec![
                            a.at.as_ref().map(rfc3339).unwrap_or_default(),
                            a.actor.clone(),
                            a.action.clone(),
                            a.target.clone(),
                            a.outcome.clone(),
                            or_dash(&a.peer),
                        ]
                    })
                    .collect();
                table(
                    &["WHEN", "ACTOR", "ACTION", "TARGET", "OUTCOME", "PEER"],
                    rows,
                );
            }
        }
    }
    Ok(())
}

/// A channel to `server`: plain for `http://`, TLS trusting `ca` for `https://`.
async fn connect(server: &str, ca: Option<&std::path::Path>) -> Result<Channel, Failure> {
    let unreachable = |error: tonic::transport::Error| Failure {
        code: 3,
        message: format!("cannot reach {server}: {error}"),
    };
    let uri: http::Uri = server.parse().map_err(|_| {
        usage(format!(
            "--server `{server}` is not a URL such as http://127.0.0.1:50051"
        ))
    })?;
    match uri.scheme_str() {
        Some("http") => Endpoint::from_shared(server.to_owned())
            .map_err(|error| usage(error.to_string()))?
            .connect()
            .await
            .map_err(unreachable),
        Some("https") => {
            let ca = ca.ok_or_else(|| {
                usage("an https server needs --ca (the CA that signed its certificate)")
            })?;
            let pem = std::fs::read(ca)
                .map_err(|error| usage(format!("cannot read {}: {error}", ca.display())))?;
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let certificate =
                    certificate.map_err(|error| usage(format!("{}: {error}", ca.display())))?;
                roots
                    .add(certificate)
                    .map_err(|error| usage(format!("{}: {error}", ca.display())))?;
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|error| usage(error.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"h2".to_vec()];
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let host = uri
                .host()
                .unwrap_or("localhost")
                .trim_matches(['[', ']'])
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| usage(format!("`{host}` is not a server name")))?;
            Endpoint::from_shared(format!("http://{host}:{port}"))
                .map_err(|error| usage(error.to_string()))?
                .connect_with_connector(tower::service_fn(move |_| {
                    let (connector, host, name) = (connector.clone(), host.clone(), name.clone());
                    async move {
                        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                        let tls = connector.connect(name, tcp).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
                    }
                }))
                .await
                .map_err(unreachable)
        }
        _ => Err(usage(format!(
            "--server `{server}`: use http:// or https://"
        ))),
    }
}
