//! RabbitMQ: a vhost per worktree, through the management HTTP API, proved with lapin.

use std::time::Duration;

use hyper::{Method, StatusCode};
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use pwt_core::{Vhost, is_marker, percent_encode, same_owner, with_path};
use serde_json::json;

use crate::error::{BoxError, ProvisionError, Service, msg, redact};
use crate::http::{base64, request};
use crate::{Marked, Outcome, Presence};

/// The broker: its AMQP URL (user, password, host) and management API.
#[derive(Clone, Debug)]
pub struct RabbitMq {
    amqp_url: String,
    management: url::Url,
    user: String,
    auth: String,
}

/// What `pwt doctor` reports.
#[derive(Clone, Debug)]
pub struct RabbitStatus {
    /// The user pwt authenticates as.
    pub user: String,
    /// Its tags (`administrator` may manage vhosts).
    pub tags: Vec<String>,
    /// The broker's version.
    pub version: String,
}

impl RabbitStatus {
    /// True when the user may create and delete vhosts.
    pub fn can_manage_vhosts(&self) -> bool {
        self.tags.iter().any(|t| t == "administrator")
    }
}

const TIMEOUT: Duration = Duration::from_secs(15);

impl RabbitMq {
    /// `amqp_url` carries the credentials, which the management API uses too.
    pub fn new(amqp_url: &str, management_url: &str) -> Result<Self, ProvisionError> {
        let config = |message: String| ProvisionError::Config {
            service: Service::RabbitMq,
            message,
        };
        let amqp = url::Url::parse(amqp_url)
            .map_err(|e| config(format!("rabbitmq.url {:?}: {e}", redact(amqp_url))))?;
        let management = url::Url::parse(management_url)
            .map_err(|e| config(format!("rabbitmq.management_url {management_url:?}: {e}")))?;
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = if amqp.username().is_empty() {
            "guest".to_owned()
        } else {
            decode(amqp.username())
        };
        let pass = amqp.password().map_or("guest".to_owned(), decode);
        Ok(Self {
            amqp_url: amqp_url.to_owned(),
            management,
            auth: base64(format!("{user}:{pass}").as_bytes()),
            user,
        })
    }

    /// The management URL, a password in it hidden.
    pub fn display_url(&self) -> String {
        redact(self.management.as_str())
    }

    fn unreachable(&self, source: BoxError) -> ProvisionError {
        ProvisionError::Unreachable {
            service: Service::RabbitMq,
            url: self.display_url(),
            source,
        }
    }

    fn failed(&self, action: impl Into<String>, source: BoxError) -> ProvisionError {
        ProvisionError::Failed {
            service: Service::RabbitMq,
            url: self.display_url(),
            action: action.into(),
            source,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, serde_json::Value), ProvisionError> {
        let sent = tokio::time::timeout(
            TIMEOUT,
            request(&self.management, &self.auth, method.clone(), path, body),
        )
        .await;
        let (status, bytes) = match sent {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(self.unreachable(e)),
            Err(_) => return Err(self.unreachable(msg("no answer within 15 s"))),
        };
        let said = || {
            let text = String::from_utf8_lossy(&bytes);
            msg(format!("HTTP {status}: {}", text.trim()))
        };
        let denied = |remedy: String| ProvisionError::Denied {
            service: Service::RabbitMq,
            url: self.display_url(),
            action: format!("{method} {path}"),
            remedy,
            source: said(),
        };
        if status == StatusCode::UNAUTHORIZED {
            return Err(denied(format!(
                "check the user ({:?}) and password in rabbitmq.url: the management API logs in with them too",
                self.user
            )));
        }
        if status == StatusCode::FORBIDDEN {
            return Err(denied(format!(
                "let the user manage vhosts: `rabbitmqctl set_user_tags {} administrator`",
                self.user
            )));
        }
        let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok((status, value))
    }

    fn vhost_path(vhost: &Vhost) -> String {
        format!("/api/vhosts/{}", percent_encode(vhost.as_str()))
    }

    fn not_ours(&self, vhost: &Vhost, description: &str) -> ProvisionError {
        ProvisionError::NotOurs {
            service: Service::RabbitMq,
            url: self.display_url(),
            what: format!("vhost {:?}", vhost.as_str()),
            found: if description.is_empty() {
                "it has no pwt marker".to_owned()
            } else {
                format!("its description is {description:?}")
            },
        }
    }

    /// The vhost's description, or `None` when it does not exist.
    async fn description(&self, vhost: &Vhost) -> Result<Option<String>, ProvisionError> {
        let (status, v) = self
            .call(Method::GET, &Self::vhost_path(vhost), None)
            .await?;
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(
                v["description"].as_str().unwrap_or_default().to_owned(),
            )),
            s => Err(self.failed(
                format!("reading vhost {:?}", vhost.as_str()),
                msg(format!("HTTP {s}: {v}")),
            )),
        }
    }

    /// What is at `vhost`: nothing, a vhost without pwt's marker, or a marked one.
    pub async fn presence(&self, vhost: &Vhost) -> Result<Presence, ProvisionError> {
        Ok(match self.description(vhost).await? {
            None => Presence::Absent,
            Some(d) if is_marker(&d) => Presence::Marked(d),
            Some(_) => Presence::Unmarked,
        })
    }

    /// Creates the vhost (description = `marker`, tag `pwt`) and grants the configured user
    /// full permissions on it.
    pub async fn create(&self, vhost: &Vhost, marker: &str) -> Result<Outcome, ProvisionError> {
        let outcome = match self.description(vhost).await? {
            Some(d) if same_owner(&d, marker) => {
                if d != marker {
                    self.put_vhost(vhost, marker).await?;
                }
                Outcome::Existed
            }
            Some(d) => return Err(self.not_ours(vhost, &d)),
            None => {
                let body = json!({ "description": marker, "tags": "pwt" });
                let (status, v) = self
                    .call(Method::PUT, &Self::vhost_path(vhost), Some(&body))
                    .await?;
                if !status.is_success() {
                    return Err(self.failed(
                        format!("creating vhost {:?}", vhost.as_str()),
                        msg(format!("HTTP {status}: {v}")),
                    ));
                }
                // PUT creates or updates: someone who created it at the same moment may have
                // written their marker after ours. Whoever's marker stands owns it.
                match self.description(vhost).await? {
                    Some(d) if d == marker => {}
                    Some(d) => return Err(self.not_ours(vhost, &d)),
                    None => {
                        return Err(self.failed(
                            format!("creating vhost {:?}", vhost.as_str()),
                            msg("it was gone right after it was made"),
                        ));
                    }
                }
                Outcome::Created
            }
        };
        let path = format!(
            "/api/permissions/{}/{}",
            percent_encode(vhost.as_str()),
            percent_encode(&self.user)
        );
        let body = json!({ "configure": ".*", "write": ".*", "read": ".*" });
        let (status, v) = self.call(Method::PUT, &path, Some(&body)).await?;
        if !status.is_success() {
            if outcome == Outcome::Created {
                let _ = self
                    .call(Method::DELETE, &Self::vhost_path(vhost), None)
                    .await;
            }
            return Err(self.failed(
                format!(
                    "granting {:?} permissions on {:?}",
                    self.user,
                    vhost.as_str()
                ),
                msg(format!("HTTP {status}: {v}")),
            ));
        }
        Ok(outcome)
    }

    async fn put_vhost(&self, vhost: &Vhost, marker: &str) -> Result<(), ProvisionError> {
        let body = json!({ "description": marker, "tags": "pwt" });
        let (status, v) = self
            .call(Method::PUT, &Self::vhost_path(vhost), Some(&body))
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.failed(
                format!("marking vhost {:?}", vhost.as_str()),
                msg(format!("HTTP {status}: {v}")),
            ))
        }
    }

    /// Marks the vhost with `marker` (its kept form, say) when it carries the same owner's.
    pub async fn remark(&self, vhost: &Vhost, marker: &str) -> Result<Outcome, ProvisionError> {
        match self.description(vhost).await? {
            None => Ok(Outcome::Absent),
            Some(d) if same_owner(&d, marker) => {
                self.put_vhost(vhost, marker).await?;
                Ok(Outcome::Existed)
            }
            Some(d) => Err(self.not_ours(vhost, &d)),
        }
    }

    /// Proves the vhost works over AMQP: connect, declare a queue, publish, get.
    pub async fn verify(&self, vhost: &Vhost) -> Result<(), ProvisionError> {
        let url = with_path(&self.amqp_url, &percent_encode(vhost.as_str()));
        let check = async {
            let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
            let channel = conn.create_channel().await?;
            // A queue of this check's own: two checks at once (two people, two pwt) must not
            // take each other's exclusive queue.
            let queue = format!(
                "pwt.check.{}.{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            );
            let queue = queue.as_str();
            let opts = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(queue.into(), opts, FieldTable::default())
                .await?;
            channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    b"pwt",
                    BasicProperties::default(),
                )
                .await?
                .await?;
            let mut got = None;
            for _ in 0..50 {
                got = channel
                    .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                    .await?;
                if got.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = conn.close(200, "pwt check done".into()).await;
            match got {
                Some(m) if m.delivery.data == b"pwt" => Ok(()),
                _ => Err(msg(
                    "the message published to the check queue never came back",
                )),
            }
        };
        match tokio::time::timeout(TIMEOUT, check).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ProvisionError::Failed {
                service: Service::RabbitMq,
                url: redact(&url),
                action: format!("an AMQP round trip in vhost {:?}", vhost.as_str()),
                source: e,
            }),
            Err(_) => Err(ProvisionError::Unreachable {
                service: Service::RabbitMq,
                url: redact(&url),
                source: msg("no answer within 15 s"),
            }),
        }
    }

    /// Deletes the vhost if its description is `marker`.
    pub async fn delete(&self, vhost: &Vhost, marker: &str) -> Result<Outcome, ProvisionError> {
        match self.description(vhost).await? {
            None => Ok(Outcome::Absent),
            Some(d) if same_owner(&d, marker) => {
                let (status, v) = self
                    .call(Method::DELETE, &Self::vhost_path(vhost), None)
                    .await?;
                if status.is_success() || status == StatusCode::NOT_FOUND {
                    Ok(Outcome::Removed)
                } else {
                    Err(self.failed(
                        format!("deleting vhost {:?}", vhost.as_str()),
                        msg(format!("HTTP {status}: {v}")),
                    ))
                }
            }
            Some(d) => Err(self.not_ours(vhost, &d)),
        }
    }

    /// Vhosts carrying a pwt marker.
    pub async fn marked(&self) -> Result<Vec<Marked>, ProvisionError> {
        let (status, v) = self.call(Method::GET, "/api/vhosts", None).await?;
        if !status.is_success() {
            return Err(self.failed("listing vhosts", msg(format!("HTTP {status}: {v}"))));
        }
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| {
                        let marker = h["description"].as_str()?;
                        is_marker(marker).then(|| Marked {
                            name: h["name"].as_str().unwrap_or_default().to_owned(),
                            marker: marker.to_owned(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The user's tags and the broker version.
    pub async fn status(&self) -> Result<RabbitStatus, ProvisionError> {
        let (status, who) = self.call(Method::GET, "/api/whoami", None).await?;
        if !status.is_success() {
            return Err(self.failed("GET /api/whoami", msg(format!("HTTP {status}: {who}"))));
        }
        let tags = match &who["tags"] {
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
            serde_json::Value::String(s) => s
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
            _ => Vec::new(),
        };
        let (_, overview) = self.call(Method::GET, "/api/overview", None).await?;
        Ok(RabbitStatus {
            user: self.user.clone(),
            tags,
            version: overview["rabbitmq_version"]
                .as_str()
                .unwrap_or("unknown")
                .to_owned(),
        })
    }
}
