//! In a file of its own so that no other test's allocations share the process whose peak it reads.

use eventstream::auth::{hash_password, verify_password};

/// The peak resident memory of checks run in turn on threads that stay alive, as the blocking
/// pool's threads do, stays near one check's worth; with memory allocated per check it grew by
/// 19 MiB per thread (glibc keeps each thread's freed block in that thread's arena).
#[test]
fn checks_on_many_threads_reuse_one_block_of_memory() {
    const THREADS: usize = 6;
    let hash = hash_password("correct horse").unwrap();
    assert!(verify_password("correct horse", Some(&hash)));
    let before = peak_resident_kib();
    let all_checked = std::sync::Arc::new(std::sync::Barrier::new(THREADS + 1));
    let mut threads = Vec::new();
    for _ in 0..THREADS {
        let (hash, all_checked) = (hash.clone(), all_checked.clone());
        let (checked, done) = std::sync::mpsc::channel();
        threads.push(std::thread::spawn(move || {
            assert!(verify_password("correct horse", Some(&hash)));
            checked.send(()).unwrap();
            all_checked.wait();
        }));
        done.recv().unwrap();
    }
    let growth_mib = (peak_resident_kib() - before) / 1024;
    all_checked.wait();
    threads.into_iter().for_each(|thread| thread.join().unwrap());
    assert!(
        growth_mib < 10,
        "peak resident memory grew by {growth_mib} MiB over {THREADS} checks on {THREADS} threads"
    );
}

fn peak_resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
