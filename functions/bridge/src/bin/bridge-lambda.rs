//! The bridge as a Lambda function: Amazon MQ's event source on RabbitMQ `warning` and `error`
//! in, SQS `warning-events` and `error-events` out. See [`bridge::lambda`].

use aws_config::BehaviorVersion;
use bridge::lambda::{LambdaBridge, LambdaConfig, handle};
use lambda_runtime::{Error, run, service_fn, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = LambdaConfig::from_env()?;
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let bridge = LambdaBridge::new(config, &aws);
    run(service_fn(|event| handle(&bridge, event))).await
}
