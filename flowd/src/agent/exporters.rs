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
    #[error("kafkaTlsCert and kafkaTlsKey need kafkaTlsCa: the CA the brokers' certificates are checked against")]
    KafkaClientCertificateWithoutCa,
}

pub struct Sinks {
    otlp: Option<OtlpSink>,
    kafka: Option<KafkaSink>,
}

impl Sinks {
    pub fn from_config(config: &Config) -> Result<Self, ExporterError> {
        let otlp = config
            .otlp_endpoint
            .as_deref()
            .map(|endpoint| OtlpSink::new(endpoint, config.otlp_timeout))
            .transpose()?;
        let kafka = if config.kafka_brokers.is_empty() {
            None
        } else {
            Some(KafkaSink::new(kafka_settings(config)?))
        };
        Ok(Self { otlp, kafka })
    }

    /// Starts a delivery task per exporter; each ends when the store closes.
    pub fn spawn(
        self,
        config: &Config,
        hub: &Hub,
        telemetry: &Arc<Telemetry>,
    ) -> Vec<JoinHandle<()>> {
        let delivery = |exporter: Exporter, batch_records: usize| export::Delivery {
            exporter,
            cursor: cursor_file(config, exporter),
            matcher: FlowMatcher::all(),
            batch_records,
            batch_wait: config.export_batch_wait,
            retry_max: config.export_retry_max,
        };
        let mut tasks = Vec::new();
        if let Some(sink) = self.otlp {
            tasks.push(tokio::spawn(export::run_delivery(
                sink,
                delivery(Exporter::Otlp, config.otlp_batch_records),
                hub.clone(),
                telemetry.clone(),
            )));
        }
        if let Some(sink) = self.kafka {
            tasks.push(tokio::spawn(export::run_delivery(
                sink,
                delivery(Exporter::Kafka, config.kafka_batch_records),
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
