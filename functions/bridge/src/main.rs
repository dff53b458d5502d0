//! The bridge process: RabbitMQ `warning`/`error` to SQS (and, locally, `dispatch` to the
//! dispatch function) until SIGTERM or SIGINT, then a clean drain.

use std::io::IsTerminal;

use aws_config::BehaviorVersion;
use bridge::BridgeConfig;
use eventstream::secrets::{SecretsError, SecretsManager, resolve};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), SecretsError> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        // Colours only for a person at a terminal, not in log files and collectors.
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let config = BridgeConfig::from_env()?;
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;
    // Long-running: its secrets are read at start, where a failure stops it with the variable named.
    let config = resolve(&config, &SecretsManager::from_config(&aws)).await?;
    bridge::run(config, &aws, bridge::shutdown_signal()).await;
    Ok(())
}
