//! Secrets Manager: the values of the secrets that `*_ARN` variables name, read when a function
//! first needs them rather than during its cold start's init.
//!
//! [`SecretsManager`] builds its SDK client on its first read, so a function whose configuration
//! names no secret loads no AWS configuration at all. The client honours `AWS_ENDPOINT_URL`, which
//! points it at LocalStack locally.

use std::{error::Error as StdError, sync::Arc};

use aws_config::BehaviorVersion;
use aws_smithy_http_client::{
    Builder,
    tls::{Provider, rustls_provider::CryptoMode},
};
use futures_util::future::try_join_all;
use secrecy::SecretString;
use tokio::sync::OnceCell;

use crate::config::{ConfigError, Pending};

/// A read's failure, boxed: the SDK's errors are many types.
pub type ReadError = Box<dyn StdError + Send + Sync>;

/// Where secrets' values are read from, by ARN (or name).
pub trait SecretStore: Send + Sync {
    fn secret_string(&self, arn: &str) -> impl Future<Output = Result<SecretString, ReadError>> + Send;
}

impl<S: SecretStore> SecretStore for Arc<S> {
    async fn secret_string(&self, arn: &str) -> Result<SecretString, ReadError> {
        S::secret_string(self, arn).await
    }
}

/// Why a configuration's secrets could not be put in: never quotes a value.
#[derive(thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read the secret that {variable} names")]
    Read {
        variable: &'static str,
        #[source]
        source: ReadError,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A process that stops on this error prints it with `Debug`: show the message and its causes.
impl std::fmt::Debug for SecretsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::pipeline::error_chain(self))
    }
}

/// The configuration with its secrets' values: one read per secret, all at once. A configuration
/// with no secret is complete without asking `store` anything.
pub async fn resolve<C: Clone>(pending: &Pending<C>, store: &impl SecretStore) -> Result<C, SecretsError> {
    let reads = pending.secrets().map(|(variable, arn)| async move {
        store.secret_string(arn).await.map_err(|source| SecretsError::Read { variable, source })
    });
    let values = try_join_all(reads).await?;
    Ok(pending.complete(&values)?)
}

/// The HTTP client the SDK uses in the functions: rustls on ring, whose TLS roots are the system's.
pub fn https_client() -> aws_sdk_secretsmanager::config::SharedHttpClient {
    Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// AWS Secrets Manager, through a client made on the first read.
#[derive(Default)]
pub struct SecretsManager {
    client: OnceCell<aws_sdk_secretsmanager::Client>,
}

/// A secret stored as binary: every secret EventStream reads is text.
#[derive(Debug, thiserror::Error)]
#[error("the secret has no SecretString (a binary secret?)")]
struct NotText;

impl SecretsManager {
    /// A client on `config`, for a process that loaded the AWS configuration for its other clients.
    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        Self { client: OnceCell::new_with(Some(aws_sdk_secretsmanager::Client::new(config))) }
    }

    async fn client(&self) -> &aws_sdk_secretsmanager::Client {
        self.client
            .get_or_init(|| async {
                let config = aws_config::defaults(BehaviorVersion::latest()).http_client(https_client()).load().await;
                aws_sdk_secretsmanager::Client::new(&config)
            })
            .await
    }
}

impl SecretStore for SecretsManager {
    #[tracing::instrument(skip_all, fields(arn = %arn))]
    async fn secret_string(&self, arn: &str) -> Result<SecretString, ReadError> {
        let output = self.client().await.get_secret_value().secret_id(arn).send().await?;
        let value = output.secret_string.ok_or(NotText)?;
        Ok(SecretString::from(value))
    }
}
