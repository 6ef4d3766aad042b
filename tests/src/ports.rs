//! Free TCP ports on 127.0.0.1, never handed out twice within one test process.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock, PoisonError};

static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();

/// A port that was free on 127.0.0.1 a moment ago and that this process has not handed out
/// before (the kernel may still give it to another process; that race is accepted).
pub fn free_port() -> u16 {
    let handed_out = HANDED_OUT.get_or_init(Default::default);
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("cannot read the local address of a listener: {e}"))
            .port();
        drop(listener);
        let mut set = handed_out.lock().unwrap_or_else(PoisonError::into_inner);
        if set.insert(port) {
            return port;
        }
    }
    panic!("no fresh free port found after 1000 attempts");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_unique_and_bindable() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(
            unique.len(),
            ports.len(),
            "free_port handed out a port twice"
        );
        for port in ports.iter().take(20) {
            assert_ne!(*port, 0);
            TcpListener::bind(("127.0.0.1", *port)).expect("free port should be bindable");
        }
    }

    #[test]
    fn ports_are_unique_across_threads() {
        let handles: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(|| (0..50).map(|_| free_port()).collect::<Vec<_>>()))
            .collect();
        let all: Vec<u16> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let unique: HashSet<u16> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len());
    }
}
