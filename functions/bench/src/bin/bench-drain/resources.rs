//! What one run makes outside the process (SQS queues, RabbitMQ topologies, emails), removed
//! however the run ends.

use std::collections::HashSet;

use anyhow::{Context, anyhow};
use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use bench::rabbitmq::delete_topology;
use eventstream::bus::Topology;
use uuid::Uuid;

use crate::{
    Args,
    maildev::{Sender, delete_maildev_emails, maildev_emails},
};

/// The template's: six times the handlers' timeout.
const VISIBILITY_TIMEOUT_SECONDS: &str = "180";

/// What one run made outside the process, removed however the run ends.
pub struct Resources {
    pub sqs: aws_sdk_sqs::Client,
    amqp_url: String,
    maildev_url: String,
    /// Unique per run, short enough for queue names.
    pub run: String,
    queues: Vec<String>,
    pub topologies: Vec<Topology>,
    /// Whose emails the run deletes from the sink.
    pub error_ids: HashSet<Uuid>,
}

/// One SQS queue of this run.
pub struct SqsQueue {
    pub url: String,
    pub arn: String,
}

impl Resources {
    /// Nothing made yet.
    pub fn new(aws: &SdkConfig, args: &Args) -> Self {
        let id = Uuid::now_v7().simple().to_string();
        Self {
            sqs: aws_sdk_sqs::Client::new(aws),
            amqp_url: args.amqp_url.clone(),
            maildev_url: args.maildev_url.clone(),
            // The random tail of a v7 id: unique per run, short enough for queue names.
            run: id[id.len() - 12..].to_string(),
            queues: Vec::new(),
            topologies: Vec::new(),
            error_ids: HashSet::new(),
        }
    }

    /// A queue with the template's visibility timeout, under a name only this run uses.
    pub async fn queue(&mut self, role: &str) -> anyhow::Result<SqsQueue> {
        let name = format!("bench-drain-{}-{role}", self.run);
        let created = self
            .sqs
            .create_queue()
            .queue_name(&name)
            .attributes(QueueAttributeName::VisibilityTimeout, VISIBILITY_TIMEOUT_SECONDS)
            .send()
            .await
            .map_err(|error| sdk_error(&format!("CreateQueue {name}"), error))?;
        let url = created.queue_url().context("CreateQueue returned no URL")?.to_string();
        self.queues.push(url.clone());
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|error| sdk_error(&format!("GetQueueAttributes {name}"), error))?;
        let arn = attributes
            .attributes()
            .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn))
            .context("GetQueueAttributes returned no QueueArn")?
            .clone();
        Ok(SqsQueue { url, arn })
    }

    /// Deletes the run's SQS queues, RabbitMQ topologies and emails.
    pub async fn clean_up(&self) {
        for url in &self.queues {
            if let Err(error) = self.sqs.delete_queue().queue_url(url).send().await {
                eprintln!("could not delete the SQS queue {url}: {}", aws_sdk_sqs::error::DisplayErrorContext(error));
            }
        }
        for topology in &self.topologies {
            delete_topology(&self.amqp_url, topology).await;
        }
        // Only this run's mail goes: other runs and people share the sink.
        match maildev_emails(&self.maildev_url).await {
            Ok(emails) => {
                let ours: Vec<String> = emails
                    .iter()
                    .filter(|email| match &email.sender {
                        Sender::Pipeline(id) => self.error_ids.contains(id),
                        Sender::Baseline(run) => *run == self.run,
                        Sender::Other => false,
                    })
                    .map(|email| email.id.clone())
                    .collect();
                if let Err(error) = delete_maildev_emails(&self.maildev_url, ours).await {
                    eprintln!("could not delete this run's emails from maildev: {error:#}");
                }
            }
            Err(error) => eprintln!("could not list maildev's emails to delete this run's: {error:#}"),
        }
    }
}

/// An SDK error with its causes, named by the call that failed.
pub fn sdk_error<E: std::error::Error + 'static>(call: &str, error: E) -> anyhow::Error {
    anyhow!("{call}: {}", aws_sdk_sqs::error::DisplayErrorContext(error))
}
