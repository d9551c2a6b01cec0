//! The router bench's figures saved to a file (BENCH_SAVE) and compared
//! with an earlier run's (BENCH_BASELINE): one row per scenario and path,
//! tab-separated, so a run before a change and one after it print side by
//! side.

use std::io;
use std::path::Path;

/// One path's figures in one scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `vm` or `host`.
    pub scenario: String,
    /// `direct`, `byteport router` or `nginx`.
    pub path: String,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The proxy's CPU time per request, µs (none for `direct`).
    pub cpu_us: Option<f64>,
}

const HEADER: &str = "scenario\tpath\treq_per_s\tp50_ms\tp99_ms\tproxy_cpu_us_per_req";

/// Writes `rows` to `path`.
pub fn save(path: &Path, rows: &[Row]) -> io::Result<()> {
    let mut text = format!("{HEADER}\n");
    for r in rows {
        let cpu = r
            .cpu_us
            .map_or_else(|| "-".to_string(), |c| format!("{c:.1}"));
        text.push_str(&format!(
            "{}\t{}\t{:.0}\t{:.3}\t{:.3}\t{cpu}\n",
            r.scenario, r.path, r.rps, r.p50_ms, r.p99_ms
        ));
    }
    std::fs::write(path, text)
}

/// Reads rows [`save`] wrote (lines starting with `#` are comments).
pub fn load(path: &Path) -> io::Result<Vec<Row>> {
    let text = std::fs::read_to_string(path)?;
    let bad = |line: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a bench figures line ({HEADER}): {line:?}"),
        )
    };
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && *l != HEADER)
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
            match (f.len(), num(2), num(3), num(4)) {
                (6, Some(rps), Some(p50_ms), Some(p99_ms)) => Ok(Row {
                    scenario: f[0].to_string(),
                    path: f[1].to_string(),
                    rps,
                    p50_ms,
                    p99_ms,
                    cpu_us: num(5),
                }),
                _ => Err(bad(line)),
            }
        })
        .collect()
}

/// Prints each path of `after` beside the same path of `before`.
pub fn print_comparison(before: &[Row], after: &[Row]) {
    println!(
        "  {:<5} {:<16} {:>17} {:>8} {:>15} {:>15} {:>15}",
        "", "path", "req/s before→now", "change", "p50 ms", "p99 ms", "CPU/req us"
    );
    for now in after {
        let Some(then) = before
            .iter()
            .find(|b| b.scenario == now.scenario && b.path == now.path)
        else {
            continue;
        };
        let cpu = match (then.cpu_us, now.cpu_us) {
            (Some(a), Some(b)) => format!("{a:.1}→{b:.1}"),
            _ => "-".into(),
        };
        let rps = format!("{:.0}→{:.0}", then.rps, now.rps);
        let p50 = format!("{:.2}→{:.2}", then.p50_ms, now.p50_ms);
        let p99 = format!("{:.2}→{:.2}", then.p99_ms, now.p99_ms);
        let change = (now.rps / then.rps - 1.0) * 100.0;
        println!(
            "  {:<5} {:<16} {rps:>17} {change:>+7.1}% {p50:>15} {p99:>15} {cpu:>15}",
            now.scenario, now.path,
        );
    }
}
