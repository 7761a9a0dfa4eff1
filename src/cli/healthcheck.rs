//! `clientgate healthcheck`: asks `/readyz` on the admin listener and exits 0 when the
//! server is ready (policies in force, store writable), 1 otherwise — for container probes
//! that have no curl.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The admin listener: http://host:port, or https://host:port with --ca.
    #[arg(
        long,
        env = "CLIENTGATE_ADMIN_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// The CA (PEM) that signed the server's certificate, for https.
    #[arg(long, env = "CLIENTGATE_ADMIN_CA_FILE")]
    ca: Option<PathBuf>,
    /// `/healthz` (alive) instead of `/readyz` (ready to decide).
    #[arg(long)]
    live: bool,
}

pub fn healthcheck(args: HealthcheckArgs) -> ExitCode {
    match check(&args) {
        Ok(body) => {
            println!("{}", body.trim_end());
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("clientgate healthcheck: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: &HealthcheckArgs) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5));
    if let Some(ca) = &args.ca {
        let pem =
            std::fs::read(ca).map_err(|error| format!("cannot read {}: {error}", ca.display()))?;
        let certificate = reqwest::Certificate::from_pem(&pem)
            .map_err(|error| format!("{}: {error}", ca.display()))?;
        builder = builder.add_root_certificate(certificate);
    }
    let client = builder.build().map_err(|error| error.to_string())?;
    let url = format!(
        "{}/{}",
        args.server.trim_end_matches('/'),
        if args.live { "healthz" } else { "readyz" }
    );
    runtime.block_on(async {
        let response = client
            .get(&url)
            .send()
            .await
            .map_err(|error| format!("{url}: {error}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{url}: {status}: {}", body.trim_end()))
        }
    })
}
