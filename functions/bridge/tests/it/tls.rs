//! amqps (Amazon MQ, a RabbitMQ with TLS): lapin speaks TLS, also in the bridge, which links both of
//! rustls's crypto providers (ring for lapin and the library, aws-lc for the AWS SDK).

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

#[tokio::test]
async fn an_amqps_url_is_spoken_to_in_tls() {
    // The local RabbitMQ listens without TLS on 5672: its AMQP greeting is no TLS record, which a
    // TLS client refuses. A client without TLS would log in in plain text, or refuse the scheme.
    let url = "amqps://guest:guest@127.0.0.1:5672/%2f";
    let attempt =
        tokio::time::timeout(Duration::from_secs(10), Connection::connect(url, ConnectionProperties::default()))
            .await
            .expect("the handshake fails within 10 s");
    let error = attempt.expect_err("no TLS listener there").to_string();
    assert!(error.contains("InvalidContentType"), "not a TLS handshake's failure: {error}");
}
