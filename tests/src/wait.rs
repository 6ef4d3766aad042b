//! Bounded waiting: the only sanctioned way for tests to wait for something.
//!
//! Tests never sleep to "let things settle"; they poll a condition with [`eventually`] or
//! bound a single future with [`within`]. Both panic with a message naming what was awaited.

use std::future::Future;
use std::time::Duration;

use tokio::time::{sleep, timeout_at, Instant};

/// The timing vocabulary of every test, one meaning each:
///
/// How long something the node does at once may take to be seen (a frame answered, a
/// delivery on the same node, a metric updated).
pub const SOON: Duration = Duration::from_secs(5);
/// The same across nodes (through Redis: a publication, a recovery elsewhere).
pub const CROSS: Duration = Duration::from_secs(10);
/// The quiet window of an absence check: nothing may arrive within it, and a barrier
/// round trip after it proves nothing was on its way.
pub const QUIET: Duration = Duration::from_millis(300);

/// How often [`eventually`] re-evaluates its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Polls `f` every [`POLL_INTERVAL`] until it yields `Some(value)` and returns the value.
///
/// Each attempt is itself bounded by the remaining time, so a hanging attempt cannot
/// overshoot the bound. Panics with `what` in the message once `timeout` has elapsed.
pub async fn eventually<F, Fut, T>(what: &str, timeout: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll_until(timeout, f).await {
        Some(value) => value,
        None => panic!("timed out after {timeout:?} waiting for: {what}"),
    }
}

/// Awaits `fut`, panicking with `what` in the message if it takes longer than `timeout`.
pub async fn within<T>(what: &str, timeout: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(timeout, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {timeout:?}: {what}"),
    }
}

/// The non-panicking core of [`eventually`]: `None` when the bound elapsed.
pub async fn poll_until<F, Fut, T>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match timeout_at(deadline, f()).await {
            Ok(Some(value)) => return Some(value),
            Ok(None) => {}
            Err(_) => return None,
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[actix_rt::test]
    async fn eventually_returns_once_condition_holds() {
        let calls = Cell::new(0u32);
        let got = eventually("third attempt", Duration::from_secs(5), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { (n >= 3).then_some(n * 10) }
        })
        .await;
        assert_eq!(got, 30);
        assert_eq!(calls.get(), 3);
    }

    #[actix_rt::test]
    async fn eventually_closures_may_borrow_from_the_test() {
        let values: Vec<i32> = (1..=3).collect();
        let polls = Cell::new(0);
        let sum = eventually("sum of borrowed values", Duration::from_secs(1), || async {
            polls.set(polls.get() + 1);
            Some(values.iter().sum::<i32>())
        })
        .await;
        assert_eq!((sum, polls.get()), (6, 1));
    }

    #[actix_rt::test]
    #[should_panic(expected = "waiting for: the impossible")]
    async fn eventually_panics_naming_what_after_the_bound() {
        eventually("the impossible", Duration::from_millis(100), || async {
            None::<()>
        })
        .await;
    }

    #[actix_rt::test]
    #[should_panic(expected = "timed out after 50ms: a hanging attempt")]
    async fn within_panics_naming_what() {
        within(
            "a hanging attempt",
            Duration::from_millis(50),
            std::future::pending::<()>(),
        )
        .await;
    }

    #[actix_rt::test]
    async fn poll_until_bounds_a_hanging_attempt() {
        let start = Instant::now();
        let got = poll_until(
            Duration::from_millis(100),
            std::future::pending::<Option<()>>,
        )
        .await;
        assert!(got.is_none());
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
