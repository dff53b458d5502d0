//! Gathering deliveries into batches, and the backoff between retries.

use std::{
    hash::{BuildHasher, RandomState},
    time::Duration,
};

use futures_util::{Stream, StreamExt};

/// Why a stream of deliveries stopped being read.
#[derive(Debug)]
pub enum Ending<E> {
    /// The bridge is stopping.
    Shutdown,
    /// The broker cancelled the consumer or the stream closed.
    Closed,
    /// The connection or channel failed.
    Failed(E),
}

/// Waits for the first item, then takes more until `max_items` or until `window` has passed
/// since the first. Returns the items taken and, when the stream should no longer be read,
/// why; `stop` ends the wait early, keeping what was taken.
pub async fn next_batch<S, T, E>(
    stream: &mut S,
    max_items: usize,
    window: Duration,
    stop: impl Future<Output = ()>,
) -> (Vec<T>, Option<Ending<E>>)
where
    S: Stream<Item = Result<T, E>> + Unpin,
{
    let mut stop = std::pin::pin!(stop);
    let mut items = Vec::with_capacity(max_items);
    let first = tokio::select! {
        biased;
        () = &mut stop => return (items, Some(Ending::Shutdown)),
        first = stream.next() => first,
    };
    match first {
        Some(Ok(item)) => items.push(item),
        Some(Err(error)) => return (items, Some(Ending::Failed(error))),
        None => return (items, Some(Ending::Closed)),
    }
    let deadline = tokio::time::sleep(window);
    let mut deadline = std::pin::pin!(deadline);
    while items.len() < max_items {
        tokio::select! {
            biased;
            () = &mut stop => return (items, Some(Ending::Shutdown)),
            () = &mut deadline => break,
            next = stream.next() => match next {
                Some(Ok(item)) => items.push(item),
                Some(Err(error)) => return (items, Some(Ending::Failed(error))),
                None => return (items, Some(Ending::Closed)),
            },
        }
    }
    (items, None)
}

/// Exponential backoff with jitter: each delay doubles up to `max`, and is drawn between half
/// and all of that so that many retrying clients do not call in step.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    ceiling: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, ceiling: initial }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(self.max);
        let fraction = RandomState::new().hash_one(ceiling) as f64 / u64::MAX as f64;
        ceiling.mul_f64(0.5 + fraction / 2.0)
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.ceiling = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;

    fn ready(items: std::ops::Range<u32>) -> impl Stream<Item = Result<u32, &'static str>> + Unpin {
        stream::iter(items.map(Ok)).chain(stream::pending())
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_stops_at_the_item_limit() {
        let mut stream = ready(0..25);
        let (items, ending) = next_batch(&mut stream, 10, Duration::from_millis(20), std::future::pending()).await;
        assert_eq!(items, (0..10).collect::<Vec<_>>());
        assert!(ending.is_none());
        let (items, _) = next_batch(&mut stream, 10, Duration::from_millis(20), std::future::pending()).await;
        assert_eq!(items, (10..20).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_batch_leaves_when_its_window_closes() {
        let mut stream = ready(0..3);
        let started = tokio::time::Instant::now();
        let (items, ending) = next_batch(&mut stream, 10, Duration::from_millis(20), std::future::pending()).await;
        assert_eq!(items, vec![0, 1, 2]);
        assert!(ending.is_none());
        assert_eq!(started.elapsed(), Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_keeps_what_was_taken_and_says_why() {
        let mut stream = ready(0..3);
        let stop = tokio::time::sleep(Duration::from_millis(5));
        let (items, ending) = next_batch(&mut stream, 10, Duration::from_millis(20), stop).await;
        assert_eq!(items, vec![0, 1, 2]);
        assert!(matches!(ending, Some(Ending::Shutdown)));
    }

    #[tokio::test]
    async fn a_failed_or_closed_stream_ends_the_batch() {
        let mut failing = stream::iter([Ok(1), Err("connection reset")]);
        let (items, ending) = next_batch(&mut failing, 10, Duration::from_secs(60), std::future::pending()).await;
        assert_eq!(items, vec![1]);
        assert!(matches!(ending, Some(Ending::Failed("connection reset"))));
        let mut closed = stream::iter([Ok::<_, &str>(1)]);
        let (items, ending) = next_batch(&mut closed, 10, Duration::from_secs(60), std::future::pending()).await;
        assert_eq!(items, vec![1]);
        assert!(matches!(ending, Some(Ending::Closed)));
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_maximum_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ceilings = [100, 200, 400, 800, 1000, 1000];
        for ceiling in ceilings.map(Duration::from_millis) {
            let delay = backoff.next_delay();
            assert!(delay >= ceiling / 2 && delay <= ceiling, "{delay:?} not within half of {ceiling:?}");
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
