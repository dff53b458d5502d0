//! Where there is no Amazon MQ event source, the bridge invokes the dispatch function with the
//! payload Amazon MQ would send, and acknowledges only after the function succeeded.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use aws_config::SdkConfig;
use aws_lambda_events::rabbitmq::RabbitMqEvent;
use aws_sdk_lambda::{
    primitives::Blob,
    types::{Environment, FunctionCode, Runtime, State},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use bridge::dispatch::{DispatchFunction, InvokeFailure};
use eventstream::{
    bus::{Queue, Topology},
    domain::Status,
};
use futures_util::future::BoxFuture;

use crate::helpers::{RunningBridge, SqsQueues, aws, config, messages, publish, ready_messages, unique, wait_until};

/// A function that records every event it receives in a directory of its own.
struct RecordingFunction {
    client: aws_sdk_lambda::Client,
    name: String,
    records: PathBuf,
}

impl RecordingFunction {
    async fn deploy(aws: &SdkConfig, fail: bool) -> Self {
        let client = aws_sdk_lambda::Client::new(aws);
        let name = unique("dispatch");
        let records = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&records).unwrap();
        let environment = Environment::builder()
            .variables("RECORD_DIR", records.to_str().unwrap())
            .variables("FAIL", if fail { "1" } else { "0" })
            .build();
        client
            .create_function()
            .function_name(&name)
            .runtime(Runtime::Providedal2023)
            .handler("bootstrap")
            .role("arn:aws:iam::000000000000:role/lambda-role")
            .environment(environment)
            .code(FunctionCode::builder().zip_file(Blob::new(bootstrap_zip(&records))).build())
            .send()
            .await
            .unwrap();
        let function = Self { client, name, records };
        wait_until("the function to be active", Duration::from_secs(60), || async {
            let configuration = function.client.get_function_configuration().function_name(&function.name).send();
            configuration.await.unwrap().state == Some(State::Active)
        })
        .await;
        function
    }

    /// The events received so far, oldest first.
    fn events(&self) -> Vec<RabbitMqEvent> {
        let mut paths: Vec<_> = std::fs::read_dir(&self.records).unwrap().map(|entry| entry.unwrap().path()).collect();
        paths.sort();
        paths
            .iter()
            .filter_map(|path| std::fs::read(path).ok().filter(|bytes| !bytes.is_empty()))
            .map(|bytes| serde_json::from_slice(&bytes).expect("the payload is a RabbitMqEvent"))
            .collect()
    }

    async fn delete(self) {
        self.client.delete_function().function_name(&self.name).send().await.unwrap();
        std::fs::remove_dir_all(&self.records).unwrap();
    }
}

/// The function's code: `recording_bootstrap.py` as an executable `bootstrap` at the zip's root.
fn bootstrap_zip(scratch: &Path) -> Vec<u8> {
    let zip = scratch.join("function.zip");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recording_bootstrap.py");
    let status = Command::new("python3")
        .args(["-c", ZIP_SCRIPT, script.to_str().unwrap(), zip.to_str().unwrap()])
        .status()
        .expect("python3 runs");
    assert!(status.success());
    let bytes = std::fs::read(&zip).unwrap();
    std::fs::remove_file(&zip).unwrap();
    bytes
}

const ZIP_SCRIPT: &str = r#"
import sys, zipfile
info = zipfile.ZipInfo("bootstrap")
info.external_attr = 0o100755 << 16
with zipfile.ZipFile(sys.argv[2], "w") as archive:
    archive.writestr(info, open(sys.argv[1], "rb").read())
"#;

/// The bodies an event carries, decoded, from the given queue key.
fn bodies(event: &RabbitMqEvent, queue_key: &str) -> Vec<Vec<u8>> {
    assert_eq!(event.event_source.as_deref(), Some("aws:rmq"));
    assert!(event.event_source_arn.as_deref().is_some_and(|arn| arn.starts_with("arn:aws:mq:")));
    assert_eq!(event.messages_by_queue.keys().collect::<Vec<_>>(), vec![queue_key]);
    event.messages_by_queue[queue_key]
        .iter()
        .map(|message| {
            let body = STANDARD.decode(message.data.as_ref().unwrap()).unwrap();
            assert_eq!(message.basic_properties.body_size, body.len() as u64);
            assert_eq!(message.basic_properties.delivery_mode, 2);
            assert_eq!(message.basic_properties.content_type.as_deref(), Some("application/json"));
            body
        })
        .collect()
}

#[tokio::test]
async fn dispatch_messages_reach_the_function_as_amazon_mq_would_send_them_and_are_acknowledged() {
    let aws = aws().await;
    let sqs = SqsQueues::create(&aws).await;
    let function = RecordingFunction::deploy(&aws, false).await;
    let topology = Topology::ephemeral();
    let queue_key = format!("{}::/", topology.queue_name(Queue::Dispatch));
    let events = messages(Status::Info, 150);
    publish(&topology, Queue::Dispatch, &events).await;
    let expected: HashSet<Vec<u8>> = events.iter().map(|event| event.to_bytes()).collect();

    let mut config = config(&topology, &sqs.warning_url, &sqs.error_url);
    config.dispatch_function = Some(function.name.clone());
    let running = RunningBridge::start(config, aws);
    wait_until("every message to reach the function", Duration::from_secs(60), || async {
        let received: HashSet<Vec<u8>> = function.events().iter().flat_map(|event| bodies(event, &queue_key)).collect();
        expected.is_subset(&received)
    })
    .await;
    running.stop().await;

    assert!(function.events().iter().all(|event| bodies(event, &queue_key).len() <= 100), "batches hold 100 at most");
    assert_eq!(ready_messages(&topology, Queue::Dispatch).await, 0);
    function.delete().await;
    sqs.delete().await;
}

#[tokio::test]
async fn a_failing_function_is_retried_and_its_messages_stay_in_rabbitmq() {
    let aws = aws().await;
    let sqs = SqsQueues::create(&aws).await;
    let function = RecordingFunction::deploy(&aws, true).await;
    let topology = Topology::ephemeral();
    let queue_key = format!("{}::/", topology.queue_name(Queue::Dispatch));
    let events = messages(Status::Info, 5);
    publish(&topology, Queue::Dispatch, &events).await;
    let expected: Vec<Vec<u8>> = events.iter().map(|event| event.to_bytes()).collect();

    let mut config = config(&topology, &sqs.warning_url, &sqs.error_url);
    config.dispatch_function = Some(function.name.clone());
    config.drain_timeout = Duration::ZERO;
    let running = RunningBridge::start(config, aws);
    wait_until("a retried invocation", Duration::from_secs(60), || async { function.events().len() >= 3 }).await;
    running.stop().await;

    for event in function.events() {
        assert_eq!(bodies(&event, &queue_key), expected);
    }
    assert_eq!(ready_messages(&topology, Queue::Dispatch).await, 5, "no message of a failed batch is acknowledged");
    function.delete().await;
    sqs.delete().await;
}

/// A dispatch function run in-process that keeps every event it is invoked with.
#[derive(Default)]
struct InProcessFunction {
    events: Mutex<Vec<RabbitMqEvent>>,
}

impl DispatchFunction for InProcessFunction {
    fn name(&self) -> &str {
        "in-process"
    }

    fn invoke(&self, payload: Vec<u8>) -> BoxFuture<'_, Result<(), InvokeFailure>> {
        Box::pin(async move {
            let event = serde_json::from_slice(&payload).expect("the payload is a RabbitMqEvent");
            self.events.lock().unwrap().push(event);
            Ok(())
        })
    }
}

#[tokio::test]
async fn a_dispatch_function_given_in_process_gets_the_same_payload_and_its_messages_are_acknowledged() {
    let aws = aws().await;
    let sqs = SqsQueues::create(&aws).await;
    let topology = Topology::ephemeral();
    let queue_key = format!("{}::/", topology.queue_name(Queue::Dispatch));
    let events = messages(Status::Info, 150);
    publish(&topology, Queue::Dispatch, &events).await;
    let expected: HashSet<Vec<u8>> = events.iter().map(|event| event.to_bytes()).collect();

    let function = Arc::new(InProcessFunction::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = config(&topology, &sqs.warning_url, &sqs.error_url);
    let running = tokio::spawn({
        let (aws, function) = (aws.clone(), function.clone());
        async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            bridge::run_with_dispatch(config, &aws, Some(function), shutdown).await
        }
    });
    let received = || -> HashSet<Vec<u8>> {
        function.events.lock().unwrap().iter().flat_map(|event| bodies(event, &queue_key)).collect()
    };
    wait_until("every message to reach the function", Duration::from_secs(60), || async {
        expected.is_subset(&received())
    })
    .await;
    stop.send(()).unwrap();
    let forwarded = tokio::time::timeout(Duration::from_secs(30), running).await.expect("the bridge drains").unwrap();

    assert_eq!(forwarded.dispatch, 150, "every message is acknowledged once, after its invocation");
    assert_eq!(ready_messages(&topology, Queue::Dispatch).await, 0);
    sqs.delete().await;
}
