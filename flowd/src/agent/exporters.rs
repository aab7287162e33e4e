//! The exporters the settings ask for: their sinks made (and their settings checked) before
//! anything is attached, their delivery tasks started once the store is open.

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::{
    config::Config,
    export::{self, KafkaSettings, KafkaSetupError, KafkaSink, OtlpError, OtlpSink},
    query::FlowMatcher,
    store::Hub,
    telemetry::{Exporter, Telemetry},
};

#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error(transparent)]
    Otlp(#[from] OtlpError),
    #[error(transparent)]
    Kafka(#[from] KafkaSetupError),
    #[error("{setting}: {source}")]
    Filter {
        setting: &'static str,
        source: crate::query::FilterError,
    },
    #[error("kafkaTlsCert and kafkaTlsKey need kafkaTlsCa: the CA the brokers' certificates are checked against")]
    KafkaClientCertificateWithoutCa,
}

pub struct Sinks {
    otlp: Option<(OtlpSink, FlowMatcher)>,
    kafka: Option<(KafkaSink, FlowMatcher)>,
}

/// What an exporter sends: records matching `allow` (all when empty) and no `deny`.
fn matcher(
    setting: &'static str,
    allow: &[crate::config::FlowFilterSetting],
    deny: &[crate::config::FlowFilterSetting],
) -> Result<FlowMatcher, ExporterError> {
    let (allow, deny) = (
        crate::config::flow_filters(allow),
        crate::config::flow_filters(deny),
    );
    FlowMatcher::new(&allow, &deny).map_err(|source| ExporterError::Filter { setting, source })
}

impl Sinks {
    pub fn from_config(config: &Config) -> Result<Self, ExporterError> {
        let otlp = match config.otlp_endpoint.as_deref() {
            None => None,
            Some(endpoint) => Some((
                OtlpSink::new(endpoint, config.otlp_timeout)?,
                matcher("otlpAllow/otlpDeny", &config.otlp_allow, &config.otlp_deny)?,
            )),
        };
        let kafka = if config.kafka_brokers.is_empty() {
            None
        } else {
            Some((
                KafkaSink::new(kafka_settings(config)?),
                matcher(
                    "kafkaAllow/kafkaDeny",
                    &config.kafka_allow,
                    &config.kafka_deny,
                )?,
            ))
        };
        Ok(Self { otlp, kafka })
    }

    /// The exporters configured, for their metrics.
    pub fn running(&self) -> Vec<Exporter> {
        let mut running = Vec::new();
        if self.otlp.is_some() {
            running.push(Exporter::Otlp);
        }
        if self.kafka.is_some() {
            running.push(Exporter::Kafka);
        }
        running
    }

    /// Starts a delivery task per exporter; each ends when the store closes.
    pub fn spawn(
        self,
        config: &Config,
        hub: &Hub,
        telemetry: &Arc<Telemetry>,
    ) -> Vec<JoinHandle<()>> {
        let delivery =
            |exporter: Exporter, matcher: FlowMatcher, batch_records: usize| export::Delivery {
                exporter,
                cursor: cursor_file(config, exporter),
                matcher,
                batch_records,
                batch_wait: config.export_batch_wait,
                retry_max: config.export_retry_max,
            };
        let mut tasks = Vec::new();
        if let Some((sink, matcher)) = self.otlp {
            tasks.push(tokio::spawn(export::run_delivery(
                sink,
                delivery(Exporter::Otlp, matcher, config.otlp_batch_records),
                hub.clone(),
                telemetry.clone(),
            )));
        }
        if let Some((sink, matcher)) = self.kafka {
            tasks.push(tokio::spawn(export::run_delivery(
                sink,
                delivery(Exporter::Kafka, matcher, config.kafka_batch_records),
                hub.clone(),
                telemetry.clone(),
            )));
        }
        tasks
    }
}

fn kafka_settings(config: &Config) -> Result<KafkaSettings, ExporterError> {
    let client = match (&config.kafka_tls_cert, &config.kafka_tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        _ => return Err(KafkaSetupError::HalfClientCertificate.into()),
    };
    let tls = match (&config.kafka_tls_ca, client) {
        (Some(ca), client) => Some(export::kafka_tls_config(ca, client)?),
        (None, None) => None,
        (None, Some(_)) => return Err(ExporterError::KafkaClientCertificateWithoutCa),
    };
    let sasl = match config.kafka_sasl_mechanism {
        None => None,
        Some(mechanism) => {
            let (Some(username), Some(file)) = (
                &config.kafka_sasl_username,
                &config.kafka_sasl_password_file,
            ) else {
                return Err(KafkaSetupError::SaslCredentials.into());
            };
            let password =
                std::fs::read_to_string(file).map_err(|source| KafkaSetupError::File {
                    setting: "kafkaSaslPasswordFile",
                    path: file.clone(),
                    source,
                })?;
            if tls.is_none() {
                tracing::warn!("kafkaSaslMechanism without kafkaTlsCa: the SASL exchange crosses the network in plaintext");
            }
            Some((
                mechanism,
                username.clone(),
                password.trim_end_matches(['\r', '\n']).to_owned(),
            ))
        }
    };
    Ok(KafkaSettings {
        brokers: config.kafka_brokers.clone(),
        topic: config.kafka_topic.clone(),
        format: config.kafka_format,
        compression: config.kafka_compression,
        timeout: config.kafka_timeout,
        tls,
        sasl,
    })
}

/// Where an exporter keeps its cursor: beside the history it follows (`flows.redb` ->
/// `flows.redb.otlp.cursor`), so a new history starts a new delivery.
fn cursor_file(config: &Config, exporter: Exporter) -> export::CursorFile {
    let mut name = config.store_path.as_os_str().to_owned();
    name.push(format!(".{}.cursor", exporter.name()));
    export::CursorFile::new(name.into())
}
