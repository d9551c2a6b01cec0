//! A synthetic history with realistic deltas, written with `git
//! fast-import`: a dozen source files in a few directories, each commit
//! editing one to three of them (lines changed, inserted, appended), a new
//! file every 50 commits, a merged feature branch every 250 and an
//! annotated tag every 500.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn line(rng: &mut Rng, file: usize) -> String {
    let n = rng.next();
    format!(
        "pub fn f{file}_{:x}(x: u64) -> u64 {{ x.wrapping_mul({}).rotate_left({}) ^ {} }}\n",
        n & 0xffff,
        n >> 40,
        n % 63,
        (n >> 20) & 0xfffff
    )
}

fn blob(out: &mut Vec<u8>, mark: usize, content: &str) {
    writeln!(out, "blob\nmark :{mark}\ndata {}", content.len()).unwrap();
    out.extend_from_slice(content.as_bytes());
    out.push(b'\n');
}

/// Creates a repository at `dir` with `commits` commits on main (plus
/// merged feature branches); returns its path.
pub fn generate(dir: &Path, commits: usize) -> PathBuf {
    let repo = dir.join(format!("synthetic-{commits}"));
    let st = Command::new("git")
        .args(["init", "-q", "-b", "main"])
        .arg(&repo)
        .status()
        .unwrap();
    assert!(st.success());
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let dirs = ["src", "src/net", "src/store", "tests"];
    let mut files: Vec<(String, Vec<String>)> = (0..12)
        .map(|i| {
            let lines = (0..150 + 20 * i).map(|_| line(&mut rng, i)).collect();
            (format!("{}/mod{i}.rs", dirs[i % dirs.len()]), lines)
        })
        .collect();
    let mut s = Vec::with_capacity(64 << 20);
    let mut mark = 0usize;
    let mut last_main = 0usize;
    let mut feature_base = 0usize;
    let mut time = 1_600_000_000u64;
    for c in 0..commits {
        // Every 250 commits, 10 commits on a feature branch, then a merge.
        let on_feature = c % 250 >= 240;
        let mut changed = vec![];
        if c > 0 && c % 50 == 0 {
            let i = files.len();
            let lines = (0..40).map(|_| line(&mut rng, i)).collect();
            files.push((format!("{}/new{i}.rs", dirs[i % dirs.len()]), lines));
            changed.push(i);
        }
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(files.len());
            let lines = &mut files[i].1;
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(lines.len());
                lines[at] = line(&mut rng, i);
            }
            if rng.below(3) == 0 {
                let at = rng.below(lines.len());
                lines.insert(at, line(&mut rng, i));
            }
            lines.push(line(&mut rng, i));
            changed.push(i);
        }
        changed.sort();
        changed.dedup();
        let mut file_marks = vec![];
        for &i in &changed {
            mark += 1;
            blob(&mut s, mark, &files[i].1.concat());
            file_marks.push((mark, files[i].0.clone()));
        }
        mark += 1;
        time += 600;
        let branch = if on_feature { "feature" } else { "main" };
        writeln!(s, "commit refs/heads/{branch}\nmark :{mark}").unwrap();
        writeln!(s, "author Dev <dev@example.com> {time} +0000").unwrap();
        writeln!(s, "committer Dev <dev@example.com> {time} +0000").unwrap();
        let msg = format!("change {c}: edit {} file(s)\n", changed.len());
        writeln!(s, "data {}\n{msg}", msg.len()).unwrap();
        if c % 250 == 240 {
            writeln!(s, "from :{last_main}").unwrap(); // branch off main
            feature_base = mark;
        } else if !on_feature && c % 250 == 0 && c > 0 {
            writeln!(s, "from :{last_main}\nmerge :{feature_base}").unwrap();
        }
        for (m, path) in &file_marks {
            writeln!(s, "M 100644 :{m} {path}").unwrap();
        }
        if on_feature {
            feature_base = mark;
        } else {
            last_main = mark;
        }
        if c > 0 && c % 500 == 0 {
            writeln!(s, "tag v{}\nfrom :{last_main}", c / 500).unwrap();
            writeln!(
                s,
                "tagger Dev <dev@example.com> {time} +0000\ndata 8\nrelease\n"
            )
            .unwrap();
        }
    }
    writeln!(s, "reset refs/heads/main\nfrom :{last_main}\n").unwrap();
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(&repo)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&s).unwrap();
    assert!(child.wait().unwrap().success(), "git fast-import failed");
    // Packed like a developer's repository after `git gc`.
    let st = Command::new("git")
        .args(["repack", "-adq", "--window=10", "--depth=50"])
        .current_dir(&repo)
        .status()
        .unwrap();
    assert!(st.success());
    let _ = Command::new("git")
        .args(["branch", "-D", "feature"])
        .current_dir(&repo)
        .output();
    repo
}
