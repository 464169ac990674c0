//! Real forks: the generation changes in every child and the generator's streams differ.

use std::fs;

#[test]
fn children_see_a_new_generation_and_distinct_random_streams() {
    // Warm the parent: the thread-local generator exists and has produced output.
    let parent_gen = larder_fork::generation();
    let mut warm = [0u8; 32];
    larder_fork::fill(&mut warm).unwrap();

    let dir = tempfile_dir();
    let children: Vec<_> = (0..8)
        .map(|i| {
            let path = dir.join(format!("child-{i}"));
            larder_fork::generation();
            larder_forktest::fork(move || {
                if larder_fork::generation() == parent_gen {
                    return 2;
                }
                let mut out = Vec::new();
                for _ in 0..1000 {
                    let mut n = [0u8; 12];
                    if larder_fork::fill(&mut n).is_err() {
                        return 3;
                    }
                    out.extend_from_slice(&n);
                }
                if fs::write(&path, out).is_err() {
                    return 4;
                }
                0
            })
        })
        .collect();
    for c in children {
        assert_eq!(c.wait(), 0, "a child saw the parent's generation or failed");
    }
    assert_eq!(larder_fork::generation(), parent_gen, "the parent's generation moved");

    // The parent keeps drawing from its own stream; every 12-byte value of all processes is
    // distinct (a repeat would mean two processes share generator state).
    let mut all = std::collections::HashSet::new();
    let mut total = 0;
    for _ in 0..1000 {
        let mut n = [0u8; 12];
        larder_fork::fill(&mut n).unwrap();
        all.insert(n.to_vec());
        total += 1;
    }
    for i in 0..8 {
        let bytes = fs::read(dir.join(format!("child-{i}"))).unwrap();
        assert_eq!(bytes.len(), 12_000);
        for chunk in bytes.chunks(12) {
            all.insert(chunk.to_vec());
            total += 1;
        }
    }
    assert_eq!(total, 9000);
    assert_eq!(all.len(), total, "{} repeated values across forked processes", total - all.len());
    let _ = fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("larder-fork-test-{}", std::process::id()));
    fs::create_dir_all(&d).unwrap();
    d
}
