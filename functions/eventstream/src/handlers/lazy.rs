//! A function's state built on its first invocation, when its configuration names secrets.
//!
//! Reading secrets during a cold start's init would add their round trips to every cold start's
//! init, which Lambda bills and API clients wait for, before any request is there to serve.
//! [`Lazy`] is the function's service: on the first invocation it reads the secrets (all at once),
//! completes the configuration and builds the service from it, which it keeps for the life of the
//! process. A failure fails that invocation only; the next one tries again. A configuration that
//! names no secret is built at once, during init, as it always was.

use std::{
    error::Error as StdError,
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::future::BoxFuture;
use lambda_runtime::Diagnostic;
use tokio::sync::OnceCell;
use tower::{Service, ServiceExt};

use crate::{
    config::Pending,
    pipeline::error_chain,
    secrets::{SecretStore, SecretsError, SecretsManager, resolve},
};

/// Why the state could not be built from a complete configuration (a pool, a mailer...).
pub type BuildError = Box<dyn StdError + Send + Sync>;

/// Why an invocation found no state to run on.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("cannot build the function's state")]
    Build(#[source] BuildError),
}

impl From<&StateError> for Diagnostic {
    fn from(error: &StateError) -> Self {
        let error_type = match error {
            StateError::Secrets(SecretsError::Read { .. }) => "Config.SecretUnavailable",
            StateError::Secrets(SecretsError::Config(_)) => "Config.InvalidSecret",
            StateError::Build(_) => "Config.StateUnavailable",
        };
        Diagnostic { error_type: error_type.into(), error_message: error_chain(error) }
    }
}

type Init<S> = Box<dyn Fn() -> BoxFuture<'static, Result<S, StateError>> + Send + Sync>;

enum Inner<S> {
    Built(S),
    OnFirstUse { service: OnceCell<S>, init: Init<S> },
}

/// A service built on first use from a configuration whose secrets are read then; see the module.
pub struct Lazy<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Lazy<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<S: Send + Sync + 'static> Lazy<S> {
    /// The service `build` makes from `config`, reading its secrets from Secrets Manager. With no
    /// secret to read it is built now, and an error is returned now, as before any invocation.
    pub fn new<C>(
        config: Pending<C>,
        build: impl Fn(C) -> Result<S, BuildError> + Send + Sync + 'static,
    ) -> Result<Self, StateError>
    where
        C: Clone + Send + Sync + 'static,
    {
        Self::with_store(config, SecretsManager::default(), build)
    }

    /// As [`Lazy::new`], reading secrets from `store`.
    pub fn with_store<C, T>(
        config: Pending<C>,
        store: T,
        build: impl Fn(C) -> Result<S, BuildError> + Send + Sync + 'static,
    ) -> Result<Self, StateError>
    where
        C: Clone + Send + Sync + 'static,
        T: SecretStore + 'static,
    {
        if config.secrets().len() == 0 {
            let service = build(config.complete(&[]).map_err(SecretsError::from)?).map_err(StateError::Build)?;
            return Ok(Self { inner: Arc::new(Inner::Built(service)) });
        }
        let shared = Arc::new((config, store, build));
        let init: Init<S> = Box::new(move || {
            let shared = shared.clone();
            Box::pin(async move {
                let (config, store, build) = &*shared;
                let config = resolve(config, store).await?;
                build(config).map_err(StateError::Build)
            })
        });
        Ok(Self { inner: Arc::new(Inner::OnFirstUse { service: OnceCell::new(), init }) })
    }

    /// The service, built by this call if no call has built it yet.
    pub async fn get(&self) -> Result<&S, StateError> {
        match &*self.inner {
            Inner::Built(service) => Ok(service),
            // OnceCell keeps no failure: the next call tries again.
            Inner::OnFirstUse { service, init } => service.get_or_try_init(init).await,
        }
    }
}

impl<S, R> Service<R> for Lazy<S>
where
    S: Service<R> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Into<Diagnostic>,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = Diagnostic;
    type Future = BoxFuture<'static, Result<S::Response, Diagnostic>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Diagnostic>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        let lazy = self.clone();
        Box::pin(async move {
            let service = match lazy.get().await {
                Ok(service) => service.clone(),
                Err(error) => {
                    tracing::error!(error = %error_chain(&error), "no state to run on; the next invocation tries again");
                    return Err(Diagnostic::from(&error));
                }
            };
            service.oneshot(request).await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        sync::{Mutex, atomic::AtomicUsize, atomic::Ordering},
    };

    use secrecy::{ExposeSecret, SecretString};
    use tower::service_fn;

    use super::*;
    use crate::{config::JwtConfig, secrets::ReadError};

    /// Secrets in memory, counting reads.
    #[derive(Default)]
    struct Store {
        values: Mutex<HashMap<String, String>>,
        reads: AtomicUsize,
    }

    impl SecretStore for Store {
        async fn secret_string(&self, arn: &str) -> Result<SecretString, ReadError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let value = self.values.lock().unwrap().get(arn).cloned();
            value.map(SecretString::from).ok_or_else(|| format!("no secret {arn}").into())
        }
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef-key";

    fn jwt(vars: &[(&str, &str)]) -> Pending<JwtConfig> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        JwtConfig::from_lookup(&|name| vars.get(name).cloned()).unwrap()
    }

    /// A service answering with the signing key's length, built from the configuration.
    fn lazy(
        config: Pending<JwtConfig>,
        store: Arc<Store>,
    ) -> Result<
        Lazy<impl Service<(), Response = usize, Error = Diagnostic, Future: Send> + Clone + Send + Sync>,
        StateError,
    > {
        Lazy::with_store(config, store, |config: JwtConfig| {
            let length = config.secret.expose_secret().len();
            Ok(service_fn(move |()| async move { Ok::<_, Diagnostic>(length) }))
        })
    }

    #[tokio::test]
    async fn secrets_are_read_on_the_first_call_once_and_a_failure_is_tried_again() {
        let store = Arc::new(Store::default());
        let mut service = lazy(jwt(&[("JWT_SECRET_ARN", "jwt")]), store.clone()).unwrap();
        assert_eq!(store.reads.load(Ordering::SeqCst), 0, "nothing is read before the first call");

        let error = service.call(()).await.unwrap_err();
        assert_eq!(error.error_type, "Config.SecretUnavailable");
        assert!(error.error_message.contains("JWT_SECRET_ARN"), "{}", error.error_message);
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);

        store.values.lock().unwrap().insert("jwt".into(), KEY.into());
        assert_eq!(service.call(()).await.unwrap(), KEY.len(), "the failure was not kept");
        assert_eq!(service.call(()).await.unwrap(), KEY.len());
        assert_eq!(store.reads.load(Ordering::SeqCst), 2, "read once more, then kept");
    }

    #[tokio::test]
    async fn an_unusable_secret_fails_the_call_without_its_value() {
        let store = Arc::new(Store::default());
        store.values.lock().unwrap().insert("jwt".into(), "short-hunter2".into());
        let mut service = lazy(jwt(&[("JWT_SECRET_ARN", "jwt")]), store.clone()).unwrap();
        let error = service.call(()).await.unwrap_err();
        assert_eq!(error.error_type, "Config.InvalidSecret");
        assert!(error.error_message.contains("JWT_SECRET_ARN"), "{}", error.error_message);
        assert!(!error.error_message.contains("hunter2"), "{}", error.error_message);
    }

    #[tokio::test]
    async fn a_configuration_without_secrets_is_built_at_once_without_the_store() {
        let store = Arc::new(Store::default());
        let mut service = lazy(jwt(&[("JWT_SECRET", KEY)]), store.clone()).unwrap();
        assert_eq!(service.call(()).await.unwrap(), KEY.len());
        assert_eq!(store.reads.load(Ordering::SeqCst), 0);
        let error = Lazy::with_store(jwt(&[("JWT_SECRET", KEY)]), store, |_| -> Result<(), BuildError> {
            Err("no pool".into())
        })
        .err()
        .expect("a build failure without secrets is returned at once");
        assert!(matches!(error, StateError::Build(_)), "{error:?}");
    }
}
