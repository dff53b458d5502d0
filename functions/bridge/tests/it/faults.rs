//! The bridge loses nothing when killed, stopped, or refused by SQS.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use eventstream::{
    bus::{Queue, Topology},
    domain::Status,
};

use crate::helpers::{
    AMQP_URL, RunningBridge, SqsQueues, aws, config, create_queue, delete_topology, endpoint, ids, messages, publish,
    ready_messages, unique, wait_until,
};

/// The bridge binary against `topology` and the test's SQS queues.
fn spawn_bridge(topology_prefix: &str, sqs: &SqsQueues) -> Child {
    Command::new(env!("CARGO_BIN_EXE_bridge"))
        .env("AMQP_URL", AMQP_URL)
        .env("AMQP_QUEUE_PREFIX", topology_prefix)
        .env("WARNING_QUEUE_URL", &sqs.warning_url)
        .env("ERROR_QUEUE_URL", &sqs.error_url)
        .env_remove("DISPATCH_FUNCTION")
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the bridge binary starts")
}

#[tokio::test]
async fn a_bridge_killed_mid_stream_and_restarted_loses_nothing() {
    let aws = aws().await;
    let sqs = SqsQueues::create(&aws).await;
    let prefix = unique("kill") + "-";
    let topology = Topology::with_prefix(&prefix);
    let errors = messages(Status::Error, 3000);
    let mut bridge = spawn_bridge(&prefix, &sqs);
    let publisher = {
        let (topology, errors) = (topology.clone(), errors.clone());
        tokio::spawn(async move {
            for chunk in errors.chunks(100) {
                publish(&topology, Queue::Error, chunk).await;
            }
        })
    };
    wait_until("the first messages in SQS", Duration::from_secs(60), || async {
        sqs.visible(&sqs.error_url).await >= 300
    })
    .await;
    bridge.kill().expect("SIGKILL is sent");
    bridge.wait().unwrap();

    let mut restarted = spawn_bridge(&prefix, &sqs);
    publisher.await.unwrap();
    let received = sqs.receive_all(&sqs.error_url, &ids(&errors), Duration::from_secs(120)).await;
    eprintln!("{received} messages received for {} published", errors.len());
    stop_gracefully(&mut restarted);

    assert_eq!(ready_messages(&topology, Queue::Error).await, 0);
    delete_topology(&topology).await;
    sqs.delete().await;
}

#[tokio::test]
async fn sigterm_drains_exits_zero_and_leaves_the_rest_in_rabbitmq() {
    let aws = aws().await;
    let sqs = SqsQueues::create(&aws).await;
    let prefix = unique("term") + "-";
    let topology = Topology::with_prefix(&prefix);
    let warnings = messages(Status::Warning, 3000);
    let mut bridge = spawn_bridge(&prefix, &sqs);
    let publisher = {
        let (topology, warnings) = (topology.clone(), warnings.clone());
        tokio::spawn(async move {
            for chunk in warnings.chunks(100) {
                publish(&topology, Queue::Warning, chunk).await;
            }
        })
    };
    wait_until("the first messages in SQS", Duration::from_secs(60), || async {
        sqs.visible(&sqs.warning_url).await >= 300
    })
    .await;
    stop_gracefully(&mut bridge);
    publisher.await.unwrap();

    // What the stopped bridge did not forward is still in RabbitMQ: a second bridge moves it.
    let left = ready_messages(&topology, Queue::Warning).await;
    eprintln!("{left} messages left in RabbitMQ by the stopped bridge");
    let running = RunningBridge::start(config(&topology, &sqs.warning_url, &sqs.error_url), aws);
    sqs.receive_all(&sqs.warning_url, &ids(&warnings), Duration::from_secs(120)).await;
    running.stop().await;

    assert_eq!(ready_messages(&topology, Queue::Warning).await, 0);
    delete_topology(&topology).await;
    sqs.delete().await;
}

#[tokio::test]
async fn a_missing_sqs_queue_is_retried_until_it_exists() {
    let aws = aws().await;
    let sqs = SqsQueues::create(&aws).await;
    let topology = Topology::ephemeral();
    let missing_name = unique("late");
    let missing_url = sqs.error_url.replace(sqs.error_url.rsplit('/').next().unwrap(), &missing_name);
    let errors = messages(Status::Error, 50);
    publish(&topology, Queue::Error, &errors).await;
    let running = RunningBridge::start(config(&topology, &sqs.warning_url, &missing_url), aws);

    // Taken by the bridge but not acknowledged while SQS refuses: none ready, none lost.
    wait_until("the bridge to take the messages", Duration::from_secs(30), || async {
        ready_messages(&topology, Queue::Error).await == 0
    })
    .await;
    let created = create_queue(&sqs.client, &missing_name).await;
    assert_eq!(created, missing_url);
    sqs.receive_all(&missing_url, &ids(&errors), Duration::from_secs(60)).await;
    running.stop().await;

    assert_eq!(ready_messages(&topology, Queue::Error).await, 0);
    sqs.client.delete_queue().queue_url(&missing_url).send().await.unwrap();
    sqs.delete().await;
}

/// Sends SIGTERM and expects a clean exit within the drain timeout.
fn stop_gracefully(bridge: &mut Child) {
    let status = Command::new("kill").args(["-TERM", &bridge.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = bridge.try_wait().unwrap() {
            assert!(status.success(), "the bridge exited with {status}");
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the bridge did not exit within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_dropped_rabbitmq_connection_is_made_again() {
    let aws = aws().await;
    let sqs = SqsQueues::create(&aws).await;
    let topology = Topology::ephemeral();
    let config = config(&topology, &sqs.warning_url, &sqs.error_url);
    let name = bridge::connection_name(&config);
    let running = RunningBridge::start(config, aws);
    let first = wait_for_connection(&name, None).await;

    let closed = Command::new("rabbitmqctl").args(["close_connection", &first, "bridge test"]).output().unwrap();
    assert!(closed.status.success(), "{}", String::from_utf8_lossy(&closed.stderr));
    wait_for_connection(&name, Some(&first)).await;
    let warnings = messages(Status::Warning, 100);
    publish(&topology, Queue::Warning, &warnings).await;
    sqs.receive_all(&sqs.warning_url, &ids(&warnings), Duration::from_secs(60)).await;
    running.stop().await;

    assert_eq!(ready_messages(&topology, Queue::Warning).await, 0);
    sqs.delete().await;
}

/// The broker's process id of the connection named `name`, once there is one other than `not`.
async fn wait_for_connection(name: &str, not: Option<&str>) -> String {
    let mut found = None;
    wait_until("the bridge's connection", Duration::from_secs(30), || {
        let listed = Command::new("rabbitmqctl")
            .args(["list_connections", "--quiet", "--no-table-headers", "pid", "client_properties"])
            .output()
            .unwrap();
        let quoted = format!("{{\"connection_name\",\"{name}\"}}");
        found = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .find(|(pid, properties)| properties.contains(&quoted) && Some(*pid) != not)
            .map(|(pid, _)| pid.to_string());
        std::future::ready(found.is_some())
    })
    .await;
    found.unwrap()
}
