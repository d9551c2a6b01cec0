//! Parse-time figures: a typical manifest and the worst cases the limits
//! allow (1 MiB of comments, 1 MiB of bad lines). Prints side-by-side
//! figures; run with `cargo bench -p manifest-spec`.

use std::hint::black_box;
use std::time::{Duration, Instant};

fn time(label: &str, src: &[u8], rounds: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..rounds {
        let _ = black_box(manifest_spec::parse(black_box(src), "Byteport"));
    }
    let per = start.elapsed() / rounds;
    let mib_s = src.len() as f64 / per.as_secs_f64() / (1 << 20) as f64;
    println!(
        "{label:<34} {:>9} bytes  {:>10.3} ms/parse  {:>8.1} MiB/s",
        src.len(),
        per.as_secs_f64() * 1e3,
        mib_s
    );
    per
}

fn main() {
    let typical = include_str!("../tests/corpus/valid/draft.byteport").as_bytes();
    let mut comments = b"app big\nfrom busybox\nworker {\n  run true\n}\n".to_vec();
    while comments.len() < manifest_spec::limits::MAX_MANIFEST_BYTES - 64 {
        comments.extend_from_slice(b"# padding padding padding padding padding padding\n");
    }
    let mut bad = Vec::new();
    while bad.len() < manifest_spec::limits::MAX_MANIFEST_BYTES - 16 {
        bad.extend_from_slice(b"memroy 1G\n");
    }
    let oversized = vec![b'#'; 10 << 20];

    let t = time("typical (product draft)", typical, 2000);
    let c = time("1 MiB of comments", &comments, 5);
    let b = time("1 MiB of bad lines", &bad, 5);
    let o = time("10 MiB (rejected by size)", &oversized, 200);
    println!(
        "ratios vs typical: comments {:.0}x, bad lines {:.0}x, oversized {:.2}x",
        c.as_secs_f64() / t.as_secs_f64(),
        b.as_secs_f64() / t.as_secs_f64(),
        o.as_secs_f64() / t.as_secs_f64()
    );
}
