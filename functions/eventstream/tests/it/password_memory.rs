//! The peak resident memory of password checks. A peak is the whole process's, so the test measures
//! in a process of its own: this binary again, running this test alone.

use std::process::Command;

use eventstream::auth::{hash_password, verify_password};

/// This test's name as the test harness knows it.
const NAME: &str = "password_memory::checks_on_many_threads_reuse_one_block_of_memory";
/// Set in the process that measures.
const MEASURING: &str = "EVENTSTREAM_TEST_MEASURING_PEAK_MEMORY";

/// The peak resident memory of checks run in turn on threads that stay alive, as the blocking
/// pool's threads do, stays near one check's worth; with memory allocated per check it grew by
/// 19 MiB per thread (glibc keeps each thread's freed block in that thread's arena).
#[test]
fn checks_on_many_threads_reuse_one_block_of_memory() {
    if std::env::var_os(MEASURING).is_none() {
        let exe = std::env::current_exe().unwrap();
        let output =
            Command::new(exe).args([NAME, "--exact", "--test-threads=1"]).env(MEASURING, "1").output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
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
