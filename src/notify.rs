//! Webhooks (`[[notify.webhooks]]`): an operator is told that a registration waits for
//! approval, that one was resolved, or that a policy reload was refused. Each webhook has
//! its own bounded queue and delivery task, so a slow receiver delays nobody else and never
//! an answer; a full queue drops the notification (counted). A failed delivery is retried
//! with exponential backoff up to `notify.max_attempts`; failures are counted and logged,
//! never fatal.
//!
//! Every request is signed so a receiver can check it came from clientgate:
//! `clientgate-signature: sha256=<hex>` is the HMAC-SHA256, keyed by the webhook's
//! secret, of `<clientgate-timestamp>.<body>` (the timestamp header, a dot, the raw body);
//! `clientgate-event` names the event and `clientgate-delivery` is a unique id, the same on
//! every attempt of one delivery.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::events::{Event, Sink};
use crate::metrics::Metrics;
use crate::vocab::millis;

/// The body a webhook receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `{"event", "id", "at", "data"}`.
    Json,
    /// A Slack-compatible `{"text": …}` message (incoming webhooks, and the chat tools
    /// that accept their format).
    Slack,
}

/// One configured webhook.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: url::Url,
    /// Event names from [`crate::events::WEBHOOK_EVENTS`].
    pub events: Vec<String>,
    pub secret: Vec<u8>,
    pub format: Format,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &shown(&self.url))
            .field("events", &self.events)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// How deliveries are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles with each one (at most a minute).
    pub backoff: Duration,
    pub timeout: Duration,
    pub queue: usize,
}

impl Default for Delivery {
    fn default() -> Delivery {
        Delivery {
            max_attempts: 6,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            queue: 1000,
        }
    }
}

/// A notification ready to send.
#[derive(Clone, Debug)]
struct Message {
    event: &'static str,
    id: String,
    body: Vec<u8>,
}

/// The sink that queues notifications for the webhooks.
pub struct Notifier {
    hooks: Vec<(Webhook, mpsc::Sender<Message>)>,
    metrics: Arc<Metrics>,
    /// A link to the console for the events that name a ticket.
    console_url: Option<String>,
}

impl Notifier {
    /// Starts one delivery task per webhook on the current runtime.
    pub fn start(
        webhooks: Vec<Webhook>,
        delivery: Delivery,
        console_url: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Result<Notifier, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(delivery.timeout)
            .user_agent(concat!("clientgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let hooks = webhooks
            .into_iter()
            .map(|hook| {
                let (sender, receiver) = mpsc::channel(delivery.queue.max(1));
                tokio::spawn(deliver(
                    client.clone(),
                    hook.clone(),
                    delivery,
                    receiver,
                    metrics.clone(),
                ));
                (hook, sender)
            })
            .collect();
        Ok(Notifier {
            hooks,
            metrics,
            console_url,
        })
    }

    /// Notifications waiting in the queues.
    pub fn queued(&self) -> u64 {
        self.hooks
            .iter()
            .map(|(_, sender)| (sender.max_capacity() - sender.capacity()) as u64)
            .sum()
    }
}

impl Sink for Notifier {
    fn publish(&self, event: &Event) {
        let name = event.name();
        let mut bodies: [Option<Vec<u8>>; 2] = [None, None];
        for (hook, sender) in &self.hooks {
            if !hook.events.iter().any(|wanted| wanted == name) {
                continue;
            }
            let slot = &mut bodies[hook.format as usize];
            let body = match slot {
                Some(body) => body.clone(),
                None => {
                    let Some(data) = data_of(event, self.console_url.as_deref()) else {
                        return;
                    };
                    let body = body_of(name, &data, hook.format);
                    *slot = Some(body.clone());
                    body
                }
            };
            let message = Message {
                event: name,
                id: ulid::Ulid::new().to_string(),
                body,
            };
            if sender.try_send(message).is_err() {
                self.metrics.webhooks.add("dropped", 1);
                warn!(webhook = %shown(&hook.url), event = name, "webhook queue full: notification dropped");
            }
        }
    }
}

/// What an event says to a receiver; `None` for the events webhooks do not carry.
fn data_of(event: &Event, console_url: Option<&str>) -> Option<Value> {
    let link = |ticket_id: &str| {
        console_url.map(|base| format!("{}/tickets/{ticket_id}", base.trim_end_matches('/')))
    };
    match event {
        Event::StepUpOpened(ticket) | Event::StepUpResolved(ticket) => Some(json!({
            "ticket_id": ticket.ticket_id,
            "tenant": ticket.tenant,
            "state": ticket.state.as_str(),
            "client_id": ticket.client_id,
            "client_name": ticket.client_name,
            "challenges": ticket.challenges,
            "decision_id": ticket.decision_id,
            "reasons": ticket.reasons.iter().map(|r| json!({"policy_id": r.policy_id, "message": r.message})).collect::<Vec<_>>(),
            "findings": ticket.findings.iter().map(|f| f.code.as_str()).collect::<Vec<_>>(),
            "created_at_ms": ticket.created_at_ms,
            "expires_at_ms": ticket.expires_at_ms,
            "resolver": (!ticket.resolver.is_empty()).then_some(&ticket.resolver),
            "note": (!ticket.note.is_empty()).then_some(&ticket.note),
            "console_url": link(&ticket.ticket_id),
        })),
        Event::PolicyReloadFailed {
            dir,
            version_in_force,
            errors,
        } => Some(json!({
            "dir": dir,
            "version_in_force": version_in_force,
            "errors": errors,
        })),
        Event::Decided { .. } | Event::PolicyReloaded { .. } => None,
    }
}

fn body_of(name: &str, data: &Value, format: Format) -> Vec<u8> {
    let now = SystemTime::now();
    match format {
        Format::Json => json!({
            "event": name,
            "at_ms": millis(now),
            "data": data,
        })
        .to_string()
        .into_bytes(),
        Format::Slack => json!({ "text": slack_text(name, data) })
            .to_string()
            .into_bytes(),
    }
}

/// `text` as plain text in a Slack message: `&`, `<`, `>` escaped (so a registration's
/// `client_name` cannot make a link or a `<!channel>` mention), backticks and control or
/// bidirectional characters dropped (no fake code spans or lines).
fn slack_plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '`' => out.push('\''),
            c if c.is_control() || crate::registration::names::is_bidi_control(c) => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// One line a person reads in a chat channel. Every value is plain text (`slack_plain`);
/// the only link is the operator-configured console URL.
fn slack_text(name: &str, data: &Value) -> String {
    let text = |key: &str| slack_plain(data[key].as_str().unwrap_or(""));
    let client = match (data["client_name"].as_str(), data["client_id"].as_str()) {
        (Some(name), Some(id)) => format!("{} ({})", slack_plain(name), slack_plain(id)),
        (Some(name), None) => slack_plain(name),
        (None, Some(id)) => slack_plain(id),
        (None, None) => "a client".to_owned(),
    };
    let link = data["console_url"]
        .as_str()
        .map(|url| format!(" <{url}|Review>"))
        .unwrap_or_default();
    match name {
        "step_up.opened" => format!(
            ":hourglass: {client} waits for approval in tenant `{}` (ticket `{}`): {}{link}",
            text("tenant"),
            text("ticket_id"),
            data["reasons"]
                .as_array()
                .map(|reasons| reasons
                    .iter()
                    .filter_map(|r| r["message"].as_str())
                    .map(slack_plain)
                    .collect::<Vec<_>>()
                    .join("; "))
                .unwrap_or_default()
        ),
        "step_up.resolved" => format!(
            "{client}: ticket `{}` {} by {}{link}",
            text("ticket_id"),
            text("state"),
            text("resolver")
        ),
        _ => format!(
            ":warning: policies in `{}` refused; version {} stays in force: {}",
            text("dir"),
            text("version_in_force"),
            data["errors"]
                .as_array()
                .map(|errors| errors
                    .iter()
                    .filter_map(Value::as_str)
                    .map(slack_plain)
                    .collect::<Vec<_>>()
                    .join("; "))
                .unwrap_or_default()
        ),
    }
}

/// A webhook URL as the log shows it: scheme, host and port, never the path or query
/// (an incoming-webhook URL is a bearer secret).
pub fn shown(url: &url::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port()
            .map(|port| format!(":{port}"))
            .unwrap_or_default()
    )
}

/// `sha256=<hex>` of HMAC-SHA256(`secret`, `<timestamp>.<body>`).
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let mut context = aws_lc_rs::hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("sha256={}", hex::encode(context.sign().as_ref()))
}

/// Delivers one webhook's queue, in order, each message with its retries.
async fn deliver(
    client: reqwest::Client,
    hook: Webhook,
    delivery: Delivery,
    mut queue: mpsc::Receiver<Message>,
    metrics: Arc<Metrics>,
) {
    while let Some(message) = queue.recv().await {
        let mut wait = delivery.backoff;
        for attempt in 1..=delivery.max_attempts.max(1) {
            match send(&client, &hook, &message).await {
                Ok(()) => {
                    metrics.webhooks.add("delivered", 1);
                    debug!(webhook = %shown(&hook.url), event = message.event, attempt, "webhook delivered");
                    break;
                }
                Err(error) if attempt == delivery.max_attempts.max(1) => {
                    metrics.webhooks.add("failed", 1);
                    warn!(webhook = %shown(&hook.url), event = message.event, attempt, %error, "webhook not delivered; giving up");
                }
                Err(error) => {
                    metrics.webhooks.add("retried", 1);
                    warn!(webhook = %shown(&hook.url), event = message.event, attempt, %error, retry_in_ms = wait.as_millis() as u64, "webhook delivery failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(60));
                }
            }
        }
    }
}

async fn send(client: &reqwest::Client, hook: &Webhook, message: &Message) -> Result<(), String> {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let response = client
        .post(hook.url.clone())
        .header("content-type", "application/json")
        .header("clientgate-event", message.event)
        .header("clientgate-delivery", &message.id)
        .header("clientgate-timestamp", timestamp.to_string())
        .header(
            "clientgate-signature",
            signature(&hook.secret, timestamp, &message.body),
        )
        .body(message.body.clone())
        .send()
        .await
        // The URL may be a secret (a chat tool's incoming webhook): never in the log.
        .map_err(|error| error.without_url().to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {}", response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        // Python: hmac.new(b"Jefe", b"1.x", hashlib.sha256).hexdigest()
        let signed = signature(b"Jefe", 1, b"x");
        assert_eq!(
            signed,
            "sha256=2f7ccbd0f043456ad29514b2d24a8aa345ec6673a5db1b44e91c8ac99d1841e3"
        );
        assert_ne!(
            signed,
            signature(b"Jefe", 2, b"x"),
            "the timestamp is signed"
        );
        assert_ne!(signed, signature(b"other", 1, b"x"), "the key matters");
    }

    #[test]
    fn a_registration_cannot_put_links_mentions_or_lines_in_a_slack_message() {
        let data = json!({
            "ticket_id": "T1", "tenant": "acme",
            "client_name": "Acme <https://evil.example/sign-in|Review> <!channel>\n`fake`\u{202e}",
            "reasons": [],
        });
        let text = slack_text("step_up.opened", &data);
        assert!(
            !text.contains('<') && !text.contains('\n') && !text.contains('\u{202e}'),
            "{text}"
        );
        assert!(
            text.contains("Acme &lt;https://evil.example/sign-in|Review&gt; &lt;!channel&gt;"),
            "{text}"
        );
        assert!(!text.contains("`fake`"), "{text}");
    }

    #[test]
    fn the_log_shows_a_webhook_without_its_path() {
        let url =
            url::Url::parse("https://hooks.slack.example:8443/services/T000/B000/SECRET").unwrap();
        assert_eq!(shown(&url), "https://hooks.slack.example:8443");
    }

    #[test]
    fn a_slack_message_names_the_client_the_tenant_and_the_link() {
        let data = json!({
            "ticket_id": "T1", "tenant": "acme", "client_name": "Evil", "client_id": null,
            "reasons": [{"message": "redirects elsewhere"}],
            "console_url": "https://cg/console/tickets/T1",
        });
        let text = slack_text("step_up.opened", &data);
        assert!(
            text.contains("Evil waits for approval in tenant `acme` (ticket `T1`)"),
            "{text}"
        );
        assert!(text.contains("redirects elsewhere"), "{text}");
        assert!(
            text.contains("<https://cg/console/tickets/T1|Review>"),
            "{text}"
        );
    }
}
